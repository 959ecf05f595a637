/**
 * What the FUSE server sees of a request: a Reader over the device-readable part of the chain and a
 * Writer over the device-writable part (docs/internals.md "FUSE server ↔ virtio layer"). The virtio
 * layer implements them over guest pages (src/virtio/guest-io.ts); the tests implement them over
 * plain buffers (test/helpers/buffer-io.ts).
 */

export interface Reader {
  /** bytes in the readable part */
  readonly total: number;
  /** a copy of its first min(total, INBUF_SIZE) bytes */
  readonly head: Uint8Array;
  /** pwrite bytes [off, off+len) of the readable part to fd at pos. bytes or -errno */
  writeToFile(fd: number, pos: number, off: number, len: number): number;
}

export interface Writer {
  /** bytes available */
  readonly capacity: number;
  /** scratch of min(capacity, OUTBUF_SIZE) bytes to build a reply in */
  readonly buf: Uint8Array;
  /** scatter buf[0, len) to the start of the writable part */
  commit(len: number): void;
  /** pread from fd at pos into the writable part at [off, off+len). bytes or -errno */
  readFromFile(fd: number, pos: number, off: number, len: number): number;
}
