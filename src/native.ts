/**
 * The native addon: the syscalls Node lacks (docs/internals.md, "The native addon").
 *
 * Every syscall wrapper returns a non-negative result or `-errno` and never throws for a failed syscall;
 * only wrong argument types (or a buffer slice outside its buffer) throw a `TypeError`. Guest names are
 * `Uint8Array` bytes without NUL: an embedded NUL gives `-EINVAL`, a name over 255 bytes `-ENAMETOOLONG`
 * (symlink targets: 4095). Every fd the addon creates is `O_CLOEXEC`.
 *
 * The addon is context-aware: each worker thread loads its own instance, and per-thread state (the
 * window of `setWindow`, active `watchFd` handles) is per instance.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageRoot } from './package-root.js';

/** A guest name (one path component) or, where documented, a path. */
export type Name = Uint8Array;

/**
 * The constants the addon exports, by name (native/src/constants.h; the values come from the system
 * headers). test/unit/abi-drift checks that this list and the addon's agree.
 */
export const NATIVE_CONSTANTS = [
  'O_RDONLY', 'O_WRONLY', 'O_RDWR', 'O_ACCMODE', 'O_CREAT', 'O_EXCL', 'O_NOCTTY', 'O_TRUNC', 'O_APPEND',
  'O_NONBLOCK', 'O_NDELAY', 'O_DSYNC', 'O_SYNC', 'O_DIRECT', 'O_LARGEFILE', 'O_DIRECTORY', 'O_NOFOLLOW',
  'O_NOATIME', 'O_CLOEXEC', 'O_PATH', 'O_TMPFILE', 'O_ASYNC', 'RESOLVE_NO_XDEV', 'RESOLVE_NO_MAGICLINKS',
  'RESOLVE_NO_SYMLINKS', 'RESOLVE_BENEATH', 'RESOLVE_IN_ROOT', 'RESOLVE_CACHED', 'AT_FDCWD', 'AT_EMPTY_PATH',
  'AT_SYMLINK_NOFOLLOW', 'AT_SYMLINK_FOLLOW', 'AT_REMOVEDIR', 'AT_EACCESS', 'AT_NO_AUTOMOUNT',
  'RENAME_NOREPLACE', 'RENAME_EXCHANGE', 'RENAME_WHITEOUT', 'UTIME_NOW', 'UTIME_OMIT', 'S_IFMT', 'S_IFSOCK',
  'S_IFLNK', 'S_IFREG', 'S_IFBLK', 'S_IFDIR', 'S_IFCHR', 'S_IFIFO', 'S_ISUID', 'S_ISGID', 'S_ISVTX',
  'SEEK_SET', 'SEEK_CUR', 'SEEK_END', 'SEEK_DATA', 'SEEK_HOLE', 'FALLOC_FL_KEEP_SIZE', 'FALLOC_FL_PUNCH_HOLE',
  'FALLOC_FL_COLLAPSE_RANGE', 'FALLOC_FL_ZERO_RANGE', 'FALLOC_FL_INSERT_RANGE', 'FALLOC_FL_UNSHARE_RANGE',
  'F_OK', 'R_OK', 'W_OK', 'X_OK', 'POLLIN', 'POLLOUT', 'POLLERR', 'POLLHUP', 'POLLNVAL', 'NAME_MAX',
  'PATH_MAX', 'IOV_MAX',
] as const;

/** The errno names the addon exports in `constants.errno` (native/src/constants.h). */
export const ERRNO_NAMES = [
  'EPERM', 'ENOENT', 'ESRCH', 'EINTR', 'EIO', 'ENXIO', 'E2BIG', 'ENOEXEC', 'EBADF', 'ECHILD', 'EAGAIN',
  'EWOULDBLOCK', 'ENOMEM', 'EACCES', 'EFAULT', 'ENOTBLK', 'EBUSY', 'EEXIST', 'EXDEV', 'ENODEV', 'ENOTDIR',
  'EISDIR', 'EINVAL', 'ENFILE', 'EMFILE', 'ENOTTY', 'ETXTBSY', 'EFBIG', 'ENOSPC', 'ESPIPE', 'EROFS', 'EMLINK',
  'EPIPE', 'EDOM', 'ERANGE', 'EDEADLK', 'ENAMETOOLONG', 'ENOLCK', 'ENOSYS', 'ENOTEMPTY', 'ELOOP', 'ENOMSG',
  'EIDRM', 'ENOSTR', 'ENODATA', 'ETIME', 'ENOSR', 'ENOLINK', 'EPROTO', 'EBADMSG', 'EOVERFLOW', 'EILSEQ',
  'EUSERS', 'ENOTSOCK', 'EDESTADDRREQ', 'EMSGSIZE', 'EPROTOTYPE', 'ENOPROTOOPT', 'EPROTONOSUPPORT',
  'EOPNOTSUPP', 'ENOTSUP', 'EAFNOSUPPORT', 'EADDRINUSE', 'EADDRNOTAVAIL', 'ENETDOWN', 'ENETUNREACH',
  'ECONNABORTED', 'ECONNRESET', 'ENOBUFS', 'EISCONN', 'ENOTCONN', 'ETIMEDOUT', 'ECONNREFUSED', 'EHOSTUNREACH',
  'EALREADY', 'EINPROGRESS', 'ESTALE', 'EDQUOT', 'ECANCELED', 'EOWNERDEAD', 'ENOTRECOVERABLE',
] as const;

export type ErrnoName = (typeof ERRNO_NAMES)[number];

export type NativeConstants = { readonly [K in (typeof NATIVE_CONSTANTS)[number]]: number } & {
  /** E* name → positive errno number (wrappers return the negation). */
  readonly errno: Readonly<Record<ErrnoName, number>>;
};

/** Bits of the `revents` passed to a `watchFd` callback (set by onPoll in native/src/wait.cc). */
export const WATCH_READABLE = 1;
export const WATCH_ERROR = 2;

export interface FdWatcher {
  /** Stop watching and drop the callback; idempotent. The fd is not closed. */
  stop(): void;
}

/** Size of the `statAt` output: struct fuse_attr (88 bytes) + u64 st_dev at AttrOff.dev (src/abi/fuse.ts). */
export const STAT_OUT_SIZE = 96;
/** Size of struct fuse_kstatfs written by `fstatfs`. */
export const STATFS_OUT_SIZE = 80;

/** A sandbox step that failed (src/sandbox/): which one and its errno. */
export interface SandboxFailure {
  step: string;
  errno: number;
}

export interface Native {
  // vhost-user socket
  /** SOCK_STREAM|NONBLOCK|CLOEXEC unix socket bound to `path` and listening. Does not unlink. fd or -errno */
  listenUnix(path: string, backlog: number): number;
  /** New connection fd (NONBLOCK|CLOEXEC) or -errno (-EAGAIN when none is pending). */
  acceptUnix(fd: number): number;
  /**
   * connect(2) to a Unix socket: the fd or -errno. `nonblock`: EAGAIN instead of waiting on a full
   * backlog (and non-blocking sends); `dgram`: a datagram socket (syslog) instead of a stream.
   */
  connectUnix(path: string, nonblock?: boolean, dgram?: boolean): number;
  /** 1: fd is a listening AF_UNIX stream socket; 0: another kind of socket or file; -errno (EBADF) */
  isListeningUnixStream(fd: number): number;
  /** SO_PEERCRED's pid of a connected AF_UNIX socket (a client learns the listener's), or -errno. */
  peerPid(fd: number): number;
  /**
   * recvmsg into buf[off, off+len) with MSG_CMSG_CLOEXEC. Bytes (0 = EOF) or -errno. Received fds go to
   * fds[0..]; the remaining entries are set to -1; fds beyond fds.length are closed.
   */
  recvMsg(fd: number, buf: Uint8Array, off: number, len: number, fds: Int32Array): number;
  /** sendmsg of buf[off, off+len) with the fds as SCM_RIGHTS (MSG_NOSIGNAL). Bytes or -errno. */
  sendMsg(fd: number, buf: Uint8Array, off: number, len: number, fds: Int32Array | null): number;
  /** libuv poll on this thread's loop; cb gets WATCH_READABLE (1) | WATCH_ERROR (2). Keeps the loop alive. */
  watchFd(fd: number, cb: (revents: number) => void): FdWatcher;

  // memory
  /** Host virtual address of the buffer's first byte. */
  memoryAddress(buf: SharedArrayBuffer): bigint;
  /** mmap(MAP_SHARED|MAP_FIXED) fd at fileOff over buf[off, off+len); page aligned. 0 or -errno */
  mapFixed(buf: SharedArrayBuffer, off: number, len: number, fd: number, fileOff: number): number;
  /** Replace buf[off, off+len) with anonymous zero pages. 0 or -errno */
  unmapFixed(buf: SharedArrayBuffer, off: number, len: number): number;
  /** mmap(MAP_SHARED) of fd[fileOff, fileOff+len) outside the wasm memory: its address, or -errno. */
  mapShared(fd: number, fileOff: number, len: number): number;
  /** munmap of a mapShared mapping. 0 or -errno */
  unmapShared(addr: number, len: number): number;
  /** memfd of `size` bytes (MFD_CLOEXEC, and MFD_ALLOW_SEALING unless `unsealable`) or -errno. */
  memfdCreate(name: string, size: number, unsealable?: boolean): number;
  /**
   * Survive guest RAM truncated under us: installs (once per process) a SIGBUS handler that maps zero
   * pages over a faulting page inside buf[off, off+len) (page aligned; len 0 guards nothing), counts the
   * fault and writes to an eventfd; any other SIGBUS goes to the previous handler or kills as before.
   * The eventfd (the same on every call, never closed) or -errno.
   */
  sigbusGuard(buf: SharedArrayBuffer, off: number, len: number): number;
  /** Faults survived in the guarded range since the process started, and the last one's offset in the buffer (-1: none). */
  sigbusFaults(): { count: number; offset: number };

  // eventfd / wait
  /** EFD_NONBLOCK|EFD_CLOEXEC eventfd (EFD_CLOEXEC only when `blocking`) or -errno. */
  eventfd(initval: number, blocking?: boolean): number;
  eventfdWrite(fd: number, v: number): number;
  /**
   * The counter (reset to 0) or -errno (-EAGAIN when 0). Never blocks, even on a blocking eventfd: reads
   * are serialized process-wide and made only when a zero-timeout poll says readable.
   */
  eventfdRead(fd: number): number;
  /**
   * poll(2) for POLLIN on fds[0..n); blocks the calling thread. revents[i] gets the POLL* bits.
   * Number of ready fds (0 on timeout) or -errno (-EINTR is returned, not retried).
   */
  poll(fds: Int32Array, n: number, timeoutMs: number, revents: Int32Array): number;
  close(fd: number): number;
  fcntlGetFl(fd: number): number;

  // file system
  /** openat2 with O_CLOEXEC added; mode is ignored without O_CREAT/O_TMPFILE. fd or -errno */
  openat2(dirfd: number, name: Name, flags: number, mode: number, resolve: number): number;
  /** openat(procFdDir, "<fd>", flags|O_CLOEXEC) with O_NOFOLLOW/O_CREAT/O_EXCL removed. fd or -errno */
  openProcFd(procFdDir: number, fd: number, flags: number): number;
  /** fstatat, or fstat of dirfd itself when name is null (flags then unused); out (≥ 96 bytes) gets struct fuse_attr + u64 st_dev. */
  statAt(dirfd: number, name: Name | null, flags: number, out: Uint8Array): number;
  mkdirat(dirfd: number, name: Name, mode: number): number;
  /** rdev is FUSE's (new_encode_dev) encoding. */
  mknodat(dirfd: number, name: Name, mode: number, rdev: number): number;
  unlinkat(dirfd: number, name: Name, flags: number): number;
  renameat2(olddirfd: number, oldname: Name, newdirfd: number, newname: Name, flags: number): number;
  /** oldname null → AT_EMPTY_PATH on olddirfd. */
  linkat(olddirfd: number, oldname: Name | null, newdirfd: number, newname: Name, flags: number): number;
  /** target: up to 4095 bytes. */
  symlinkat(target: Uint8Array, dirfd: number, name: Name): number;
  /** Length of the target written to out, or -errno. name null → the symlink dirfd itself. */
  readlinkat(dirfd: number, name: Name | null, out: Uint8Array): number;
  /**
   * The process's fd of /proc/self/fd: where the addon finds an fd's magic link (and /proc/self) from
   * now on, /proc being out of reach by path inside the sandbox. Process wide.
   */
  setProcFd(fd: number): number;
  /** What fd's /proc/self/fd link reads (e.g. "anon_inode:[eventfd]"), into out: its length or -errno. */
  procFdLink(fd: number, out: Uint8Array): number;
  /** /proc/self/`name` (e.g. "status") into out: bytes read or -errno. */
  procSelfRead(name: Name, out: Uint8Array): number;
  /** How many fds this process has open, or -errno. */
  procFdCount(): number;
  /** name null → chmod via /proc/self/fd/<dirfd>. */
  fchmodat(dirfd: number, name: Name | null, mode: number): number;
  /** name null → AT_EMPTY_PATH. uid/gid -1 (or 0xffffffff) = unchanged. */
  fchownat(dirfd: number, name: Name | null, uid: number, gid: number, flags: number): number;
  /** UTIME_NOW / UTIME_OMIT go in the nsec fields. name null → via /proc/self/fd/<dirfd>, flags ignored. */
  utimensat(
    dirfd: number,
    name: Name | null,
    aSec: number,
    aNsec: number,
    mSec: number,
    mNsec: number,
    flags: number,
  ): number;
  ftruncate(fd: number, len: number): number;
  fallocate(fd: number, mode: number, off: number, len: number): number;
  /** copy_file_range(2) at explicit offsets (≤ 2^53); bytes copied or -errno */
  copyFileRange(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number, flags: number): number;
  fsync(fd: number, datasync: boolean): number;
  /** syncfs(2) on a real (not O_PATH) fd: 0 or -errno */
  syncfs(fd: number): number;
  /** out (≥ 80 bytes) gets struct fuse_kstatfs. 0 or -errno */
  fstatfs(fd: number, out: Uint8Array): number;
  /** Bytes of linux_dirent64 records (0 at the end) or -errno. */
  getdents64(fd: number, out: Uint8Array): number;
  /**
   * getdents64 rewritten as struct fuse_dirent records into out[off, off+len), reading at most 3/4 of
   * len so that every entry read fits (the position never runs past what was written). Bytes written
   * (0: end of directory, or len too small for one entry) or -errno; state (≥ 16 bytes) gets u32 entries
   * at 0 and the last entry's d_off (u64, the cookie to resume from) at 8.
   */
  getdentsFuse(fd: number, out: Uint8Array, off: number, len: number, state: Uint8Array): number;
  lseek(fd: number, off: number, whence: number): number;
  /** lseek with a 64-bit offset (directory cookies): the new offset, or -errno, as a bigint. */
  lseekBig(fd: number, off: bigint, whence: number): bigint;
  /** faccessat2; name null → AT_EMPTY_PATH. */
  faccessat(dirfd: number, name: Name | null, mode: number, flags: number): number;
  /** F_DUPFD_CLOEXEC. */
  dup(fd: number): number;
  /**
   * fgetxattr on a real (not O_PATH) fd: the value into `out`, whose length is the buffer size; with
   * `out` null or empty, only the value's size. Bytes or -errno (-ERANGE if `out` is too small, -ENODATA
   * if there is no such attribute). Names: 1..255 bytes (XATTR_NAME_MAX), else -ERANGE.
   */
  fgetxattr(fd: number, name: Name, out: Uint8Array | null): number;
  /** fsetxattr of `value` (flags: XATTR_CREATE 1 / XATTR_REPLACE 2). 0 or -errno. */
  fsetxattr(fd: number, name: Name, value: Uint8Array, flags: number): number;
  /**
   * setxattr on the inode an O_PATH fd names, of any file type, without opening it: setxattrat(2) on
   * its magic link "<fd>" under procFdDir, an fd of /proc/self/fd (a symlink gets the attribute itself).
   * 0 or -errno; -ENOSYS before Linux 6.13.
   */
  setxattrProc(procFdDir: number, fd: number, name: Name, value: Uint8Array, flags: number): number;
  /** flistxattr: the NUL-separated names into `out` (null or empty: the size only). Bytes or -errno. */
  flistxattr(fd: number, out: Uint8Array | null): number;
  /** fremovexattr. 0 or -errno. */
  fremovexattr(fd: number, name: Name): number;
  /** Raise RLIMIT_NOFILE's soft limit to `want` (0: to the hard limit); the limit in force or -errno. */
  raiseNofile(want: number): number;
  /** Set RLIMIT_NOFILE's soft limit to exactly `want` (raising the hard limit if needed); it or -errno. */
  setNofile(want: number): number;
  /** Ensure F_SEAL_SHRINK on a memfd (0), or -errno if it cannot be sealed (not a memfd, sealed shut). */
  sealShrink(fd: number): number;
  /** epoll_create1(EPOLL_CLOEXEC): fd or -errno. */
  epollCreate(): number;
  /**
   * Watch the eventfd fd for EPOLLIN, edge-triggered (each write is one event; nothing needs to read the
   * counter), EPOLLEXCLUSIVE if `exclusive` (one waiter woken per event). 0 or -errno.
   */
  epollAdd(epfd: number, fd: number, exclusive: boolean): number;
  /** Blocks; ready fds into out[0..n). n or -errno (-EINTR not retried). */
  epollWait(epfd: number, out: Int32Array, timeoutMs: number): number;
  pread(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number;
  pwrite(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number;

  // zero copy against the shared memory
  /**
   * Per thread: the linear memory that segment lists live in, and where in it the guest memory table is
   * (base, offset of the entries, entry stride, most entries, offsets of an entry's size and host address).
   */
  setWindow(buf: SharedArrayBuffer, table: GuestTableLayout): void;
  /**
   * preadv from fd at pos into the `count` segments {u64 off, u32 len, u32 region} at address `list`: each
   * is `len` bytes at `off` in the memory table's region `region`, reached through the region's host
   * mapping. Every segment must lie in its region (else -EFAULT, before any I/O). Bytes (short only at
   * EOF or after an error) or -errno.
   */
  preadvWin(fd: number, list: number, count: number, pos: number): number;
  /** pwritev counterpart of preadvWin. */
  pwritevWin(fd: number, list: number, count: number, pos: number): number;
  /**
   * This thread's supplementary groups (the first `count` of `groups`, all when count is absent; none
   * when null), fsgid and fsuid, with raw per-thread syscalls (setgroups, setfsgid, setfsuid); each id is
   * read back. (0, 0) restores the daemon's own: root, no supplementary groups. 0 or -errno (-EPERM when
   * the kernel kept an old id); after a failure the caller switches back to (0, 0). Allocates nothing.
   */
  setCreds(uid: number, gid: number, groups?: Uint32Array | null, count?: number): number;
  /** _exit(2): the process ends now, without joining worker threads (process.exit waits for them). */
  exitNow(code: number): never;
  /**
   * The system call filter of --seccomp on every thread (native/src/seccomp.cc, docs/seccomp.md): mode 1
   * kills the process on a call outside the list, 2 logs it (and lets it run), 3 writes its number to
   * stderr and dies of SIGSYS. 0 or -errno, nothing installed then.
   */
  seccompInstall(mode: number): number;

  // sandbox (docs/sandbox.md)
  /**
   * A child in new namespaces (`flags`: CLONE_NEW* bits) that makes its mounts private (slave), mounts
   * a fresh /proc if `mountProc`, dies with its parent, and execs `execPath` with `keepFds` inherited
   * (Node makes every inherited fd close-on-exec). Its pid or -errno. With `gate` (rootless mode: a new
   * user namespace, whose id maps the parent writes first) the child waits before anything else until
   * 'G' is written to `gate`, the parent's end of a pipe (close-on-exec), and exits if it is closed
   * without: {pid, gate}, or -errno.
   */
  sandboxSpawn(execPath: string, argv: string[], env: string[], flags: number, mountProc: boolean, keepFds: number[], gate: false): number;
  sandboxSpawn(execPath: string, argv: string[], env: string[], flags: number, mountProc: boolean, keepFds: number[], gate: true): number | { pid: number; gate: number };
  /** Resolves once the child has ended: its exit code, the signal that ended it, or the errno of waitpid. */
  waitChild(pid: number): Promise<{ code?: number; signal?: number; errno?: number }>;
  /**
   * `dir` becomes the root of every thread: pivot_root (old root detached) if `pivot`, else chroot.
   * After a pivot, `rootFd` (an fd of dir opened before; -1: none) is made to name the new root.
   */
  enterRoot(dir: string, pivot: boolean, rootFd: number): 0 | SandboxFailure;
  /**
   * Every thread keeps only the capabilities `keep` (lo, hi 32 bits) and gets no_new_privs, by a
   * signal broadcast; `procSelfFd` is an fd of /proc/self/fd. The thread count or a failure.
   */
  dropCaps(procSelfFd: number, keepLo: number, keepHi: number): number | SandboxFailure;

  readonly constants: NativeConstants;
}

/** What the .node file exports: memory functions take a Uint8Array view of the whole buffer. */
type RawNative = Omit<Native, 'memoryAddress' | 'mapFixed' | 'unmapFixed' | 'setWindow' | 'sigbusGuard'> & {
  memoryAddress(view: Uint8Array): bigint;
  mapFixed(view: Uint8Array, off: number, len: number, fd: number, fileOff: number): number;
  unmapFixed(view: Uint8Array, off: number, len: number): number;
  sigbusGuard(view: Uint8Array, off: number, len: number): number;
  setWindow(view: Uint8Array, base: number, entries: number, stride: number, max: number, sizeOff: number, hvaOff: number): void;
};

/** Where the guest memory table is in the linear memory (assembly/layout.ts: MEMTABLE_*, MT_*). */
export interface GuestTableLayout {
  base: number;
  entries: number;
  stride: number;
  max: number;
  sizeOff: number;
  hvaOff: number;
}


export const ADDON_PATH = join(packageRoot(), 'native', 'build', 'Release', 'virtiofsd_native.node');

const raw = createRequire(import.meta.url)(ADDON_PATH) as RawNative;

// Node 20's N-API cannot read a SharedArrayBuffer directly, but can read a typed array over one. One view
// per buffer, created once (a non-growable wasm memory's buffer never changes).
const views = new WeakMap<SharedArrayBuffer, Uint8Array>();
function viewOf(buf: SharedArrayBuffer): Uint8Array {
  if (!(buf instanceof SharedArrayBuffer)) throw new TypeError('expected a SharedArrayBuffer');
  let v = views.get(buf);
  if (v === undefined) {
    v = new Uint8Array(buf);
    views.set(buf, v);
  }
  return v;
}

export const native: Native = {
  ...raw,
  memoryAddress: (buf) => raw.memoryAddress(viewOf(buf)),
  mapFixed: (buf, off, len, fd, fileOff) => raw.mapFixed(viewOf(buf), off, len, fd, fileOff),
  unmapFixed: (buf, off, len) => raw.unmapFixed(viewOf(buf), off, len),
  sigbusGuard: (buf, off, len) => raw.sigbusGuard(viewOf(buf), off, len),
  setWindow: (buf, t) => raw.setWindow(viewOf(buf), t.base, t.entries, t.stride, t.max, t.sizeOff, t.hvaOff),
};

/** Shorthand for the constants. */
export const C: NativeConstants = raw.constants;

const ERRNO_BY_NUMBER = new Map<number, string>(Object.entries(C.errno).map(([k, v]) => [v, k]));

/** 'ENOENT' for 2; 'errno 200' for a number the addon does not name. */
const STATUS_NAME = Buffer.from('status');
const statusBuf = Buffer.alloc(8192);

/**
 * A `kB` field of /proc/self/status (VmRSS, VmSize, VmData...) in KiB, read through procSelfRead (it
 * works inside the sandbox, where /proc has no path); -1 when it cannot be read or is not there.
 */
export function selfStatusKib(field: string): number {
  const n = native.procSelfRead(STATUS_NAME, statusBuf);
  if (n < 0) return -1;
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(statusBuf.toString('latin1', 0, n));
  return m ? Number(m[1]) : -1;
}

export function errnoName(e: number): string {
  return ERRNO_BY_NUMBER.get(e) ?? `errno ${e}`;
}
/** Shorthand for the errno numbers (positive). */
export const E: NativeConstants['errno'] = raw.constants.errno;
