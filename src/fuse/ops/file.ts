/**
 * Open files: OPEN, READ, WRITE, FLUSH, RELEASE, FSYNC, FALLOCATE, LSEEK, COPY_FILE_RANGE. File data
 * never passes through the reply scratch: the file system moves it between the host file and guest
 * pages through the Reader and Writer. The hot ones (OPEN, READ, WRITE, FLUSH, RELEASE) decode into
 * objects of this module, reused by every request (a worker serves one request at a time).
 */
import {
  COPY_FILE_RANGE_IN_SIZE, FALLOCATE_IN_SIZE, FLUSH_IN_SIZE, FSYNC_IN_SIZE, FUSE_FSYNC_FDATASYNC, FUSE_RELEASE_FLUSH,
  FUSE_OPEN_KILL_SUIDGID, FUSE_WRITE_KILL_SUIDGID, IN_HEADER_SIZE, type IoIn, LSEEK_IN_SIZE, OPEN_IN_SIZE,
  OUT_HEADER_SIZE, READ_IN_SIZE, RELEASE_IN_SIZE, type ReleaseIn, WRITE_IN_SIZE, decodeCopyFileRangeIn, decodeFallocateIn, decodeFlushInFh,
  decodeFsyncIn, decodeIoInto, decodeLseekIn, decodeOpenInFlags, decodeOpenInOpenFlags, decodeReleaseInto,
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

const io: IoIn = { fh: 0, offset: 0, size: 0, ioFlags: 0 };
const rel: ReleaseIn = { fh: 0, flags: 0, releaseFlags: 0 };

/**
 * open(2) flags as fuse_open_in carries them: the guest's, in Linux's generic encoding (x86-64 and
 * aarch64; src/fs/passthrough/core.ts passes them on to the host as they are).
 */
const O_ACCMODE = 0o3;
const O_RDONLY = 0;
const O_TRUNC = 0o1000;

export const open: Handler = (s, q) => {
  need(q, OPEN_IN_SIZE);
  const flags = decodeOpenInFlags(q.v, P);
  // A read-only share opens for reading only, and truncates nothing (as open(2) on a read-only mount).
  if (s.readOnly && ((flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0)) return errorReply(q, -Errno.EROFS);
  if (!s.fs.open) nosys();
  const kill = (decodeOpenInOpenFlags(q.v, P) & FUSE_OPEN_KILL_SUIDGID) !== 0;
  const res = s.fs.open(q.ctx, q.nodeid, flags, kill);
  if (typeof res === 'number') return errorReply(q, res);
  return openReply(q, res.fh, res.openFlags | s.cache.fileOpenFlags);
};

export const read: Handler = (s, q) => {
  const w = q.w;
  need(q, READ_IN_SIZE);
  // The header is encoded by readReply: there must be room for it (else no reply at all).
  room(w, 0);
  decodeIoInto(q.v, P, io);
  const pos = offset(io.offset);
  const size = Math.max(0, Math.min(io.size, MAX_WRITE, w.capacity - OUT_HEADER_SIZE));
  if (!s.fs.read) nosys();
  const n = s.fs.read(q.ctx, q.nodeid, io.fh, pos, size, w, OUT_HEADER_SIZE);
  if (n < 0) return errorReply(q, n);
  return readReply(q, Math.min(n, size));
};

export const write: Handler = (s, q) => {
  // Only the fixed part must be in the head; the data stays in guest pages.
  needFixed(q, WRITE_IN_SIZE);
  decodeIoInto(q.v, P, io);
  const pos = offset(io.offset);
  const dataOff = P + WRITE_IN_SIZE;
  const size = io.size;
  if (size > q.len - dataOff || size > MAX_WRITE) throw new ReplyError(-Errno.EINVAL);
  if (!s.fs.write) nosys();
  const n = s.fs.write(q.ctx, q.nodeid, io.fh, pos, size, q.r, dataOff, (io.ioFlags & FUSE_WRITE_KILL_SUIDGID) !== 0);
  if (n < 0) return errorReply(q, n);
  return writeOutReply(q, Math.min(n, size));
};

export const flush: Handler = (s, q) => {
  need(q, FLUSH_IN_SIZE);
  const fh = decodeFlushInFh(q.v, P);
  if (!s.fs.flush) nosys();
  return statusReply(q, s.fs.flush(q.ctx, q.nodeid, fh));
};

export const release: Handler = (s, q) => {
  need(q, RELEASE_IN_SIZE);
  decodeReleaseInto(q.v, P, rel);
  if (!s.fs.release) nosys();
  const e = s.fs.release(q.ctx, q.nodeid, rel.fh, rel.flags, (rel.releaseFlags & FUSE_RELEASE_FLUSH) !== 0);
  // The kernel ignores RELEASE's reply error (the guest's close(2) has already returned), so a
  // close-time write error (NFS and the like) would vanish: log it. s.warn is rate limited, as a guest
  // can cause one per request. EBADF (an unknown fh) is the guest's mistake, not lost data.
  if (e < 0 && e !== -Errno.EBADF) s.warn(`RELEASE of node ${q.nodeid}: flush or close failed, errno ${-e}`);
  return statusReply(q, e);
};

export const fsync: Handler = (s, q) => {
  need(q, FSYNC_IN_SIZE);
  const f = decodeFsyncIn(q.v, P);
  if (!s.fs.fsync) nosys();
  return statusReply(q,
    s.fs.fsync(q.ctx, q.nodeid, f.fh, (f.fsyncFlags & FUSE_FSYNC_FDATASYNC) !== 0));
};

export const fallocate: Handler = (s, q) => {
  need(q, FALLOCATE_IN_SIZE);
  const f = decodeFallocateIn(q.v, P);
  const off = offset(f.offset);
  const len = offset(f.length);
  if (!s.fs.fallocate) nosys();
  return statusReply(q, s.fs.fallocate(q.ctx, q.nodeid, f.fh, f.mode, off, len));
};

export const lseek: Handler = (s, q) => {
  need(q, LSEEK_IN_SIZE);
  const l = decodeLseekIn(q.v, P);
  const off = offset(l.offset);
  if (!s.fs.lseek) nosys();
  const res = s.fs.lseek(q.ctx, q.nodeid, l.fh, off, l.whence);
  if (res < 0) return errorReply(q, res);
  return lseekReply(q, res);
};

export const copyFileRange: Handler = (s, q) => {
  need(q, COPY_FILE_RANGE_IN_SIZE);
  const c = decodeCopyFileRangeIn(q.v, P);
  const offIn = offset(c.offIn);
  const offOut = offset(c.offOut);
  // The reply's size is a u32, and one request should not hold a worker for long: copy at most
  // MAX_COPY per request (a short copy is legal; callers loop, as for write(2)).
  const len = Math.min(c.len, MAX_COPY);
  if (c.flags) return errorReply(q, -Errno.EINVAL); // copy_file_range(2) defines none
  if (!s.fs.copyFileRange) nosys();
  const n = s.fs.copyFileRange(q.ctx, q.nodeid, c.fhIn, offIn, c.nodeidOut, c.fhOut, offOut, len);
  if (n < 0) return errorReply(q, n);
  return writeOutReply(q, Math.min(n, len));
};
