/**
 * FUSE replies: fuse_out_header plus the opcode's reply struct, built in the Writer's scratch
 * (`w.buf`, through the request's cached view `q.wv`) and committed to the guest's writable
 * descriptors. Every function returns the reply length. The reply's unique is the request's, copied as
 * its two u32 halves; nothing is allocated per reply. Validities come from the cache policy
 * (src/fuse/cache-policy.ts), never from here.
 */
import {
  ATTR_OUT_SIZE, AttrOff, ENTRY_OUT_SIZE, GETXATTR_OUT_SIZE, INIT_OUT_SIZE, LSEEK_OUT_SIZE, OPEN_OUT_SIZE, OUT_HEADER_SIZE,
  STATFS_OUT_SIZE, WRITE_OUT_SIZE, type InitOut, direntSize, direntplusSize, encodeAttrOut, encodeDirent,
  encodeEntryOut, encodeGetxattrOut, encodeInitOut, encodeLseekOut, encodeOpenOut, encodeOutHeaderParts,
  encodeWriteOut,
} from '../abi/fuse.js';
import { Errno } from '../errors.js';
import type { DirSink, Entry } from '../fs/filesystem.js';
import type { IdMaps } from '../fs/idmap.js';
import type { CachePolicy } from './cache-policy.js';
import type { Req } from './handler.js';
import type { Writer } from './io.js';

/** Thrown by a handler (or an argument check) to answer with an errno; the server catches it. */
export class ReplyError {
  constructor(readonly errno: number) {}
}

/** Answers ENOSYS: the file system has no method for the opcode. */
export function nosys(): never {
  throw new ReplyError(-Errno.ENOSYS);
}

/** fuse_out_header at the start of the scratch, with the request's unique. */
function header(q: Req, len: number, error: number): void {
  encodeOutHeaderParts(q.wv, 0, len, error, q.uniqueLo, q.uniqueHi);
}

/** A header-only reply with a negative errno (anything else becomes EIO); 0 if not even the header fits. */
export function errorReply(q: Req, errno: number): number {
  const w = q.w;
  if (w.buf.length < OUT_HEADER_SIZE) return 0;
  header(q, OUT_HEADER_SIZE, errno < 0 && errno > -4096 ? errno : -Errno.EIO);
  w.commit(OUT_HEADER_SIZE);
  return OUT_HEADER_SIZE;
}

/** Ensure the reply scratch holds a payload of n bytes (else the guest gave too small a buffer: ERANGE). */
export function room(w: Writer, n: number): void {
  if (OUT_HEADER_SIZE + n > w.buf.length) throw new ReplyError(-Errno.ERANGE);
}

/** Header + `n` payload bytes already in w.buf[16..]. */
export function okReply(q: Req, n: number): number {
  const w = q.w;
  room(w, n);
  const len = OUT_HEADER_SIZE + n;
  header(q, len, 0);
  w.commit(len);
  return len;
}

/** 0 or -errno from the file system: an empty success or an error. */
export function statusReply(q: Req, res: number): number {
  return res < 0 ? errorReply(q, res) : okReply(q, 0);
}

/** A READ reply whose n data bytes the file system already placed in the writable part after the header. */
export function readReply(q: Req, n: number): number {
  const len = OUT_HEADER_SIZE + n;
  header(q, len, 0);
  q.w.commit(OUT_HEADER_SIZE);
  return len;
}

/** The bytes as the whole payload (READLINK). */
export function bytesReply(q: Req, bytes: Uint8Array): number {
  room(q.w, bytes.length);
  q.w.buf.set(bytes, OUT_HEADER_SIZE);
  return okReply(q, bytes.length);
}

/** struct fuse_kstatfs as the file system gave it. */
export function statfsReply(q: Req, kstatfs: Uint8Array): number {
  room(q.w, STATFS_OUT_SIZE);
  q.w.buf.set(kstatfs.subarray(0, STATFS_OUT_SIZE), OUT_HEADER_SIZE);
  return okReply(q, STATFS_OUT_SIZE);
}

/** fuse_attr in fuse_entry_out and in fuse_attr_out */
const ENTRY_ATTR = 40;
const ATTR_ATTR = 16;

/**
 * The owner of the fuse_attr at `at` (already in the reply) as the guest sees it (--translate-uid/gid,
 * host→guest). Every reply carrying a fuse_attr passes here: entry, attr, create and READDIRPLUS.
 */
function ownerOut(v: DataView, at: number, ids: IdMaps): void {
  v.setUint32(at + AttrOff.uid, ids.uid.hostToGuest(v.getUint32(at + AttrOff.uid, true)), true);
  v.setUint32(at + AttrOff.gid, ids.gid.hostToGuest(v.getUint32(at + AttrOff.gid, true)), true);
}

/** fuse_entry_out (LOOKUP and the creating opcodes). */
export function entryReply(q: Req, e: Entry, cache: CachePolicy): number {
  room(q.w, ENTRY_OUT_SIZE);
  encodeEntryOut(q.w.buf, q.wv, OUT_HEADER_SIZE, e.nodeid, e.generation, cache.entryTimeout, cache.attrTimeout, e.attr);
  // (a negative entry's attr is zeros, not an owner)
  if (q.ids !== null && e.nodeid !== 0) ownerOut(q.wv, OUT_HEADER_SIZE + ENTRY_ATTR, q.ids);
  return okReply(q, ENTRY_OUT_SIZE);
}

/** fuse_attr_out (GETATTR, SETATTR): the file system's attr copied once, into the scratch. */
export function attrReply(q: Req, attr: Uint8Array, cache: CachePolicy): number {
  room(q.w, ATTR_OUT_SIZE);
  encodeAttrOut(q.w.buf, q.wv, OUT_HEADER_SIZE, cache.attrTimeout, attr);
  if (q.ids !== null) ownerOut(q.wv, OUT_HEADER_SIZE + ATTR_ATTR, q.ids);
  return okReply(q, ATTR_OUT_SIZE);
}

/** fuse_open_out at payload offset `at` (OPEN/OPENDIR: 0; CREATE: after its fuse_entry_out). */
function openOut(q: Req, fh: number, openFlags: number, at: number): number {
  room(q.w, at + OPEN_OUT_SIZE);
  encodeOpenOut(q.wv, OUT_HEADER_SIZE + at, fh, openFlags);
  return okReply(q, at + OPEN_OUT_SIZE);
}

/** fuse_open_out (OPEN, OPENDIR). */
export function openReply(q: Req, fh: number, openFlags: number): number {
  return openOut(q, fh, openFlags, 0);
}

/** CREATE: fuse_entry_out then fuse_open_out. */
export function createReply(q: Req, e: Entry, fh: number, openFlags: number, cache: CachePolicy): number {
  room(q.w, ENTRY_OUT_SIZE + OPEN_OUT_SIZE);
  encodeEntryOut(q.w.buf, q.wv, OUT_HEADER_SIZE, e.nodeid, e.generation, cache.entryTimeout, cache.attrTimeout, e.attr);
  if (q.ids !== null) ownerOut(q.wv, OUT_HEADER_SIZE + ENTRY_ATTR, q.ids);
  return openOut(q, fh, openFlags, ENTRY_OUT_SIZE);
}

/**
 * A reply whose payload is one fixed-size struct, written by its codec from src/abi/fuse.ts through the
 * request's cached view (a module-level function: nothing is allocated per call).
 */
function structReply<T>(q: Req, size: number, encode: (v: DataView, off: number, x: T) => void, x: T): number {
  room(q.w, size);
  encode(q.wv, OUT_HEADER_SIZE, x);
  return okReply(q, size);
}

/** fuse_write_out (WRITE, COPY_FILE_RANGE). */
export function writeOutReply(q: Req, size: number): number {
  return structReply(q, WRITE_OUT_SIZE, encodeWriteOut, size);
}

/** fuse_lseek_out. */
export function lseekReply(q: Req, offset: number): number {
  return structReply(q, LSEEK_OUT_SIZE, encodeLseekOut, offset);
}

/** fuse_getxattr_out: the size a GETXATTR/LISTXATTR value needs. */
export function xattrSizeReply(q: Req, size: number): number {
  return structReply(q, GETXATTR_OUT_SIZE, encodeGetxattrOut, size);
}

/** fuse_init_out. */
export function initReply(q: Req, o: InitOut): number {
  return structReply(q, INIT_OUT_SIZE, encodeInitOut, o);
}

/** Encodes fuse_dirent / fuse_direntplus records into the reply scratch (READDIR, READDIRPLUS). */
export class ReplyDirSink implements DirSink {
  used = 0;
  constructor(
    private readonly buf: Uint8Array,
    /** a view of buf (byte 0 = buf[0]) */
    private readonly v: DataView,
    private readonly base: number,
    private readonly limit: number,
    private readonly plus: boolean,
    private readonly cache: CachePolicy,
    /** the server's id translation (null: none) */
    private readonly ids: IdMaps | null = null,
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
      if (entry && entry.nodeid !== 0) {
        encodeEntryOut(this.buf, this.v, p, entry.nodeid, entry.generation, this.cache.entryTimeout,
          this.cache.attrTimeout, entry.attr);
      } else {
        // nodeid 0: the kernel makes no dentry for it and expects no FORGET; attr stays informative
        encodeEntryOut(this.buf, this.v, p, 0, 0, 0, 0, entry ? entry.attr : null);
      }
      if (this.ids !== null && entry?.attr) ownerOut(this.v, p + ENTRY_ATTR, this.ids);
      p += ENTRY_OUT_SIZE;
      this.used += ENTRY_OUT_SIZE;
    }
    const n = encodeDirent(this.buf, this.v, p, ino, off, type, name);
    this.used += n;
  }

  rawBuffer(): Uint8Array | null {
    return this.plus ? null : this.buf;
  }

  rawAt(): number {
    return this.base + this.used;
  }

  rawCommit(bytes: number): void {
    if (bytes < 0 || this.used + bytes > this.limit) throw new RangeError('DirSink.rawCommit past the reply');
    this.used += bytes;
  }
}
