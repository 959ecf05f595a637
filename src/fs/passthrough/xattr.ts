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
 * caller's permission (default_permissions, xattr_permission); what root on the host may do that
 * guest root must not (set security.capability, trusted.*, LSM labels) is the name policy's to
 * refuse (src/fs/xattrmap.ts, docs/xattr.md): every name passes through it on the way to the host,
 * and every listed host name on the way back.
 */
import { AttrOff } from '../../abi/fuse.js';
import { S_IFDIR, S_IFREG } from '../../abi/stat.js';
import { Errno } from '../../errors.js';
import { C, native } from '../../native.js';
import type { Ctx, SecurityContext } from '../filesystem.js';
import { SECURITY_CAPABILITY, XATTR_DENIED, XATTR_HIDDEN, type XattrPolicy, equalAt, xattrPolicy } from '../xattrmap.js';
import type { Core } from './core.js';

/** The one security context name a Linux guest sends today (only SELinux labels a dentry before creation). */
const SELINUX = new TextEncoder().encode('security.selinux');

/** What a Passthrough built without a policy applies: the default one, no POSIX ACLs. */
const DEFAULT_POLICY = xattrPolicy(undefined, false);
/** XATTR_LIST_MAX (linux/limits.h): the most a host list can hold */
const LIST_MAX = 65536;
/** The host's list before the policy filters it (one per thread; the calls never overlap). */
let hostList: Uint8Array | null = null;

function policyOf(c: Core): XattrPolicy {
  return c.opts.xattrPolicy ?? DEFAULT_POLICY;
}

/** A refused name's errno: XATTR_DENIED is EPERM (`denied`: ENODATA for a get), XATTR_UNSUPPORTED EOPNOTSUPP. */
function refusal(r: number, denied: number): number {
  return r === XATTR_DENIED ? denied : -Errno.EOPNOTSUPP;
}

/** f(fd) on a real fd for nodeid, or `other` for a file type that is never opened. */
function withXattrFd(c: Core, nodeid: number, f: (fd: number) => number, other: number): number {
  return c.withInode(nodeid, (ifd) => withOpenedFd(c, ifd, f, other));
}

/** f(fd) on a real fd reopened from the O_PATH fd `ifd`, or `other` for a file type that is never opened. */
function withOpenedFd(c: Core, ifd: number, f: (fd: number) => number, other: number): number {
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
}

export function setxattr(c: Core, nodeid: number, name: Uint8Array, value: Uint8Array, flags: number): number {
  return withXattrFd(c, nodeid, (fd) => {
    const host = policyOf(c).toHost(name, true);
    if (typeof host === 'number') return refusal(host, -Errno.EPERM);
    return native.fsetxattr(fd, host, value, flags);
  }, -Errno.EOPNOTSUPP);
}

export function getxattr(c: Core, nodeid: number, name: Uint8Array, out: Uint8Array): number {
  return withXattrFd(c, nodeid, (fd) => {
    const host = policyOf(c).toHost(name, false);
    // a refused name reads as absent (as virtiofsd's `bad`): the guest's probes of security.* or
    // trusted.* names on every write must not fail the write
    if (typeof host === 'number') return refusal(host, -Errno.ENODATA);
    return native.fgetxattr(fd, host, out);
  }, -Errno.ENODATA);
}

/**
 * The host's names as the guest sees them: hidden ones left out, prefixes stripped. `out` empty: the
 * size the guest needs; else the names, or ERANGE when they do not fit.
 */
export function listxattr(c: Core, nodeid: number, out: Uint8Array): number {
  return withXattrFd(c, nodeid, (fd) => {
    hostList ??= new Uint8Array(LIST_MAX);
    const list = hostList;
    const n = native.flistxattr(fd, list);
    if (n < 0) return n === -Errno.ERANGE ? -Errno.E2BIG : n;
    const policy = policyOf(c);
    let size = 0;
    for (let at = 0; at < n;) {
      let end = list.indexOf(0, at);
      if (end < 0 || end > n) end = n;
      const strip = policy.toGuest(list.subarray(at, end));
      // (a host name that is only the prefix would be an empty name: left out)
      if (strip !== XATTR_HIDDEN && at + strip < end) {
        const len = end - at - strip + 1;
        if (out.length > 0) {
          if (size + len > out.length) return -Errno.ERANGE;
          out.set(list.subarray(at + strip, end), size);
          out[size + len - 1] = 0;
        }
        size += len;
      }
      at = end + 1;
    }
    return size;
  }, 0);
}

export function removexattr(c: Core, ctx: Ctx, nodeid: number, name: Uint8Array): number {
  return withXattrFd(c, nodeid, (fd) => {
    const host = policyOf(c).toHost(name, true, true);
    if (typeof host === 'number') return refusal(host, -Errno.EPERM);
    if (equalAt(host, 0, SECURITY_CAPABILITY) && !mayDropCapability(c, ctx, fd)) return -Errno.EPERM;
    return native.fremovexattr(fd, host);
  }, -Errno.EOPNOTSUPP);
}

/**
 * May this caller remove the file's security.capability? The guest kernel removes it itself before a
 * write to the file or a chown of it (as a local file system does), which the default policy lets
 * through; but its own check of an explicit removal (CAP_SETFCAP) is not to be relied on (a Linux 6.1
 * guest was seen letting any user through). So, on the host: root, the file's owner, or a caller who
 * may write the file (and so could have made the host kernel drop the capability by writing) — never
 * another user. `fd` is the file reopened by withXattrFd, whose stat is still in c.stv.
 */
function mayDropCapability(c: Core, ctx: Ctx, fd: number): boolean {
  if (ctx.uid === 0 || c.stv.getUint32(AttrOff.uid, true) === ctx.uid) return true;
  return c.asCaller(ctx, () => native.faccessat(fd, null, C.W_OK, C.AT_EACCESS)) === 0;
}

// ---- --security-label: a new node's security context ----

/**
 * The host name a new node's security context is stored under: the guest's name through the policy,
 * as a SETXATTR's (so `--xattrmap=':map:security.selinux:user.virtiofs.:'` keeps the guest's labels
 * apart from the host's), except that without --xattrmap `security.selinux` goes through as it is
 * (secctxAsIs: what --security-label asks for; the host's LSM, or the lack of CAP_SYS_ADMIN on a host
 * without one, judges it). A refused name is EPERM (EOPNOTSUPP for an `unsupported` rule).
 */
function secctxHostName(c: Core, sec: SecurityContext): Uint8Array | number {
  const host = policyOf(c).toHost(sec.name, true);
  if (typeof host !== 'number') return host;
  if (c.opts.secctxAsIs === true && equalAt(sec.name, 0, SELINUX)) return sec.name;
  return refusal(host, -Errno.EPERM);
}

/**
 * Set the security context on a regular file just created and opened (`fd`, a real fd), as the daemon
 * (as virtiofsd does: the caller could not set a security.* name). 0 or -errno.
 */
export function labelOpenFile(c: Core, fd: number, sec: SecurityContext): number {
  const host = secctxHostName(c, sec);
  if (typeof host === 'number') return host;
  return native.fsetxattr(fd, host, sec.value, 0);
}

/**
 * Set the security context on a node just created, known by its O_PATH fd, whatever its type, without
 * opening it (setxattrat on its /proc/self/fd link, Linux 6.13). Before 6.13 a directory or regular file
 * is reopened for fsetxattr; a symlink or special node then cannot be labelled: EOPNOTSUPP. 0 or -errno.
 */
export function labelNode(c: Core, fd: number, sec: SecurityContext): number {
  const host = secctxHostName(c, sec);
  if (typeof host === 'number') return host;
  const r = native.setxattrProc(c.procSelfFd, fd, host, sec.value, 0);
  if (r !== -Errno.ENOSYS) return r;
  return withOpenedFd(c, fd, (rfd) => native.fsetxattr(rfd, host, sec.value, 0), -Errno.EOPNOTSUPP);
}
