/** Names: LOOKUP, the creating calls (SYMLINK, MKNOD, MKDIR, LINK) and UNLINK, RMDIR, RENAME. */
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT } from '../../abi/stat.js';
import { Errno } from '../../errors.js';
import { C, native } from '../../native.js';
import type { Ctx, Entry } from '../filesystem.js';
import { POSIX_ACL_DEFAULT } from '../xattrmap.js';
import { type Core, PATH_FLAGS, RESOLVE } from './core.js';
import { labelNode } from './xattr.js';

export function lookup(c: Core, parent: number, name: Uint8Array): Entry | number {
  const pfd = c.tables.inodeAcquire(parent);
  if (pfd < 0) return -Errno.ESTALE;
  try {
    return c.markSubmount(parent, c.lookupAt(pfd, name));
  } finally {
    c.unpinInode(parent);
  }
}

/**
 * The mode a creating request (MKNOD, MKDIR, CREATE) asks for, as the host call gets it. Without
 * FUSE_DONT_MASK the guest kernel has applied the caller's umask already: the mode as given. With it
 * (--posix-acl) the mode is the caller's unmasked, and, as on a local file system, the umask applies
 * only where the parent has no default ACL: where it has one, the host kernel gives the new entry the
 * inherited ACL masked by this mode and ignores any umask (the daemon's own is 0). Asking the parent
 * first and creating second is not atomic; a default ACL set or removed in between gives the mode the
 * other case would (never more than the caller asked for).
 */
export function createMode(c: Core, parent: number, mode: number, umask: number): number {
  const mask = umask & 0o777;
  if (!c.dontMask || mask === 0) return mode;
  return hasDefaultAcl(c, parent) ? mode : mode & ~mask;
}

/** The directory has a system.posix_acl_default on the host (any error, such as none or no ACLs there: false). */
function hasDefaultAcl(c: Core, nodeid: number): boolean {
  const r = c.withInode(nodeid, (ifd) => {
    // f*xattr needs a real fd: the directory reopened through /proc/self/fd (as xattr.ts does)
    const fd = native.openProcFd(c.procSelfFd, ifd, C.O_RDONLY | C.O_DIRECTORY);
    if (fd < 0) return fd;
    try {
      return native.fgetxattr(fd, POSIX_ACL_DEFAULT, null);
    } finally {
      native.close(fd);
    }
  });
  return r > 0;
}

/**
 * The node a creating call just made under `name` in the directory pfd, entered (one lookup reference).
 * With a security context (--security-label) it gets its label first, as the daemon; if that fails the
 * node is removed again and the failure answered (as virtiofsd does), so the guest never sees it.
 */
function created(c: Core, ctx: Ctx, pfd: number, name: Uint8Array, isDir: boolean): Entry | number {
  const sec = ctx.secctx;
  if (sec === undefined || sec === null) return c.lookupAt(pfd, name);
  const fd = native.openat2(pfd, name, PATH_FLAGS, 0, RESOLVE);
  if (fd < 0) return fd;
  const r = labelNode(c, fd, sec);
  if (r < 0) {
    native.close(fd);
    native.unlinkat(pfd, name, isDir ? C.AT_REMOVEDIR : 0);
    return r;
  }
  return c.enter(fd);
}

export function symlink(c: Core, ctx: Ctx, parent: number, name: Uint8Array, target: Uint8Array): Entry | number {
  return c.withInode(parent, (pfd) => {
    const r = c.asCaller(ctx, () => native.symlinkat(target, pfd, name));
    return r < 0 ? r : created(c, ctx, pfd, name, false);
  });
}

export function mknod(c: Core, ctx: Ctx, parent: number, name: Uint8Array, mode: number, rdev: number): Entry | number {
  const type = mode & S_IFMT;
  if (type === S_IFDIR || type === S_IFLNK) return -Errno.EINVAL;
  if ((type === S_IFBLK || type === S_IFCHR) && !c.opts.allowDevices) return -Errno.EPERM;
  return c.withInode(parent, (pfd) => {
    const r = c.asCaller(ctx, () => native.mknodat(pfd, name, mode, rdev));
    return r < 0 ? r : created(c, ctx, pfd, name, false);
  });
}

export function mkdir(c: Core, ctx: Ctx, parent: number, name: Uint8Array, mode: number): Entry | number {
  return c.withInode(parent, (pfd) => {
    const r = c.asCaller(ctx, () => native.mkdirat(pfd, name, mode & 0o7777));
    return r < 0 ? r : created(c, ctx, pfd, name, true);
  });
}

export function link(c: Core, nodeid: number, newParent: number, newName: Uint8Array): Entry | number {
  return c.withInode(nodeid, (fd) =>
    c.withInode(newParent, (pfd) => {
      const r = native.linkat(fd, null, pfd, newName, C.AT_EMPTY_PATH);
      if (r < 0) return r;
      // the same inode: take a new lookup reference on its node id
      const dup = native.dup(fd);
      if (dup < 0) return dup;
      return c.enter(dup);
    }),
  );
}

export function unlink(c: Core, parent: number, name: Uint8Array): number {
  return c.withInode(parent, (pfd) => native.unlinkat(pfd, name, 0));
}

export function rmdir(c: Core, parent: number, name: Uint8Array): number {
  return c.withInode(parent, (pfd) => native.unlinkat(pfd, name, C.AT_REMOVEDIR));
}

export function rename(c: Core, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array,
  flags: number): number {
  if ((flags & ~(C.RENAME_NOREPLACE | C.RENAME_EXCHANGE | C.RENAME_WHITEOUT)) !== 0) return -Errno.EINVAL;
  return c.withInode(parent, (pfd) =>
    c.withInode(newParent, (npfd) => native.renameat2(pfd, name, npfd, newName, flags)),
  );
}
