/** Open directories: OPENDIR, READDIR/READDIRPLUS (getdents64 into fuse_dirent records), RELEASEDIR, FSYNCDIR. */
import { ATTR_SIZE } from '../../abi/fuse.js';
import { S_IFDIR } from '../../abi/stat.js';
import { Errno } from '../../errors.js';
import { C, native } from '../../native.js';
import type { DirSink, Opened } from '../filesystem.js';
import { type Core, DIRENT_BUF } from './core.js';

/** the largest linux_dirent64 record: ALIGN(19 + 255 + 1, 8) */
const MAX_HOST_RECLEN = 280;
/** the largest directory cookie: d_off is a signed 64-bit offset */
const MAX_DIR_OFFSET = 0x7fffffffffffffffn;
/** the READDIRPLUS entry of "." and "..": node id 0, no attributes */
const DOT_ENTRY = { nodeid: 0, generation: 0, attr: new Uint8Array(ATTR_SIZE) };

/**
 * Room from which READDIR records are written by the addon (getdentsFuse reads 3/4 of the room, and
 * must be able to read the largest record): below it, the JS loop reads one record and checks it fits.
 */
const RAW_MIN_ROOM = 384;

/**
 * READDIR: getdents64 rewritten into fuse_dirent records by the addon, straight into the reply (no JS
 * step per entry); every record read fits, so the position never runs past what the guest gets.
 */
function readdirRaw(c: Core, dfd: number, sink: DirSink, buf: Uint8Array): number {
  let emitted = 0;
  while (sink.remaining() >= RAW_MIN_ROOM) {
    const n = native.getdentsFuse(dfd, buf, sink.rawAt!(), sink.remaining(), c.dentState);
    if (n <= 0) {
      // the end of the directory, or an error: where the fd is, is not known
      c.dirPos = -1n;
      return n < 0 && emitted === 0 ? n : 0;
    }
    sink.rawCommit!(n);
    c.dirPos = c.dentStateView.getBigUint64(8, true);
    emitted++;
  }
  return 0;
}

/** Seeks a directory to a cookie (ext4 cookies are 63-bit hashes: bigint all the way). 0 or -errno. */
function seekDir(fd: number, off: bigint): number {
  const r = native.lseekBig(fd, off, C.SEEK_SET);
  return r < 0n ? Number(r) : 0;
}

export function opendir(c: Core, nodeid: number): Opened | number {
  return c.withInode(nodeid, (fd) => {
    const r = c.statFd(fd);
    if (r < 0) return r;
    if (c.type !== S_IFDIR) return -Errno.ENOTDIR;
    const dfd = native.openProcFd(c.procSelfFd, fd, C.O_RDONLY | C.O_DIRECTORY);
    if (dfd < 0) return dfd;
    return c.newHandle(dfd, C.O_RDONLY | C.O_DIRECTORY);
  });
}

export function readdir(c: Core, nodeid: number, fh: number, offset: bigint, sink: DirSink, plus: boolean): number {
  if (offset > MAX_DIR_OFFSET) return -Errno.EINVAL;
  return c.withHandle(fh, (dfd) => {
    // The fd's position is where the previous READDIR on this handle left it, as recorded in the handle
    // table (whichever worker served it; the guest's kernel serialises readdir per open file), so a
    // sequential listing needs no seek; any other offset is a cookie (d_off) we handed out earlier, or 0.
    // The position is never asked of the kernel: any lseek on an ext4 directory, even SEEK_CUR, makes
    // its next getdents rebuild the directory's hash-order cache (a READDIR cost 3× the reference's).
    if (c.tables.handleDirPos(fh) !== offset) {
      const r = seekDir(dfd, offset);
      if (r < 0) {
        c.tables.handleSetDirPos(fh, -1n);
        return r;
      }
    }
    c.dirPos = offset;
    const raw = plus ? null : (sink.rawBuffer?.() ?? null);
    const rc = raw !== null && sink.remaining() >= RAW_MIN_ROOM ? readdirRaw(c, dfd, sink, raw) : readdirRecords(c, dfd, nodeid, sink, plus);
    c.tables.handleSetDirPos(fh, c.dirPos);
    return rc;
  });
}

/**
 * READDIR/READDIRPLUS record by record (READDIRPLUS looks every name up), from the position in c.dirPos.
 * Leaves there where the fd now is: the d_off of the last record getdents returned (the kernel leaves
 * the position there), or -1n when that is not known (the end of the directory, an error).
 */
function readdirRecords(c: Core, dfd: number, nodeid: number, sink: DirSink, plus: boolean): number {
  const dents = c.dents;
  const dentv = c.dentv;
  /** entries in the reply (an empty reply tells the guest the directory ended) */
  let emitted = 0;
  for (;;) {
    // Read only what is sure to fit, so the file position rarely runs ahead of what the guest got
    // (then it is put back with a seek to the last cookie sent). A linux_dirent64
    // is ALIGN(20+n, 8) ≥ 24 bytes; its fuse_dirent ALIGN(24+n, 8) is at most 8 more (× 4/3), its
    // fuse_direntplus at most 136 more (× 6.67, we use 7).
    const r = sink.remaining();
    let want = Math.min(DIRENT_BUF, (plus ? Math.floor(r / 7) : Math.floor((r * 3) / 4)) & ~7);
    if (want < MAX_HOST_RECLEN) {
      if (emitted > 0) break;
      // nothing sent yet and little room: read one long-name-sized record and check it fits
      want = MAX_HOST_RECLEN;
    }
    const n = native.getdents64(dfd, dents.subarray(0, want));
    if (n < 0) {
      c.dirPos = -1n;
      return emitted > 0 ? 0 : n;
    }
    if (n === 0) {
      c.dirPos = -1n;
      break;
    }
    let p = 0;
    while (p < n) {
      const ino = dentv.getBigUint64(p, true);
      const next = BigInt.asUintN(64, dentv.getBigInt64(p + 8, true));
      const reclen = dentv.getUint16(p + 16, true);
      const type = dents[p + 18]!;
      let e = p + 19;
      while (e < p + reclen && dents[e] !== 0) e++;
      const name = dents.subarray(p + 19, e);
      if (!sink.fits(name.length)) {
        // Does not fit after all (only with a tiny reply buffer): put the position back.
        c.dirPos = seekDir(dfd, c.dirPos) === 0 ? c.dirPos : -1n;
        return 0;
      }
      const dot = name.length <= 2 && name[0] === 0x2e && (name.length === 1 || name[1] === 0x2e);
      if (!plus) {
        sink.add(ino, next, type, name, null);
        emitted++;
      } else if (dot) {
        sink.add(ino, next, type, name, DOT_ENTRY);
        emitted++;
      } else {
        const ent = c.markSubmount(nodeid, c.lookupAt(dfd, name)); // the handle's fd is this directory
        if (typeof ent !== 'number') {
          sink.add(ino, next, type, name, ent);
          emitted++;
        } else if (ent !== -Errno.ENOENT) {
          // The lookup failed for a reason of ours, not the entry's (EMFILE or ENFILE when the
          // descriptors run out, EACCES…): list the name without attributes, as READDIR would. The
          // guest's kernel makes no dentry for node id 0 (no lookup count, so no FORGET is owed) and
          // looks the name up itself when it needs it. Failing the request instead fails the guest's
          // getdents for as long as it holds the inodes that use up the descriptors, and most
          // programs take a failed getdents for the end of the directory: a silent gap.
          sink.add(ino, next, type, name, null);
          emitted++;
        }
        // ENOENT: the entry vanished since getdents (an unlink raced us) and is skipped
      }
      c.dirPos = next;
      p += reclen;
    }
  }
  return 0;
}
