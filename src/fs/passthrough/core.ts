/**
 * What every part of the passthrough shares: the tables, the stat scratch, and the helpers that pin
 * an inode or handle fd around a use, run a creating call as the caller, and turn an O_PATH fd into
 * a node id. The confinement rules these helpers keep are stated in src/fs/passthrough.ts.
 */
import { ATTR_SIZE, AttrOff, FUSE_ATTR_SUBMOUNT } from '../../abi/fuse.js';
import { S_IFDIR, S_IFMT, S_IFREG, S_ISGID, S_ISUID } from '../../abi/stat.js';
import { Errno } from '../../errors.js';
import { C, STAT_OUT_SIZE, native } from '../../native.js';
import type { Ctx, Entry, Opened } from '../filesystem.js';
import type { Tables } from '../tables.js';
import type { XattrPolicy } from '../xattrmap.js';

export const RESOLVE = C.RESOLVE_BENEATH | C.RESOLVE_NO_MAGICLINKS | C.RESOLVE_NO_SYMLINKS;
export const PATH_FLAGS = C.O_PATH | C.O_NOFOLLOW | C.O_CLOEXEC;
export const STAT_FLAGS = C.AT_EMPTY_PATH | C.AT_SYMLINK_NOFOLLOW;
/** st_mode's group-execute bit (inode(7)) */
const S_IXGRP = 0o0010;

/** the empty name, for AT_EMPTY_PATH calls on an inode's own O_PATH fd */
export const EMPTY_NAME = new Uint8Array(0);
/** bytes one getdents64 call may fill */
export const DIRENT_BUF = 64 * 1024;

/** Guest open flags we pass on; everything else (O_CREAT, O_EXCL, O_NOCTTY, O_NOFOLLOW, O_PATH,
 *  O_TMPFILE, O_ASYNC, O_NOATIME, O_CLOEXEC…) is dropped. x86-64/aarch64 guests use the host's encoding. */
const OPEN_KEEP = C.O_ACCMODE | C.O_APPEND | C.O_TRUNC | C.O_SYNC | C.O_DSYNC | C.O_LARGEFILE;

export interface PassthroughOptions {
  /** allow mknod of block/char devices (default false: EPERM) */
  allowDevices?: boolean;
  /**
   * Pass the guest's O_DIRECT on to the host file (default false). A guest's O_DIRECT bypasses *its*
   * page cache; the host's cache still serves it well, and forcing host O_DIRECT roughly halves
   * throughput (measured: bench/). The reference daemon drops it too unless -o allow_direct_io.
   */
  allowDirectIo?: boolean;
  /**
   * Mark directories on another host file system than their parent (mount points inside the share)
   * with FUSE_ATTR_SUBMOUNT, so the guest mounts them separately with their own st_dev (default false;
   * --announce-submounts). Inode numbers of different host file systems then cannot collide in the guest.
   */
  announceSubmounts?: boolean;
  /** which xattr names the guest may use, under which host names (src/fs/xattrmap.ts); default: xattrPolicy(undefined, false) */
  xattrPolicy?: XattrPolicy;
  /**
   * --security-label without --xattrmap: a new node's `security.selinux` context goes to the host under
   * its own name, although the default policy refuses that name to SETXATTR (docs/xattr.md). With a map,
   * the context's name goes through the map like any other.
   */
  secctxAsIs?: boolean;
}

export class Core {
  /** native.statAt output: a fuse_attr then st_dev (AttrOff) */
  readonly st = new Uint8Array(STAT_OUT_SIZE);
  readonly stv = new DataView(this.st.buffer);
  /** the fuse_attr part of st: what getattr, setattr and entries return (the server copies it at once) */
  readonly attr = this.st.subarray(0, ATTR_SIZE);
  /** the Entry lookups return: one object, refilled by each (the server encodes it at once) */
  readonly entry: Entry = { nodeid: 0, generation: 0, attr: this.attr };
  /** the Opened that open and opendir return, likewise */
  readonly opened: Opened = { fh: 0, openFlags: 0 };
  /** getdents64 scratch */
  readonly dents = new Uint8Array(DIRENT_BUF);
  readonly dentv = new DataView(this.dents.buffer);
  /** getdentsFuse's result: u32 records, u64 last d_off */
  readonly dentState = new Uint8Array(16);
  readonly dentStateView = new DataView(this.dentState.buffer);
  /** where readdir left the directory fd it served (src/fs/passthrough/dir.ts), -1n unknown */
  dirPos = -1n;
  /** FUSE_WRITEBACK_CACHE was negotiated */
  writeback = false;
  /** FUSE_DONT_MASK was negotiated: creating requests' umask is ours to apply (entry.ts createMode) */
  dontMask = false;
  /** the daemon runs as root (euid 0): it can run a call as its caller (asCaller) */
  readonly privileged = process.geteuid?.() === 0;

  constructor(
    readonly tables: Tables,
    /** an O_PATH fd on /proc/self/fd (fds are process wide: one for all workers) */
    readonly procSelfFd: number,
    readonly opts: PassthroughOptions,
  ) {}

  /**
   * Run f with the pinned fd of nodeid; ESTALE for an unknown node id. (A closure per call: the hot
   * calls pin in plain code instead, `tables.inodeAcquire` … try/finally `unpinInode`.)
   */
  withInode<T>(nodeid: number, f: (fd: number) => T): T | number {
    const fd = this.tables.inodeAcquire(nodeid);
    if (fd < 0) return -Errno.ESTALE;
    try {
      return f(fd);
    } finally {
      this.unpinInode(nodeid);
    }
  }

  /** Run f with the pinned fd of an open handle; EBADF for an unknown handle (see withInode). */
  withHandle<T>(fh: number, f: (fd: number) => T): T | number {
    const fd = this.tables.handleAcquire(fh);
    if (fd < 0) return -Errno.EBADF;
    try {
      return f(fd);
    } finally {
      this.unpinHandle(fh);
    }
  }

  /** Undo a successful inodeAcquire; closes the fd when this was the last user of a forgotten inode. */
  unpinInode(nodeid: number): void {
    const c = this.tables.inodeRelease(nodeid);
    if (c >= 0) native.close(c);
  }

  /** Undo a successful handleAcquire; closes the fd when this was the last user of a released handle. */
  unpinHandle(fh: number): void {
    const c = this.tables.handleRelease(fh);
    if (c >= 0) native.close(c);
  }

  /**
   * Run a creating call as its caller: the worker thread's fsuid, fsgid and supplementary groups become
   * ctx's for the call (native.setCreds, per thread), then root's again. The new inode gets the caller's
   * uid and gid, or the parent's gid and set-group-ID bit in a set-group-ID directory, and the host's
   * permission checks apply to the caller: the host kernel's own rules, as a local process would meet
   * them. (The guest kernel has checked its copy of the permissions already; running as root would
   * skip the host's, and make every new file root's.) A failed switch answers its errno (EPERM) and
   * nothing is created. A caller that is root itself, or a daemon that is not root (it cannot become
   * anyone else: files are created as its own user), runs f as it is.
   */
  asCaller<T>(ctx: Ctx, f: () => T): T | number {
    if (!this.privileged || (ctx.uid === 0 && ctx.gid === 0 && ctx.ngroups === 0)) return f();
    const r = native.setCreds(ctx.uid, ctx.gid, ctx.groups, ctx.ngroups);
    if (r < 0) {
      this.asRoot();
      return r;
    }
    try {
      return f();
    } finally {
      this.asRoot();
    }
  }

  /**
   * Back to the daemon's credentials. A root daemon always may; if it could not, the thread would go on
   * with a guest user's (fewer) rights, so this is a bug, thrown (the request answers EIO, logged).
   */
  private asRoot(): void {
    const r = native.setCreds(0, 0, null, 0);
    if (r < 0) throw new Error(`cannot switch this thread back to root: errno ${-r}`);
  }

  /**
   * The *_KILL_SUIDGID flags (FUSE_HANDLE_KILLPRIV_V2): the guest kernel sets them on a write, a
   * truncate or a chown by a caller without CAP_FSETID, and the file must then lose its set-user-ID bit,
   * and its set-group-ID bit if group-executable (linux/fuse.h, FUSE_HANDLE_KILLPRIV_V2). The daemon,
   * root with CAP_FSETID, would keep them through the same syscall, so it clears them itself with a
   * chmod, before the write or truncate as the kernel does: one fstat when the bits are not set.
   * (Running the call as the caller would not do it for a guest root without CAP_FSETID, whose fsuid
   * 0 keeps the capability, and would cost a credential switch on every such WRITE.) Only regular files
   * (the guest kernel asks for nothing else). 0 or -errno; the stat scratch holds fd's attributes.
   */
  killSuidgid(fd: number): number {
    const r = this.statFd(fd);
    if (r < 0) return r;
    const mode = this.mode;
    if ((mode & S_IFMT) !== S_IFREG) return 0;
    let kill = mode & S_ISUID;
    if ((mode & (S_ISGID | S_IXGRP)) === (S_ISGID | S_IXGRP)) kill |= S_ISGID;
    return kill === 0 ? 0 : native.fchmodat(fd, null, mode & 0o7777 & ~kill);
  }

  /** stat fd into the scratch (st); 0 or -errno */
  statFd(fd: number): number {
    return native.statAt(fd, null, STAT_FLAGS, this.st);
  }

  /** st_mode of the last statFd */
  get mode(): number {
    return this.stv.getUint32(AttrOff.mode, true);
  }

  /** file type bits (S_IF*) of the last statFd */
  get type(): number {
    return this.mode & S_IFMT;
  }

  /** Look up `name` in the directory fd: one lookup reference on success. */
  lookupAt(dirFd: number, name: Uint8Array): Entry | number {
    const fd = native.openat2(dirFd, name, PATH_FLAGS, 0, RESOLVE);
    if (fd < 0) return fd;
    return this.enter(fd);
  }

  /** Register an O_PATH fd in the inode table (takes ownership of fd). */
  enter(fd: number): Entry | number {
    const r = this.statFd(fd);
    if (r < 0) {
      native.close(fd);
      return r;
    }
    const v = this.stv;
    const nodeid = this.tables.inodeLookup(v.getUint32(AttrOff.dev, true), v.getUint32(AttrOff.dev + 4, true),
      v.getUint32(AttrOff.ino, true), v.getUint32(AttrOff.ino + 4, true), fd);
    if (nodeid === 0) {
      native.close(fd);
      return -Errno.ENFILE;
    }
    if (this.tables.inodeLastExisted()) native.close(fd);
    const e = this.entry;
    e.nodeid = nodeid;
    return e;
  }

  /** With announceSubmounts: set FUSE_ATTR_SUBMOUNT on a directory whose st_dev is not its parent's. */
  markSubmount(parent: number, e: Entry | number): Entry | number {
    if (!this.opts.announceSubmounts || typeof e === 'number') return e;
    if (this.type !== S_IFDIR) return e;
    if (this.stv.getBigUint64(AttrOff.dev, true) !== this.tables.inodeDev(parent)) {
      this.stv.setUint32(AttrOff.flags, this.stv.getUint32(AttrOff.flags, true) | FUSE_ATTR_SUBMOUNT, true);
    }
    return e;
  }

  closeIf(fd: number): void {
    if (fd >= 0) native.close(fd);
  }

  forget(nodeid: number, nlookup: number): void {
    this.closeIf(this.tables.inodeForget(nodeid, nlookup));
  }

  /** The host open flags for the guest's. */
  openFlags(flags: number): number {
    let f = flags & (this.opts.allowDirectIo ? OPEN_KEEP | C.O_DIRECT : OPEN_KEEP);
    if (this.writeback) {
      // The kernel caches writes and may read to fill pages of a write-only file; it handles O_APPEND.
      if ((f & C.O_ACCMODE) === C.O_WRONLY) f = (f & ~C.O_ACCMODE) | C.O_RDWR;
      f &= ~C.O_APPEND;
    }
    return f;
  }

  /** A handle for an open fd (takes ownership of fd). */
  newHandle(fd: number, flags: number): Opened | number {
    const fh = this.tables.handleOpen(fd, flags >>> 0);
    if (fh === 0) {
      native.close(fd);
      return -Errno.ENFILE;
    }
    const o = this.opened;
    o.fh = fh;
    return o;
  }
}
