/**
 * The FUSE server's Reader and Writer (src/fuse/io.ts) over plain buffers, for tests: a request is a
 * Uint8Array, the reply lands in `out` as the guest would see its writable descriptors.
 */
import { readSync, writeSync } from 'node:fs';
import { Errno, errnoFromException } from '../../src/errors.js';
import type { Reader, Writer } from '../../src/fuse/io.js';

/** Default size of the head copy, matching the virtio layer's INBUF_SIZE order of magnitude. */
export const DEFAULT_HEAD_SIZE = 8192 + 4096;
/** Default reply scratch size (OUTBUF_SIZE order of magnitude). */
export const DEFAULT_OUTBUF_SIZE = 64 * 1024;

export class BufferReader implements Reader {
  readonly total: number;
  readonly head: Uint8Array;
  constructor(readonly data: Uint8Array, headSize = DEFAULT_HEAD_SIZE) {
    this.total = data.length;
    this.head = data.slice(0, Math.min(data.length, headSize));
  }

  writeToFile(fd: number, pos: number, off: number, len: number): number {
    if (off < 0 || len < 0 || off + len > this.total) return -Errno.EINVAL;
    let done = 0;
    try {
      while (done < len) {
        const n = writeSync(fd, this.data, off + done, len - done, pos + done);
        if (n <= 0) break;
        done += n;
      }
    } catch (e) {
      return done > 0 ? done : errnoFromException(e);
    }
    return done;
  }
}

export class BufferWriter implements Writer {
  readonly buf: Uint8Array;
  /** the writable part as the guest would see it */
  readonly out: Uint8Array;
  /** highest byte written (commit or readFromFile) */
  written = 0;
  constructor(readonly capacity: number, outbufSize = DEFAULT_OUTBUF_SIZE) {
    this.out = new Uint8Array(capacity);
    this.buf = new Uint8Array(Math.min(capacity, outbufSize));
  }

  commit(len: number): void {
    if (len < 0 || len > this.buf.length) throw new RangeError(`commit(${len}) beyond the scratch`);
    this.out.set(this.buf.subarray(0, len), 0);
    this.written = Math.max(this.written, len);
  }

  readFromFile(fd: number, pos: number, off: number, len: number): number {
    if (off < 0 || len < 0 || off + len > this.capacity) return -Errno.EINVAL;
    let done = 0;
    try {
      while (done < len) {
        const n = readSync(fd, this.out, off + done, len - done, pos + done);
        if (n <= 0) break;
        done += n;
      }
    } catch (e) {
      return done > 0 ? done : errnoFromException(e);
    }
    this.written = Math.max(this.written, off + done);
    return done;
  }
}
