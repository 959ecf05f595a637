/**
 * Extended attributes: SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR — served only with --xattr (-o xattr);
 * otherwise ENOSYS, and the guest kernel stops sending them (its callers then see EOPNOTSUPP).
 */
import {
  GETXATTR_IN_SIZE, IN_HEADER_SIZE, OUT_HEADER_SIZE, SETXATTR_IN_SIZE, XATTR_CREATE, XATTR_LIST_MAX, XATTR_REPLACE,
  XATTR_SIZE_MAX, decodeGetxattrIn, decodeSetxattrIn,
} from '../../abi/fuse.js';
import { Errno } from '../../errors.js';
import { need, xattrName } from '../args.js';
import type { Handler, Req, Served } from '../handler.js';
import { ReplyError, errorReply, nosys, okReply, statusReply, xattrSizeReply } from '../reply.js';

const P = IN_HEADER_SIZE;
/** `out` for a size-only GETXATTR/LISTXATTR */
const NO_BYTES = new Uint8Array(0);

export const setxattr: Handler = (s, q) => {
  if (!s.xattr) return errorReply(q, -Errno.ENOSYS);
  need(q, SETXATTR_IN_SIZE);
  const x = decodeSetxattrIn(q.v, P);
  if ((x.flags & ~(XATTR_CREATE | XATTR_REPLACE)) !== 0) throw new ReplyError(-Errno.EINVAL);
  const name = xattrName(q, P + SETXATTR_IN_SIZE);
  const next = q.next;
  if (x.size > XATTR_SIZE_MAX) throw new ReplyError(-Errno.E2BIG);
  // the value is the `size` bytes after the name: all of them must be in the request
  if (x.size > q.len - next) throw new ReplyError(-Errno.EINVAL);
  const value = q.r.head.subarray(next, next + x.size);
  if (!s.fs.setxattr) nosys();
  return statusReply(q, s.fs.setxattr(q.ctx, q.nodeid, name, value, x.flags));
};

/** GETXATTR (`name` set) or LISTXATTR (`name` null) into `out`: the file system's result. */
function fetch(s: Served, q: Req, name: Uint8Array | null, out: Uint8Array): number {
  if (name === null) {
    if (!s.fs.listxattr) nosys();
    return s.fs.listxattr(q.ctx, q.nodeid, out);
  }
  if (!s.fs.getxattr) nosys();
  return s.fs.getxattr(q.ctx, q.nodeid, name, out);
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
