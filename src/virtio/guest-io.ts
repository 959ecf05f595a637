/**
 * Reader and Writer over one descriptor chain: the request's readable part and the reply's writable part.
 * They have the shape of the FUSE server's Reader and Writer (src/fuse/io.ts) without importing them
 * (the virtio layer does not depend on FUSE; src/worker.ts hands them to the server, and the compiler
 * checks the shapes there), so the FUSE code never sees a descriptor or a guest address. The segment
 * lists ({region, offset, len}) were built and checked by the AS chain parser (chainParse).
 * File data moves with preadv/pwritev straight between the file and guest pages (the regions' host
 * mappings); the small copies run in WASM, through an aperture when guest RAM does not fit the window
 * (a miss is mapped here, by ApertureMapper, and the copy goes on).
 */
import { Errno } from '../errors.js';
import { native } from '../native.js';
import type { Logger } from '../log.js';
import { RateLimitedLog } from '../log.js';
import type { VqExports } from './wasm.js';

/**
 * Maps the aperture a worker's last WASM call missed (docs/internals.md, "Guests of any size"). Only
 * this worker reads through its partition's slots, and only between calls, so replacing one here
 * never pulls memory from under a reader.
 */
export class ApertureMapper {
  private readonly job: DataView;
  private readonly log: RateLimitedLog;
  /** Mappings that failed (the AS module counts hits and misses). */
  failures = 0;
  constructor(
    private readonly vq: VqExports,
    private readonly buffer: ArrayBufferLike,
    private readonly wid: number,
    scratch: number,
    log: Logger,
  ) {
    this.job = new DataView(buffer, scratch + vq.layout.SCR_MISS, vq.layout.SCR_MISS_SIZE);
    this.log = new RateLimitedLog(log);
  }

  /** True when the call that missed may be made again; false when there was no miss or mapping failed. */
  fault(): boolean {
    const win = this.vq.apertureFill(this.wid);
    if (win === 0) return false;
    // The mapping apertureFill wrote after the miss record (assembly/layout.ts, MISS_JOB_*).
    const L = this.vq.layout;
    const fd = this.job.getInt32(L.MISS_JOB_FD, true);
    const fileOff = Number(this.job.getBigUint64(L.MISS_JOB_FILE_OFF, true));
    const len = this.job.getUint32(L.MISS_JOB_LEN, true);
    const rc = native.mapFixed(this.buffer as SharedArrayBuffer, win, len, fd, fileOff);
    if (rc < 0) {
      this.failures++;
      this.vq.apertureDrop(this.wid, win);
      this.log.error(`mapping an aperture onto guest memory failed: errno ${-rc}`);
      return false;
    }
    return true;
  }
}

export class GuestChainIo {
  readonly reader: GuestReader;
  readonly writer: GuestWriter;
  constructor(vq: VqExports, buffer: ArrayBufferLike, wid: number, scratch: number, apertures: ApertureMapper) {
    const L = vq.layout;
    const lists = { vq, buffer, wid, apertures, sublist: scratch + L.SCR_SUBLIST, maxSegs: L.MAX_SEGS };
    this.reader = new GuestReader(lists, scratch + L.SCR_RLIST, scratch + L.SCR_INBUF, L.INBUF_SIZE);
    this.writer = new GuestWriter(lists, scratch + L.SCR_WLIST, scratch + L.SCR_OUTBUF, L.OUTBUF_SIZE);
  }
}

interface Lists {
  vq: VqExports;
  buffer: ArrayBufferLike;
  wid: number;
  apertures: ApertureMapper;
  sublist: number;
  maxSegs: number;
}

/** A miss can repeat only if another granule of the same copy misses; this bounds a broken mapping. */
const MAX_FAULTS_PER_COPY = 64;

/**
 * Views [0, n) of one scratch buffer, kept in a small direct-mapped cache by length (and the whole
 * buffer): a request's head and reply scratch are such views, and making one per request would be an
 * allocation per request. A workload uses a few lengths (one or two per opcode and size); lengths that
 * collide, or a guest that varies them on purpose, only cost a new view, never memory that grows.
 */
const VIEW_SLOTS = 256;
class PrefixViews {
  private readonly views: (Uint8Array | undefined)[] = new Array(VIEW_SLOTS).fill(undefined);
  constructor(private readonly whole: Uint8Array) {}
  get(n: number): Uint8Array {
    if (n === this.whole.length) return this.whole;
    const i = n & (VIEW_SLOTS - 1);
    let v = this.views[i];
    if (v === undefined || v.length !== n) {
      v = this.whole.subarray(0, n);
      this.views[i] = v;
    }
    return v;
  }
}

export class GuestReader {
  total = 0;
  count = 0;
  head: Uint8Array;
  private readonly views: PrefixViews;
  constructor(
    private readonly l: Lists,
    private readonly list: number,
    private readonly inbuf: number,
    private readonly inbufSize: number,
  ) {
    this.views = new PrefixViews(new Uint8Array(l.buffer, inbuf, inbufSize));
    this.head = this.views.get(0);
  }

  /** Copies [from, to) of the readable part into the inbuf at the same offset; bytes now there. */
  private gather(from: number, to: number): number {
    const { vq, wid } = this.l;
    let got = from + vq.gather(wid, this.list, this.count, from, this.inbuf + from, to - from);
    for (let i = 0; got < to && i < MAX_FAULTS_PER_COPY && this.l.apertures.fault(); i++) {
      got += vq.gather(wid, this.list, this.count, got, this.inbuf + got, to - got);
    }
    return got;
  }

  /**
   * Takes a chain's readable part whose first `got` bytes are in the inbuf already (chainNext copied
   * them; 0 when nothing was): copies the rest of its first `prefix` bytes (at most INBUF_SIZE; an
   * aperture miss may have cut chainNext's copy short).
   */
  load(count: number, total: number, got: number, prefix: number): void {
    this.count = count;
    this.total = total;
    const want = Math.min(prefix, total, this.inbufSize);
    this.head = this.views.get(got >= want ? want : this.gather(got, want));
  }

  /** Copies more of the readable part into the inbuf (the head grows to `prefix` bytes). */
  extend(prefix: number): void {
    const have = this.head.length;
    const n = Math.min(prefix, this.total, this.inbufSize);
    if (n <= have) return;
    // Only the missing tail: the head's bytes are already in the inbuf.
    this.head = this.views.get(this.gather(have, n));
  }

  writeToFile(fd: number, pos: number, off: number, len: number): number {
    if (len === 0) return 0;
    const { vq, sublist, maxSegs } = this.l;
    const n = vq.subList(this.list, this.count, off, len, sublist, maxSegs);
    if (n < 0) return -Errno.EINVAL;
    return native.pwritevWin(fd, sublist, n, pos);
  }
}

export class GuestWriter {
  capacity = 0;
  count = 0;
  buf: Uint8Array;
  written = 0;
  private readonly views: PrefixViews;
  constructor(
    private readonly l: Lists,
    private readonly list: number,
    private readonly outbuf: number,
    private readonly outbufSize: number,
  ) {
    this.views = new PrefixViews(new Uint8Array(l.buffer, outbuf, outbufSize));
    this.buf = this.views.get(0);
  }

  reset(count: number, total: number): void {
    this.count = count;
    this.capacity = total;
    this.written = 0;
    this.buf = this.views.get(Math.min(total, this.outbufSize));
  }

  commit(len: number): void {
    const n = Math.min(len, this.buf.length);
    const { vq, wid } = this.l;
    let done = vq.scatter(wid, this.outbuf, n, this.list, this.count, 0);
    for (let i = 0; done < n && i < MAX_FAULTS_PER_COPY && this.l.apertures.fault(); i++) {
      done += vq.scatter(wid, this.outbuf + done, n - done, this.list, this.count, done);
    }
    this.written = Math.max(this.written, done);
  }

  readFromFile(fd: number, pos: number, off: number, len: number): number {
    if (len === 0) return 0;
    const { vq, sublist, maxSegs } = this.l;
    const n = vq.subList(this.list, this.count, off, len, sublist, maxSegs);
    if (n < 0) return -Errno.EINVAL;
    return native.preadvWin(fd, sublist, n, pos);
  }
}
