/**
 * The corrupting proxy's view of the split virtqueues (virtio 1.2 §2.7): when the backend signals a
 * queue, the used elements it published since the last signal are read, each element's descriptor
 * chain is walked (direct, or through an indirect table when VIRTIO_F_INDIRECT_DESC was negotiated) to
 * find the device-writable buffers, and every N-th eligible reply is damaged in place before the
 * frontend is told (docs/testing.md, "The corrupting backend").
 *
 * Ring addresses are frontend user addresses, descriptor addresses guest-physical (vhost-user spec,
 * SET_VRING_ADDR). Anything that does not translate or is out of range is skipped, never trusted.
 */
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_SIZE } from '../../src/abi/virtio.js';
import { VIRTIO_RING_F_INDIRECT_DESC } from '../../src/vhost/message.js';
import type { ProxyMemory, Where } from './proxy-memory.js';

export type Flip = 'data' | 'unique' | 'len';
export const FLIPS: readonly Flip[] = ['data', 'unique', 'len'];

/** fuse_out_header: u32 len, i32 error, u64 unique. */
const OUT_HEADER_SIZE = 16;
/** A data flip only hits replies longer than the header and a 64-byte struct (READ data, not INIT's). */
const DATA_MIN_LEN = OUT_HEADER_SIZE + 64;
/** What a len flip adds: the reply then claims more bytes than the backend wrote. */
const LEN_DELTA = 4096;
/** used ring: u16 flags, u16 idx, then {u32 id, u32 len} elements */
const USED_IDX = 2;
const USED_RING = 4;
const USED_ELEM_SIZE = 8;
/** Corruptions reported one by one on stderr; the rest only in the count at exit. */
const REPORT_FIRST = 8;

interface Vring {
  num: number;
  desc?: bigint;
  used?: bigint;
  /** the used index up to which elements have been looked at */
  lastUsed: number;
}

interface Buf {
  gpa: bigint;
  len: number;
}

export class RingInspector {
  /** the virtio features the frontend set (SET_FEATURES) */
  features = 0n;
  /** replies eligible for --flip so far, and how many were damaged */
  eligible = 0;
  corrupted = 0;
  private readonly rings = new Map<number, Vring>();

  constructor(
    private readonly mem: ProxyMemory,
    private readonly flip: Flip,
    private readonly every: number,
    private readonly log: (msg: string) => void,
  ) {}

  private ring(q: number): Vring {
    let r = this.rings.get(q);
    if (!r) {
      r = { num: 0, lastUsed: 0 };
      this.rings.set(q, r);
    }
    return r;
  }

  setNum(q: number, num: number): void {
    this.ring(q).num = num;
  }

  setAddr(q: number, desc: bigint, used: bigint): void {
    const r = this.ring(q);
    r.desc = desc;
    r.used = used;
    this.sync(q);
  }

  /** Starts looking from the used index as it is now (the ring is being (re)started). */
  sync(q: number): void {
    const r = this.ring(q);
    const idx = this.usedIdx(r);
    if (idx !== undefined) r.lastUsed = idx;
  }

  /** The backend signalled queue q: inspect (and maybe damage) what it used since the last time. */
  onCall(q: number): void {
    const r = this.rings.get(q);
    if (!r || r.used === undefined || r.num === 0 || r.num > 32768) return;
    const idx = this.usedIdx(r);
    if (idx === undefined) return;
    // More than a ring's worth of new entries is a confused backend or a restarted ring: resync.
    if (((idx - r.lastUsed) & 0xffff) > r.num) {
      r.lastUsed = idx;
      return;
    }
    while (r.lastUsed !== idx) {
      const w = this.mem.byUaddr(r.used + BigInt(USED_RING + USED_ELEM_SIZE * (r.lastUsed % r.num)), USED_ELEM_SIZE);
      r.lastUsed = (r.lastUsed + 1) & 0xffff;
      if (!w) continue;
      const e = dv(this.mem.read(w, USED_ELEM_SIZE));
      this.onReply(q, r, e.getUint32(0, true), e.getUint32(4, true));
    }
  }

  private usedIdx(r: Vring): number | undefined {
    if (r.used === undefined) return undefined;
    const w = this.mem.byUaddr(r.used, USED_RING);
    return w ? dv(this.mem.read(w, USED_RING)).getUint16(USED_IDX, true) : undefined;
  }

  private onReply(q: number, r: Vring, head: number, len: number): void {
    const bufs = this.writable(r, head);
    if (!bufs) return;
    const room = bufs.reduce((s, b) => s + b.len, 0);
    const used = Math.min(len, room);
    if (used < OUT_HEADER_SIZE || (this.flip === 'data' && used <= DATA_MIN_LEN)) return;
    this.eligible++;
    if (this.every === 0 || this.eligible % this.every !== 0) return;
    let what: string;
    if (this.flip === 'data') {
      const at = OUT_HEADER_SIZE + ((used - OUT_HEADER_SIZE) >> 1);
      this.patch(bufs, at, 1, (b) => b.map((x) => x ^ 0xff));
      what = `data byte ${at} inverted`;
    } else if (this.flip === 'unique') {
      this.patch(bufs, 8, 8, (b) => b.map((x) => x ^ 0xff));
      what = 'unique inverted';
    } else {
      this.patch(bufs, 0, 4, (b) => {
        const v = dv(b);
        v.setUint32(0, (v.getUint32(0, true) + LEN_DELTA) >>> 0, true);
        return b;
      });
      what = `len + ${LEN_DELTA}`;
    }
    this.corrupted++;
    if (this.corrupted <= REPORT_FIRST) this.log(`queue ${q} head ${head} used len ${len}: ${what}`);
  }

  /** The device-writable buffers of the chain at `head`, in order; undefined if it cannot be walked. */
  private writable(r: Vring, head: number): Buf[] | undefined {
    if (r.desc === undefined || head >= r.num) return undefined;
    let table = this.mem.byUaddr(r.desc, VIRTQ_DESC_SIZE * r.num);
    let size = r.num;
    let indirect = false;
    const out: Buf[] = [];
    let i = head;
    // A chain visits each descriptor at most once; more steps than descriptors means a loop.
    for (let steps = 0; table && i < size && steps <= size; steps++) {
      const d = dv(this.mem.read({ region: table.region, off: table.off + BigInt(VIRTQ_DESC_SIZE * i) }, VIRTQ_DESC_SIZE));
      const addr = d.getBigUint64(0, true);
      const len = d.getUint32(8, true);
      const flags = d.getUint16(12, true);
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        const negotiated = (this.features & (1n << VIRTIO_RING_F_INDIRECT_DESC)) !== 0n;
        if (!negotiated || indirect || len === 0 || len % VIRTQ_DESC_SIZE !== 0) return undefined;
        indirect = true;
        size = len / VIRTQ_DESC_SIZE;
        table = this.mem.byGpa(addr, len);
        i = 0;
        continue;
      }
      if ((flags & VIRTQ_DESC_F_WRITE) !== 0) out.push({ gpa: addr, len });
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) return out;
      i = d.getUint16(14, true);
    }
    return undefined;
  }

  /** Rewrites reply bytes [at, at+n) (spread over the writable buffers) with fn(old bytes). */
  private patch(bufs: Buf[], at: number, n: number, fn: (old: Uint8Array) => Uint8Array): void {
    const where: Where[] = [];
    for (let k = at; k < at + n; k++) {
      const w = this.byteAt(bufs, k);
      if (!w) return;
      where.push(w);
    }
    const old = new Uint8Array(where.map((w) => this.mem.read(w, 1)[0]!));
    const neu = fn(old);
    for (const [k, w] of where.entries()) this.mem.write(w, neu.subarray(k, k + 1));
  }

  private byteAt(bufs: Buf[], k: number): Where | undefined {
    let start = 0;
    for (const b of bufs) {
      if (k < start + b.len) return this.mem.byGpa(b.gpa + BigInt(k - start), 1);
      start += b.len;
    }
    return undefined;
  }
}

function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}
