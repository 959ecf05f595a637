/**
 * Open files: OPEN, READ, WRITE, FLUSH, RELEASE, FSYNC, FALLOCATE, LSEEK, COPY_FILE_RANGE. File data
 * never passes through the reply scratch: the file system moves it between the host file and guest
 * pages through the Reader and Writer.
 */
import {
  COPY_FILE_RANGE_IN_SIZE, FALLOCATE_IN_SIZE, FLUSH_IN_SIZE, FSYNC_IN_SIZE, FUSE_FSYNC_FDATASYNC, FUSE_RELEASE_FLUSH,
  FUSE_WRITE_KILL_SUIDGID, IN_HEADER_SIZE, LSEEK_IN_SIZE, OPEN_IN_SIZE, OUT_HEADER_SIZE, READ_IN_SIZE, RELEASE_IN_SIZE,
  WRITE_IN_SIZE, decodeCopyFileRangeIn, decodeFallocateIn, decodeFlushIn, decodeFsyncIn, decodeLseekIn, decodeOpenIn,
  decodeReadIn, decodeReleaseIn, decodeWriteIn,
} from '../../abi/fuse.js';
import { Errno } from '../../errors.js';
import { need, needFixed, offset } from '../args.js';
import type { Handler } from '../handler.js';
import {
  ReplyError, errorReply, lseekReply, nosys, openReply, readReply, room, statusReply, writeOutReply,
} from '../reply.js';
import { MAX_WRITE } from '../session.js';

const P = IN_HEADER_SIZE;

/** Most bytes one COPY_FILE_RANGE copies (the guest's caller loops on a short count). */
export const MAX_COPY = 256 * 1024 * 1024;
const MAX_COPY_BIG = BigInt(MAX_COPY);

export const open: Handler = (s, q) => {
  need(q, OPEN_IN_SIZE);
  const o = decodeOpenIn(q.v, P);
  if (!s.fs.open) nosys();
  const res = s.fs.open(q.ctx, q.h.nodeid, o.flags);
  if (typeof res === 'number') return errorReply(q.w, q.h.unique, res);
  return openReply(q.w, q.h.unique, res.fh, res.openFlags | s.cache.fileOpenFlags);
};

export const read: Handler = (s, q) => {
  const w = q.w;
  need(q, READ_IN_SIZE);
  // The header is encoded by readReply: there must be room for it (else no reply at all).
  room(w, 0);
  const rd = decodeReadIn(q.v, P);
  const pos = offset(rd.offset);
  const size = Math.max(0, Math.min(rd.size, MAX_WRITE, w.capacity - OUT_HEADER_SIZE));
  if (!s.fs.read) nosys();
  const n = s.fs.read(q.ctx, q.h.nodeid, rd.fh, pos, size, w, OUT_HEADER_SIZE);
  if (n < 0) return errorReply(w, q.h.unique, n);
  return readReply(w, q.h.unique, Math.min(n, size));
};

export const write: Handler = (s, q) => {
  // Only the fixed part must be in the head; the data stays in guest pages.
  needFixed(q, WRITE_IN_SIZE);
  const wr = decodeWriteIn(q.v, P);
  const pos = offset(wr.offset);
  const dataOff = P + WRITE_IN_SIZE;
  if (wr.size > q.h.len - dataOff || wr.size > MAX_WRITE) throw new ReplyError(-Errno.EINVAL);
  if (!s.fs.write) nosys();
  const n = s.fs.write(q.ctx, q.h.nodeid, wr.fh, pos, wr.size, q.r, dataOff,
    (wr.readFlags & FUSE_WRITE_KILL_SUIDGID) !== 0);
  if (n < 0) return errorReply(q.w, q.h.unique, n);
  return writeOutReply(q.w, q.h.unique, Math.min(n, wr.size));
};

export const flush: Handler = (s, q) => {
  need(q, FLUSH_IN_SIZE);
  const f = decodeFlushIn(q.v, P);
  if (!s.fs.flush) nosys();
  return statusReply(q.w, q.h.unique, s.fs.flush(q.ctx, q.h.nodeid, f.fh, f.lockOwner));
};

export const release: Handler = (s, q) => {
  need(q, RELEASE_IN_SIZE);
  const r = decodeReleaseIn(q.v, P);
  if (!s.fs.release) nosys();
  const e = s.fs.release(q.ctx, q.h.nodeid, r.fh, r.flags, (r.releaseFlags & FUSE_RELEASE_FLUSH) !== 0, r.lockOwner);
  // The kernel ignores RELEASE's reply error (the guest's close(2) has already returned), so a
  // close-time write error (NFS and the like) would vanish: log it. s.warn is rate limited, as a guest
  // can cause one per request. EBADF (an unknown fh) is the guest's mistake, not lost data.
  if (e < 0 && e !== -Errno.EBADF) s.warn(`RELEASE of node ${q.h.nodeid}: flush or close failed, errno ${-e}`);
  return statusReply(q.w, q.h.unique, e);
};

export const fsync: Handler = (s, q) => {
  need(q, FSYNC_IN_SIZE);
  const f = decodeFsyncIn(q.v, P);
  if (!s.fs.fsync) nosys();
  return statusReply(q.w, q.h.unique,
    s.fs.fsync(q.ctx, q.h.nodeid, f.fh, (f.fsyncFlags & FUSE_FSYNC_FDATASYNC) !== 0));
};

export const fallocate: Handler = (s, q) => {
  need(q, FALLOCATE_IN_SIZE);
  const f = decodeFallocateIn(q.v, P);
  const off = offset(f.offset);
  const len = offset(f.length);
  if (!s.fs.fallocate) nosys();
  return statusReply(q.w, q.h.unique, s.fs.fallocate(q.ctx, q.h.nodeid, f.fh, f.mode, off, len));
};

export const lseek: Handler = (s, q) => {
  need(q, LSEEK_IN_SIZE);
  const l = decodeLseekIn(q.v, P);
  const off = offset(l.offset);
  if (!s.fs.lseek) nosys();
  const res = s.fs.lseek(q.ctx, q.h.nodeid, l.fh, off, l.whence);
  if (res < 0) return errorReply(q.w, q.h.unique, res);
  return lseekReply(q.w, q.h.unique, res);
};

export const copyFileRange: Handler = (s, q) => {
  need(q, COPY_FILE_RANGE_IN_SIZE);
  const c = decodeCopyFileRangeIn(q.v, P);
  const offIn = offset(c.offIn);
  const offOut = offset(c.offOut);
  // The reply's size is a u32, and one request should not hold a worker for long: copy at most
  // MAX_COPY per request (a short copy is legal; callers loop, as for write(2)).
  const len = c.len > MAX_COPY_BIG ? MAX_COPY : Number(c.len);
  if (c.flags !== 0n) return errorReply(q.w, q.h.unique, -Errno.EINVAL); // copy_file_range(2) defines none
  if (!s.fs.copyFileRange) nosys();
  const n = s.fs.copyFileRange(q.ctx, q.h.nodeid, c.fhIn, offIn, c.nodeidOut, c.fhOut, offOut, len);
  if (n < 0) return errorReply(q.w, q.h.unique, n);
  return writeOutReply(q.w, q.h.unique, Math.min(n, len));
};
