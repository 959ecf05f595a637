/**
 * DataViews cached per buffer. The virtio layer hands the server the same scratch areas for every
 * request of a worker (the head copy, the reply scratch: views of fixed places in the shared memory),
 * only their lengths differ; a view made once per place serves them all, where one per request would be
 * an allocation per request. A cached view reaches from the array's start to the end of its buffer, so
 * it outlasts a longer or shorter array at the same place: bounds are the caller's to check against the
 * array's length, as src/fuse/args.ts and room() in src/fuse/reply.ts do.
 */
export class ViewCache {
  private buffer: ArrayBufferLike | null = null;
  private offset = -1;
  private view: DataView | null = null;

  /** A view whose byte 0 is a[0]. */
  of(a: Uint8Array): DataView {
    if (a.buffer !== this.buffer || a.byteOffset !== this.offset || this.view === null) {
      this.buffer = a.buffer;
      this.offset = a.byteOffset;
      this.view = new DataView(a.buffer, a.byteOffset);
    }
    return this.view;
  }
}

/**
 * Subarrays of one array at a fixed start, cached by length (LOOKUP's name: always right after the
 * in-header, 1..NAME_MAX bytes), made again when the array moves.
 */
export class SliceCache {
  private buffer: ArrayBufferLike | null = null;
  private offset = -1;
  private readonly slices: (Uint8Array | undefined)[];

  constructor(private readonly start: number, maxLen: number) {
    this.slices = new Array<Uint8Array | undefined>(maxLen + 1).fill(undefined);
  }

  /** a.subarray(start, start + len), len ≤ maxLen; the same object for the same place and length. */
  of(a: Uint8Array, len: number): Uint8Array {
    if (a.buffer !== this.buffer || a.byteOffset !== this.offset) {
      this.buffer = a.buffer;
      this.offset = a.byteOffset;
      this.slices.fill(undefined);
    }
    let s = this.slices[len];
    if (s === undefined) {
      s = new Uint8Array(a.buffer, a.byteOffset + this.start, len);
      this.slices[len] = s;
    }
    return s;
  }
}
