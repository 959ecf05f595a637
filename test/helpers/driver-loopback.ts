/**
 * The load tester's driver side (assembly/driver.ts) and the daemon's device side (assembly/queue.ts,
 * chain.ts) on one shared memory, for test/unit/driver-ring: one guest RAM region, resident in the
 * window, in the memory table; queues laid out in it as src/loadtest/guest.ts lays them out (rings,
 * one indirect table per slot, the slots' data); the driver reaches them by window address, the device
 * by the region's user and guest-physical addresses. Also the shape table, what chainParse leaves in a
 * worker's scratch, the reap list and the event indices, read and written as plain memory.
 */
import { VIRTQ_DESC_F_WRITE } from '../../src/abi/virtio.js';
import { type VqExports, type VqLayout, createSharedMemory, loadVirtqueueModule } from '../../src/virtio/wasm.js';

const MiB = 1 << 20;
/** guest RAM at 4 GiB, as the load tester puts it */
export const GPA = 0x1_0000_0000n;
const UA = 0x7f00_0000_0000n;
/** each queue gets its own 4 MiB of the region; 16 MiB after the queues are free for any use */
const QUEUE_AREA = 4 * MiB;
const QUEUES = 16;
const REGION = QUEUES * QUEUE_AREA + 16 * MiB;

export interface Queue {
  q: number;
  size: number;
  desc: number;
  avail: number;
  used: number;
  slotBytes: number;
  dataWin: number;
  tableWin: number;
  slotDescs: number;
  indirect: boolean;
}

export interface QueueOpts {
  size?: number;
  eventIdx?: boolean;
  indirect?: boolean;
  slots?: number;
  slotBytes?: number;
  slotDescs?: number;
  /** where both sides' 16-bit indices start (a ring that was in use) */
  start?: number;
}

/** One buffer of a chain in the shape table: offset in the slot, length, device-writable. */
export interface Seg {
  off: number;
  len: number;
  write: boolean;
}

/** A guest buffer. */
export interface Buf {
  gpa: bigint;
  len: number;
}

export class DriverLoopback {
  readonly L: VqLayout;
  readonly dv: DataView;
  readonly u8: Uint8Array;
  /** window address of the free 16 MiB after the queues */
  readonly spare: number;

  private constructor(
    readonly vq: VqExports,
    readonly memory: WebAssembly.Memory,
    /** the worker whose scratch chainParse fills */
    readonly w: number,
  ) {
    this.L = vq.layout;
    this.dv = new DataView(memory.buffer);
    this.u8 = new Uint8Array(memory.buffer);
    this.spare = this.L.WINDOW_BASE + QUEUES * QUEUE_AREA;
    vq.memtableClear();
    const rc = vq.memtableAdd(GPA, BigInt(REGION), UA, UA, 0n, this.L.WINDOW_BASE, -1);
    if (rc !== 0) throw new Error(`memtableAdd: ${rc}`);
  }

  static async create(w = 5): Promise<DriverLoopback> {
    const memory = createSharedMemory();
    return new DriverLoopback(await loadVirtqueueModule(memory), memory, w);
  }

  gpaOfWin(win: number): bigint {
    return GPA + BigInt(win - this.L.WINDOW_BASE);
  }

  /** Lays queue q out (q < 16) and sets both sides up; throws when either refuses. */
  setup(q: number, o: QueueOpts = {}): Queue {
    const { vq, dv, L } = this;
    const size = o.size ?? 16;
    const slots = o.slots ?? 4;
    const slotBytes = o.slotBytes ?? 16384;
    const slotDescs = o.slotDescs ?? 4;
    const start = o.start ?? 0;
    const indirect = o.indirect ?? true;
    const base = L.WINDOW_BASE + q * QUEUE_AREA;
    const desc = base;
    const avail = desc + 16 * size;
    const used = alignUp(avail + 6 + 2 * size, 4);
    const tableWin = alignUp(used + 6 + 8 * size, 4096);
    const dataWin = tableWin + slots * L.DRV_TABLE_STRIDE;
    if (q >= QUEUES || dataWin + slots * slotBytes > base + QUEUE_AREA) throw new RangeError('queue area too small');
    this.u8.fill(0, base, base + QUEUE_AREA);
    dv.setUint16(avail + 2, start, true);
    dv.setUint16(used + 2, start, true);
    vq.queueReset(q);
    vq.queueSetBase(q, start);
    const ua = (win: number): bigint => UA + BigInt(win - L.WINDOW_BASE);
    const rc = vq.queueSetup(q, size, ua(desc), ua(avail), ua(used), o.eventIdx ? 1 : 0);
    if (rc !== 0) throw new Error(`queueSetup: ${rc}`);
    const ev = o.eventIdx ? 1 : 0;
    const drc = vq.drvSetup(q, size, desc, avail, used, ev, indirect ? 1 : 0, slotBytes, this.gpaOfWin(dataWin), dataWin, this.gpaOfWin(tableWin), tableWin, slotDescs);
    if (drc !== 0) throw new Error(`drvSetup: ${drc}`);
    // the driver's shadow indices (drvSetup starts them at 0)
    const d = L.DRV_BASE + q * L.DRV_STRIDE;
    for (const off of [L.D_AVAIL_IDX, L.D_KICKED_IDX, L.D_LAST_USED]) dv.setUint32(d + off, start, true);
    return { q, size, desc, avail, used, slotBytes, dataWin, tableWin, slotDescs, indirect };
  }

  /** Shape `id`: header {count, replyOff, replyCap, reqLen}, then {off, len, flags} per buffer. */
  writeShape(id: number, segs: Seg[]): void {
    const { dv } = this;
    const a = this.L.DRV_SHAPES + id * this.L.DRV_SHAPE_STRIDE;
    dv.setUint32(a, segs.length, true);
    dv.setUint32(a + 4, 2048, true);
    dv.setUint32(a + 8, segs.filter((s) => s.write).reduce((x, s) => x + s.len, 0), true);
    dv.setUint32(a + 12, segs.filter((s) => !s.write).reduce((x, s) => x + s.len, 0), true);
    segs.forEach((s, k) => {
      dv.setUint32(a + 16 + 12 * k, s.off, true);
      dv.setUint32(a + 20 + 12 * k, s.len, true);
      dv.setUint32(a + 24 + 12 * k, s.write ? VIRTQ_DESC_F_WRITE : 0, true);
    });
  }

  readShape(id: number): Seg[] {
    const { dv } = this;
    const a = this.L.DRV_SHAPES + id * this.L.DRV_SHAPE_STRIDE;
    return Array.from({ length: dv.getUint32(a, true) }, (_, k) => ({
      off: dv.getUint32(a + 16 + 12 * k, true),
      len: dv.getUint32(a + 20 + 12 * k, true),
      write: (dv.getUint32(a + 24 + 12 * k, true) & VIRTQ_DESC_F_WRITE) !== 0,
    }));
  }

  /** The buffers a shape names for a slot, merged where contiguous as chainParse merges them. */
  expected(qq: Queue, slot: number, segs: Seg[]): { r: Buf[]; w: Buf[] } {
    const list = (write: boolean): Buf[] => {
      const out: Buf[] = [];
      for (const s of segs.filter((x) => x.write === write && x.len > 0)) {
        const gpa = this.gpaOfWin(qq.dataWin + slot * qq.slotBytes + s.off);
        const last = out[out.length - 1];
        if (last && last.gpa + BigInt(last.len) === gpa) last.len += s.len;
        else out.push({ gpa, len: s.len });
      }
      return out;
    };
    return { r: list(false), w: list(true) };
  }

  /** What chainParse left in the worker's scratch: the segment lists as guest buffers, and the totals. */
  parsed(): { r: Buf[]; w: Buf[]; rtotal: number; wtotal: number } {
    const { dv, L } = this;
    const s = L.SCRATCH_BASE + this.w * L.SCRATCH_SIZE;
    const list = (off: number, n: number): Buf[] =>
      Array.from({ length: n }, (_, i) => {
        const e = s + off + i * L.SEG_STRIDE;
        const region = dv.getUint32(e + 12, true);
        const rgpa = dv.getBigUint64(L.MEMTABLE_BASE + L.MEMTABLE_ENTRIES + region * L.MEMTABLE_STRIDE + L.MT_GPA, true);
        return { gpa: rgpa + dv.getBigUint64(e, true), len: dv.getUint32(e + 8, true) };
      });
    return {
      r: list(L.SCR_RLIST, dv.getUint32(s + L.SCR_RCOUNT, true)),
      w: list(L.SCR_WLIST, dv.getUint32(s + L.SCR_WCOUNT, true)),
      rtotal: dv.getUint32(s + L.SCR_RTOTAL, true),
      wtotal: dv.getUint32(s + L.SCR_WTOTAL, true),
    };
  }

  /** The used elements {id, len} the last drvReap of queue q copied out. */
  reaped(q: number, n: number): Array<[number, number]> {
    const a = this.L.DRV_REAP + q * this.L.DRV_REAP_MAX * 8;
    return Array.from({ length: n }, (_, i) => [this.dv.getUint32(a + 8 * i, true), this.dv.getUint32(a + 8 * i + 4, true)]);
  }

  availIdx(qq: Queue): number {
    return this.dv.getUint16(qq.avail + 2, true);
  }
  usedIdx(qq: Queue): number {
    return this.dv.getUint16(qq.used + 2, true);
  }
  /** used ring's avail_event (the device's) */
  availEvent(qq: Queue): number {
    return this.dv.getUint16(qq.used + 4 + 8 * qq.size, true);
  }
  setAvailEvent(qq: Queue, v: number): void {
    this.dv.setUint16(qq.used + 4 + 8 * qq.size, v & 0xffff, true);
  }
  /** avail ring's used_event (the driver's) */
  usedEvent(qq: Queue): number {
    return this.dv.getUint16(qq.avail + 4 + 2 * qq.size, true);
  }
  setUsedEvent(qq: Queue, v: number): void {
    this.dv.setUint16(qq.avail + 4 + 2 * qq.size, v & 0xffff, true);
  }
}

/** A random shape: readable buffers then writable ones, at random offsets in a slot, some contiguous. */
export function randomShape(r: () => number, count: number, slotBytes: number): Seg[] {
  const segs: Seg[] = [];
  const nr = 1 + Math.floor(r() * count);
  let off = 0;
  for (let k = 0; k < count; k++) {
    const len = 1 + Math.floor(r() * 300);
    if (r() < 0.5) off += 8 + Math.floor(r() * 64);
    if (off + len > slotBytes) break;
    segs.push({ off, len, write: k >= nr });
    off += len;
  }
  return segs;
}

/** mulberry32: a seeded PRNG, so a failure replays. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** JSON with bigints in hex: buffer lists compared as one string. */
export function show(x: unknown): string {
  return JSON.stringify(x, (_, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v));
}

function alignUp(v: number, a: number): number {
  return Math.ceil(v / a) * a;
}
