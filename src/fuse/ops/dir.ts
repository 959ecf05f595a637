/** Open directories: OPENDIR, READDIR, READDIRPLUS, RELEASEDIR, FSYNCDIR. */
import {
  FSYNC_IN_SIZE, FUSE_FSYNC_FDATASYNC, IN_HEADER_SIZE, OPEN_IN_SIZE, OUT_HEADER_SIZE, READ_IN_SIZE, RELEASE_IN_SIZE,
  decodeFsyncIn, decodeOpenInFlags, decodeReadIn, decodeReleaseInto, getId, type ReleaseIn,
} from '../../abi/fuse.js';
import { need } from '../args.js';
import type { Handler, Req, Served } from '../handler.js';
import { ReplyDirSink, errorReply, nosys, okReply, openReply, statusReply } from '../reply.js';

const P = IN_HEADER_SIZE;

export const opendir: Handler = (s, q) => {
  need(q, OPEN_IN_SIZE);
  const flags = decodeOpenInFlags(q.v, P);
  if (!s.fs.opendir) nosys();
  const res = s.fs.opendir(q.ctx, q.nodeid, flags);
  if (typeof res === 'number') return errorReply(q, res);
  return openReply(q, res.fh, res.openFlags | s.cache.dirOpenFlags);
};

/** READDIR and READDIRPLUS: records straight into the reply scratch, as many as fit in `size`. */
function readdirAny(s: Served, q: Req, plus: boolean): number {
  need(q, READ_IN_SIZE);
  // (the directory cookie stays a u64 bigint: ext4's are 63-bit hashes)
  const rd = decodeReadIn(q.v, P);
  const w = q.w;
  const limit = Math.max(0, Math.min(rd.size, w.buf.length - OUT_HEADER_SIZE));
  const sink = new ReplyDirSink(w.buf, q.wv, OUT_HEADER_SIZE, limit, plus, s.cache, s.ids);
  if (!s.fs.readdir) nosys();
  const res = s.fs.readdir(q.ctx, q.nodeid, getId(q.v, P), rd.offset, sink, plus);
  // An error after some entries were produced would lose their lookup references: keep them.
  if (res < 0 && sink.used === 0) return errorReply(q, res);
  return okReply(q, sink.used);
}

export const readdir: Handler = (s, q) => readdirAny(s, q, false);

export const readdirplus: Handler = (s, q) => readdirAny(s, q, true);

const rel: ReleaseIn = { fh: 0, flags: 0, releaseFlags: 0 };

export const releasedir: Handler = (s, q) => {
  need(q, RELEASE_IN_SIZE);
  decodeReleaseInto(q.v, P, rel);
  if (!s.fs.releasedir) nosys();
  return statusReply(q, s.fs.releasedir(q.ctx, q.nodeid, rel.fh));
};

export const fsyncdir: Handler = (s, q) => {
  need(q, FSYNC_IN_SIZE);
  const f = decodeFsyncIn(q.v, P);
  if (!s.fs.fsyncdir) nosys();
  return statusReply(q, s.fs.fsyncdir(q.ctx, q.nodeid, f.fh, (f.fsyncFlags & FUSE_FSYNC_FDATASYNC) !== 0));
};
