/** A node's attributes and its file system: GETATTR, SETATTR, READLINK, ACCESS, STATFS, SYNCFS. */
import { PATH_MAX } from '../../abi/fuse.js';
import { S_IFDIR, S_IFLNK, S_IFREG } from '../../abi/stat.js';
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

/**
 * ACCESS: the host kernel's own answer for the caller. faccessat2(AT_EACCESS) on the inode's O_PATH fd,
 * run as the caller (Core.asCaller: fsuid, fsgid and the supplementary groups the request carried), so
 * every rule the host applies counts: owner, group and other classes, POSIX ACLs, root's capabilities
 * (execute only with an x bit somewhere), a read-only host mount (EROFS), an immutable file (EPERM).
 * The caller's supplementary groups are only those the request carries: Linux sends FUSE_EXT_GROUPS on
 * creating requests only, so an ACCESS from a client without default_permissions is answered for the
 * caller's uid and gid alone (a permission held only through another group reads as EACCES). A Linux
 * guest never sends ACCESS: virtiofs mounts always use default_permissions, and its kernel checks with
 * the caller's whole group list itself (docs/internals.md "The caller's identity"). A daemon that is
 * not root answers for its own user (what it can then do on the caller's behalf).
 */
export function access(c: Core, ctx: Ctx, nodeid: number, mask: number): number {
  return c.withInode(nodeid, (fd) =>
    c.asCaller(ctx, () => native.faccessat(fd, null, mask & (C.R_OK | C.W_OK | C.X_OK), C.AT_EACCESS)),
  );
}
