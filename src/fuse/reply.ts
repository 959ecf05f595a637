/**
 * FUSE replies: fuse_out_header plus the opcode's reply struct, built in the Writer's scratch
 * (`w.buf`) and committed to the guest's writable descriptors. Every function returns the reply
 * length. Validities come from the cache policy (src/fuse/cache-policy.ts), never from here.
 */
import {
  ATTR_OUT_SIZE, ENTRY_OUT_SIZE, GETXATTR_OUT_SIZE, INIT_OUT_SIZE, LSEEK_OUT_SIZE, OPEN_OUT_SIZE, OUT_HEADER_SIZE,
  STATFS_OUT_SIZE, WRITE_OUT_SIZE, type InitOut, direntSize, direntplusSize, encodeAttrOut, encodeDirent,
  encodeEntryOut, encodeGetxattrOut, encodeInitOut, encodeLseekOut, encodeOpenOut, encodeOutHeader, encodeWriteOut,
} from '../abi/fuse.js';
import { Errno } from '../errors.js';
import type { DirSink, Entry } from '../fs/filesystem.js';
import type { CachePolicy } from './cache-policy.js';
import type { Writer } from './io.js';

/** Thrown by a handler (or an argument check) to answer with an errno; the server catches it. */
export class ReplyError {
  constructor(readonly errno: number) {}
}

/** Answers ENOSYS: the file system has no method for the opcode. */
export function nosys(): never {
  throw new ReplyError(-Errno.ENOSYS);
}

/** A header-only reply with a negative errno (anything else becomes EIO); 0 if not even the header fits. */
export function errorReply(w: Writer, unique: bigint, errno: number): number {
  if (w.buf.length < OUT_HEADER_SIZE) return 0;
  const e = errno < 0 && errno > -4096 ? errno : -Errno.EIO;
  encodeOutHeader(new DataView(w.buf.buffer, w.buf.byteOffset, OUT_HEADER_SIZE), 0, OUT_HEADER_SIZE, e, unique);
  w.commit(OUT_HEADER_SIZE);
  return OUT_HEADER_SIZE;
}

/** Ensure the reply scratch holds a payload of n bytes (else the guest gave too small a buffer: ERANGE). */
export function room(w: Writer, n: number): void {
  if (OUT_HEADER_SIZE + n > w.buf.length) throw new ReplyError(-Errno.ERANGE);
}

/** A view of the first n payload bytes (after room(w, n)). */
function payload(w: Writer, at: number, n: number): DataView {
  return new DataView(w.buf.buffer, w.buf.byteOffset + OUT_HEADER_SIZE + at, n);
}

/** Header + `n` payload bytes already in w.buf[16..]. */
export function okReply(w: Writer, unique: bigint, n: number): number {
  room(w, n);
  const len = OUT_HEADER_SIZE + n;
  encodeOutHeader(new DataView(w.buf.buffer, w.buf.byteOffset, OUT_HEADER_SIZE), 0, len, 0, unique);
  w.commit(len);
  return len;
}

/** 0 or -errno from the file system: an empty success or an error. */
export function statusReply(w: Writer, unique: bigint, res: number): number {
  return res < 0 ? errorReply(w, unique, res) : okReply(w, unique, 0);
}

/** A READ reply whose n data bytes the file system already placed in the writable part after the header. */
export function readReply(w: Writer, unique: bigint, n: number): number {
  const len = OUT_HEADER_SIZE + n;
  encodeOutHeader(new DataView(w.buf.buffer, w.buf.byteOffset, OUT_HEADER_SIZE), 0, len, 0, unique);
  w.commit(OUT_HEADER_SIZE);
  return len;
}

/** The bytes as the whole payload (READLINK). */
export function bytesReply(w: Writer, unique: bigint, bytes: Uint8Array): number {
  room(w, bytes.length);
  w.buf.set(bytes, OUT_HEADER_SIZE);
  return okReply(w, unique, bytes.length);
}

/** struct fuse_kstatfs as the file system gave it. */
export function statfsReply(w: Writer, unique: bigint, kstatfs: Uint8Array): number {
  room(w, STATFS_OUT_SIZE);
  w.buf.set(kstatfs.subarray(0, STATFS_OUT_SIZE), OUT_HEADER_SIZE);
  return okReply(w, unique, STATFS_OUT_SIZE);
}

/** fuse_entry_out (LOOKUP and the creating opcodes). */
export function entryReply(w: Writer, unique: bigint, e: Entry, cache: CachePolicy): number {
  room(w, ENTRY_OUT_SIZE);
  encodeEntryOut(w.buf, OUT_HEADER_SIZE, e.nodeid, e.generation, cache.entryTimeout, cache.attrTimeout, e.attr);
  return okReply(w, unique, ENTRY_OUT_SIZE);
}

/** fuse_attr_out (GETATTR, SETATTR). */
export function attrReply(w: Writer, unique: bigint, attr: Uint8Array, cache: CachePolicy): number {
  room(w, ATTR_OUT_SIZE);
  encodeAttrOut(w.buf, OUT_HEADER_SIZE, cache.attrTimeout, attr);
  return okReply(w, unique, ATTR_OUT_SIZE);
}

/** fuse_open_out at payload offset `at` (OPEN/OPENDIR: 0; CREATE: after its fuse_entry_out). */
function openOut(w: Writer, unique: bigint, fh: bigint, openFlags: number, at: number): number {
  room(w, at + OPEN_OUT_SIZE);
  encodeOpenOut(payload(w, at, OPEN_OUT_SIZE), 0, fh, openFlags);
  return okReply(w, unique, at + OPEN_OUT_SIZE);
}

/** fuse_open_out (OPEN, OPENDIR). */
export function openReply(w: Writer, unique: bigint, fh: bigint, openFlags: number): number {
  return openOut(w, unique, fh, openFlags, 0);
}

/** CREATE: fuse_entry_out then fuse_open_out. */
export function createReply(w: Writer, unique: bigint, e: Entry, fh: bigint, openFlags: number, cache: CachePolicy): number {
  room(w, ENTRY_OUT_SIZE + OPEN_OUT_SIZE);
  encodeEntryOut(w.buf, OUT_HEADER_SIZE, e.nodeid, e.generation, cache.entryTimeout, cache.attrTimeout, e.attr);
  return openOut(w, unique, fh, openFlags, ENTRY_OUT_SIZE);
}

/**
 * A reply whose payload is one fixed-size struct, written by its codec from src/abi/fuse.ts (a
 * module-level function: nothing is allocated per call but the view).
 */
function structReply<T>(
  w: Writer, unique: bigint, size: number, encode: (v: DataView, off: number, x: T) => void, x: T,
): number {
  room(w, size);
  encode(payload(w, 0, size), 0, x);
  return okReply(w, unique, size);
}

/** fuse_write_out (WRITE, COPY_FILE_RANGE). */
export function writeOutReply(w: Writer, unique: bigint, size: number): number {
  return structReply(w, unique, WRITE_OUT_SIZE, encodeWriteOut, size);
}

/** fuse_lseek_out. */
export function lseekReply(w: Writer, unique: bigint, offset: number): number {
  return structReply(w, unique, LSEEK_OUT_SIZE, encodeLseekOut, BigInt(offset));
}

/** fuse_getxattr_out: the size a GETXATTR/LISTXATTR value needs. */
export function xattrSizeReply(w: Writer, unique: bigint, size: number): number {
  return structReply(w, unique, GETXATTR_OUT_SIZE, encodeGetxattrOut, size);
}

/** fuse_init_out. */
export function initReply(w: Writer, unique: bigint, o: InitOut): number {
  return structReply(w, unique, INIT_OUT_SIZE, encodeInitOut, o);
}

/** Encodes fuse_dirent / fuse_direntplus records into the reply scratch (READDIR, READDIRPLUS). */
export class ReplyDirSink implements DirSink {
  used = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly base: number,
    private readonly limit: number,
    private readonly plus: boolean,
    private readonly cache: CachePolicy,
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
        encodeEntryOut(this.buf, p, entry.nodeid, entry.generation, this.cache.entryTimeout, this.cache.attrTimeout,
          entry.attr);
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
