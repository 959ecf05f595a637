/**
 * The driver side of a split virtqueue (virtio 1.1 §2.6), as a guest kernel would run it, over guest
 * RAM that this process maps itself (a memfd it hands to the backend). Used by the frontend session
 * (tests, load-test mode). Buffers are fixed per-slot areas: slot i owns descriptors 2i and 2i+1 (one
 * device-readable, one device-writable buffer) and a fixed data area, so no allocator is needed.
 */
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;

export interface DriverQueueLayout {
  /** guest-physical address of the region start (this process's view offset 0) */
  gpa: bigint;
  /** offset of the rings inside the region */
  ringOff: number;
  /** offset of the slot data areas inside the region */
  dataOff: number;
  size: number;
  slotBytes: number;
}

export class DriverQueue {
  readonly descOff: number;
  readonly availOff: number;
  readonly usedOff: number;
  readonly slots: number;
  private availIdx = 0;
  private lastUsed = 0;
  private readonly free: number[];
  private readonly dv: DataView;
  private readonly u16: Uint16Array;

  constructor(private readonly mem: Uint8Array, readonly layout: DriverQueueLayout) {
    const { ringOff, size } = layout;
    this.descOff = ringOff;
    this.availOff = ringOff + 16 * size;
    this.usedOff = Math.ceil((this.availOff + 6 + 2 * size) / 4) * 4;
    this.slots = size / 2;
    this.free = Array.from({ length: this.slots }, (_, i) => this.slots - 1 - i);
    this.dv = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
    this.u16 = new Uint16Array(mem.buffer, mem.byteOffset, mem.byteLength >> 1);
    mem.fill(0, ringOff, this.usedOff + 6 + 8 * size);
  }

  /** Bytes of guest RAM the rings and slots need after ringOff. */
  static bytesNeeded(size: number, slotBytes: number): { rings: number; data: number } {
    const rings = Math.ceil((16 * size + 6 + 2 * size + 3) / 4) * 4 + 6 + 8 * size;
    return { rings: Math.ceil(rings / 4096) * 4096, data: (size / 2) * slotBytes };
  }

  get descGpa(): bigint { return this.layout.gpa + BigInt(this.descOff); }
  get availGpa(): bigint { return this.layout.gpa + BigInt(this.availOff); }
  get usedGpa(): bigint { return this.layout.gpa + BigInt(this.usedOff); }

  get freeSlots(): number { return this.free.length; }

  slotData(slot: number): number {
    return this.layout.dataOff + slot * this.layout.slotBytes;
  }

  /**
   * Publishes one request: `req` is copied to the slot's readable buffer; the writable buffer of
   * `replyCap` bytes follows it. Returns the slot (= head / 2), or -1 if none is free.
   */
  submit(req: Uint8Array, replyCap: number): number {
    const slot = this.free.pop();
    if (slot === undefined) return -1;
    if (req.length + replyCap > this.layout.slotBytes) throw new RangeError('request and reply exceed the slot');
    const data = this.slotData(slot);
    this.mem.set(req, data);
    const head = slot * 2;
    const wr = data + req.length;
    this.writeDesc(head, this.layout.gpa + BigInt(data), req.length, replyCap > 0 ? VIRTQ_DESC_F_NEXT : 0, head + 1);
    if (replyCap > 0) this.writeDesc(head + 1, this.layout.gpa + BigInt(wr), replyCap, VIRTQ_DESC_F_WRITE, 0);
    const size = this.layout.size;
    this.dv.setUint16(this.availOff + 4 + 2 * (this.availIdx % size), head, true);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    // The ring entry must be visible before the index (virtio 1.1 §2.6.13.3): a seq-cst store orders it.
    Atomics.store(this.u16, (this.availOff + 2) >> 1, this.availIdx);
    return slot;
  }

  private writeDesc(i: number, addr: bigint, len: number, flags: number, next: number): void {
    const o = this.descOff + 16 * i;
    this.dv.setBigUint64(o, addr, true);
    this.dv.setUint32(o + 8, len, true);
    this.dv.setUint16(o + 12, flags, true);
    this.dv.setUint16(o + 14, next, true);
  }

  /** Completed requests since the last call: {slot, len, reply offset in guest RAM}. Frees the slots. */
  reap(): Array<{ slot: number; len: number; replyOff: number }> {
    const out: Array<{ slot: number; len: number; replyOff: number }> = [];
    const idx = Atomics.load(this.u16, (this.usedOff + 2) >> 1);
    const size = this.layout.size;
    while (this.lastUsed !== idx) {
      const o = this.usedOff + 4 + 8 * (this.lastUsed % size);
      const id = this.dv.getUint32(o, true);
      const len = this.dv.getUint32(o + 4, true);
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
      const slot = id >> 1;
      if ((id & 1) !== 0 || slot >= this.slots) throw new RangeError(`device returned a bad head ${id}`);
      const reqLen = this.dv.getUint32(this.descOff + 16 * id + 8, true);
      out.push({ slot, len, replyOff: this.slotData(slot) + reqLen });
      this.free.push(slot);
    }
    return out;
  }

  /** Writes raw descriptor/avail entries, for tests that play a hostile driver. */
  raw = {
    desc: (i: number, addr: bigint, len: number, flags: number, next: number): void => this.writeDesc(i, addr, len, flags, next),
    pushAvail: (head: number): void => {
      this.dv.setUint16(this.availOff + 4 + 2 * (this.availIdx % this.layout.size), head, true);
      this.availIdx = (this.availIdx + 1) & 0xffff;
      Atomics.store(this.u16, (this.availOff + 2) >> 1, this.availIdx);
    },
    setAvailIdx: (idx: number): void => {
      this.availIdx = idx & 0xffff;
      Atomics.store(this.u16, (this.availOff + 2) >> 1, this.availIdx);
    },
    takeSlot: (): number => this.free.pop() ?? -1,
  };
}
