/**
 * The FUSE wire protocol as Linux speaks it (include/uapi/linux/fuse.h, protocol 7.36 in Linux 6.1; the
 * request extensions of 7.38 and FUSE_CREATE_SUPP_GROUP of 7.39, Linux 6.4, are read when sent).
 * Everything is little endian (virtio-fs is little endian on every architecture: virtio 1.1 §5.11).
 * Struct sizes and field offsets are named after the C structs; encoders/decoders work on DataViews.
 * The server's side (decoders of requests, encoders of replies) allocates nothing per request: node ids,
 * fhs and offsets are numbers (see getId, getOffset), the in-header is decoded into a reused object, and
 * the reply's unique is the request's, copied as two u32 halves.
 *
 * Why one long file (over the ~400-line guide): it mirrors linux/fuse.h, itself a single header —
 * opcodes, flag bits, struct sizes, and one codec (its decode and encode functions) per struct. It is
 * the one place that knows a field's offset: the FUSE server (src/fuse/) reads and writes structs only
 * through these functions. A leaf module: it imports nothing.
 */

export const FUSE_KERNEL_VERSION = 7;
/** The minor we speak; we answer min(kernel minor, this). */
export const FUSE_KERNEL_MINOR_VERSION = 36;
/** Oldest minor we accept (7.27 is Linux 4.20's; virtio-fs itself needs 7.31). */
export const FUSE_MIN_MINOR_VERSION = 27;

export const FUSE_ROOT_ID = 1n;

export enum Opcode {
  Lookup = 1,
  Forget = 2,
  Getattr = 3,
  Setattr = 4,
  Readlink = 5,
  Symlink = 6,
  Mknod = 8,
  Mkdir = 9,
  Unlink = 10,
  Rmdir = 11,
  Rename = 12,
  Link = 13,
  Open = 14,
  Read = 15,
  Write = 16,
  Statfs = 17,
  Release = 18,
  Fsync = 20,
  Setxattr = 21,
  Getxattr = 22,
  Listxattr = 23,
  Removexattr = 24,
  Flush = 25,
  Init = 26,
  Opendir = 27,
  Readdir = 28,
  Releasedir = 29,
  Fsyncdir = 30,
  Getlk = 31,
  Setlk = 32,
  Setlkw = 33,
  Access = 34,
  Create = 35,
  Interrupt = 36,
  Bmap = 37,
  Destroy = 38,
  Ioctl = 39,
  Poll = 40,
  NotifyReply = 41,
  BatchForget = 42,
  Fallocate = 43,
  Readdirplus = 44,
  Rename2 = 45,
  Lseek = 46,
  CopyFileRange = 47,
  SetupMapping = 48,
  RemoveMapping = 49,
  Syncfs = 50,
  Tmpfile = 51,
  Statx = 52,
}

/**
 * An opcode's name as fuse.h spells it, lower case and without FUSE_ (`copy_file_range`), for labels
 * and reports; `unknown` for a number fuse.h does not define.
 */
export function opcodeName(op: number): string {
  const n = (Opcode as unknown as Record<number, string | undefined>)[op];
  return n === undefined ? 'unknown' : n.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

// ---- INIT flags (fuse_init_in.flags / fuse_init_out.flags; flags2 holds bits 32..63) ----
export const FUSE_ASYNC_READ = 1 << 0;
export const FUSE_POSIX_LOCKS = 1 << 1;
export const FUSE_FILE_OPS = 1 << 2;
export const FUSE_ATOMIC_O_TRUNC = 1 << 3;
export const FUSE_EXPORT_SUPPORT = 1 << 4;
export const FUSE_BIG_WRITES = 1 << 5;
export const FUSE_DONT_MASK = 1 << 6;
export const FUSE_SPLICE_WRITE = 1 << 7;
export const FUSE_SPLICE_MOVE = 1 << 8;
export const FUSE_SPLICE_READ = 1 << 9;
export const FUSE_FLOCK_LOCKS = 1 << 10;
export const FUSE_HAS_IOCTL_DIR = 1 << 11;
export const FUSE_AUTO_INVAL_DATA = 1 << 12;
export const FUSE_DO_READDIRPLUS = 1 << 13;
export const FUSE_READDIRPLUS_AUTO = 1 << 14;
export const FUSE_ASYNC_DIO = 1 << 15;
export const FUSE_WRITEBACK_CACHE = 1 << 16;
export const FUSE_NO_OPEN_SUPPORT = 1 << 17;
export const FUSE_PARALLEL_DIROPS = 1 << 18;
export const FUSE_HANDLE_KILLPRIV = 1 << 19;
export const FUSE_POSIX_ACL = 1 << 20;
export const FUSE_ABORT_ERROR = 1 << 21;
export const FUSE_MAX_PAGES = 1 << 22;
export const FUSE_CACHE_SYMLINKS = 1 << 23;
export const FUSE_NO_OPENDIR_SUPPORT = 1 << 24;
export const FUSE_EXPLICIT_INVAL_DATA = 1 << 25;
export const FUSE_MAP_ALIGNMENT = 1 << 26;
export const FUSE_SUBMOUNTS = 1 << 27;
export const FUSE_HANDLE_KILLPRIV_V2 = 1 << 28;
export const FUSE_SETXATTR_EXT = 1 << 29;
export const FUSE_INIT_EXT = 1 << 30;
/** Bit 31; `>>> 0` keeps it unsigned. */
export const FUSE_INIT_RESERVED = (1 << 31) >>> 0;
// flags2 (bit n of flags2 is bit 32+n of the 64-bit flag set)
export const FUSE_SECURITY_CTX2 = 1 << 0;
export const FUSE_HAS_INODE_DAX2 = 1 << 1;
/**
 * FUSE_CREATE_SUPP_GROUP (1ULL << 34, 7.39): the kernel may add a FUSE_EXT_GROUPS extension to CREATE,
 * MKDIR, MKNOD, SYMLINK and TMPFILE
 */
export const FUSE_CREATE_SUPP_GROUP2 = 1 << 2;
export const FUSE_HAS_EXPIRE_ONLY2 = 1 << 3;
/**
 * FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36, 7.39, Linux 6.6 — named FUSE_DIRECT_IO_RELAX there): the guest
 * may map files opened with FOPEN_DIRECT_IO shared (MAP_SHARED); without it such an mmap fails ENODEV
 */
export const FUSE_DIRECT_IO_ALLOW_MMAP2 = 1 << 4;

// ---- setattr valid bits ----
export const FATTR_MODE = 1 << 0;
export const FATTR_UID = 1 << 1;
export const FATTR_GID = 1 << 2;
export const FATTR_SIZE = 1 << 3;
export const FATTR_ATIME = 1 << 4;
export const FATTR_MTIME = 1 << 5;
export const FATTR_FH = 1 << 6;
export const FATTR_ATIME_NOW = 1 << 7;
export const FATTR_MTIME_NOW = 1 << 8;
export const FATTR_LOCKOWNER = 1 << 9;
export const FATTR_CTIME = 1 << 10;
export const FATTR_KILL_SUIDGID = 1 << 11;

// ---- open_out.open_flags ----
export const FOPEN_DIRECT_IO = 1 << 0;
export const FOPEN_KEEP_CACHE = 1 << 1;
export const FOPEN_NONSEEKABLE = 1 << 2;
export const FOPEN_CACHE_DIR = 1 << 3;
export const FOPEN_STREAM = 1 << 4;
export const FOPEN_NOFLUSH = 1 << 5;
export const FOPEN_PARALLEL_DIRECT_WRITES = 1 << 6;

// ---- misc flags ----
export const FUSE_GETATTR_FH = 1 << 0;
export const FUSE_RELEASE_FLUSH = 1 << 0;
export const FUSE_RELEASE_FLOCK_UNLOCK = 1 << 1;
export const FUSE_WRITE_CACHE = 1 << 0;
export const FUSE_WRITE_LOCKOWNER = 1 << 1;
export const FUSE_WRITE_KILL_SUIDGID = 1 << 2;
export const FUSE_READ_LOCKOWNER = 1 << 1;
export const FUSE_FSYNC_FDATASYNC = 1 << 0;
export const FUSE_OPEN_KILL_SUIDGID = 1 << 0;
export const RENAME_NOREPLACE = 1 << 0;
export const RENAME_EXCHANGE = 1 << 1;
export const RENAME_WHITEOUT = 1 << 2;

// ---- sizes ----
export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;
export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 128;
export const ATTR_OUT_SIZE = 104;
export const OPEN_OUT_SIZE = 16;
export const WRITE_OUT_SIZE = 8;
export const STATFS_OUT_SIZE = 80;
export const INIT_IN_SIZE_COMPAT = 16; // before 7.36's INIT_EXT
export const INIT_IN_SIZE = 64;
export const INIT_OUT_SIZE = 64;
export const FORGET_IN_SIZE = 8;
export const BATCH_FORGET_IN_SIZE = 8;
export const FORGET_ONE_SIZE = 16;
export const GETATTR_IN_SIZE = 16;
export const SETATTR_IN_SIZE = 88;
export const MKNOD_IN_SIZE = 16;
export const MKDIR_IN_SIZE = 8;
export const RENAME_IN_SIZE = 8;
export const RENAME2_IN_SIZE = 16;
export const LINK_IN_SIZE = 8;
export const OPEN_IN_SIZE = 8;
export const CREATE_IN_SIZE = 16;
export const RELEASE_IN_SIZE = 24;
export const FLUSH_IN_SIZE = 24;
export const READ_IN_SIZE = 40;
export const WRITE_IN_SIZE = 40;
export const FSYNC_IN_SIZE = 16;
export const ACCESS_IN_SIZE = 8;
export const FALLOCATE_IN_SIZE = 32;
export const LSEEK_IN_SIZE = 24;
export const LSEEK_OUT_SIZE = 8;
/** struct fuse_copy_file_range_in: fh_in, off_in, nodeid_out, fh_out, off_out, len, flags (u64 each) */
export const COPY_FILE_RANGE_IN_SIZE = 56;
export const DIRENT_NAME_OFFSET = 24; // FUSE_NAME_OFFSET
export const DIRENTPLUS_NAME_OFFSET = ENTRY_OUT_SIZE + DIRENT_NAME_OFFSET; // 152
export const NAME_MAX = 255;
export const PATH_MAX = 4096;
/** fuse_setxattr_in without FUSE_SETXATTR_EXT (which we never negotiate): {u32 size, u32 flags} */
export const SETXATTR_IN_SIZE = 8;
/** fuse_getxattr_in (GETXATTR, LISTXATTR): {u32 size, u32 padding} */
export const GETXATTR_IN_SIZE = 8;
/** fuse_getxattr_out, the reply to a size-0 GETXATTR/LISTXATTR: {u32 size, u32 padding} */
export const GETXATTR_OUT_SIZE = 8;
// linux/limits.h and linux/xattr.h
export const XATTR_NAME_MAX = 255;
export const XATTR_SIZE_MAX = 65536;
export const XATTR_LIST_MAX = 65536;
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

/** FUSE_DIRENT_ALIGN: records are padded to 8 bytes. */
export function direntAlign(n: number): number {
  return (n + 7) & ~7;
}
export function direntSize(nameLen: number): number {
  return direntAlign(DIRENT_NAME_OFFSET + nameLen);
}
export function direntplusSize(nameLen: number): number {
  return direntAlign(DIRENTPLUS_NAME_OFFSET + nameLen);
}

// ---- fuse_attr.flags ----
/** the directory is a mount point on the host: the guest mounts it separately (FUSE_SUBMOUNTS) */
export const FUSE_ATTR_SUBMOUNT = 1 << 0;

// ---- fuse_attr field offsets (also the layout native.statAt writes) ----
export const AttrOff = {
  ino: 0, size: 8, blocks: 16, atime: 24, mtime: 32, ctime: 40,
  atimensec: 48, mtimensec: 52, ctimensec: 56, mode: 60, nlink: 64, uid: 68, gid: 72, rdev: 76,
  blksize: 80, flags: 84,
  /** not part of fuse_attr: native.statAt appends st_dev here */
  dev: 88,
} as const;

// ---- headers ----
export interface InHeader {
  len: number;
  opcode: number;
  unique: bigint;
  nodeid: bigint;
  uid: number;
  gid: number;
  pid: number;
  totalExtlen: number;
}

/**
 * fuse_in_header.opcode straight from a request's first bytes (no object): for the worker, which
 * sizes the head copy by opcode before the server decodes the header. `head` holds ≥ IN_HEADER_SIZE.
 */
export function peekOpcode(head: Uint8Array): number {
  return peekU32(head, 4);
}

/** A little-endian u32 at `off` of a request's bytes (no DataView); `head` holds ≥ off + 4 bytes. */
export function peekU32(head: Uint8Array, off: number): number {
  return (head[off]! | (head[off + 1]! << 8) | (head[off + 2]! << 16) | (head[off + 3]! << 24)) >>> 0;
}

// ---- u64 fields as numbers (no BigInt) ----
const TWO_32 = 0x1_0000_0000;
/** High words below this make a u64 below 2^53: exact as a number. */
const HI_LIMIT = 0x20_0000;

/**
 * A u64 node id or fh as a number: exact below 2^53 (every id the tables hand out is: assembly/slots.ts),
 * 0 for anything larger. 0 is no table's id, so such an id is simply unknown (ESTALE/EBADF) — checked
 * here, at the boundary, before a conversion could round it onto a real one.
 */
export function getId(v: DataView, off: number): number {
  const hi = v.getUint32(off + 4, true);
  return hi < HI_LIMIT ? hi * TWO_32 + v.getUint32(off, true) : 0;
}

/** A u64 file offset or length as a number; -1 beyond 2^53 - 1 (no file is that large: the caller refuses it). */
export function getOffset(v: DataView, off: number): number {
  const hi = v.getUint32(off + 4, true);
  return hi < HI_LIMIT ? hi * TWO_32 + v.getUint32(off, true) : -1;
}

/** A u64 count (FORGET's nlookup) as a number, saturated at 2^53 (more than any lookup count). */
export function getCount(v: DataView, off: number): number {
  const hi = v.getUint32(off + 4, true);
  return hi < HI_LIMIT ? hi * TWO_32 + v.getUint32(off, true) : HI_LIMIT * TWO_32;
}

/** A non-negative integer n < 2^64 as a u64. */
export function setU64(v: DataView, off: number, n: number): void {
  v.setUint32(off, n >>> 0, true);
  v.setUint32(off + 4, Math.floor(n / TWO_32) >>> 0, true);
}

/**
 * fuse_in_header as the server decodes it, into one object it reuses for every request: the node id as
 * a number (getId), the unique as its two u32 halves (the reply carries them back unchanged).
 */
export interface InHeaderFields {
  len: number;
  opcode: number;
  uniqueLo: number;
  uniqueHi: number;
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
  totalExtlen: number;
}

export function decodeInHeaderInto(v: DataView, off: number, h: InHeaderFields): void {
  h.len = v.getUint32(off, true);
  h.opcode = v.getUint32(off + 4, true);
  h.uniqueLo = v.getUint32(off + 8, true);
  h.uniqueHi = v.getUint32(off + 12, true);
  h.nodeid = getId(v, off + 16);
  h.uid = v.getUint32(off + 24, true);
  h.gid = v.getUint32(off + 28, true);
  h.pid = v.getUint32(off + 32, true);
  h.totalExtlen = v.getUint16(off + 36, true);
}

/** fuse_out_header with the unique as the request's two u32 halves. */
export function encodeOutHeaderParts(v: DataView, off: number, len: number, error: number, uniqueLo: number,
  uniqueHi: number): void {
  v.setUint32(off, len, true);
  v.setInt32(off + 4, error, true);
  v.setUint32(off + 8, uniqueLo, true);
  v.setUint32(off + 12, uniqueHi, true);
}

export function decodeInHeader(v: DataView, off = 0): InHeader {
  return {
    len: v.getUint32(off, true),
    opcode: v.getUint32(off + 4, true),
    unique: v.getBigUint64(off + 8, true),
    nodeid: v.getBigUint64(off + 16, true),
    uid: v.getUint32(off + 24, true),
    gid: v.getUint32(off + 28, true),
    pid: v.getUint32(off + 32, true),
    totalExtlen: v.getUint16(off + 36, true),
  };
}

export function encodeInHeader(v: DataView, off: number, h: InHeader): void {
  v.setUint32(off, h.len, true);
  v.setUint32(off + 4, h.opcode, true);
  v.setBigUint64(off + 8, h.unique, true);
  v.setBigUint64(off + 16, h.nodeid, true);
  v.setUint32(off + 24, h.uid, true);
  v.setUint32(off + 28, h.gid, true);
  v.setUint32(off + 32, h.pid, true);
  v.setUint16(off + 36, h.totalExtlen, true);
  v.setUint16(off + 38, 0, true);
}

export interface OutHeader {
  len: number;
  error: number;
  unique: bigint;
}

export function encodeOutHeader(v: DataView, off: number, len: number, error: number, unique: bigint): void {
  v.setUint32(off, len, true);
  v.setInt32(off + 4, error, true);
  v.setBigUint64(off + 8, unique, true);
}

export function decodeOutHeader(v: DataView, off = 0): OutHeader {
  return { len: v.getUint32(off, true), error: v.getInt32(off + 4, true), unique: v.getBigUint64(off + 8, true) };
}

// ---- request extensions (7.38) ----
/**
 * fuse_ext_header.type of a struct fuse_supp_groups record (7.39). Types 0..31 are a
 * fuse_secctx_header's nr_secctx (FUSE_MAX_NR_SECCTX): the security contexts (FUSE_SECURITY_CTX).
 */
export const FUSE_EXT_GROUPS = 32;
/** The largest fuse_secctx_header.nr_secctx: extension types up to it are a security context block. */
export const FUSE_MAX_NR_SECCTX = 31;
/** struct fuse_secctx_header: {u32 size (of the whole block, header included), u32 nr_secctx} */
export const SECCTX_HEADER_SIZE = 8;
/** struct fuse_secctx: {u32 size (of the context value), u32 padding}, then the name (NUL ended), the value */
export const SECCTX_SIZE = 8;
/** struct fuse_ext_header: {u32 size (of the whole record, header included), u32 type} */
export const EXT_HEADER_SIZE = 8;
/** struct fuse_supp_groups: {u32 nr_groups, u32 groups[nr_groups]} */
const SUPP_GROUPS_FIXED = 4;

/**
 * The extensions of a request: fuse_in_header.total_extlen 8-byte units at its end, [start, end) of
 * `v`, a sequence of records, each a fuse_ext_header and its body, the header's size a multiple of 8
 * (FUSE_REC_ALIGN). The gids of the FUSE_EXT_GROUPS record go to `groups`; where a security context
 * block (a type ≤ FUSE_MAX_NR_SECCTX: fuse_secctx_header) lies goes to `secctx` ([0] its offset, [1] its
 * end; -1 -1 without one; decodeSecctx reads it); other records are skipped. Returns how many gids, or -1
 * when the records do not tile [start, end) exactly, a groups record is shorter than its nr_groups says,
 * a groups record or a security context block comes twice, or the gids do not fit in `groups`.
 */
export function decodeExtGroups(v: DataView, start: number, end: number, groups: Uint32Array,
  secctx?: Int32Array): number {
  let n = 0;
  let seen = false;
  let ctxAt = -1;
  let ctxEnd = -1;
  for (let p = start; p < end;) {
    if (end - p < EXT_HEADER_SIZE) return -1;
    const size = v.getUint32(p, true);
    if (size < EXT_HEADER_SIZE || size % 8 !== 0 || size > end - p) return -1;
    const type = v.getUint32(p + 4, true);
    if (type <= FUSE_MAX_NR_SECCTX) {
      if (ctxAt >= 0) return -1;
      ctxAt = p;
      ctxEnd = p + size;
    } else if (type === FUSE_EXT_GROUPS) {
      if (seen || size < EXT_HEADER_SIZE + SUPP_GROUPS_FIXED) return -1;
      seen = true;
      const nr = v.getUint32(p + EXT_HEADER_SIZE, true);
      if (nr > (size - EXT_HEADER_SIZE - SUPP_GROUPS_FIXED) / 4 || nr > groups.length) return -1;
      const g = p + EXT_HEADER_SIZE + SUPP_GROUPS_FIXED;
      for (let i = 0; i < nr; i++) groups[i] = v.getUint32(g + 4 * i, true);
      n = nr;
    }
    p += size;
  }
  if (secctx !== undefined) {
    secctx[0] = ctxAt;
    secctx[1] = ctxEnd;
  }
  return n;
}

/**
 * A security context block (FUSE_SECURITY_CTX) at [start, end) of `v`: a fuse_secctx_header whose size
 * is the whole block, then nr_secctx contexts, each a fuse_secctx, the xattr name with its NUL and the
 * value (fuse_secctx.size bytes), zero padded to 8 bytes (FUSE_REC_ALIGN). Linux sends at most one
 * context (none when no LSM labels the file), as virtiofsd reads it. `out` gets the name's [start, end)
 * (without the NUL) and the value's: out[0..3]. Returns 1 (a context), 0 (none), or -1: malformed (a
 * size that disagrees with the block, more than one context, an empty or overlong name or value, a name
 * without its NUL, a value reaching past the block, more than alignment padding after it).
 */
export function decodeSecctx(v: DataView, start: number, end: number, out: Int32Array): number {
  if (end - start < SECCTX_HEADER_SIZE || v.getUint32(start, true) !== end - start) return -1;
  const nr = v.getUint32(start + 4, true);
  if (nr === 0) return 0;
  if (nr !== 1) return -1;
  const c = start + SECCTX_HEADER_SIZE;
  if (end - c < SECCTX_SIZE) return -1;
  const size = v.getUint32(c, true);
  if (size === 0 || size > XATTR_SIZE_MAX) return -1;
  const name = c + SECCTX_SIZE;
  let nul = name;
  const stop = Math.min(end, name + XATTR_NAME_MAX + 1);
  while (nul < stop && v.getUint8(nul) !== 0) nul++;
  if (nul === stop || nul === name) return -1;
  const value = nul + 1;
  if (size > end - value || end - (value + size) >= 8) return -1;
  out[0] = name;
  out[1] = nul;
  out[2] = value;
  out[3] = value + size;
  return 1;
}

/**
 * A security context block holding one context (`name` = `value`), or none (`name` null), as Linux
 * sends it: for clients and tests.
 */
export function encodeSecctx(name: Uint8Array | null, value: Uint8Array = new Uint8Array(0)): Uint8Array {
  const body = name === null ? 0 : Math.ceil((SECCTX_SIZE + name.length + 1 + value.length) / 8) * 8;
  const out = new Uint8Array(SECCTX_HEADER_SIZE + body);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setUint32(4, name === null ? 0 : 1, true);
  if (name !== null) {
    v.setUint32(SECCTX_HEADER_SIZE, value.length, true);
    out.set(name, SECCTX_HEADER_SIZE + SECCTX_SIZE);
    out.set(value, SECCTX_HEADER_SIZE + SECCTX_SIZE + name.length + 1);
  }
  return out;
}

/** A FUSE_EXT_GROUPS record holding `gids` (zero padded to 8 bytes), for clients and tests. */
export function encodeExtGroups(gids: readonly number[]): Uint8Array {
  const size = Math.ceil((EXT_HEADER_SIZE + SUPP_GROUPS_FIXED + 4 * gids.length) / 8) * 8;
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, size, true);
  v.setUint32(4, FUSE_EXT_GROUPS, true);
  v.setUint32(EXT_HEADER_SIZE, gids.length, true);
  const g = EXT_HEADER_SIZE + SUPP_GROUPS_FIXED;
  for (let i = 0; i < gids.length; i++) v.setUint32(g + 4 * i, gids[i]! >>> 0, true);
  return out;
}

// ---- INIT ----
export interface InitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  flags2: number;
}

/** `len` is the payload size: 16 bytes before 7.36, 64 with INIT_EXT. */
export function decodeInitIn(v: DataView, off: number, len: number): InitIn {
  const flags = v.getUint32(off + 12, true);
  return {
    major: v.getUint32(off, true),
    minor: v.getUint32(off + 4, true),
    maxReadahead: v.getUint32(off + 8, true),
    flags,
    flags2: len >= 20 && (flags & FUSE_INIT_EXT) !== 0 ? v.getUint32(off + 16, true) : 0,
  };
}

export function encodeInitIn(v: DataView, off: number, i: InitIn): void {
  v.setUint32(off, i.major, true);
  v.setUint32(off + 4, i.minor, true);
  v.setUint32(off + 8, i.maxReadahead, true);
  v.setUint32(off + 12, i.flags >>> 0, true);
  v.setUint32(off + 16, i.flags2 >>> 0, true);
  for (let o = 20; o < INIT_IN_SIZE; o += 4) v.setUint32(off + o, 0, true);
}

export interface InitOut {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  timeGran: number;
  maxPages: number;
  mapAlignment: number;
  flags2: number;
}

export function encodeInitOut(v: DataView, off: number, o: InitOut): void {
  v.setUint32(off, o.major, true);
  v.setUint32(off + 4, o.minor, true);
  v.setUint32(off + 8, o.maxReadahead, true);
  v.setUint32(off + 12, o.flags >>> 0, true);
  v.setUint16(off + 16, o.maxBackground, true);
  v.setUint16(off + 18, o.congestionThreshold, true);
  v.setUint32(off + 20, o.maxWrite, true);
  v.setUint32(off + 24, o.timeGran, true);
  v.setUint16(off + 28, o.maxPages, true);
  v.setUint16(off + 30, o.mapAlignment, true);
  v.setUint32(off + 32, o.flags2 >>> 0, true);
  for (let i = 36; i < INIT_OUT_SIZE; i += 4) v.setUint32(off + i, 0, true);
}

export function decodeInitOut(v: DataView, off: number): InitOut {
  return {
    major: v.getUint32(off, true),
    minor: v.getUint32(off + 4, true),
    maxReadahead: v.getUint32(off + 8, true),
    flags: v.getUint32(off + 12, true),
    maxBackground: v.getUint16(off + 16, true),
    congestionThreshold: v.getUint16(off + 18, true),
    maxWrite: v.getUint32(off + 20, true),
    timeGran: v.getUint32(off + 24, true),
    maxPages: v.getUint16(off + 28, true),
    mapAlignment: v.getUint16(off + 30, true),
    flags2: v.getUint32(off + 32, true),
  };
}

// ---- attr / entry ----
// The encoders take the destination both as bytes and as a DataView `v` over the same memory
// (v.byteOffset === dst.byteOffset), so that the caller's cached view serves: no view per reply.

/** Copies an 88-byte fuse_attr (e.g. native.statAt output) into `dst` at `off` (a memcpy; no view is
 *  made when `attr` is exactly ATTR_SIZE long). */
export function copyAttr(dst: Uint8Array, off: number, attr: Uint8Array): void {
  dst.set(attr.length === ATTR_SIZE ? attr : attr.subarray(0, ATTR_SIZE), off);
}

/** A validity of `t` seconds (finite, ≥ 0; fractions allowed): u64 seconds at secOff, u32 nanoseconds at nsecOff. */
function setValidity(v: DataView, secOff: number, nsecOff: number, t: number): void {
  const sec = Math.floor(t);
  setU64(v, secOff, sec);
  v.setUint32(nsecOff, Math.min(999_999_999, Math.round((t - sec) * 1e9)), true);
}

/** fuse_entry_out at `off`; node id and generation are numbers below 2^53. */
export function encodeEntryOut(
  dst: Uint8Array, v: DataView, off: number, nodeid: number, generation: number,
  entryValid: number, attrValid: number, attr: Uint8Array | null,
): void {
  setU64(v, off, nodeid);
  setU64(v, off + 8, generation);
  setValidity(v, off + 16, off + 32, entryValid);
  setValidity(v, off + 24, off + 36, attrValid);
  if (attr) copyAttr(dst, off + 40, attr);
  else dst.fill(0, off + 40, off + ENTRY_OUT_SIZE);
}

export function encodeAttrOut(dst: Uint8Array, v: DataView, off: number, attrValid: number, attr: Uint8Array): void {
  setValidity(v, off, off + 8, attrValid);
  v.setUint32(off + 12, 0, true);
  copyAttr(dst, off + 16, attr);
}

export interface Attr {
  ino: bigint; size: bigint; blocks: bigint; atime: bigint; mtime: bigint; ctime: bigint;
  atimensec: number; mtimensec: number; ctimensec: number; mode: number; nlink: number;
  uid: number; gid: number; rdev: number; blksize: number; flags: number;
}

export function decodeAttr(v: DataView, off: number): Attr {
  return {
    ino: v.getBigUint64(off, true), size: v.getBigUint64(off + 8, true), blocks: v.getBigUint64(off + 16, true),
    atime: v.getBigUint64(off + 24, true), mtime: v.getBigUint64(off + 32, true), ctime: v.getBigUint64(off + 40, true),
    atimensec: v.getUint32(off + 48, true), mtimensec: v.getUint32(off + 52, true), ctimensec: v.getUint32(off + 56, true),
    mode: v.getUint32(off + 60, true), nlink: v.getUint32(off + 64, true), uid: v.getUint32(off + 68, true),
    gid: v.getUint32(off + 72, true), rdev: v.getUint32(off + 76, true), blksize: v.getUint32(off + 80, true),
    flags: v.getUint32(off + 84, true),
  };
}

export interface EntryOut {
  nodeid: bigint; generation: bigint; entryValid: bigint; attrValid: bigint; attr: Attr;
}

export function decodeEntryOut(v: DataView, off: number): EntryOut {
  return {
    nodeid: v.getBigUint64(off, true), generation: v.getBigUint64(off + 8, true),
    entryValid: v.getBigUint64(off + 16, true), attrValid: v.getBigUint64(off + 24, true),
    attr: decodeAttr(v, off + 40),
  };
}

export function decodeAttrOut(v: DataView, off: number): { attrValid: bigint; attr: Attr } {
  return { attrValid: v.getBigUint64(off, true), attr: decodeAttr(v, off + 16) };
}

// ---- small requests ----
export interface SetattrIn {
  valid: number; fh: bigint; size: bigint; lockOwner: bigint;
  atime: bigint; mtime: bigint; ctime: bigint; atimensec: number; mtimensec: number; ctimensec: number;
  mode: number; uid: number; gid: number;
}

export function decodeSetattrIn(v: DataView, off: number): SetattrIn {
  return {
    valid: v.getUint32(off, true), fh: v.getBigUint64(off + 8, true), size: v.getBigUint64(off + 16, true),
    lockOwner: v.getBigUint64(off + 24, true), atime: v.getBigUint64(off + 32, true),
    mtime: v.getBigUint64(off + 40, true), ctime: v.getBigUint64(off + 48, true),
    atimensec: v.getUint32(off + 56, true), mtimensec: v.getUint32(off + 60, true),
    ctimensec: v.getUint32(off + 64, true), mode: v.getUint32(off + 68, true),
    uid: v.getUint32(off + 76, true), gid: v.getUint32(off + 80, true),
  };
}

export function encodeSetattrIn(v: DataView, off: number, s: SetattrIn): void {
  new Uint8Array(v.buffer, v.byteOffset + off, SETATTR_IN_SIZE).fill(0);
  v.setUint32(off, s.valid, true); v.setBigUint64(off + 8, s.fh, true); v.setBigUint64(off + 16, s.size, true);
  v.setBigUint64(off + 24, s.lockOwner, true); v.setBigUint64(off + 32, s.atime, true);
  v.setBigUint64(off + 40, s.mtime, true); v.setBigUint64(off + 48, s.ctime, true);
  v.setUint32(off + 56, s.atimensec, true); v.setUint32(off + 60, s.mtimensec, true);
  v.setUint32(off + 64, s.ctimensec, true); v.setUint32(off + 68, s.mode, true);
  v.setUint32(off + 76, s.uid, true); v.setUint32(off + 80, s.gid, true);
}

export interface ReadIn { fh: bigint; offset: bigint; size: number; readFlags: number; lockOwner: bigint; flags: number }
export function decodeReadIn(v: DataView, off: number): ReadIn {
  return {
    fh: v.getBigUint64(off, true), offset: v.getBigUint64(off + 8, true), size: v.getUint32(off + 16, true),
    readFlags: v.getUint32(off + 20, true), lockOwner: v.getBigUint64(off + 24, true), flags: v.getUint32(off + 32, true),
  };
}
export function encodeReadIn(v: DataView, off: number, r: ReadIn): void {
  v.setBigUint64(off, r.fh, true); v.setBigUint64(off + 8, r.offset, true); v.setUint32(off + 16, r.size, true);
  v.setUint32(off + 20, r.readFlags, true); v.setBigUint64(off + 24, r.lockOwner, true);
  v.setUint32(off + 32, r.flags, true); v.setUint32(off + 36, 0, true);
}
/**
 * fuse_read_in / fuse_write_in as the server decodes it, into a reused object: fh as getId, offset as
 * getOffset (-1 beyond 2^53 - 1), read_flags/write_flags as ioFlags.
 */
export interface IoIn { fh: number; offset: number; size: number; ioFlags: number }
export function decodeIoInto(v: DataView, off: number, o: IoIn): void {
  o.fh = getId(v, off);
  o.offset = getOffset(v, off + 8);
  o.size = v.getUint32(off + 16, true);
  o.ioFlags = v.getUint32(off + 20, true);
}
/** fuse_write_in has the same layout as fuse_read_in (write_flags where read_flags is). */
export const decodeWriteIn = decodeReadIn;
export const encodeWriteIn = encodeReadIn;

/** fuse_setxattr_in (8-byte form) / fuse_getxattr_in: the guest's numbers, unchecked. */
export interface XattrIn { size: number; flags: number }
export function decodeSetxattrIn(v: DataView, off: number): XattrIn {
  return { size: v.getUint32(off, true), flags: v.getUint32(off + 4, true) };
}
/** fuse_getxattr_in: flags is the padding word (0). */
export function decodeGetxattrIn(v: DataView, off: number): XattrIn {
  return { size: v.getUint32(off, true), flags: 0 };
}
export function encodeXattrIn(v: DataView, off: number, size: number, flags = 0): void {
  v.setUint32(off, size >>> 0, true);
  v.setUint32(off + 4, flags >>> 0, true);
}
/** fuse_getxattr_out */
export function encodeGetxattrOut(v: DataView, off: number, size: number): void {
  v.setUint32(off, size >>> 0, true);
  v.setUint32(off + 4, 0, true);
}

// ---- the other request arguments (decoded as the guest sent them: the server checks them) ----
/** fuse_forget_in (FORGET): {u64 nlookup}, as getCount */
export function decodeForgetIn(v: DataView, off: number): number {
  return getCount(v, off);
}

/** fuse_batch_forget_in: {u32 count, u32 dummy}, then `count` fuse_forget_one records */
export function decodeBatchForgetIn(v: DataView, off: number): number {
  return v.getUint32(off, true);
}

/** fuse_forget_one: {u64 nodeid, u64 nlookup}: its node id (getId) */
export function decodeForgetOneNodeid(v: DataView, off: number): number {
  return getId(v, off);
}
/** fuse_forget_one's nlookup (getCount) */
export function decodeForgetOneNlookup(v: DataView, off: number): number {
  return getCount(v, off + 8);
}

/** fuse_getattr_in: {u32 getattr_flags, u32 dummy, u64 fh}; fh counts only with FUSE_GETATTR_FH */
export function decodeGetattrInFlags(v: DataView, off: number): number {
  return v.getUint32(off, true);
}
/** fuse_getattr_in.fh (getId) */
export function decodeGetattrInFh(v: DataView, off: number): number {
  return getId(v, off + 8);
}

/** fuse_mknod_in: {u32 mode, u32 rdev, u32 umask, u32 padding}; the name follows */
export interface MknodIn { mode: number; rdev: number; umask: number }
export function decodeMknodIn(v: DataView, off: number): MknodIn {
  return { mode: v.getUint32(off, true), rdev: v.getUint32(off + 4, true), umask: v.getUint32(off + 8, true) };
}

/** fuse_mkdir_in: {u32 mode, u32 umask}; the name follows */
export interface MkdirIn { mode: number; umask: number }
export function decodeMkdirIn(v: DataView, off: number): MkdirIn {
  return { mode: v.getUint32(off, true), umask: v.getUint32(off + 4, true) };
}

/** fuse_rename_in {u64 newdir} (flags 0) and fuse_rename2_in {u64 newdir, u32 flags, u32 padding} */
export interface RenameIn { newdir: number; flags: number }
export function decodeRenameIn(v: DataView, off: number): RenameIn {
  return { newdir: getId(v, off), flags: 0 };
}
export function decodeRename2In(v: DataView, off: number): RenameIn {
  return { newdir: getId(v, off), flags: v.getUint32(off + 8, true) };
}

/** fuse_link_in: {u64 oldnodeid}; the new name follows */
export function decodeLinkIn(v: DataView, off: number): number {
  return getId(v, off);
}

/** fuse_open_in (OPEN, OPENDIR): {u32 flags, u32 open_flags} (FUSE_OPEN_KILL_SUIDGID): its flags */
export function decodeOpenInFlags(v: DataView, off: number): number {
  return v.getUint32(off, true);
}
/** fuse_open_in.open_flags (FUSE_OPEN_KILL_SUIDGID) */
export function decodeOpenInOpenFlags(v: DataView, off: number): number {
  return v.getUint32(off + 4, true);
}

/** fuse_create_in: {u32 flags, u32 mode, u32 umask, u32 open_flags}; the name follows */
export interface CreateIn { flags: number; mode: number; umask: number; openFlags: number }
export function decodeCreateIn(v: DataView, off: number): CreateIn {
  return {
    flags: v.getUint32(off, true), mode: v.getUint32(off + 4, true), umask: v.getUint32(off + 8, true),
    openFlags: v.getUint32(off + 12, true),
  };
}

/**
 * fuse_release_in (RELEASE, RELEASEDIR): {u64 fh, u32 flags, u32 release_flags, u64 lock_owner}, into a
 * reused object (lock_owner is not used: POSIX locks are not served).
 */
export interface ReleaseIn { fh: number; flags: number; releaseFlags: number }
export function decodeReleaseInto(v: DataView, off: number, r: ReleaseIn): void {
  r.fh = getId(v, off);
  r.flags = v.getUint32(off + 8, true);
  r.releaseFlags = v.getUint32(off + 12, true);
}

/** fuse_flush_in: {u64 fh, u32 unused, u32 padding, u64 lock_owner}: its fh (getId) */
export function decodeFlushInFh(v: DataView, off: number): number {
  return getId(v, off);
}

/** fuse_fsync_in (FSYNC, FSYNCDIR): {u64 fh, u32 fsync_flags, u32 padding} */
export interface FsyncIn { fh: number; fsyncFlags: number }
export function decodeFsyncIn(v: DataView, off: number): FsyncIn {
  return { fh: getId(v, off), fsyncFlags: v.getUint32(off + 8, true) };
}

/** fuse_access_in: {u32 mask, u32 padding} */
export function decodeAccessIn(v: DataView, off: number): number {
  return v.getUint32(off, true);
}

/** fuse_fallocate_in: {u64 fh, u64 offset, u64 length, u32 mode, u32 padding} */
/** fuse_fallocate_in: offsets as getOffset (-1: beyond 2^53 - 1) */
export interface FallocateIn { fh: number; offset: number; length: number; mode: number }
export function decodeFallocateIn(v: DataView, off: number): FallocateIn {
  return { fh: getId(v, off), offset: getOffset(v, off + 8), length: getOffset(v, off + 16), mode: v.getUint32(off + 24, true) };
}

/** fuse_lseek_in: {u64 fh, u64 offset, u32 whence, u32 padding}; offset as getOffset */
export interface LseekIn { fh: number; offset: number; whence: number }
export function decodeLseekIn(v: DataView, off: number): LseekIn {
  return { fh: getId(v, off), offset: getOffset(v, off + 8), whence: v.getUint32(off + 16, true) };
}

/** fuse_copy_file_range_in: fh_in, off_in, nodeid_out, fh_out, off_out, len, flags (u64 each); ids as
 *  getId, offsets as getOffset, len as getCount, flags only whether any is set */
export interface CopyFileRangeIn {
  fhIn: number; offIn: number; nodeidOut: number; fhOut: number; offOut: number; len: number; flags: boolean;
}
export function decodeCopyFileRangeIn(v: DataView, off: number): CopyFileRangeIn {
  return {
    fhIn: getId(v, off), offIn: getOffset(v, off + 8), nodeidOut: getId(v, off + 16), fhOut: getId(v, off + 24),
    offOut: getOffset(v, off + 32), len: getCount(v, off + 40),
    flags: (v.getUint32(off + 48, true) | v.getUint32(off + 52, true)) !== 0,
  };
}

// ---- the other replies ----
/** fuse_open_out (OPEN, OPENDIR, and CREATE after its fuse_entry_out): {u64 fh, u32 open_flags, u32 padding} */
export function encodeOpenOut(v: DataView, off: number, fh: number, openFlags: number): void {
  setU64(v, off, fh);
  v.setUint32(off + 8, openFlags >>> 0, true);
  v.setUint32(off + 12, 0, true);
}
export function decodeOpenOut(v: DataView, off: number): { fh: bigint; openFlags: number } {
  return { fh: v.getBigUint64(off, true), openFlags: v.getUint32(off + 8, true) };
}

/** fuse_write_out (WRITE, COPY_FILE_RANGE): {u32 size, u32 padding} */
export function encodeWriteOut(v: DataView, off: number, size: number): void {
  v.setUint32(off, size >>> 0, true);
  v.setUint32(off + 4, 0, true);
}
export function decodeWriteOut(v: DataView, off: number): number {
  return v.getUint32(off, true);
}

/** fuse_lseek_out: {u64 offset} */
export function encodeLseekOut(v: DataView, off: number, offset: number): void {
  setU64(v, off, offset);
}
export function decodeLseekOut(v: DataView, off: number): bigint {
  return v.getBigUint64(off, true);
}

export interface DirentOut { ino: bigint; off: bigint; type: number; name: Uint8Array }

/** Writes a fuse_dirent (zero padded) at `off`; returns its padded size. */
export function encodeDirent(dst: Uint8Array, v: DataView, off: number, ino: bigint, next: bigint, type: number,
  name: Uint8Array): number {
  const size = direntSize(name.length);
  v.setBigUint64(off, ino, true);
  v.setBigUint64(off + 8, next, true);
  v.setUint32(off + 16, name.length, true);
  v.setUint32(off + 20, type, true);
  dst.set(name, off + DIRENT_NAME_OFFSET);
  dst.fill(0, off + DIRENT_NAME_OFFSET + name.length, off + size);
  return size;
}

/** Decodes a fuse_dirent stream (READDIR) or a fuse_direntplus stream (READDIRPLUS). */
export function decodeDirents(buf: Uint8Array, plus: boolean): Array<DirentOut & { entry?: EntryOut }> {
  const out: Array<DirentOut & { entry?: EntryOut }> = [];
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let p = 0;
  const base = plus ? ENTRY_OUT_SIZE : 0;
  while (p + base + DIRENT_NAME_OFFSET <= buf.length) {
    const d = p + base;
    const namelen = v.getUint32(d + 16, true);
    const rec: DirentOut & { entry?: EntryOut } = {
      ino: v.getBigUint64(d, true), off: v.getBigUint64(d + 8, true), type: v.getUint32(d + 20, true),
      name: buf.slice(d + DIRENT_NAME_OFFSET, d + DIRENT_NAME_OFFSET + namelen),
    };
    if (plus) rec.entry = decodeEntryOut(v, p);
    out.push(rec);
    p += plus ? direntplusSize(namelen) : direntSize(namelen);
  }
  return out;
}
