/**
 * Extended attributes.
 *
 * f*xattr needs a real fd (an O_PATH fd gives EBADF), and the l*xattr path calls would need a path.
 * So, as the reference daemons do, the inode's O_PATH fd is reopened through /proc/self/fd — only
 * for a regular file or a directory (the type of an inode never changes, so stat-then-open has no
 * race; the magic link names the inode itself, never a path). Symlinks are not followed, FIFOs,
 * sockets and devices are never opened: for them get finds nothing, the list is empty, set and
 * remove are refused. O_NONBLOCK: a regular file under a lease must not block the worker.
 *
 * Credentials: as root, like the reference daemon. The guest kernel has already checked the
 * caller's permission (default_permissions, xattr_permission), so guest root may also set trusted.*
 * and security.* names on the host file.
 */
import { S_IFDIR, S_IFREG } from '../../abi/stat.js';
import { Errno } from '../../errors.js';
import { C, native } from '../../native.js';
import type { Core } from './core.js';

/** f(fd) on a real fd for nodeid, or `other` for a file type that is never opened. */
function withXattrFd(c: Core, nodeid: number, f: (fd: number) => number, other: number): number {
  return c.withInode(nodeid, (ifd) => {
    const r = c.statFd(ifd);
    if (r < 0) return r;
    const type = c.type;
    let flags: number;
    if (type === S_IFREG) flags = C.O_RDONLY | C.O_NONBLOCK;
    else if (type === S_IFDIR) flags = C.O_RDONLY | C.O_DIRECTORY;
    else return other;
    const fd = native.openProcFd(c.procSelfFd, ifd, flags);
    if (fd < 0) return fd;
    try {
      return f(fd);
    } finally {
      native.close(fd);
    }
  });
}

export function setxattr(c: Core, nodeid: number, name: Uint8Array, value: Uint8Array, flags: number): number {
  return withXattrFd(c, nodeid, (fd) => native.fsetxattr(fd, name, value, flags), -Errno.EOPNOTSUPP);
}

export function getxattr(c: Core, nodeid: number, name: Uint8Array, out: Uint8Array): number {
  return withXattrFd(c, nodeid, (fd) => native.fgetxattr(fd, name, out), -Errno.ENODATA);
}

export function listxattr(c: Core, nodeid: number, out: Uint8Array): number {
  return withXattrFd(c, nodeid, (fd) => native.flistxattr(fd, out), 0);
}

export function removexattr(c: Core, nodeid: number, name: Uint8Array): number {
  return withXattrFd(c, nodeid, (fd) => native.fremovexattr(fd, name), -Errno.EOPNOTSUPP);
}
