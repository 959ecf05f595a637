/**
 * A driver-side split virtqueue (virtio 1.1 §2.6) over guest RAM that lives in the shared wasm
 * memory, for tests: lays out the rings, adds descriptor chains (optionally through an indirect
 * table), publishes avail entries and reads the used ring back. Everything it writes is what a
 * guest driver would write; hostile tests use the raw writers (writeDesc, pushAvail, setAvailIdx).
 */
import type { VqExports } from '../../src/virtio/wasm.js';

export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;

/** One guest RAM region as the memory table sees it. */
export interface MockRegion {
  gpa: bigint;    // guest physical address
  size: number;   // bytes
  uaddr: bigint;  // frontend (QEMU) virtual address
  win: number;    // window address in the shared memory
}

/** The default region: 16 MiB of guest RAM at gpa 0x100000, mapped at WINDOW_BASE. */
export function defaultRegion(vq: VqExports): MockRegion {
  return { gpa: 0x100000n, size: 16 << 20, uaddr: 0x7f0000000000n, win: vq.layout.WINDOW_BASE };
}

export interface Desc { addr: bigint; len: number; flags: number; next: number }
export interface UsedElem { id: number; len: number }

export interface ChainSpec {
  /** device-readable buffers: bytes to copy in, or a length (filled with `fill`) */
  readable?: Array<Uint8Array | number>;
  /** device-writable buffer lengths */
  writable?: number[];
  /** put the buffers in an indirect table referenced by a single descriptor */
  indirect?: boolean;
  /** allocate the buffers back to back (chainParse may merge them); default: 16-byte gaps */
  contiguous?: boolean;
  /** publish the head in the avail ring now (default true) */
  publish?: boolean;
}

export interface Chain {
  head: number;
  readable: bigint[];  // gpa of each readable buffer
  writable: bigint[];  // gpa of each writable buffer
  indirectTable?: bigint;
}

export interface MockDriverOptions {
  region: MockRegion;
  queueSize: number;
  /** where the rings go (gpa); default: the start of the region */
  ringGpa?: bigint;
}

export class MockDriver {
  readonly region: MockRegion;
  readonly size: number;
  readonly descGpa: bigint;
  readonly availGpa: bigint;
  readonly usedGpa: bigint;
  readonly bytes: Uint8Array;   // the region (guest RAM), offset 0 = region.gpa
  readonly view: DataView;
  private next: number;         // bump allocator, byte offset in the region
  private freeDescs: number[];
  private chainDescs = new Map<number, number[]>();
  private availIdx = 0;
  private lastUsed = 0;

  constructor(buffer: ArrayBufferLike, opts: MockDriverOptions) {
    const { region, queueSize } = opts;
    if (queueSize < 1 || queueSize > 32768 || (queueSize & (queueSize - 1)) !== 0) throw new RangeError('bad queue size');
    this.region = region;
    this.size = queueSize;
    this.bytes = new Uint8Array(buffer, region.win, region.size);
    this.view = new DataView(buffer, region.win, region.size);
    this.bytes.fill(0);
    const base = Number((opts.ringGpa ?? region.gpa) - region.gpa);
    // §2.6 alignment: desc 16, avail 2, used 4.
    const desc = align(base, 16);
    const avail = desc + 16 * queueSize;
    const used = align(avail + 6 + 2 * queueSize, 4);
    this.descGpa = region.gpa + BigInt(desc);
    this.availGpa = region.gpa + BigInt(avail);
    this.usedGpa = region.gpa + BigInt(used);
    this.next = align(used + 6 + 8 * queueSize, 4096);
    this.freeDescs = Array.from({ length: queueSize }, (_, i) => queueSize - 1 - i);
  }

  // ---- addresses
  /** frontend virtual address of a gpa (what SET_VRING_ADDR carries) */
  ua(gpa: bigint): bigint { return gpa - this.region.gpa + this.region.uaddr; }
  get descUa(): bigint { return this.ua(this.descGpa); }
  get availUa(): bigint { return this.ua(this.availGpa); }
  get usedUa(): bigint { return this.ua(this.usedGpa); }
  /** window address (linear memory) of a gpa inside the region */
  win(gpa: bigint): number { return this.region.win + this.off(gpa); }
  private off(gpa: bigint): number {
    const o = gpa - this.region.gpa;
    if (o < 0n || o >= BigInt(this.region.size)) throw new RangeError(`gpa ${gpa} outside the mock region`);
    return Number(o);
  }

  /** Install the region in the memory table and set queue q up on these rings. Returns queueSetup's code. */
  attach(vq: VqExports, q: number, opts: { eventIdx?: boolean; base?: number } = {}): number {
    vq.memtableClear();
    const r = vq.memtableAdd(this.region.gpa, BigInt(this.region.size), this.region.uaddr, this.region.win);
    if (r < 0) return r;
    vq.queueReset(q);
    vq.queueSetBase(q, opts.base ?? 0);
    return vq.queueSetup(q, this.size, this.descUa, this.availUa, this.usedUa, opts.eventIdx ? 1 : 0);
  }

  // ---- guest RAM
  /** Allocate len bytes of guest RAM (aligned); returns its gpa. */
  alloc(len: number, alignTo = 16, gap = 16): bigint {
    const o = align(this.next, alignTo);
    if (o + len > this.region.size) throw new RangeError('mock region exhausted');
    this.next = o + len + gap;
    return this.region.gpa + BigInt(o);
  }
  write(gpa: bigint, data: Uint8Array): void { this.bytes.set(data, this.off(gpa)); }
  read(gpa: bigint, len: number): Uint8Array { const o = this.off(gpa); return this.bytes.slice(o, o + len); }

  // ---- raw ring access
  writeDesc(i: number, d: Desc, table: bigint = this.descGpa): void {
    const o = this.off(table) + 16 * i;
    this.view.setBigUint64(o, d.addr, true);
    this.view.setUint32(o + 8, d.len, true);
    this.view.setUint16(o + 12, d.flags, true);
    this.view.setUint16(o + 14, d.next, true);
  }
  readDesc(i: number, table: bigint = this.descGpa): Desc {
    const o = this.off(table) + 16 * i;
    return {
      addr: this.view.getBigUint64(o, true), len: this.view.getUint32(o + 8, true),
      flags: this.view.getUint16(o + 12, true), next: this.view.getUint16(o + 14, true),
    };
  }
  /** Put head in the next avail slot (not yet published). */
  pushAvail(head: number): void {
    this.view.setUint16(this.off(this.availGpa) + 4 + 2 * (this.availIdx % this.size), head, true);
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }
  /** Publish everything pushed so far (store avail.idx). */
  publish(): void { this.setAvailIdx(this.availIdx); }
  /** Store avail.idx directly (hostile tests may jump it). */
  setAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff;
    Atomics.store(this.u16(this.availGpa + 2n), 0, this.availIdx);
  }
  get availFlags(): number { return this.view.getUint16(this.off(this.availGpa), true); }
  set availFlags(v: number) { this.view.setUint16(this.off(this.availGpa), v, true); }
  /** avail.used_event (EVENT_IDX: "interrupt me when used.idx passes this") */
  get usedEvent(): number { return this.view.getUint16(this.off(this.availGpa) + 4 + 2 * this.size, true); }
  set usedEvent(v: number) { this.view.setUint16(this.off(this.availGpa) + 4 + 2 * this.size, v, true); }
  /** used.avail_event (written by the device) */
  get availEvent(): number { return this.view.getUint16(this.off(this.usedGpa) + 4 + 8 * this.size, true); }
  get usedIdx(): number { return Atomics.load(this.u16(this.usedGpa + 2n), 0); }
  set usedIdx(v: number) { Atomics.store(this.u16(this.usedGpa + 2n), 0, v); }
  usedElem(i: number): UsedElem {
    const o = this.off(this.usedGpa) + 4 + 8 * (i % this.size);
    return { id: this.view.getUint32(o, true), len: this.view.getUint32(o + 4, true) };
  }
  private u16(gpa: bigint): Uint16Array {
    return new Uint16Array(this.bytes.buffer, this.region.win + this.off(gpa), 1);
  }

  // ---- chains
  /** Lay out a chain (buffers, descriptors, optional indirect table) and, by default, publish it. */
  addChain(spec: ChainSpec, fill = 0): Chain {
    const readable: bigint[] = [];
    const writable: bigint[] = [];
    const descs: Desc[] = [];
    const gap = spec.contiguous ? 0 : 16;
    for (const r of spec.readable ?? []) {
      const len = typeof r === 'number' ? r : r.length;
      const gpa = this.alloc(len, spec.contiguous ? 1 : 16, gap);
      if (typeof r === 'number') this.bytes.fill(fill, this.off(gpa), this.off(gpa) + len);
      else this.write(gpa, r);
      readable.push(gpa);
      descs.push({ addr: gpa, len, flags: 0, next: 0 });
    }
    for (const len of spec.writable ?? []) {
      const gpa = this.alloc(len, spec.contiguous ? 1 : 16, gap);
      writable.push(gpa);
      descs.push({ addr: gpa, len, flags: VIRTQ_DESC_F_WRITE, next: 0 });
    }
    let head: number;
    let indirectTable: bigint | undefined;
    if (spec.indirect) {
      indirectTable = this.alloc(16 * Math.max(descs.length, 1), 16);
      descs.forEach((d, i) => {
        const last = i === descs.length - 1;
        this.writeDesc(i, { ...d, flags: d.flags | (last ? 0 : VIRTQ_DESC_F_NEXT), next: last ? 0 : i + 1 }, indirectTable);
      });
      head = this.takeDescs(1)[0]!;
      this.writeDesc(head, { addr: indirectTable, len: 16 * descs.length, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
      this.chainDescs.set(head, [head]);
    } else {
      if (descs.length === 0) throw new RangeError('empty chain');
      const ids = this.takeDescs(descs.length);
      descs.forEach((d, i) => {
        const last = i === descs.length - 1;
        this.writeDesc(ids[i]!, { ...d, flags: d.flags | (last ? 0 : VIRTQ_DESC_F_NEXT), next: last ? 0 : ids[i + 1]! });
      });
      head = ids[0]!;
      this.chainDescs.set(head, ids);
    }
    this.pushAvail(head);
    if (spec.publish ?? true) this.publish();
    return indirectTable === undefined ? { head, readable, writable } : { head, readable, writable, indirectTable };
  }

  /** Used elements published since the last call; their descriptors return to the free list. */
  takeUsed(): UsedElem[] {
    const out: UsedElem[] = [];
    const idx = this.usedIdx;
    while (this.lastUsed !== idx) {
      const e = this.usedElem(this.lastUsed);
      out.push(e);
      const ids = this.chainDescs.get(e.id);
      if (ids) { this.freeDescs.push(...ids); this.chainDescs.delete(e.id); }
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  get freeCount(): number { return this.freeDescs.length; }

  private takeDescs(n: number): number[] {
    if (this.freeDescs.length < n) throw new RangeError('no free descriptors');
    return this.freeDescs.splice(this.freeDescs.length - n, n).reverse();
  }
}

function align(v: number, a: number): number { return Math.ceil(v / a) * a; }
