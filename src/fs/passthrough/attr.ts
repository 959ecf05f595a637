/** A node's attributes and its file system: GETATTR, SETATTR, READLINK, ACCESS, STATFS, SYNCFS. */
import { AttrOff, PATH_MAX } from '../../abi/fuse.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../../abi/stat.js';
import { Errno } from '../../errors.js';
import { C, STATFS_OUT_SIZE, native } from '../../native.js';
import type { Ctx, SetattrArgs } from '../filesystem.js';
import { type Core, EMPTY_NAME, STAT_FLAGS } from './core.js';

export function getattr(c: Core, nodeid: number): Uint8Array | number {
  const fd = c.tables.inodeAcquire(nodeid);
  if (fd < 0) return -Errno.ESTALE;
  try {
    const r = c.statFd(fd);
    return r < 0 ? r : c.attr;
  } finally {
    c.unpinInode(nodeid);
  }
}

/** utimensat's (seconds, nanoseconds) for one SETATTR time */
function utime(x: SetattrArgs['atime']): [number, number] {
  return x === undefined ? [0, C.UTIME_OMIT] : x === 'now' ? [0, C.UTIME_NOW] : [x.sec, x.nsec];
}

export function setattr(c: Core, nodeid: number, a: SetattrArgs): Uint8Array | number {
  return c.withInode(nodeid, (fd) => {
    let r = c.statFd(fd);
    if (r < 0) return r;
    const type = c.type;
    if (a.mode !== undefined) {
      if (type === S_IFLNK) return -Errno.EOPNOTSUPP;
      r = native.fchmodat(fd, null, a.mode & 0o7777);
      if (r < 0) return r;
    }
    if (a.uid !== undefined || a.gid !== undefined) {
      r = native.fchownat(fd, null, a.uid ?? -1, a.gid ?? -1, STAT_FLAGS);
      if (r < 0) return r;
    }
    // FATTR_KILL_SUIDGID (a truncate by a caller without CAP_FSETID, or any chown): before the truncate,
    // as the kernel clears them (a chown clears them on the host by itself). Not for directories, whose
    // set-group-ID bit means inheritance, not privilege.
    if (a.killSuidgid === true && type !== S_IFDIR) {
      r = c.killSuidgid(fd);
      if (r < 0) return r;
    }
    if (a.size !== undefined) {
      if (a.fh !== undefined) {
        r = c.withHandle(a.fh, (hfd) => native.ftruncate(hfd, a.size!));
      } else {
        if (type === S_IFDIR) return -Errno.EISDIR;
        if (type !== S_IFREG) return -Errno.EINVAL;
        const wfd = native.openProcFd(c.procSelfFd, fd, C.O_WRONLY);
        if (wfd < 0) return wfd;
        r = native.ftruncate(wfd, a.size);
        native.close(wfd);
      }
      if (r < 0) return r;
    }
    if (a.atime !== undefined || a.mtime !== undefined) {
      const [as, an] = utime(a.atime);
      const [ms, mn] = utime(a.mtime);
      if (type === S_IFLNK) {
        // The link's own times (utimensat AT_SYMLINK_NOFOLLOW in the guest): AT_EMPTY_PATH on the O_PATH
        // fd names the link itself; the /proc/self/fd route would follow it. Kernels before 5.8 refuse
        // AT_EMPTY_PATH here (EINVAL): then refuse rather than follow, as before.
        r = native.utimensat(fd, EMPTY_NAME, as, an, ms, mn, C.AT_EMPTY_PATH | C.AT_SYMLINK_NOFOLLOW);
        if (r === -Errno.EINVAL) return -Errno.EOPNOTSUPP;
      } else {
        r = native.utimensat(fd, null, as, an, ms, mn, 0);
      }
      if (r < 0) return r;
    }
    r = c.statFd(fd);
    return r < 0 ? r : c.attr;
  });
}

export function readlink(c: Core, nodeid: number): Uint8Array | number {
  return c.withInode(nodeid, (fd) => {
    const buf = new Uint8Array(PATH_MAX);
    const n = native.readlinkat(fd, null, buf);
    return n < 0 ? n : buf.slice(0, n);
  });
}

export function statfs(c: Core, nodeid: number): Uint8Array | number {
  return c.withInode(nodeid, (fd) => {
    const out = new Uint8Array(STATFS_OUT_SIZE);
    const r = native.fstatfs(fd, out);
    return r < 0 ? r : out;
  });
}

export function syncfs(c: Core, nodeid: number): number {
  // syncfs(2) refuses O_PATH fds: reopen the inode for reading (a directory, or a regular file).
  // Only the file system holding the node (the share's root, as the guest sends it) is committed;
  // file systems mounted beneath the share are not walked.
  return c.withInode(nodeid, (fd) => {
    const r = c.statFd(fd);
    if (r < 0) return r;
    const type = c.type;
    if (type !== S_IFDIR && type !== S_IFREG) return -Errno.EINVAL;
    const rfd = native.openProcFd(c.procSelfFd, fd, C.O_RDONLY | C.O_NONBLOCK);
    if (rfd < 0) return rfd;
    const s = native.syncfs(rfd);
    native.close(rfd);
    return s;
  });
}

export function access(c: Core, ctx: Ctx, nodeid: number, mask: number): number {
  return c.withInode(nodeid, (fd) => {
    const r = c.statFd(fd);
    if (r < 0) return r;
    const m = mask & 7;
    if (m === 0) return 0;
    const mode = c.mode;
    if (ctx.uid === 0) {
      // root may do anything, except execute a non-directory without any x bit
      if ((m & C.X_OK) && (mode & S_IFMT) !== S_IFDIR && (mode & 0o111) === 0) return -Errno.EACCES;
      return 0;
    }
    const uid = c.stv.getUint32(AttrOff.uid, true);
    const gid = c.stv.getUint32(AttrOff.gid, true);
    const bits = uid === ctx.uid ? (mode >> 6) & 7 : gid === ctx.gid ? (mode >> 3) & 7 : mode & 7;
    return (bits & m) === m ? 0 : -Errno.EACCES;
  });
}
