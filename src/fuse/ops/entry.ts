/**
 * Names: LOOKUP and FORGET, the opcodes that create a name (MKNOD, MKDIR, SYMLINK, LINK, CREATE) and
 * those that remove or move one (UNLINK, RMDIR, RENAME, RENAME2).
 */
import {
  ATTR_SIZE, BATCH_FORGET_IN_SIZE, CREATE_IN_SIZE, FORGET_IN_SIZE, FORGET_ONE_SIZE, FUSE_OPEN_KILL_SUIDGID,
  IN_HEADER_SIZE, LINK_IN_SIZE, MKDIR_IN_SIZE, MKNOD_IN_SIZE, RENAME2_IN_SIZE, RENAME_IN_SIZE, decodeBatchForgetIn,
  decodeCreateIn, decodeForgetIn, decodeForgetOneNlookup, decodeForgetOneNodeid, decodeLinkIn, decodeMkdirIn, decodeMknodIn, decodeRename2In,
  decodeRenameIn,
} from '../../abi/fuse.js';
import { Errno } from '../../errors.js';
import type { Entry } from '../../fs/filesystem.js';
import { entryName, has, need, securityContext, symlinkTarget } from '../args.js';
import type { Handler, Req, Served } from '../handler.js';
import { createReply, entryReply, errorReply, nosys, statusReply } from '../reply.js';

const P = IN_HEADER_SIZE;

/** A LOOKUP answer for a missing name: node id 0, no attributes (only the entry timeout counts). */
const NEGATIVE_ENTRY: Entry = { nodeid: 0, generation: 0, attr: new Uint8Array(ATTR_SIZE) };

/** An entry or an errno from the file system, as the reply. */
function entryOrError(s: Served, q: Req, res: Entry | number): number {
  return typeof res === 'number' ? errorReply(q, res) : entryReply(q, res, s.cache);
}

export const lookup: Handler = (s, q) => {
  need(q, 0);
  const name = entryName(q, P, true);
  if (!s.fs.lookup) nosys();
  const res = s.fs.lookup(q.ctx, q.nodeid, name);
  if (res === -Errno.ENOENT && s.cache.negativeEntries) return entryReply(q, NEGATIVE_ENTRY, s.cache);
  return entryOrError(s, q, res);
};

/** FORGET: no reply, even on error (the kernel does not wait for one). */
export const forget: Handler = (s, q) => {
  if (has(q, FORGET_IN_SIZE)) s.fs.forget?.(q.nodeid, decodeForgetIn(q.v, P));
  return 0;
};

/** BATCH_FORGET: no reply, as FORGET. */
export const batchForget: Handler = (s, q) => {
  if (!has(q, BATCH_FORGET_IN_SIZE)) return 0;
  const payload = q.len - IN_HEADER_SIZE;
  const count = decodeBatchForgetIn(q.v, P);
  // count comes from the guest: it must describe exactly what the buffer holds
  if (count > Math.floor((payload - BATCH_FORGET_IN_SIZE) / FORGET_ONE_SIZE)) {
    s.warn(`BATCH_FORGET count ${count} beyond its ${payload} bytes`);
    return 0;
  }
  if (!s.fs.forget) return 0;
  let p = P + BATCH_FORGET_IN_SIZE;
  for (let i = 0; i < count; i++, p += FORGET_ONE_SIZE) {
    s.fs.forget(decodeForgetOneNodeid(q.v, p), decodeForgetOneNlookup(q.v, p));
  }
  return 0;
};

export const mknod: Handler = (s, q) => {
  need(q, MKNOD_IN_SIZE);
  const name = entryName(q, P + MKNOD_IN_SIZE);
  securityContext(q, s.session.flags2, q.next);
  if (!s.fs.mknod) nosys();
  const m = decodeMknodIn(q.v, P);
  return entryOrError(s, q, s.fs.mknod(q.ctx, q.nodeid, name, m.mode, m.rdev, m.umask));
};

export const mkdir: Handler = (s, q) => {
  need(q, MKDIR_IN_SIZE);
  const name = entryName(q, P + MKDIR_IN_SIZE);
  securityContext(q, s.session.flags2, q.next);
  if (!s.fs.mkdir) nosys();
  const m = decodeMkdirIn(q.v, P);
  return entryOrError(s, q, s.fs.mkdir(q.ctx, q.nodeid, name, m.mode, m.umask));
};

export const symlink: Handler = (s, q) => {
  need(q, 0);
  const name = entryName(q, P);
  const target = symlinkTarget(q, q.next);
  securityContext(q, s.session.flags2, q.next);
  if (!s.fs.symlink) nosys();
  return entryOrError(s, q, s.fs.symlink(q.ctx, q.nodeid, name, target));
};

export const link: Handler = (s, q) => {
  need(q, LINK_IN_SIZE);
  const oldNode = decodeLinkIn(q.v, P);
  const name = entryName(q, P + LINK_IN_SIZE);
  if (!s.fs.link) nosys();
  // the request's nodeid is the new parent; link_in names the existing node
  return entryOrError(s, q, s.fs.link(q.ctx, oldNode, q.nodeid, name));
};

export const create: Handler = (s, q) => {
  need(q, CREATE_IN_SIZE);
  const c = decodeCreateIn(q.v, P);
  const name = entryName(q, P + CREATE_IN_SIZE);
  securityContext(q, s.session.flags2, q.next);
  if (!s.fs.create) nosys();
  const kill = (c.openFlags & FUSE_OPEN_KILL_SUIDGID) !== 0;
  const res = s.fs.create(q.ctx, q.nodeid, name, c.mode, c.flags, c.umask, kill);
  if (typeof res === 'number') return errorReply(q, res);
  return createReply(q, res.entry, res.fh, res.openFlags | s.cache.fileOpenFlags, s.cache);
};

export const unlink: Handler = (s, q) => {
  need(q, 0);
  const name = entryName(q, P);
  if (!s.fs.unlink) nosys();
  return statusReply(q, s.fs.unlink(q.ctx, q.nodeid, name));
};

export const rmdir: Handler = (s, q) => {
  need(q, 0);
  const name = entryName(q, P);
  if (!s.fs.rmdir) nosys();
  return statusReply(q, s.fs.rmdir(q.ctx, q.nodeid, name));
};

/** RENAME and RENAME2: the fixed part (`size` bytes) is followed by the old and the new name. */
function renameAny(s: Served, q: Req, size: number, newdir: number, flags: number): number {
  const oldName = entryName(q, P + size);
  const newName = entryName(q, q.next);
  if (!s.fs.rename) nosys();
  return statusReply(q, s.fs.rename(q.ctx, q.nodeid, oldName, newdir, newName, flags));
}

export const rename: Handler = (s, q) => {
  need(q, RENAME_IN_SIZE);
  const r = decodeRenameIn(q.v, P);
  return renameAny(s, q, RENAME_IN_SIZE, r.newdir, r.flags);
};

export const rename2: Handler = (s, q) => {
  need(q, RENAME2_IN_SIZE);
  const r = decodeRename2In(q.v, P);
  return renameAny(s, q, RENAME2_IN_SIZE, r.newdir, r.flags);
};
