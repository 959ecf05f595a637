/**
 * FUSE request dispatch: decode one request from a Reader, call the FileSystem, encode the reply into a
 * Writer. Every guest number is checked here, once (DESIGN.md "one checked boundary"); the FileSystem
 * gets decoded, validated arguments. `handle` never throws: an exception is logged and becomes EIO.
 */
import { Errno } from '../errors.js';
import type { Ctx, DirSink, Entry, FileSystem, SetattrArgs, TimeSpec } from '../fs/filesystem.js';
import { RateLimitedLog, type Logger } from '../log.js';
import {
  ATTR_OUT_SIZE, ACCESS_IN_SIZE, BATCH_FORGET_IN_SIZE, CREATE_IN_SIZE, ENTRY_OUT_SIZE,
  FALLOCATE_IN_SIZE, FATTR_ATIME, FATTR_ATIME_NOW, FATTR_FH, FATTR_GID, FATTR_KILL_SUIDGID, FATTR_MODE,
  FATTR_MTIME, FATTR_MTIME_NOW, FATTR_SIZE, FATTR_UID, FLUSH_IN_SIZE, FOPEN_CACHE_DIR, FOPEN_DIRECT_IO,
  FOPEN_KEEP_CACHE, FORGET_IN_SIZE, FORGET_ONE_SIZE, FSYNC_IN_SIZE, FUSE_ASYNC_DIO, FUSE_ASYNC_READ,
  FUSE_ATOMIC_O_TRUNC, FUSE_AUTO_INVAL_DATA, FUSE_BIG_WRITES, FUSE_DO_READDIRPLUS, FUSE_FSYNC_FDATASYNC,
  FUSE_GETATTR_FH, FUSE_INIT_EXT, FUSE_KERNEL_MINOR_VERSION, FUSE_KERNEL_VERSION, FUSE_MAX_PAGES,
  FUSE_MIN_MINOR_VERSION, FUSE_PARALLEL_DIROPS, FUSE_SUBMOUNTS, FUSE_READDIRPLUS_AUTO, FUSE_RELEASE_FLUSH, FUSE_WRITEBACK_CACHE,
  FUSE_WRITE_KILL_SUIDGID, GETATTR_IN_SIZE, IN_HEADER_SIZE, INIT_IN_SIZE_COMPAT, INIT_OUT_SIZE, LINK_IN_SIZE,
  COPY_FILE_RANGE_IN_SIZE, LSEEK_IN_SIZE, LSEEK_OUT_SIZE, MKDIR_IN_SIZE, MKNOD_IN_SIZE, NAME_MAX, OPEN_IN_SIZE, OPEN_OUT_SIZE, Opcode,
  OUT_HEADER_SIZE, PATH_MAX, READ_IN_SIZE, RELEASE_IN_SIZE, RENAME2_IN_SIZE, RENAME_IN_SIZE, SETATTR_IN_SIZE,
  STATFS_OUT_SIZE, WRITE_IN_SIZE, WRITE_OUT_SIZE, decodeInHeader, decodeInitIn, decodeReadIn, decodeSetattrIn,
  direntSize, direntplusSize, encodeAttrOut, encodeDirent, encodeEntryOut, encodeInitOut, encodeOutHeader,
  type InHeader, GETXATTR_IN_SIZE, GETXATTR_OUT_SIZE, SETXATTR_IN_SIZE, XATTR_CREATE, XATTR_LIST_MAX,
  XATTR_NAME_MAX, XATTR_REPLACE, XATTR_SIZE_MAX, decodeGetxattrIn, decodeSetxattrIn, encodeGetxattrOut,
} from '../abi/fuse.js';
import type { Reader, Writer } from './io.js';

export type CachePolicy = 'never' | 'metadata' | 'auto' | 'always';

/** Largest WRITE/READ payload we negotiate (max_write) and the matching max_pages (4 KiB pages). */
export const MAX_WRITE = 1024 * 1024;
/** Most bytes one COPY_FILE_RANGE copies (the guest's caller loops on a short count). */
export const MAX_COPY = 256 * 1024 * 1024;
const MAX_COPY_BIG = BigInt(MAX_COPY);
export const MAX_PAGES = 256;

export interface FuseServerOptions {
  cache?: CachePolicy;
  /** negotiate FUSE_WRITEBACK_CACHE */
  writeback?: boolean;
  /** negotiate READDIRPLUS (default true) */
  readdirplus?: boolean;
  /**
   * Serve SETXATTR/GETXATTR/LISTXATTR/REMOVEXATTR (--xattr, -o xattr; default false). Off, they answer
   * ENOSYS and the guest kernel stops sending them (its callers then see EOPNOTSUPP). INIT is the same
   * either way (no flag announces xattr support; FUSE_SETXATTR_EXT is never negotiated).
   */
  xattr?: boolean;
  /**
   * Entry and attribute validity in seconds (fractions allowed), instead of the cache policy's
   * (never 0, metadata/always 86400, auto 1): virtiofsd's -o timeout=. 0 also stops negative entries.
   */
  timeout?: number;
  /** negotiate FUSE_SUBMOUNTS (--announce-submounts; the file system marks mount points) */
  announceSubmounts?: boolean;
  log?: Logger;
  /**
   * Session state shared by every worker's FuseServer (INIT reaches one worker only): 4 × i32 in a
   * SharedArrayBuffer, [0] initialized (0/1), [1] negotiated minor, [2] negotiated flags, [3] reserved.
   * Defaults to a private array (one server per session).
   */
  session?: Int32Array;
}

const S_INIT = 0;
const S_MINOR = 1;
const S_FLAGS = 2;

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** `out` for a size-only GETXATTR/LISTXATTR */
const NO_BYTES = new Uint8Array(0);
/** A LOOKUP answer for a missing name: node id 0, no attributes (only the entry timeout counts). */
const NEGATIVE_ENTRY: Entry = { nodeid: 0n, generation: 0n, attr: new Uint8Array(88) };

/** The flags we ask for (each only if the kernel offers it). */
const WANTED_FLAGS =
  FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES | FUSE_AUTO_INVAL_DATA | FUSE_DO_READDIRPLUS |
  FUSE_READDIRPLUS_AUTO | FUSE_ASYNC_DIO | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES | FUSE_INIT_EXT;

/** Thrown inside dispatch to answer with an errno; caught in handle(). */
class ReplyError {
  constructor(readonly errno: number) {}
}

export class FuseServer {
  private readonly fs: FileSystem;
  private readonly log: Logger | undefined;
  /** guest-triggered warnings are rate limited: a hostile guest must not flood the log */
  private readonly guestWarn: RateLimitedLog | undefined;
  private readonly session: Int32Array;
  private readonly writeback: boolean;
  private readonly readdirplus: boolean;
  private readonly xattr: boolean;
  private readonly announceSubmounts: boolean;
  /** The session flags this server last told its file system about. */
  private seenFlags = -1;
  private readonly timeout: number;
  private readonly openFlags: number;
  private readonly dirOpenFlags: number;

  constructor(fs: FileSystem, opts: FuseServerOptions = {}) {
    this.fs = fs;
    this.log = opts.log;
    this.guestWarn = opts.log ? new RateLimitedLog(opts.log) : undefined;
    this.session = opts.session ?? new Int32Array(4);
    if (this.session.length < 4) throw new RangeError('session needs 4 slots');
    this.writeback = opts.writeback ?? false;
    this.readdirplus = opts.readdirplus ?? true;
    this.xattr = opts.xattr ?? false;
    this.announceSubmounts = opts.announceSubmounts ?? false;
    const cache = opts.cache ?? 'auto';
    // entry/attr timeouts and open flags per cache policy (the reference daemon's meaning of the names)
    switch (cache) {
      case 'never': this.timeout = 0; this.openFlags = FOPEN_DIRECT_IO; this.dirOpenFlags = 0; break;
      case 'metadata': this.timeout = 86400; this.openFlags = FOPEN_DIRECT_IO; this.dirOpenFlags = 0; break;
      case 'auto': this.timeout = 1; this.openFlags = 0; this.dirOpenFlags = 0; break;
      case 'always': this.timeout = 86400; this.openFlags = FOPEN_KEEP_CACHE;
        this.dirOpenFlags = FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR; break;
      default: throw new RangeError(`unknown cache policy ${String(cache)}`);
    }
    if (opts.timeout !== undefined) {
      if (!Number.isFinite(opts.timeout) || opts.timeout < 0) throw new RangeError(`bad timeout ${opts.timeout}`);
      this.timeout = opts.timeout;
    }
  }

  get initialized(): boolean {
    return Atomics.load(this.session, S_INIT) === 1;
  }

  /** Handle one request; returns the reply length written to w (0: no reply). Never throws. */
  handle(r: Reader, w: Writer): number {
    if (r.total < IN_HEADER_SIZE || r.head.length < IN_HEADER_SIZE) {
      this.warn(`request shorter than fuse_in_header (${r.total})`);
      return this.errorReply(w, 0n, -Errno.EINVAL);
    }
    const hv = new DataView(r.head.buffer, r.head.byteOffset, r.head.byteLength);
    const h = decodeInHeader(hv, 0);
    if (h.len < IN_HEADER_SIZE || h.len > r.total) {
      this.warn(`fuse_in_header.len ${h.len} disagrees with the chain (${r.total})`);
      return this.errorReply(w, h.unique, -Errno.EINVAL);
    }
    try {
      return this.dispatch(h, hv, r, w);
    } catch (e) {
      if (e instanceof ReplyError) return this.errorReply(w, h.unique, e.errno);
      this.log?.error(`op ${h.opcode} unique ${h.unique}: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
      return this.errorReply(w, h.unique, -Errno.EIO);
    }
  }

  private warn(msg: string): void {
    this.guestWarn?.warn(msg);
  }

  // ---- reply helpers ----

  private errorReply(w: Writer, unique: bigint, errno: number): number {
    if (w.buf.length < OUT_HEADER_SIZE) return 0;
    const e = errno < 0 && errno > -4096 ? errno : -Errno.EIO;
    encodeOutHeader(new DataView(w.buf.buffer, w.buf.byteOffset, OUT_HEADER_SIZE), 0, OUT_HEADER_SIZE, e, unique);
    w.commit(OUT_HEADER_SIZE);
    return OUT_HEADER_SIZE;
  }

  /** Ensure the reply scratch holds a payload of n bytes (else the guest gave too small a buffer). */
  private room(w: Writer, n: number): void {
    if (OUT_HEADER_SIZE + n > w.buf.length) throw new ReplyError(-Errno.ERANGE);
  }

  /** Header + `n` payload bytes already in w.buf[16..]. */
  private ok(w: Writer, unique: bigint, n: number): number {
    this.room(w, n);
    const len = OUT_HEADER_SIZE + n;
    encodeOutHeader(new DataView(w.buf.buffer, w.buf.byteOffset, OUT_HEADER_SIZE), 0, len, 0, unique);
    w.commit(len);
    return len;
  }

  /** struct fuse_write_out: WRITE's and COPY_FILE_RANGE's reply. */
  private writeOutReply(w: Writer, unique: bigint, size: number): number {
    this.room(w, WRITE_OUT_SIZE);
    const ov = new DataView(w.buf.buffer, w.buf.byteOffset + OUT_HEADER_SIZE, WRITE_OUT_SIZE);
    ov.setUint32(0, size, true);
    ov.setUint32(4, 0, true);
    return this.ok(w, unique, WRITE_OUT_SIZE);
  }

  private entryReply(w: Writer, unique: bigint, e: Entry): number {
    this.room(w, ENTRY_OUT_SIZE);
    encodeEntryOut(w.buf, OUT_HEADER_SIZE, e.nodeid, e.generation, this.timeout, this.timeout, e.attr);
    return this.ok(w, unique, ENTRY_OUT_SIZE);
  }

  private attrReply(w: Writer, unique: bigint, attr: Uint8Array): number {
    this.room(w, ATTR_OUT_SIZE);
    encodeAttrOut(w.buf, OUT_HEADER_SIZE, this.timeout, attr);
    return this.ok(w, unique, ATTR_OUT_SIZE);
  }

  private statusReply(w: Writer, unique: bigint, res: number): number {
    return res < 0 ? this.errorReply(w, unique, res) : this.ok(w, unique, 0);
  }

  // ---- argument decoding ----

  /** the payload must hold at least n bytes of fixed arguments and fit in the head copy */
  private need(h: InHeader, r: Reader, n: number): void {
    if (h.len > r.head.length) throw new ReplyError(-Errno.EINVAL);
    if (h.len - IN_HEADER_SIZE < n) throw new ReplyError(-Errno.EINVAL);
  }

  /**
   * A NUL-terminated entry name at `start` inside [start, h.len): non-empty, ≤ NAME_MAX, no '/'.
   * "." and ".." are refused (ENOENT for lookup, EINVAL otherwise): they would name the parent or the
   * node itself, and at the root ".." must never reach outside the share. Returns [name, end+1].
   */
  private name(h: InHeader, r: Reader, start: number, forLookup = false): [Uint8Array, number] {
    const head = r.head;
    const end = Math.min(h.len, head.length);
    let nul = -1;
    for (let i = start; i < end; i++) {
      if (head[i] === 0) { nul = i; break; }
    }
    if (nul < 0) throw new ReplyError(-Errno.EINVAL);
    const len = nul - start;
    if (len === 0) throw new ReplyError(-Errno.EINVAL);
    if (len > NAME_MAX) throw new ReplyError(-Errno.ENAMETOOLONG);
    const name = head.subarray(start, nul);
    if (name.includes(0x2f)) throw new ReplyError(-Errno.EINVAL);
    if (name[0] === 0x2e && (len === 1 || (len === 2 && name[1] === 0x2e))) {
      throw new ReplyError(forLookup ? -Errno.ENOENT : -Errno.EINVAL);
    }
    return [name, nul + 1];
  }

  /** A NUL-terminated symlink target: non-empty, < PATH_MAX. */
  private target(h: InHeader, r: Reader, start: number): Uint8Array {
    const head = r.head;
    const end = Math.min(h.len, head.length);
    let nul = -1;
    for (let i = start; i < end; i++) {
      if (head[i] === 0) { nul = i; break; }
    }
    if (nul < 0 || nul === start) throw new ReplyError(-Errno.EINVAL);
    if (nul - start >= PATH_MAX) throw new ReplyError(-Errno.ENAMETOOLONG);
    return head.subarray(start, nul);
  }

  /**
   * A NUL-terminated xattr name at `start` inside [start, h.len) (after need()): 1..XATTR_NAME_MAX bytes,
   * any but NUL ('/' included: it is not a path). Empty or longer is ERANGE, as setxattr(2) and its
   * siblings answer; a name without its NUL is EINVAL. Returns [name, end+1].
   */
  private xattrName(h: InHeader, r: Reader, start: number): [Uint8Array, number] {
    const head = r.head;
    const end = Math.min(h.len, head.length);
    const stop = Math.min(end, start + XATTR_NAME_MAX + 1);
    let nul = -1;
    for (let i = start; i < stop; i++) {
      if (head[i] === 0) { nul = i; break; }
    }
    if (nul < 0) throw new ReplyError(end - start > XATTR_NAME_MAX ? -Errno.ERANGE : -Errno.EINVAL);
    if (nul === start) throw new ReplyError(-Errno.ERANGE);
    return [head.subarray(start, nul), nul + 1];
  }

  private offset(v: bigint): number {
    if (v > MAX_SAFE) throw new ReplyError(-Errno.EINVAL);
    return Number(v);
  }

  private method<K extends keyof FileSystem>(k: K): NonNullable<FileSystem[K]> {
    const m = this.fs[k];
    if (typeof m !== 'function') throw new ReplyError(-Errno.ENOSYS);
    return (m as (...a: never[]) => unknown).bind(this.fs) as NonNullable<FileSystem[K]>;
  }

  // ---- dispatch ----

  private dispatch(h: InHeader, v: DataView, r: Reader, w: Writer): number {
    const u = h.unique;
    const P = IN_HEADER_SIZE;
    if (h.opcode === Opcode.Init) return this.doInit(h, v, r, w);
    if (h.opcode === Opcode.Forget || h.opcode === Opcode.BatchForget) {
      // no reply, even on error (the kernel does not wait for one)
      if (this.initialized && h.len <= r.head.length) {
        if (h.opcode === Opcode.Forget) this.doForget(h, v);
        else this.doBatchForget(h, v);
      }
      return 0;
    }
    if (!this.initialized) {
      this.warn(`op ${h.opcode} before INIT`);
      return this.errorReply(w, u, -Errno.EIO);
    }
    // INIT reached one worker's server only: pick the negotiated options up from the shared session.
    const flags = Atomics.load(this.session, S_FLAGS);
    if (flags !== this.seenFlags) {
      this.seenFlags = flags;
      this.fs.init?.({ writeback: (flags & FUSE_WRITEBACK_CACHE) !== 0 });
    }
    const ctx: Ctx = { uid: h.uid, gid: h.gid, pid: h.pid };
    const node = h.nodeid;

    switch (h.opcode as Opcode) {
      case Opcode.Destroy: {
        this.fs.destroy?.();
        Atomics.store(this.session, S_INIT, 0);
        return this.ok(w, u, 0);
      }
      case Opcode.Lookup: {
        this.need(h, r, 0);
        const [name] = this.name(h, r, P, true);
        const res = this.method('lookup')(ctx, node, name);
        if (res === -Errno.ENOENT && this.timeout > 0) {
          // A negative entry the guest caches for the entry timeout: node id 0 is "no such name, with a
          // valid timeout" (fuse.h), so repeated probes of missing names (PATH and include searches)
          // stay in the guest, as with the reference daemon. Not with cache=never.
          return this.entryReply(w, u, NEGATIVE_ENTRY);
        }
        return typeof res === 'number' ? this.errorReply(w, u, res) : this.entryReply(w, u, res);
      }
      case Opcode.Getattr: {
        this.need(h, r, GETATTR_IN_SIZE);
        const flags = v.getUint32(P, true);
        const fh = (flags & FUSE_GETATTR_FH) !== 0 ? v.getBigUint64(P + 8, true) : null;
        const res = this.method('getattr')(ctx, node, fh);
        return typeof res === 'number' ? this.errorReply(w, u, res) : this.attrReply(w, u, res);
      }
      case Opcode.Setattr: {
        this.need(h, r, SETATTR_IN_SIZE);
        const s = decodeSetattrIn(v, P);
        const args: SetattrArgs = {};
        if (s.valid & FATTR_MODE) args.mode = s.mode;
        if (s.valid & FATTR_UID) args.uid = s.uid;
        if (s.valid & FATTR_GID) args.gid = s.gid;
        if (s.valid & FATTR_SIZE) args.size = this.offset(s.size);
        if (s.valid & FATTR_FH) args.fh = s.fh;
        if (s.valid & FATTR_KILL_SUIDGID) args.killSuidgid = true;
        if (s.valid & FATTR_ATIME) args.atime = this.time(s.valid & FATTR_ATIME_NOW, s.atime, s.atimensec);
        if (s.valid & FATTR_MTIME) args.mtime = this.time(s.valid & FATTR_MTIME_NOW, s.mtime, s.mtimensec);
        const res = this.method('setattr')(ctx, node, args);
        return typeof res === 'number' ? this.errorReply(w, u, res) : this.attrReply(w, u, res);
      }
      case Opcode.Readlink: {
        const res = this.method('readlink')(ctx, node);
        if (typeof res === 'number') return this.errorReply(w, u, res);
        this.room(w, res.length);
        w.buf.set(res, OUT_HEADER_SIZE);
        return this.ok(w, u, res.length);
      }
      case Opcode.Symlink: {
        this.need(h, r, 0);
        const [name, next] = this.name(h, r, P);
        const target = this.target(h, r, next);
        const res = this.method('symlink')(ctx, node, name, target);
        return typeof res === 'number' ? this.errorReply(w, u, res) : this.entryReply(w, u, res);
      }
      case Opcode.Mknod: {
        this.need(h, r, MKNOD_IN_SIZE);
        const [name] = this.name(h, r, P + MKNOD_IN_SIZE);
        const res = this.method('mknod')(ctx, node, name, v.getUint32(P, true), v.getUint32(P + 4, true),
          v.getUint32(P + 8, true));
        return typeof res === 'number' ? this.errorReply(w, u, res) : this.entryReply(w, u, res);
      }
      case Opcode.Mkdir: {
        this.need(h, r, MKDIR_IN_SIZE);
        const [name] = this.name(h, r, P + MKDIR_IN_SIZE);
        const res = this.method('mkdir')(ctx, node, name, v.getUint32(P, true), v.getUint32(P + 4, true));
        return typeof res === 'number' ? this.errorReply(w, u, res) : this.entryReply(w, u, res);
      }
      case Opcode.Unlink:
      case Opcode.Rmdir: {
        this.need(h, r, 0);
        const [name] = this.name(h, r, P);
        const res = h.opcode === Opcode.Unlink
          ? this.method('unlink')(ctx, node, name) : this.method('rmdir')(ctx, node, name);
        return this.statusReply(w, u, res);
      }
      case Opcode.Rename:
      case Opcode.Rename2: {
        const two = h.opcode === Opcode.Rename2;
        const size = two ? RENAME2_IN_SIZE : RENAME_IN_SIZE;
        this.need(h, r, size);
        const newdir = v.getBigUint64(P, true);
        const flags = two ? v.getUint32(P + 8, true) : 0;
        const [oldName, next] = this.name(h, r, P + size);
        const [newName] = this.name(h, r, next);
        return this.statusReply(w, u, this.method('rename')(ctx, node, oldName, newdir, newName, flags));
      }
      case Opcode.Link: {
        this.need(h, r, LINK_IN_SIZE);
        const oldNode = v.getBigUint64(P, true);
        const [name] = this.name(h, r, P + LINK_IN_SIZE);
        // the request's nodeid is the new parent; link_in names the existing node
        const res = this.method('link')(ctx, oldNode, node, name);
        return typeof res === 'number' ? this.errorReply(w, u, res) : this.entryReply(w, u, res);
      }
      case Opcode.Open:
      case Opcode.Opendir: {
        this.need(h, r, OPEN_IN_SIZE);
        const flags = v.getUint32(P, true);
        const dir = h.opcode === Opcode.Opendir;
        const res = dir ? this.method('opendir')(ctx, node, flags) : this.method('open')(ctx, node, flags);
        if (typeof res === 'number') return this.errorReply(w, u, res);
        return this.openReply(w, u, res.fh, res.openFlags | (dir ? this.dirOpenFlags : this.openFlags), 0);
      }
      case Opcode.Create: {
        this.need(h, r, CREATE_IN_SIZE);
        const flags = v.getUint32(P, true);
        const mode = v.getUint32(P + 4, true);
        const umask = v.getUint32(P + 8, true);
        const [name] = this.name(h, r, P + CREATE_IN_SIZE);
        const res = this.method('create')(ctx, node, name, mode, flags, umask);
        if (typeof res === 'number') return this.errorReply(w, u, res);
        this.room(w, ENTRY_OUT_SIZE + OPEN_OUT_SIZE);
        encodeEntryOut(w.buf, OUT_HEADER_SIZE, res.entry.nodeid, res.entry.generation, this.timeout, this.timeout,
          res.entry.attr);
        return this.openReply(w, u, res.fh, res.openFlags | this.openFlags, ENTRY_OUT_SIZE);
      }
      case Opcode.Read: {
        this.need(h, r, READ_IN_SIZE);
        // The header is encoded by hand below: there must be room for it (else no reply at all).
        this.room(w, 0);
        const rd = decodeReadIn(v, P);
        const pos = this.offset(rd.offset);
        const size = Math.max(0, Math.min(rd.size, MAX_WRITE, w.capacity - OUT_HEADER_SIZE));
        const n = this.method('read')(ctx, node, rd.fh, pos, size, w, OUT_HEADER_SIZE);
        if (n < 0) return this.errorReply(w, u, n);
        const len = OUT_HEADER_SIZE + Math.min(n, size);
        encodeOutHeader(new DataView(w.buf.buffer, w.buf.byteOffset, OUT_HEADER_SIZE), 0, len, 0, u);
        w.commit(OUT_HEADER_SIZE);
        return len;
      }
      case Opcode.Write: {
        // Only the fixed part must be in the head; the data stays in guest pages.
        if (r.head.length < P + WRITE_IN_SIZE || h.len < P + WRITE_IN_SIZE) return this.errorReply(w, u, -Errno.EINVAL);
        const wr = decodeReadIn(v, P);
        const pos = this.offset(wr.offset);
        const dataOff = P + WRITE_IN_SIZE;
        if (wr.size > h.len - dataOff || wr.size > MAX_WRITE) return this.errorReply(w, u, -Errno.EINVAL);
        const n = this.method('write')(ctx, node, wr.fh, pos, wr.size, r, dataOff,
          (wr.readFlags & FUSE_WRITE_KILL_SUIDGID) !== 0);
        if (n < 0) return this.errorReply(w, u, n);
        return this.writeOutReply(w, u, Math.min(n, wr.size));
      }
      case Opcode.Syncfs: {
        // struct fuse_syncfs_in is one u64 of padding: nothing to read
        return this.statusReply(w, u, this.method('syncfs')(ctx, node));
      }
      case Opcode.Statfs: {
        const res = this.method('statfs')(ctx, node);
        if (typeof res === 'number') return this.errorReply(w, u, res);
        this.room(w, STATFS_OUT_SIZE);
        w.buf.set(res.subarray(0, STATFS_OUT_SIZE), OUT_HEADER_SIZE);
        return this.ok(w, u, STATFS_OUT_SIZE);
      }
      case Opcode.Release: {
        this.need(h, r, RELEASE_IN_SIZE);
        const fh = v.getBigUint64(P, true);
        const flags = v.getUint32(P + 8, true);
        const rflags = v.getUint32(P + 12, true);
        const owner = v.getBigUint64(P + 16, true);
        return this.statusReply(w, u,
          this.method('release')(ctx, node, fh, flags, (rflags & FUSE_RELEASE_FLUSH) !== 0, owner));
      }
      case Opcode.Releasedir: {
        this.need(h, r, RELEASE_IN_SIZE);
        return this.statusReply(w, u, this.method('releasedir')(ctx, node, v.getBigUint64(P, true)));
      }
      case Opcode.Fsync:
      case Opcode.Fsyncdir: {
        this.need(h, r, FSYNC_IN_SIZE);
        const fh = v.getBigUint64(P, true);
        const ds = (v.getUint32(P + 8, true) & FUSE_FSYNC_FDATASYNC) !== 0;
        const res = h.opcode === Opcode.Fsync
          ? this.method('fsync')(ctx, node, fh, ds) : this.method('fsyncdir')(ctx, node, fh, ds);
        return this.statusReply(w, u, res);
      }
      case Opcode.Flush: {
        this.need(h, r, FLUSH_IN_SIZE);
        return this.statusReply(w, u,
          this.method('flush')(ctx, node, v.getBigUint64(P, true), v.getBigUint64(P + 16, true)));
      }
      case Opcode.Readdir:
      case Opcode.Readdirplus: {
        this.need(h, r, READ_IN_SIZE);
        const rd = decodeReadIn(v, P);
        const plus = h.opcode === Opcode.Readdirplus;
        const limit = Math.max(0, Math.min(rd.size, w.buf.length - OUT_HEADER_SIZE));
        const sink = new ReplyDirSink(w.buf, OUT_HEADER_SIZE, limit, plus, this.timeout);
        const res = this.method('readdir')(ctx, node, rd.fh, rd.offset, sink, plus);
        // An error after some entries were produced would lose their lookup references: keep them.
        if (res < 0 && sink.used === 0) return this.errorReply(w, u, res);
        return this.ok(w, u, sink.used);
      }
      case Opcode.Access: {
        this.need(h, r, ACCESS_IN_SIZE);
        return this.statusReply(w, u, this.method('access')(ctx, node, v.getUint32(P, true)));
      }
      case Opcode.Fallocate: {
        this.need(h, r, FALLOCATE_IN_SIZE);
        const fh = v.getBigUint64(P, true);
        const off = this.offset(v.getBigUint64(P + 8, true));
        const len = this.offset(v.getBigUint64(P + 16, true));
        const mode = v.getUint32(P + 24, true);
        return this.statusReply(w, u, this.method('fallocate')(ctx, node, fh, mode, off, len));
      }
      case Opcode.Lseek: {
        this.need(h, r, LSEEK_IN_SIZE);
        const fh = v.getBigUint64(P, true);
        const off = this.offset(v.getBigUint64(P + 8, true));
        const whence = v.getUint32(P + 16, true);
        const res = this.method('lseek')(ctx, node, fh, off, whence);
        if (res < 0) return this.errorReply(w, u, res);
        this.room(w, LSEEK_OUT_SIZE);
        new DataView(w.buf.buffer, w.buf.byteOffset + OUT_HEADER_SIZE, LSEEK_OUT_SIZE).setBigUint64(0, BigInt(res), true);
        return this.ok(w, u, LSEEK_OUT_SIZE);
      }
      case Opcode.CopyFileRange: {
        this.need(h, r, COPY_FILE_RANGE_IN_SIZE);
        const fhIn = v.getBigUint64(P, true);
        const offIn = this.offset(v.getBigUint64(P + 8, true));
        const nodeOut = v.getBigUint64(P + 16, true);
        const fhOut = v.getBigUint64(P + 24, true);
        const offOut = this.offset(v.getBigUint64(P + 32, true));
        // The reply's size is a u32, and one request should not hold a worker for long: copy at most
        // MAX_COPY per request (a short copy is legal; callers loop, as for write(2)).
        const rawLen = v.getBigUint64(P + 40, true);
        const len = rawLen > MAX_COPY_BIG ? MAX_COPY : Number(rawLen);
        const flags = v.getBigUint64(P + 48, true);
        if (flags !== 0n) return this.errorReply(w, u, -Errno.EINVAL); // copy_file_range(2) defines none
        const n = this.method('copyFileRange')(ctx, node, fhIn, offIn, nodeOut, fhOut, offOut, len);
        if (n < 0) return this.errorReply(w, u, n);
        return this.writeOutReply(w, u, Math.min(n, len));
      }
      case Opcode.Setxattr: {
        if (!this.xattr) return this.errorReply(w, u, -Errno.ENOSYS);
        this.need(h, r, SETXATTR_IN_SIZE);
        const x = decodeSetxattrIn(v, P);
        if ((x.flags & ~(XATTR_CREATE | XATTR_REPLACE)) !== 0) throw new ReplyError(-Errno.EINVAL);
        const [name, next] = this.xattrName(h, r, P + SETXATTR_IN_SIZE);
        if (x.size > XATTR_SIZE_MAX) throw new ReplyError(-Errno.E2BIG);
        // the value is the `size` bytes after the name: all of them must be in the request
        if (x.size > h.len - next) throw new ReplyError(-Errno.EINVAL);
        const value = r.head.subarray(next, next + x.size);
        return this.statusReply(w, u, this.method('setxattr')(ctx, node, name, value, x.flags));
      }
      case Opcode.Getxattr:
      case Opcode.Listxattr: {
        if (!this.xattr) return this.errorReply(w, u, -Errno.ENOSYS);
        this.need(h, r, GETXATTR_IN_SIZE);
        const { size } = decodeGetxattrIn(v, P);
        const list = h.opcode === Opcode.Listxattr;
        const name = list ? NO_BYTES : this.xattrName(h, r, P + GETXATTR_IN_SIZE)[0];
        const call = list
          ? (out: Uint8Array) => this.method('listxattr')(ctx, node, out)
          : (out: Uint8Array) => this.method('getxattr')(ctx, node, name, out);
        if (size === 0) {
          // the size needed, in fuse_getxattr_out
          const res = call(NO_BYTES);
          if (res < 0) return this.errorReply(w, u, res);
          this.room(w, GETXATTR_OUT_SIZE);
          encodeGetxattrOut(new DataView(w.buf.buffer, w.buf.byteOffset + OUT_HEADER_SIZE, GETXATTR_OUT_SIZE), 0, res);
          return this.ok(w, u, GETXATTR_OUT_SIZE);
        }
        // The bytes go straight into the reply scratch: never more than the guest asked for, the
        // syscall's own limit, or what the writable part holds.
        const max = list ? XATTR_LIST_MAX : XATTR_SIZE_MAX;
        const cap = Math.max(0, Math.min(size, max, w.buf.length - OUT_HEADER_SIZE));
        const res = call(w.buf.subarray(OUT_HEADER_SIZE, OUT_HEADER_SIZE + cap));
        // Linux: ERANGE with a buffer of the maximum size is E2BIG (the host's value can never fit)
        if (res < 0) return this.errorReply(w, u, res === -Errno.ERANGE && cap >= max ? -Errno.E2BIG : res);
        // (cap 0 is a size query to the host: only an empty value fits)
        if (res > cap) return this.errorReply(w, u, -Errno.ERANGE);
        return this.ok(w, u, res);
      }
      case Opcode.Removexattr: {
        if (!this.xattr) return this.errorReply(w, u, -Errno.ENOSYS);
        this.need(h, r, 0);
        const [name] = this.xattrName(h, r, P);
        return this.statusReply(w, u, this.method('removexattr')(ctx, node, name));
      }
      default:
        // xattrs unless enabled (above), locks, ioctl, poll, bmap, interrupt, copy_file_range, DAX mapping, syncfs, tmpfile,
        // statx and anything newer: not supported.
        return this.errorReply(w, u, -Errno.ENOSYS);
    }
  }

  private time(now: number, sec: bigint, nsec: number): TimeSpec {
    if (now) return 'now';
    if (nsec >= 1_000_000_000) throw new ReplyError(-Errno.EINVAL);
    // struct timespec is signed; the kernel sends the u64 bit pattern of a possibly negative time
    const s = BigInt.asIntN(64, sec);
    if (s > MAX_SAFE || s < -MAX_SAFE) throw new ReplyError(-Errno.EINVAL);
    return { sec: Number(s), nsec };
  }

  private openReply(w: Writer, u: bigint, fh: bigint, flags: number, at: number): number {
    this.room(w, at + OPEN_OUT_SIZE);
    const ov = new DataView(w.buf.buffer, w.buf.byteOffset + OUT_HEADER_SIZE + at, OPEN_OUT_SIZE);
    ov.setBigUint64(0, fh, true);
    ov.setUint32(8, flags >>> 0, true);
    ov.setUint32(12, 0, true);
    return this.ok(w, u, at + OPEN_OUT_SIZE);
  }

  private doInit(h: InHeader, v: DataView, r: Reader, w: Writer): number {
    const u = h.unique;
    if (h.len > r.head.length || h.len - IN_HEADER_SIZE < INIT_IN_SIZE_COMPAT) return this.errorReply(w, u, -Errno.EINVAL);
    const init = decodeInitIn(v, IN_HEADER_SIZE, h.len - IN_HEADER_SIZE);
    if (init.major < FUSE_KERNEL_VERSION) {
      this.warn(`unsupported FUSE protocol ${init.major}.${init.minor}`);
      return this.errorReply(w, u, -Errno.EPROTO);
    }
    this.room(w, INIT_OUT_SIZE);
    const ov = new DataView(w.buf.buffer, w.buf.byteOffset + OUT_HEADER_SIZE, INIT_OUT_SIZE);
    if (init.major > FUSE_KERNEL_VERSION) {
      // A newer kernel: answer with only our version so it retries INIT with major 7 (fuse.h).
      encodeInitOut(ov, 0, {
        major: FUSE_KERNEL_VERSION, minor: FUSE_KERNEL_MINOR_VERSION, maxReadahead: 0, flags: 0, maxBackground: 0,
        congestionThreshold: 0, maxWrite: 0, timeGran: 0, maxPages: 0, mapAlignment: 0, flags2: 0,
      });
      return this.ok(w, u, INIT_OUT_SIZE);
    }
    if (init.minor < FUSE_MIN_MINOR_VERSION) {
      this.warn(`unsupported FUSE protocol ${init.major}.${init.minor} (need 7.${FUSE_MIN_MINOR_VERSION})`);
      return this.errorReply(w, u, -Errno.EPROTO);
    }
    if (this.initialized) {
      // A re-INIT without DESTROY (guest reboot): start the session over.
      this.log?.info('INIT on a live session: resetting it');
      this.fs.destroy?.();
      Atomics.store(this.session, S_INIT, 0);
    }
    const minor = Math.min(init.minor, FUSE_KERNEL_MINOR_VERSION);
    let wanted = WANTED_FLAGS;
    if (this.writeback) wanted |= FUSE_WRITEBACK_CACHE;
    if (!this.readdirplus) wanted &= ~(FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO);
    if (this.announceSubmounts) wanted |= FUSE_SUBMOUNTS;
    const flags = (init.flags & wanted) >>> 0;
    this.fs.init?.({ writeback: (flags & FUSE_WRITEBACK_CACHE) !== 0 });
    this.seenFlags = flags | 0;
    encodeInitOut(ov, 0, {
      major: FUSE_KERNEL_VERSION, minor, maxReadahead: init.maxReadahead, flags, maxBackground: 64,
      congestionThreshold: 48, maxWrite: MAX_WRITE, timeGran: 1, maxPages: MAX_PAGES, mapAlignment: 0, flags2: 0,
    });
    Atomics.store(this.session, S_MINOR, minor);
    Atomics.store(this.session, S_FLAGS, flags | 0);
    Atomics.store(this.session, S_INIT, 1);
    this.log?.info(`FUSE session 7.${minor}, flags 0x${flags.toString(16)}`);
    return this.ok(w, u, INIT_OUT_SIZE);
  }

  private doForget(h: InHeader, v: DataView): void {
    if (h.len - IN_HEADER_SIZE < FORGET_IN_SIZE) return;
    this.fs.forget?.(h.nodeid, v.getBigUint64(IN_HEADER_SIZE, true));
  }

  private doBatchForget(h: InHeader, v: DataView): void {
    const payload = h.len - IN_HEADER_SIZE;
    if (payload < BATCH_FORGET_IN_SIZE) return;
    const count = v.getUint32(IN_HEADER_SIZE, true);
    // count comes from the guest: it must describe exactly what the buffer holds
    if (count > Math.floor((payload - BATCH_FORGET_IN_SIZE) / FORGET_ONE_SIZE)) {
      this.warn(`BATCH_FORGET count ${count} beyond its ${payload} bytes`);
      return;
    }
    const forget = this.fs.forget?.bind(this.fs);
    if (!forget) return;
    let p = IN_HEADER_SIZE + BATCH_FORGET_IN_SIZE;
    for (let i = 0; i < count; i++, p += FORGET_ONE_SIZE) {
      forget(v.getBigUint64(p, true), v.getBigUint64(p + 8, true));
    }
  }
}

/** Encodes fuse_dirent / fuse_direntplus records into the reply scratch. */
class ReplyDirSink implements DirSink {
  used = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly base: number,
    private readonly limit: number,
    private readonly plus: boolean,
    private readonly timeout: number,
  ) {}

  fits(nameLen: number): boolean {
    const size = this.plus ? direntplusSize(nameLen) : direntSize(nameLen);
    return this.used + size <= this.limit;
  }

  remaining(): number {
    return this.limit - this.used;
  }

  add(ino: bigint, off: bigint, type: number, name: Uint8Array, entry: Entry | null): void {
    if (!this.fits(name.length)) throw new RangeError('DirSink.add without room');
    let p = this.base + this.used;
    if (this.plus) {
      if (entry && entry.nodeid !== 0n) {
        encodeEntryOut(this.buf, p, entry.nodeid, entry.generation, this.timeout, this.timeout, entry.attr);
      } else {
        // nodeid 0: the kernel makes no dentry for it and expects no FORGET; attr stays informative
        encodeEntryOut(this.buf, p, 0n, 0n, 0, 0, entry ? entry.attr : null);
      }
      p += ENTRY_OUT_SIZE;
      this.used += ENTRY_OUT_SIZE;
    }
    const n = encodeDirent(this.buf, p, ino, off, type, name);
    this.used += n;
  }
}
