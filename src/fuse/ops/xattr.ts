/**
 * Extended attributes: SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR — served only with --xattr (-o xattr);
 * otherwise ENOSYS, and the guest kernel stops sending them (its callers then see EOPNOTSUPP). Which
 * names the guest may use is the file system's policy (src/fs/xattrmap.ts); this layer checks the wire.
 */
import {
  AttrOff, FUSE_POSIX_ACL, FUSE_SETXATTR_EXT, GETXATTR_IN_SIZE, IN_HEADER_SIZE, OUT_HEADER_SIZE, SETXATTR_IN_SIZE, XATTR_CREATE,
  XATTR_LIST_MAX, XATTR_REPLACE, XATTR_SIZE_MAX, decodeGetxattrIn, decodeSetxattrIn,
} from '../../abi/fuse.js';
import { S_ISGID } from '../../abi/stat.js';
import { Errno } from '../../errors.js';
import { POSIX_ACL_ACCESS, equalAt, isPosixAclName } from '../../fs/xattrmap.js';
import { need, xattrName } from '../args.js';
import type { Handler, Req, Served } from '../handler.js';
import { ReplyError, errorReply, nosys, okReply, statusReply, xattrSizeReply } from '../reply.js';

const P = IN_HEADER_SIZE;
/** `out` for a size-only GETXATTR/LISTXATTR */
const NO_BYTES = new Uint8Array(0);

/** fuse_setxattr_in with FUSE_SETXATTR_EXT (fuse.h 7.33): {u32 size, u32 flags, u32 setxattr_flags, u32 padding} */
const SETXATTR_IN_EXT_SIZE = 16;
/** setxattr_flags: the caller may not keep the file's set-group-ID bit (fuse.h 7.33) */
const FUSE_SETXATTR_ACL_KILL_SGID = 1 << 0;

export const setxattr: Handler = (s, q) => {
  if (!s.xattr) return errorReply(q, -Errno.ENOSYS);
  // the longer struct on every SETXATTR once FUSE_SETXATTR_EXT is negotiated (--posix-acl only)
  const ext = (s.session.flags & FUSE_SETXATTR_EXT) !== 0;
  const inSize = ext ? SETXATTR_IN_EXT_SIZE : SETXATTR_IN_SIZE;
  need(q, inSize);
  const x = decodeSetxattrIn(q.v, P);
  if ((x.flags & ~(XATTR_CREATE | XATTR_REPLACE)) !== 0) throw new ReplyError(-Errno.EINVAL);
  const setxattrFlags = ext ? q.v.getUint32(P + 8, true) : 0;
  if ((setxattrFlags & ~FUSE_SETXATTR_ACL_KILL_SGID) !== 0) throw new ReplyError(-Errno.EINVAL);
  const name = xattrName(q, P + inSize);
  const next = q.next;
  if (x.size > XATTR_SIZE_MAX) throw new ReplyError(-Errno.E2BIG);
  // the value is the `size` bytes after the name: all of them must be in the request
  if (x.size > q.len - next) throw new ReplyError(-Errno.EINVAL);
  const value = q.r.head.subarray(next, next + x.size);
  if (!s.fs.setxattr) nosys();
  const res = s.fs.setxattr(q.ctx, q.nodeid, name, value, x.flags);
  if (res === 0 && setxattrFlags !== 0 && equalAt(name, 0, POSIX_ACL_ACCESS)) return statusReply(q, killSgid(s, q));
  return statusReply(q, res);
};

/**
 * FUSE_SETXATTR_ACL_KILL_SGID: the guest kernel found the caller neither in the file's group nor
 * holding CAP_FSETID. Setting the access ACL updated the mode on the host (the host kernel derives
 * it from the ACL), but as root, keeping the set-group-ID bit the caller may not keep: clear it.
 */
function killSgid(s: Served, q: Req): number {
  if (!s.fs.getattr || !s.fs.setattr) return 0;
  const a = s.fs.getattr(q.ctx, q.nodeid, null);
  if (typeof a === 'number') return a;
  const mode = new DataView(a.buffer, a.byteOffset, a.byteLength).getUint32(AttrOff.mode, true);
  if ((mode & S_ISGID) === 0) return 0;
  const r = s.fs.setattr(q.ctx, q.nodeid, { mode: mode & 0o7777 & ~S_ISGID });
  return typeof r === 'number' ? r : 0;
}

/** GETXATTR (`name` set) or LISTXATTR (`name` null) into `out`: the file system's result. */
function fetch(s: Served, q: Req, name: Uint8Array | null, out: Uint8Array): number {
  if (name === null) {
    if (!s.fs.listxattr) nosys();
    return s.fs.listxattr(q.ctx, q.nodeid, out);
  }
  if (!s.fs.getxattr) nosys();
  const r = s.fs.getxattr(q.ctx, q.nodeid, name, out);
  // With FUSE_POSIX_ACL the guest kernel reads the ACLs for its permission checks and takes only
  // ENODATA as "none": EOPNOTSUPP (a host file system without ACLs, an `unsupported` rule) would fail
  // every check of the file.
  if (r === -Errno.EOPNOTSUPP && (s.session.flags & FUSE_POSIX_ACL) !== 0 && isPosixAclName(name)) return -Errno.ENODATA;
  return r;
}

/**
 * GETXATTR and LISTXATTR: a size of 0 asks for the size the value needs (fuse_getxattr_out); else the
 * bytes go straight into the reply scratch: never more than the guest asked for, the syscall's own
 * limit, or what the writable part holds.
 */
function readAny(s: Served, q: Req, list: boolean): number {
  if (!s.xattr) return errorReply(q, -Errno.ENOSYS);
  need(q, GETXATTR_IN_SIZE);
  const { size } = decodeGetxattrIn(q.v, P);
  const name = list ? null : xattrName(q, P + GETXATTR_IN_SIZE);
  if (size === 0) {
    const res = fetch(s, q, name, NO_BYTES);
    return res < 0 ? errorReply(q, res) : xattrSizeReply(q, res);
  }
  const max = list ? XATTR_LIST_MAX : XATTR_SIZE_MAX;
  const cap = Math.max(0, Math.min(size, max, q.w.buf.length - OUT_HEADER_SIZE));
  const res = fetch(s, q, name, q.w.buf.subarray(OUT_HEADER_SIZE, OUT_HEADER_SIZE + cap));
  // Linux: ERANGE with a buffer of the maximum size is E2BIG (the host's value can never fit)
  if (res < 0) return errorReply(q, res === -Errno.ERANGE && cap >= max ? -Errno.E2BIG : res);
  // (cap 0 is a size query to the host: only an empty value fits)
  if (res > cap) return errorReply(q, -Errno.ERANGE);
  return okReply(q, res);
}

export const getxattr: Handler = (s, q) => readAny(s, q, false);

export const listxattr: Handler = (s, q) => readAny(s, q, true);

export const removexattr: Handler = (s, q) => {
  if (!s.xattr) return errorReply(q, -Errno.ENOSYS);
  need(q, 0);
  const name = xattrName(q, P);
  if (!s.fs.removexattr) nosys();
  return statusReply(q, s.fs.removexattr(q.ctx, q.nodeid, name));
};
