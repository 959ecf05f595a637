/**
 * Reader and Writer over one descriptor chain: the request's readable part and the reply's writable part.
 * They have the shape of the FUSE server's Reader and Writer (src/fuse/io.ts) without importing them
 * (the virtio layer does not depend on FUSE; src/worker.ts hands them to the server, and the compiler
 * checks the shapes there), so the FUSE code never sees a descriptor or a guest address. The segment
 * lists were built and checked by the AS chain parser (chainParse), so every address here is already
 * known to lie in the guest window.
 * File data moves with preadv/pwritev straight between the file and guest pages.
 */
import { Errno } from '../errors.js';
import { native } from '../native.js';
import type { VqExports } from './wasm.js';

export class GuestChainIo {
  readonly reader: GuestReader;
  readonly writer: GuestWriter;
  constructor(vq: VqExports, buffer: ArrayBufferLike, scratch: number) {
    const L = vq.layout;
    this.reader = new GuestReader(vq, buffer, scratch + L.SCR_RLIST, scratch + L.SCR_INBUF, scratch + L.SCR_SUBLIST, L.INBUF_SIZE, L.MAX_SEGS);
    this.writer = new GuestWriter(vq, buffer, scratch + L.SCR_WLIST, scratch + L.SCR_OUTBUF, scratch + L.SCR_SUBLIST, L.OUTBUF_SIZE, L.MAX_SEGS);
  }
}

export class GuestReader {
  total = 0;
  count = 0;
  head: Uint8Array;
  private readonly inbufView: Uint8Array;
  constructor(
    private readonly vq: VqExports,
    buffer: ArrayBufferLike,
    private readonly list: number,
    private readonly inbuf: number,
    private readonly sublist: number,
    private readonly inbufSize: number,
    private readonly maxSegs: number,
  ) {
    this.inbufView = new Uint8Array(buffer, inbuf, inbufSize);
    this.head = this.inbufView.subarray(0, 0);
  }

  /** Loads a chain's readable part: copies its first `prefix` bytes (at most INBUF_SIZE) into the inbuf. */
  reset(count: number, total: number, prefix: number): void {
    this.count = count;
    this.total = total;
    const n = Math.min(prefix, total, this.inbufSize);
    const got = this.vq.gather(this.list, count, 0, this.inbuf, n);
    this.head = this.inbufView.subarray(0, got);
  }

  /** Copies more of the readable part into the inbuf (the head grows to `prefix` bytes). */
  extend(prefix: number): void {
    const have = this.head.length;
    const n = Math.min(prefix, this.total, this.inbufSize);
    if (n <= have) return;
    // Only the missing tail: the head's bytes are already in the inbuf.
    const got = this.vq.gather(this.list, this.count, have, this.inbuf + have, n - have);
    this.head = this.inbufView.subarray(0, have + got);
  }

  writeToFile(fd: number, pos: number, off: number, len: number): number {
    if (len === 0) return 0;
    const n = this.vq.subList(this.list, this.count, off, len, this.sublist, this.maxSegs);
    if (n < 0) return -Errno.EINVAL;
    return native.pwritevWin(fd, this.sublist, n, pos);
  }
}

export class GuestWriter {
  capacity = 0;
  count = 0;
  buf: Uint8Array;
  written = 0;
  private readonly outbufView: Uint8Array;
  constructor(
    private readonly vq: VqExports,
    buffer: ArrayBufferLike,
    private readonly list: number,
    private readonly outbuf: number,
    private readonly sublist: number,
    outbufSize: number,
    private readonly maxSegs: number,
  ) {
    this.outbufView = new Uint8Array(buffer, outbuf, outbufSize);
    this.buf = this.outbufView.subarray(0, 0);
  }

  reset(count: number, total: number): void {
    this.count = count;
    this.capacity = total;
    this.written = 0;
    this.buf = this.outbufView.subarray(0, Math.min(total, this.outbufView.length));
  }

  commit(len: number): void {
    const n = Math.min(len, this.buf.length);
    this.written = Math.max(this.written, this.vq.scatter(this.outbuf, n, this.list, this.count, 0));
  }

  readFromFile(fd: number, pos: number, off: number, len: number): number {
    if (len === 0) return 0;
    const n = this.vq.subList(this.list, this.count, off, len, this.sublist, this.maxSegs);
    if (n < 0) return -Errno.EINVAL;
    return native.preadvWin(fd, this.sublist, n, pos);
  }
}
