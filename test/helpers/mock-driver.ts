/**
 * The driver-side queue (src/frontend/driver-queue.ts) over guest RAM that lives in the shared wasm
 * memory, for the virtqueue unit and fuzz tests: the ring code is DriverQueue's; this adds what only
 * those tests need: a region of the wasm memory table (guest-physical, frontend-virtual and window
 * addresses), installing it and a queue in the AS engine, a bump allocator for buffers, and chains
 * laid out from a spec with descriptors from a free list.
 */
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_SIZE } from '../../src/abi/virtio.js';
import { type ChainBuffer, DriverQueue, type UsedElem } from '../../src/frontend/driver-queue.js';
import { native } from '../../src/native.js';
import type { VqExports } from '../../src/virtio/wasm.js';

export type { Desc, UsedElem } from '../../src/frontend/driver-queue.js';

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

export class MockDriver extends DriverQueue {
  readonly region: MockRegion;
  /** the region (guest RAM), offset 0 = region.gpa */
  readonly bytes: Uint8Array;
  private next: number;         // bump allocator, byte offset in the region
  private readonly freeDescs: number[];
  private readonly chainDescs = new Map<number, number[]>();

  private readonly buffer: ArrayBufferLike;

  constructor(buffer: ArrayBufferLike, opts: MockDriverOptions) {
    const { region, queueSize } = opts;
    const bytes = new Uint8Array(buffer, region.win, region.size);
    bytes.fill(0);
    const base = Number((opts.ringGpa ?? region.gpa) - region.gpa);
    super(bytes, { gpa: region.gpa, ringOff: align(base, 16), size: queueSize });
    this.region = region;
    this.bytes = bytes;
    this.buffer = buffer;
    this.next = align(this.usedOff + 6 + 8 * queueSize, 4096);
    this.freeDescs = Array.from({ length: queueSize }, (_, i) => queueSize - 1 - i);
  }

  // ---- addresses
  /** frontend virtual address of a gpa (what SET_VRING_ADDR carries) */
  ua(gpa: bigint): bigint { return gpa - this.region.gpa + this.region.uaddr; }
  get descUa(): bigint { return this.ua(this.descGpa); }
  get availUa(): bigint { return this.ua(this.availGpa); }
  get usedUa(): bigint { return this.ua(this.usedGpa); }
  /** window address (linear memory) of a gpa inside the region */
  win(gpa: bigint): number { return this.region.win + this.offsetOf(gpa); }

  /** Install the region in the memory table and set queue q up on these rings. Returns queueSetup's code. */
  attach(vq: VqExports, q: number, opts: { eventIdx?: boolean; base?: number } = {}): number {
    vq.memtableClear();
    // Resident in the test's window; the host address is the window's, so the addon's vectored I/O
    // reaches the same bytes. No fd: nothing is mapped through apertures.
    const hva = native.memoryAddress(this.buffer as SharedArrayBuffer) + BigInt(this.region.win);
    const r = vq.memtableAdd(this.region.gpa, BigInt(this.region.size), this.region.uaddr, hva, 0n, this.region.win, -1);
    if (r < 0) return r;
    vq.queueReset(q);
    vq.queueSetBase(q, opts.base ?? 0);
    return vq.queueSetup(q, this.size, this.descUa, this.availUa, this.usedUa, opts.eventIdx ? 1 : 0);
  }

  /** Allocate len bytes of guest RAM (aligned); returns its gpa. */
  alloc(len: number, alignTo = 16, gap = 16): bigint {
    const o = align(this.next, alignTo);
    if (o + len > this.region.size) throw new RangeError('mock region exhausted');
    this.next = o + len + gap;
    return this.region.gpa + BigInt(o);
  }

  /** Lay out a chain (buffers, descriptors, optional indirect table) and, by default, publish it. */
  addChain(spec: ChainSpec, fill = 0): Chain {
    const readable: bigint[] = [];
    const writable: bigint[] = [];
    const bufs: ChainBuffer[] = [];
    const gap = spec.contiguous ? 0 : 16;
    for (const r of spec.readable ?? []) {
      const len = typeof r === 'number' ? r : r.length;
      const gpa = this.alloc(len, spec.contiguous ? 1 : 16, gap);
      if (typeof r === 'number') this.bytes.fill(fill, this.offsetOf(gpa), this.offsetOf(gpa) + len);
      else this.write(gpa, r);
      readable.push(gpa);
      bufs.push({ addr: gpa, len });
    }
    for (const len of spec.writable ?? []) {
      const gpa = this.alloc(len, spec.contiguous ? 1 : 16, gap);
      writable.push(gpa);
      bufs.push({ addr: gpa, len, write: true });
    }
    let head: number;
    let indirectTable: bigint | undefined;
    if (spec.indirect) {
      indirectTable = this.alloc(VIRTQ_DESC_SIZE * Math.max(bufs.length, 1), 16);
      head = this.takeDescs(1)[0]!;
      if (bufs.length) this.writeIndirect(head, indirectTable, bufs);
      else this.writeDesc(head, { addr: indirectTable, len: 0, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
      this.chainDescs.set(head, [head]);
    } else {
      if (bufs.length === 0) throw new RangeError('empty chain');
      const ids = this.takeDescs(bufs.length);
      this.writeChain(ids, bufs);
      head = ids[0]!;
      this.chainDescs.set(head, ids);
    }
    this.pushAvail(head);
    if (spec.publish ?? true) this.publish();
    return indirectTable === undefined ? { head, readable, writable } : { head, readable, writable, indirectTable };
  }

  /** Used elements published since the last call; their descriptors return to the free list. */
  override takeUsed(): UsedElem[] {
    const out = super.takeUsed();
    for (const e of out) {
      const ids = this.chainDescs.get(e.id);
      if (ids) { this.freeDescs.push(...ids); this.chainDescs.delete(e.id); }
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
