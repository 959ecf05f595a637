/**
 * The driver side of a split virtqueue (virtio 1.2 §2.7), as a guest kernel runs it, over guest RAM
 * this process can write: the one driver-side ring of the project. The frontend session (tests, the
 * benches, the load-test mode) uses its request slots; the virtqueue unit and fuzz tests lay out
 * arbitrary chains (direct or through an indirect table) with the same ring code; hostile tests write
 * any descriptor, avail entry or index through it.
 *
 * `mem` is guest RAM as this process sees it: either linear (mem[0] is guest-physical address
 * `layout.gpa`) or, for a guest with many large regions, a view that maps only some parts of them
 * (`layout.view`, see guest-ram.ts), where rings and buffers are placed by guest-physical address.
 *
 * Request slots (when the layout has dataOff/slotBytes): slot i owns descriptors 2i and 2i+1 (one
 * device-readable, one device-writable buffer) and a fixed data area, so no allocator is needed and a
 * hostile test that takes a slot knows which descriptors it may scribble on. The descriptors no slot
 * owns serve placed chains (submitChain): buffers anywhere in guest RAM, direct or through an indirect
 * table.
 */
import {
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_DESC_SIZE,
} from '../abi/virtio.js';

/** struct virtq_desc */
export interface Desc {
  addr: bigint;
  len: number;
  flags: number;
  next: number;
}

/** struct virtq_used_elem */
export interface UsedElem {
  id: number;
  len: number;
}

/** One buffer of a chain: guest-physical address, length, and whether the device writes it. */
export interface ChainBuffer {
  addr: bigint;
  len: number;
  write?: boolean;
}

/** Where guest-physical ranges lie in `mem` (guest-ram.ts's GuestRam is one). */
export interface GuestView {
  /** offset in mem of [gpa, gpa+len): RangeError unless it is mapped there in one piece */
  offsetOf(gpa: bigint, len: number): number;
  /** guest-physical address of mem[off] */
  gpaAt(off: number): bigint;
}

/** A placed request: where its device-readable and device-writable buffers are. */
export interface ChainPlacement {
  /** readable buffers in chain order; the request is split over them (their lengths add up to it) */
  out: ReadonlyArray<{ addr: bigint; len: number }>;
  /** writable buffers in chain order; the reply is gathered from them */
  in: ReadonlyArray<{ addr: bigint; len: number }>;
  /** the chain goes into an indirect table at this guest-physical address (VIRTIO_F_INDIRECT_DESC) */
  indirect?: bigint;
}

/** A used element reaped: its head, its request slot (-1 for a placed chain), length and reply bytes. */
export interface Completion {
  head: number;
  slot: number;
  len: number;
  reply: Uint8Array;
}

export interface DriverQueueLayout {
  /** linear guest RAM: guest-physical address of mem[0] (when there is no view) */
  gpa?: bigint;
  /** guest RAM that is not linear in mem */
  view?: GuestView;
  /** offset of the rings inside mem (a multiple of 16: the descriptor table's alignment) */
  ringOff: number;
  /** descriptors in the ring: a power of two, 1..32768 */
  size: number;
  /** request slots: offset of the slot data areas inside mem */
  dataOff?: number;
  /** request slots: bytes per slot (request + reply) */
  slotBytes?: number;
  /** request slots: how many (default size / 2, which leaves no descriptor for placed chains) */
  slots?: number;
}

// Offsets inside struct virtq_avail (flags, idx, ring[size], used_event) and struct virtq_used
// (flags, idx, ring[size] of 8-byte elements, avail_event).
const RING_FLAGS = 0;
const RING_IDX = 2;
const RING_ENTRIES = 4;
const USED_ELEM_SIZE = 8;

export class DriverQueue {
  readonly size: number;
  readonly descOff: number;
  readonly availOff: number;
  readonly usedOff: number;
  /** request slots (0 without dataOff/slotBytes) */
  readonly slots: number;
  private availIdx = 0;
  private lastUsed = 0;
  private readonly freeSlotList: number[];
  /** descriptors no slot owns, and the placed chains in flight by head */
  private readonly chainFree: number[];
  private readonly placed = new Map<number, { descs: number[]; in: ChainPlacement['in'] }>();
  readonly view: GuestView;
  private readonly dv: DataView;
  private readonly u16: Uint16Array;

  constructor(
    readonly mem: Uint8Array,
    readonly layout: DriverQueueLayout,
  ) {
    const { ringOff, size } = layout;
    if (size < 1 || size > 32768 || (size & (size - 1)) !== 0) throw new RangeError(`bad queue size ${size}`);
    if (ringOff % 16 !== 0 || (mem.byteOffset & 1) !== 0) throw new RangeError('rings must be 16-byte aligned');
    this.size = size;
    // §2.7 alignment: descriptor table 16, avail ring 2, used ring 4
    this.descOff = ringOff;
    this.availOff = ringOff + VIRTQ_DESC_SIZE * size;
    this.usedOff = align(this.availOff + RING_ENTRIES + 2 * size + 2, 4);
    const end = this.usedOff + RING_ENTRIES + USED_ELEM_SIZE * size + 2;
    if (end > mem.byteLength) throw new RangeError('the rings do not fit in guest memory');
    this.slots = layout.dataOff !== undefined && layout.slotBytes !== undefined ? (layout.slots ?? size >> 1) : 0;
    if (this.slots > size >> 1) throw new RangeError(`${this.slots} slots need more than ${size} descriptors`);
    this.freeSlotList = Array.from({ length: this.slots }, (_, i) => this.slots - 1 - i);
    this.chainFree = Array.from({ length: size - 2 * this.slots }, (_, i) => size - 1 - i);
    this.view = layout.view ?? linearView(layout.gpa ?? 0n, mem.byteLength);
    // The rings and the slots' data are addressed by offset in mem: each must be one piece of guest RAM.
    if (this.view.offsetOf(this.view.gpaAt(ringOff), end - ringOff) !== ringOff) throw new RangeError('the rings are not contiguous guest RAM');
    if (this.slots > 0) {
      const dataOff = layout.dataOff ?? 0;
      if (this.view.offsetOf(this.view.gpaAt(dataOff), this.slots * (layout.slotBytes ?? 0)) !== dataOff) {
        throw new RangeError('the slots are not contiguous guest RAM');
      }
    }
    this.dv = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
    this.u16 = new Uint16Array(mem.buffer, mem.byteOffset + ringOff, (align(end, 2) - ringOff) >> 1);
    mem.fill(0, ringOff, end);
  }

  /** Bytes of guest RAM the rings (page-rounded) and the request slots need after ringOff. */
  static bytesNeeded(size: number, slotBytes: number): { rings: number; data: number } {
    const rings = align(VIRTQ_DESC_SIZE * size + RING_ENTRIES + 2 * size + 2, 4) + RING_ENTRIES + USED_ELEM_SIZE * size + 2;
    return { rings: align(rings, 4096), data: (size >> 1) * slotBytes };
  }

  get descGpa(): bigint { return this.view.gpaAt(this.descOff); }
  get availGpa(): bigint { return this.view.gpaAt(this.availOff); }
  get usedGpa(): bigint { return this.view.gpaAt(this.usedOff); }

  // ---- guest RAM

  /** Offset in mem of [gpa, gpa+len) (RangeError unless mapped in one piece). */
  offsetOf(gpa: bigint, len = 1): number {
    return this.view.offsetOf(gpa, len);
  }

  write(gpa: bigint, data: Uint8Array): void { this.mem.set(data, this.offsetOf(gpa, data.length)); }
  read(gpa: bigint, len: number): Uint8Array { const o = this.offsetOf(gpa, len); return this.mem.slice(o, o + len); }

  // ---- ring entries, written as a driver would (or, for hostile tests, as it should not)

  /** Writes descriptor i of the ring's table, or of an indirect table at `table`. */
  writeDesc(i: number, d: Desc, table: bigint = this.descGpa): void {
    const o = this.offsetOf(table + BigInt(VIRTQ_DESC_SIZE * i), VIRTQ_DESC_SIZE);
    this.dv.setBigUint64(o, d.addr, true);
    this.dv.setUint32(o + 8, d.len, true);
    this.dv.setUint16(o + 12, d.flags, true);
    this.dv.setUint16(o + 14, d.next, true);
  }

  readDesc(i: number, table: bigint = this.descGpa): Desc {
    const o = this.offsetOf(table + BigInt(VIRTQ_DESC_SIZE * i), VIRTQ_DESC_SIZE);
    return {
      addr: this.dv.getBigUint64(o, true),
      len: this.dv.getUint32(o + 8, true),
      flags: this.dv.getUint16(o + 12, true),
      next: this.dv.getUint16(o + 14, true),
    };
  }

  /** Writes `bufs` into descriptors `ids` (of the ring, or of the table at `table`), linked by NEXT. */
  writeChain(ids: number[], bufs: ChainBuffer[], table: bigint = this.descGpa): void {
    if (bufs.length === 0 || ids.length !== bufs.length) throw new RangeError('a chain needs one descriptor per buffer');
    bufs.forEach((b, k) => {
      const last = k === bufs.length - 1;
      const flags = (b.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT);
      this.writeDesc(ids[k]!, { addr: b.addr, len: b.len, flags, next: last ? 0 : ids[k + 1]! }, table);
    });
  }

  /** Writes `bufs` as an indirect table at `table` (VIRTIO_F_INDIRECT_DESC) and descriptor `head` pointing to it. */
  writeIndirect(head: number, table: bigint, bufs: ChainBuffer[]): void {
    this.writeChain(bufs.map((_, k) => k), bufs, table);
    this.writeDesc(head, { addr: table, len: VIRTQ_DESC_SIZE * bufs.length, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
  }

  /** Puts head in the next avail ring entry (not yet visible to the device: see publish()). */
  pushAvail(head: number): void {
    this.dv.setUint16(this.availOff + RING_ENTRIES + 2 * (this.availIdx % this.size), head, true);
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }

  /** Publishes every entry pushed so far (stores avail.idx). */
  publish(): void {
    // The ring entry must be visible before the index (§2.7.13.3): a seq-cst store orders it.
    Atomics.store(this.u16, (this.availOff + RING_IDX - this.descOff) >> 1, this.availIdx);
  }

  /** Stores avail.idx directly (hostile tests jump it). */
  setAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff;
    this.publish();
  }

  /** The driver's avail.idx as last published (or about to be). */
  get availIndex(): number { return this.availIdx; }

  get availFlags(): number { return this.dv.getUint16(this.availOff + RING_FLAGS, true); }
  set availFlags(v: number) { this.dv.setUint16(this.availOff + RING_FLAGS, v, true); }
  /** avail.used_event (VIRTIO_F_EVENT_IDX: "interrupt me when used.idx passes this") */
  get usedEvent(): number { return this.dv.getUint16(this.availOff + RING_ENTRIES + 2 * this.size, true); }
  set usedEvent(v: number) { this.dv.setUint16(this.availOff + RING_ENTRIES + 2 * this.size, v, true); }
  /** used.avail_event (written by the device) */
  get availEvent(): number { return this.dv.getUint16(this.usedOff + RING_ENTRIES + USED_ELEM_SIZE * this.size, true); }
  get usedIdx(): number { return Atomics.load(this.u16, (this.usedOff + RING_IDX - this.descOff) >> 1); }
  /** (tests start a ring at an arbitrary index) */
  set usedIdx(v: number) { Atomics.store(this.u16, (this.usedOff + RING_IDX - this.descOff) >> 1, v); }

  /** Used ring entry i (mod size). */
  usedElem(i: number): UsedElem {
    const o = this.usedOff + RING_ENTRIES + USED_ELEM_SIZE * (i % this.size);
    return { id: this.dv.getUint32(o, true), len: this.dv.getUint32(o + 4, true) };
  }

  /** Used elements the device published since the last call. */
  takeUsed(): UsedElem[] {
    const out: UsedElem[] = [];
    const idx = this.usedIdx;
    while (this.lastUsed !== idx) {
      out.push(this.usedElem(this.lastUsed));
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  // ---- request slots

  get freeSlots(): number { return this.freeSlotList.length; }

  /** Offset in mem of a slot's data area. */
  slotData(slot: number): number {
    return (this.layout.dataOff ?? 0) + slot * (this.layout.slotBytes ?? 0);
  }

  /** Reserves a slot without submitting (hostile tests write its descriptors themselves); -1 if none. */
  takeSlot(): number {
    return this.freeSlotList.pop() ?? -1;
  }

  /**
   * Publishes one request: `req` is copied to the slot's readable buffer; the writable buffer of
   * `replyCap` bytes follows it. Returns the slot (= head / 2), or -1 if none is free.
   */
  submit(req: Uint8Array, replyCap: number): number {
    const slotBytes = this.layout.slotBytes ?? 0;
    if (req.length + replyCap > slotBytes) throw new RangeError('request and reply exceed the slot');
    const slot = this.takeSlot();
    if (slot < 0) return -1;
    const data = this.slotData(slot);
    this.mem.set(req, data);
    const head = slot * 2;
    const addr = this.view.gpaAt(data);
    const bufs: ChainBuffer[] = [{ addr, len: req.length }];
    if (replyCap > 0) bufs.push({ addr: addr + BigInt(req.length), len: replyCap, write: true });
    this.writeChain([head, head + 1].slice(0, bufs.length), bufs);
    this.pushAvail(head);
    this.publish();
    return slot;
  }

  /**
   * Publishes one placed request: `req` is split over `p.out`, `p.in` is cleared, and the chain is
   * written with free descriptors (or one, pointing to the indirect table). Returns the head, or -1
   * if too few descriptors are free.
   */
  submitChain(req: Uint8Array, p: ChainPlacement): number {
    if (p.out.reduce((s, b) => s + b.len, 0) !== req.length) throw new RangeError('the readable buffers must hold the request exactly');
    const bufs: ChainBuffer[] = [...p.out.map((b) => ({ ...b })), ...p.in.map((b) => ({ ...b, write: true }))];
    const need = p.indirect === undefined ? bufs.length : 1;
    if (this.chainFree.length < need) return -1;
    let pos = 0;
    for (const b of p.out) {
      this.mem.set(req.subarray(pos, pos + b.len), this.offsetOf(b.addr, b.len));
      pos += b.len;
    }
    for (const b of p.in) {
      const o = this.offsetOf(b.addr, b.len);
      this.mem.fill(0, o, o + b.len);
    }
    const descs = this.chainFree.splice(-need, need);
    const head = descs[0]!;
    if (p.indirect === undefined) this.writeChain(descs, bufs);
    else this.writeIndirect(head, p.indirect, bufs);
    this.placed.set(head, { descs, in: p.in });
    this.pushAvail(head);
    this.publish();
    return head;
  }

  /** Completed requests since the last call, with their reply bytes. Frees their slots and descriptors. */
  reap(): Completion[] {
    const out: Completion[] = [];
    for (const { id, len } of this.takeUsed()) {
      const chain = this.placed.get(id);
      if (chain) {
        this.placed.delete(id);
        this.chainFree.push(...chain.descs);
        out.push({ head: id, slot: -1, len, reply: this.gather(chain.in, len) });
        continue;
      }
      const slot = id >> 1;
      if ((id & 1) !== 0 || slot >= this.slots) throw new RangeError(`device returned a bad head ${id}`);
      const reqLen = this.dv.getUint32(this.descOff + VIRTQ_DESC_SIZE * id + 8, true);
      const replyOff = this.slotData(slot) + reqLen;
      out.push({ head: id, slot, len, reply: this.mem.slice(replyOff, replyOff + len) });
      this.freeSlotList.push(slot);
    }
    return out;
  }

  /** The first `len` bytes of a list of writable buffers. */
  private gather(bufs: ChainPlacement['in'], len: number): Uint8Array {
    const out = new Uint8Array(len);
    let pos = 0;
    for (const b of bufs) {
      if (pos >= len) break;
      const take = Math.min(b.len, len - pos);
      const o = this.offsetOf(b.addr, take);
      out.set(this.mem.subarray(o, o + take), pos);
      pos += take;
    }
    return out;
  }
}

/** Linear guest RAM: mem[0] is guest-physical address `base`. */
export function linearView(base: bigint, bytes: number): GuestView {
  return {
    offsetOf(gpa, len) {
      const o = gpa - base;
      if (o < 0n || o >= BigInt(bytes) || o + BigInt(len) > BigInt(bytes)) {
        throw new RangeError(`gpa 0x${gpa.toString(16)} (+${len}) outside guest memory`);
      }
      return Number(o);
    },
    gpaAt: (off) => base + BigInt(off),
  };
}

function align(v: number, a: number): number {
  return Math.ceil(v / a) * a;
}
