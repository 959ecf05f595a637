/**
 * Request arguments the guest sends, checked: the one place a guest-supplied length, name, symlink
 * target, xattr name, offset or time is judged. Handlers decode the fixed structs with the codecs in
 * src/abi/fuse.ts after need() and pass what they get here through these checks; the FileSystem
 * receives only checked values. A refusal is thrown as a ReplyError with the errno Linux would give.
 */
import { FUSE_SECURITY_CTX2, IN_HEADER_SIZE, NAME_MAX, PATH_MAX, XATTR_NAME_MAX, decodeSecctx } from '../abi/fuse.js';
import { Errno } from '../errors.js';
import type { TimeSpec } from '../fs/filesystem.js';
import type { Req } from './handler.js';
import { ReplyError } from './reply.js';
import { SliceCache } from './views.js';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Does the payload hold at least n bytes of fixed arguments, all of the request in the head copy? */
export function has(q: Req, n: number): boolean {
  return q.len <= q.r.head.length && q.len - IN_HEADER_SIZE >= n;
}

/** The payload must hold at least n bytes of fixed arguments and fit in the head copy (else EINVAL). */
export function need(q: Req, n: number): void {
  if (!has(q, n)) throw new ReplyError(-Errno.EINVAL);
}

/**
 * The fixed n bytes of arguments only must be in the head copy (WRITE: its data stays in guest pages,
 * where the Reader reaches it). EINVAL otherwise.
 */
export function needFixed(q: Req, n: number): void {
  const end = IN_HEADER_SIZE + n;
  if (q.r.head.length < end || q.len < end) throw new ReplyError(-Errno.EINVAL);
}

/** Index of the NUL ending a string at `start`, searched before `stop`; -1 if none. */
function nulBefore(head: Uint8Array, start: number, stop: number): number {
  for (let i = start; i < stop; i++) {
    if (head[i] === 0) return i;
  }
  return -1;
}

/** End of the request's bytes in the head copy. */
function end(q: Req): number {
  return Math.min(q.len, q.r.head.length);
}

/** Names right after the in-header (LOOKUP, UNLINK, RMDIR, SYMLINK): one view per length, reused. */
const headNames = new SliceCache(IN_HEADER_SIZE, NAME_MAX);

/**
 * A NUL-terminated entry name at `start` inside [start, len) (after need()): non-empty, ≤ NAME_MAX,
 * no '/'. "." and ".." are refused (ENOENT for lookup, EINVAL otherwise): they would name the parent or
 * the node itself, and at the root ".." must never reach outside the share. Returns the name (a view of
 * the head copy, valid for the request only) and sets q.next to its end + 1.
 */
export function entryName(q: Req, start: number, forLookup = false): Uint8Array {
  const head = q.r.head;
  const nul = nulBefore(head, start, end(q));
  if (nul < 0) throw new ReplyError(-Errno.EINVAL);
  const len = nul - start;
  if (len === 0) throw new ReplyError(-Errno.EINVAL);
  if (len > NAME_MAX) throw new ReplyError(-Errno.ENAMETOOLONG);
  for (let i = start; i < nul; i++) if (head[i] === 0x2f) throw new ReplyError(-Errno.EINVAL);
  if (head[start] === 0x2e && (len === 1 || (len === 2 && head[start + 1] === 0x2e))) {
    throw new ReplyError(forLookup ? -Errno.ENOENT : -Errno.EINVAL);
  }
  q.next = nul + 1;
  return start === IN_HEADER_SIZE ? headNames.of(head, len) : head.subarray(start, nul);
}

/** A NUL-terminated symlink target at `start` (after need()): non-empty, < PATH_MAX. Sets q.next past its NUL. */
export function symlinkTarget(q: Req, start: number): Uint8Array {
  const nul = nulBefore(q.r.head, start, end(q));
  if (nul < 0 || nul === start) throw new ReplyError(-Errno.EINVAL);
  if (nul - start >= PATH_MAX) throw new ReplyError(-Errno.ENAMETOOLONG);
  q.next = nul + 1;
  return q.r.head.subarray(start, nul);
}

/**
 * The security context of a CREATE, MKDIR, MKNOD or SYMLINK (FUSE_SECURITY_CTX in `flags2`, the
 * session's), into q.ctx.secctx: null when the session has none or the request carries none (nr_secctx
 * 0: no LSM in the guest labels it). Linux 6.4 on (and 6.1.x stable) sends the block as the request's
 * first extension (src/fuse/server.ts found it); Linux 5.17 to 6.3 appended it after the names with no
 * total_extlen: then it is what follows `namesEnd`. A malformed block is EINVAL (decodeSecctx says
 * which); the name and value are views of the head copy, valid for the request only.
 */
export function securityContext(q: Req, flags2: number, namesEnd: number): void {
  const ctx = q.ctx;
  ctx.secctx = null;
  if ((flags2 & FUSE_SECURITY_CTX2) === 0) return;
  let start: number;
  let stop: number;
  if (q.totalExtlen !== 0) {
    start = q.secctx[0]!;
    stop = q.secctx[1]!;
    if (start < 0) return;
  } else {
    start = namesEnd;
    stop = end(q);
    if (start >= stop) return;
  }
  const p = q.secctxParts;
  const r = decodeSecctx(q.v, start, stop, p);
  if (r < 0) throw new ReplyError(-Errno.EINVAL);
  if (r === 0) return;
  const head = q.r.head;
  ctx.secctx = { name: head.subarray(p[0]!, p[1]!), value: head.subarray(p[2]!, p[3]!) };
}

/**
 * A NUL-terminated xattr name at `start` inside [start, len) (after need()): 1..XATTR_NAME_MAX bytes,
 * any but NUL ('/' included: it is not a path). Empty or longer is ERANGE, as setxattr(2) and its
 * siblings answer; a name without its NUL is EINVAL. Returns the name and sets q.next to its end + 1.
 */
export function xattrName(q: Req, start: number): Uint8Array {
  const e = end(q);
  const nul = nulBefore(q.r.head, start, Math.min(e, start + XATTR_NAME_MAX + 1));
  if (nul < 0) throw new ReplyError(e - start > XATTR_NAME_MAX ? -Errno.ERANGE : -Errno.EINVAL);
  if (nul === start) throw new ReplyError(-Errno.ERANGE);
  q.next = nul + 1;
  return q.r.head.subarray(start, nul);
}

/** A file offset or length as getOffset decoded it: EINVAL for -1 (beyond 2^53 - 1: no file is that large). */
export function offset(v: number): number {
  if (v < 0) throw new ReplyError(-Errno.EINVAL);
  return v;
}

/** A u64 file offset or length (a bigint, from a struct decoded whole) as a number: EINVAL beyond 2^53 - 1. */
export function offsetBig(v: bigint): number {
  if (v > MAX_SAFE) throw new ReplyError(-Errno.EINVAL);
  return Number(v);
}

/** A u64 fh decoded as a bigint (SETATTR's) as getId would give it: 0 (unknown) beyond 2^53 - 1. */
export function idBig(v: bigint): number {
  return v > MAX_SAFE ? 0 : Number(v);
}

/** A SETATTR time: 'now' with its *_NOW bit, else seconds (the u64 bits of a signed time) and nanoseconds. */
export function timeSpec(now: number, sec: bigint, nsec: number): TimeSpec {
  if (now) return 'now';
  if (nsec >= 1_000_000_000) throw new ReplyError(-Errno.EINVAL);
  // struct timespec is signed; the kernel sends the u64 bit pattern of a possibly negative time
  const s = BigInt.asIntN(64, sec);
  if (s > MAX_SAFE || s < -MAX_SAFE) throw new ReplyError(-Errno.EINVAL);
  return { sec: Number(s), nsec };
}
