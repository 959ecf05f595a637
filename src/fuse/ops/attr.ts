/** A node's attributes and the file system as a whole: GETATTR, SETATTR, READLINK, ACCESS, STATFS, SYNCFS. */
import {
  ACCESS_IN_SIZE, FATTR_ATIME, FATTR_ATIME_NOW, FATTR_FH, FATTR_GID, FATTR_KILL_SUIDGID, FATTR_MODE, FATTR_MTIME,
  FATTR_MTIME_NOW, FATTR_SIZE, FATTR_UID, FUSE_GETATTR_FH, GETATTR_IN_SIZE, IN_HEADER_SIZE, SETATTR_IN_SIZE,
  type SetattrIn, decodeAccessIn, decodeGetattrInFh, decodeGetattrInFlags, decodeSetattrIn,
} from '../../abi/fuse.js';
import { Errno } from '../../errors.js';
import type { SetattrArgs } from '../../fs/filesystem.js';
import type { IdMaps } from '../../fs/idmap.js';
import { idBig, need, offsetBig, timeSpec } from '../args.js';
import type { Handler } from '../handler.js';
import { ReplyError, attrReply, bytesReply, errorReply, nosys, statfsReply, statusReply } from '../reply.js';

const P = IN_HEADER_SIZE;

export const getattr: Handler = (s, q) => {
  need(q, GETATTR_IN_SIZE);
  const fh = (decodeGetattrInFlags(q.v, P) & FUSE_GETATTR_FH) !== 0 ? decodeGetattrInFh(q.v, P) : null;
  if (!s.fs.getattr) nosys();
  const res = s.fs.getattr(q.ctx, q.nodeid, fh);
  return typeof res === 'number' ? errorReply(q, res) : attrReply(q, res, s.cache);
};

/**
 * A new owner (chown) as the host sees it (--translate-uid/gid, guest→host); a forbidden guest id
 * answers EPERM, as a forbidden caller does.
 */
function ownerIn(id: number, ids: IdMaps | null, which: 'uid' | 'gid'): number {
  if (ids === null) return id;
  const host = ids[which].guestToHost(id);
  if (host < 0) throw new ReplyError(-Errno.EPERM);
  return host;
}

/** fuse_setattr_in as the file system's arguments: only the fields its `valid` bits name, checked. */
function setattrArgs(a: SetattrIn, ids: IdMaps | null): SetattrArgs {
  const args: SetattrArgs = {};
  if (a.valid & FATTR_MODE) args.mode = a.mode;
  if (a.valid & FATTR_UID) args.uid = ownerIn(a.uid, ids, 'uid');
  if (a.valid & FATTR_GID) args.gid = ownerIn(a.gid, ids, 'gid');
  if (a.valid & FATTR_SIZE) args.size = offsetBig(a.size);
  if (a.valid & FATTR_FH) args.fh = idBig(a.fh);
  if (a.valid & FATTR_KILL_SUIDGID) args.killSuidgid = true;
  if (a.valid & FATTR_ATIME) args.atime = timeSpec(a.valid & FATTR_ATIME_NOW, a.atime, a.atimensec);
  if (a.valid & FATTR_MTIME) args.mtime = timeSpec(a.valid & FATTR_MTIME_NOW, a.mtime, a.mtimensec);
  return args;
}

export const setattr: Handler = (s, q) => {
  need(q, SETATTR_IN_SIZE);
  const args = setattrArgs(decodeSetattrIn(q.v, P), s.ids);
  if (!s.fs.setattr) nosys();
  const res = s.fs.setattr(q.ctx, q.nodeid, args);
  return typeof res === 'number' ? errorReply(q, res) : attrReply(q, res, s.cache);
};

export const readlink: Handler = (s, q) => {
  if (!s.fs.readlink) nosys();
  const res = s.fs.readlink(q.ctx, q.nodeid);
  return typeof res === 'number' ? errorReply(q, res) : bytesReply(q, res);
};

/** access(2)'s write bit in fuse_access_in.mask */
const W_OK = 2;

export const access: Handler = (s, q) => {
  need(q, ACCESS_IN_SIZE);
  const mask = decodeAccessIn(q.v, P);
  // Nothing on a read-only share is writable (access(2) on a read-only mount answers EROFS too).
  if (s.readOnly && (mask & W_OK) !== 0) return errorReply(q, -Errno.EROFS);
  if (!s.fs.access) nosys();
  return statusReply(q, s.fs.access(q.ctx, q.nodeid, mask));
};

export const statfs: Handler = (s, q) => {
  if (!s.fs.statfs) nosys();
  const res = s.fs.statfs(q.ctx, q.nodeid);
  return typeof res === 'number' ? errorReply(q, res) : statfsReply(q, res);
};

/** SYNCFS: struct fuse_syncfs_in is one u64 of padding, nothing to read. */
export const syncfs: Handler = (s, q) => {
  if (!s.fs.syncfs) nosys();
  return statusReply(q, s.fs.syncfs(q.ctx, q.nodeid));
};
