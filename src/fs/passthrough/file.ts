/**
 * Open files: OPEN, CREATE, READ, WRITE, FLUSH, RELEASE, FSYNC, FALLOCATE, LSEEK, COPY_FILE_RANGE.
 * Only regular files are opened (directories through opendir, in dir.ts): a fifo would block the
 * worker, a device node would reach host hardware, a symlink is never followed.
 */
import { S_IFDIR, S_IFLNK, S_IFREG } from '../../abi/stat.js';
import { Errno } from '../../errors.js';
import { C, native } from '../../native.js';
import type { Created, Ctx, FileSink, FileSource, Opened } from '../filesystem.js';
import { type Core, PATH_FLAGS, RESOLVE } from './core.js';
import { labelOpenFile } from './xattr.js';

export function open(c: Core, nodeid: number, flags: number, killSuidgid = false): Opened | number {
  const fd = c.tables.inodeAcquire(nodeid);
  if (fd < 0) return -Errno.ESTALE;
  try {
    const r = c.statFd(fd);
    if (r < 0) return r;
    const type = c.type;
    if (type === S_IFDIR) {
      if ((flags & C.O_ACCMODE) !== C.O_RDONLY) return -Errno.EISDIR;
    } else if (type !== S_IFREG) {
      // fifo (would block the worker), socket, device (host hardware), symlink (never followed)
      return type === S_IFLNK ? -Errno.ELOOP : -Errno.EACCES;
    }
    const f = c.openFlags(flags);
    const ofd = native.openProcFd(c.procSelfFd, fd, f);
    if (ofd < 0) return ofd;
    const k = truncKill(c, ofd, f, killSuidgid);
    if (k < 0) {
      native.close(ofd);
      return k;
    }
    return c.newHandle(ofd, f);
  } finally {
    c.unpinInode(nodeid);
  }
}

/**
 * FUSE_OPEN_KILL_SUIDGID on an open that truncated (O_TRUNC): the set-user-ID and group-executable
 * set-group-ID bits go, as for a truncate by a caller without CAP_FSETID (Core.killSuidgid). The file
 * is cleared after the open truncated it (an open that fails changes nothing). 0 or -errno.
 */
function truncKill(c: Core, fd: number, hostFlags: number, kill: boolean): number {
  return kill && (hostFlags & C.O_TRUNC) !== 0 ? c.killSuidgid(fd) : 0;
}

export function create(c: Core, ctx: Ctx, parent: number, name: Uint8Array, mode: number, flags: number,
  killSuidgid = false): Created | number {
  return c.withInode(parent, (pfd) => {
    // Create with O_EXCL first: O_CREAT alone opens an existing FIFO or device node, and that open is
    // itself the harm (a FIFO's reader sees a writer, a watchdog or tape device acts on open). An
    // existing name is opened only if it is a regular file, by reopening its O_PATH fd.
    // O_NONBLOCK: belt and braces should a FIFO appear anyway; on regular files it has no effect.
    const f = c.openFlags(flags) | (flags & C.O_EXCL) | C.O_CREAT | C.O_NOFOLLOW | C.O_NONBLOCK;
    let ofd = c.asCaller(ctx, () => native.openat2(pfd, name, f | C.O_EXCL, mode & 0o7777, RESOLVE));
    // a file made by this call (not an existing one opened) gets the security context, if any
    const made = ofd >= 0;
    if (ofd === -Errno.EEXIST && (flags & C.O_EXCL) === 0) {
      const efd = native.openat2(pfd, name, PATH_FLAGS, 0, RESOLVE);
      if (efd < 0) return efd;
      const r = c.statFd(efd);
      const type = c.type;
      if (r < 0 || type !== S_IFREG) {
        native.close(efd);
        return r < 0 ? r : type === S_IFLNK ? -Errno.ELOOP : type === S_IFDIR ? -Errno.EISDIR : -Errno.EACCES;
      }
      ofd = c.asCaller(ctx, () => native.openProcFd(c.procSelfFd, efd, f & ~(C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW)));
      native.close(efd);
      const k = ofd >= 0 ? truncKill(c, ofd, f, killSuidgid) : 0;
      if (k < 0) {
        native.close(ofd);
        return k;
      }
    }
    if (ofd < 0) return ofd;
    if (c.statFd(ofd) < 0 || c.type !== S_IFREG) {
      native.close(ofd);
      return -Errno.EACCES;
    }
    if (made && ctx.secctx) {
      // --security-label: labelled through the open fd, as the daemon; a file that cannot be is removed
      const l = labelOpenFile(c, ofd, ctx.secctx);
      if (l < 0) {
        native.close(ofd);
        native.unlinkat(pfd, name, 0);
        return l;
      }
    }
    // The inode fd for exactly the file we opened (no second name resolution, no race).
    const pathFd = native.openProcFd(c.procSelfFd, ofd, C.O_PATH);
    if (pathFd < 0) {
      native.close(ofd);
      return pathFd;
    }
    const e = c.enter(pathFd);
    if (typeof e === 'number') {
      native.close(ofd);
      return e;
    }
    const h = c.newHandle(ofd, f & ~(C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW));
    if (typeof h === 'number') {
      c.forget(e.nodeid, 1);
      return h;
    }
    return { fh: h.fh, openFlags: h.openFlags, entry: e };
  });
}

export function read(c: Core, fh: number, offset: number, size: number, sink: FileSink, sinkOff: number): number {
  if (size === 0) return 0;
  const fd = c.tables.handleAcquire(fh);
  if (fd < 0) return -Errno.EBADF;
  try {
    return sink.readFromFile(fd, offset, sinkOff, size);
  } finally {
    c.unpinHandle(fh);
  }
}

export function write(c: Core, fh: number, offset: number, size: number, src: FileSource, srcOff: number,
  killSuidgid = false): number {
  if (size === 0) return 0;
  const fd = c.tables.handleAcquire(fh);
  if (fd < 0) return -Errno.EBADF;
  try {
    if (killSuidgid) {
      const k = c.killSuidgid(fd);
      if (k < 0) return k;
    }
    return src.writeToFile(fd, offset, srcOff, size);
  } finally {
    c.unpinHandle(fh);
  }
}

export function flush(c: Core, fh: number): number {
  return flushHandle(c, fh);
}

function flushHandle(c: Core, fh: number): number {
  const fd = c.tables.handleAcquire(fh);
  if (fd < 0) return -Errno.EBADF;
  try {
    return flushFd(fd);
  } finally {
    c.unpinHandle(fh);
  }
}

/**
 * close(dup(fd)) gives the host file system its flush-on-close (NFS and the like: write-back errors,
 * quota) without closing the handle's own fd. When the daemon is out of descriptors (dup fails with
 * EMFILE/ENFILE) the data is flushed with fdatasync instead, which needs no descriptor and reports the
 * same write-back errors: the guest's close(2) neither fails for a reason of the host's nor loses an
 * error (it used to return success without flushing).
 */
function flushFd(fd: number): number {
  const d = native.dup(fd);
  if (d >= 0) return native.close(d);
  if (d === -Errno.EMFILE || d === -Errno.ENFILE) return native.fsync(fd, true);
  return d;
}

/**
 * RELEASE and RELEASEDIR: the handle is gone afterwards (its fd closes once no request pins it).
 * `flush` is FUSE_RELEASE_FLUSH (fuse_release_in.release_flags): flush as FLUSH does before closing.
 * The result is the first error of the flush and the close. The kernel ignores RELEASE's reply error
 * (it sends RELEASE after the guest's last close(2) has returned, often in the background), so the
 * caller can only log it. A close deferred to a request that still pins the fd is not reported.
 */
export function release(c: Core, fh: number, flush = false): number {
  const f = flush ? flushHandle(c, fh) : 0;
  const fd = c.tables.handleClose(fh);
  if (fd === -2) return -Errno.EBADF;
  const r = fd >= 0 ? native.close(fd) : 0;
  return f < 0 ? f : r;
}

/** FSYNC and FSYNCDIR */
export function fsync(c: Core, fh: number, datasync: boolean): number {
  return c.withHandle(fh, (fd) => native.fsync(fd, datasync));
}

export function fallocate(c: Core, fh: number, mode: number, offset: number, length: number): number {
  return c.withHandle(fh, (fd) => native.fallocate(fd, mode, offset, length));
}

export function lseek(c: Core, fh: number, offset: number, whence: number): number {
  if (whence !== C.SEEK_SET && whence !== C.SEEK_CUR && whence !== C.SEEK_END &&
    whence !== C.SEEK_DATA && whence !== C.SEEK_HOLE) return -Errno.EINVAL;
  return c.withHandle(fh, (fd) => native.lseek(fd, offset, whence));
}

export function copyFileRange(c: Core, fhIn: number, offIn: number, fhOut: number, offOut: number, len: number): number {
  if (len === 0) return 0;
  // The host checks what the guest's kernel checked too: fhIn readable, fhOut writable (EBADF),
  // regular files, overlapping ranges in one file (EINVAL).
  return c.withHandle(fhIn, (inFd) =>
    c.withHandle(fhOut, (outFd) => native.copyFileRange(inFd, offIn, outFd, offOut, len, 0)));
}
