/**
 * The passthrough file system: serves a host directory to the guest.
 *
 * Confinement (DESIGN.md "Security stance"): an inode is an O_PATH|O_NOFOLLOW fd; a name is only ever
 * resolved one component at a time relative to its parent's fd with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS), so a guest symlink is returned to the guest, never
 * followed on the host, and ".." cannot leave the share. Files are opened by reopening the inode fd via
 * /proc/self/fd (the magic link names the inode itself, not a path), and only regular files and
 * directories are opened at all: a fifo would block the worker, a device node would reach host hardware.
 *
 * Node ids and handles live in the shared tables (src/fs/tables.ts), so any worker may serve any
 * request. Every inode fd is pinned (acquire/release) around each use.
 *
 * Modes: the kernel applies the caller's umask before sending (FUSE_DONT_MASK is not negotiated) and
 * the daemon runs with umask 0, so request modes are used as given.
 */
import { Errno } from '../errors.js';
import { C, native } from '../native.js';
import type {
  Created, Ctx, DirSink, Entry, FileSink, FileSource, FileSystem, InitOptions, Opened, SetattrArgs,
} from './filesystem.js';
import type { Tables } from './tables.js';

const STAT_SIZE = 96;
const ATTR_MODE = 60;
const ATTR_UID = 68;
const ATTR_GID = 72;
const ATTR_DEV = 88;
/** fuse_attr.flags, and its FUSE_ATTR_SUBMOUNT bit (linux/fuse.h) */
const ATTR_FLAGS = 84;
const FUSE_ATTR_SUBMOUNT = 1 << 0;

const RESOLVE = C.RESOLVE_BENEATH | C.RESOLVE_NO_MAGICLINKS | C.RESOLVE_NO_SYMLINKS;
const PATH_FLAGS = C.O_PATH | C.O_NOFOLLOW | C.O_CLOEXEC;
const STAT_FLAGS = C.AT_EMPTY_PATH | C.AT_SYMLINK_NOFOLLOW;
const DIRENT_BUF = 64 * 1024;
/** the empty name, for AT_EMPTY_PATH calls on an inode's own O_PATH fd */
const EMPTY_NAME = new Uint8Array(0);
/** the largest linux_dirent64 record: ALIGN(19 + 255 + 1, 8) */
const MAX_HOST_RECLEN = 280;

/** Guest open flags we pass on; everything else (O_CREAT, O_EXCL, O_NOCTTY, O_NOFOLLOW, O_PATH,
 *  O_TMPFILE, O_ASYNC, O_NOATIME, O_CLOEXEC…) is dropped. x86-64/aarch64 guests use the host's encoding. */
const OPEN_KEEP = C.O_ACCMODE | C.O_APPEND | C.O_TRUNC | C.O_SYNC | C.O_DSYNC | C.O_LARGEFILE;

/** Seeks a directory to a cookie (ext4 cookies are 63-bit hashes: bigint all the way). 0 or -errno. */
function seekDir(fd: number, off: bigint): number {
  const r = native.lseekBig(fd, off, C.SEEK_SET);
  return r < 0n ? Number(r) : 0;
}

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
}

export class Passthrough implements FileSystem {
  private readonly st = new Uint8Array(STAT_SIZE);
  private readonly stv = new DataView(this.st.buffer);
  private readonly dents = new Uint8Array(DIRENT_BUF);
  private readonly dentv = new DataView(this.dents.buffer);
  private writeback = false;
  /** The root inode's fd, when this instance opened the session (`open`). */
  private ownedRootFd = -1;

  /**
   * @param tables the shared inode/handle tables, already initialised (see `Passthrough.open`)
   * @param procSelfFd an O_PATH fd on /proc/self/fd (fds are process wide: one for all workers)
   */
  constructor(
    private readonly tables: Tables,
    private readonly procSelfFd: number,
    private readonly opts: PassthroughOptions = {},
  ) {}

  /**
   * Open the share root and /proc/self/fd and initialise the inode table with the root as node id 1.
   * Called once per session (by main); workers construct with the same tables and procSelfFd.
   * Throws (startup error) if either cannot be opened.
   */
  static open(sharedDir: string, tables: Tables, opts: PassthroughOptions = {}): Passthrough {
    const enc = new TextEncoder();
    const rootFd = native.openat2(C.AT_FDCWD, enc.encode(sharedDir), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0, 0);
    if (rootFd === -Errno.ENOSYS) throw new Error('this kernel has no openat2(2) (Linux 5.6 or later is required)');
    if (rootFd < 0) throw new Error(`cannot open shared directory ${sharedDir}: errno ${-rootFd}`);
    const procFd = native.openat2(C.AT_FDCWD, enc.encode('/proc/self/fd'), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0, 0);
    if (procFd < 0) {
      native.close(rootFd);
      throw new Error(`cannot open /proc/self/fd (is /proc mounted?): errno ${-procFd}`);
    }
    const st = new Uint8Array(STAT_SIZE);
    const r = native.statAt(rootFd, null, STAT_FLAGS, st);
    if (r < 0) {
      native.close(rootFd);
      native.close(procFd);
      throw new Error(`cannot stat shared directory ${sharedDir}: errno ${-r}`);
    }
    const v = new DataView(st.buffer);
    tables.inodeInit(rootFd, v.getBigUint64(ATTR_DEV, true), v.getBigUint64(0, true));
    const fs = new Passthrough(tables, procFd, opts);
    fs.ownedRootFd = rootFd;
    return fs;
  }

  /** Closes what `open` opened (the root inode's fd and /proc/self/fd); for the session owner only. */
  close(): void {
    if (this.ownedRootFd >= 0) {
      native.close(this.ownedRootFd);
      native.close(this.procSelfFd);
    }
    this.ownedRootFd = -1;
  }

  get procFd(): number {
    return this.procSelfFd;
  }

  // ---- helpers ----

  /** Run f with the pinned fd of nodeid; ESTALE for an unknown node id. */
  private withInode<T>(nodeid: bigint, f: (fd: number) => T): T | number {
    const fd = this.tables.inodeAcquire(nodeid);
    if (fd < 0) return -Errno.ESTALE;
    try {
      return f(fd);
    } finally {
      const c = this.tables.inodeRelease(nodeid);
      if (c >= 0) native.close(c);
    }
  }

  private withHandle<T>(fh: bigint, f: (fd: number) => T): T | number {
    const fd = this.tables.handleAcquire(fh);
    if (fd < 0) return -Errno.EBADF;
    try {
      return f(fd);
    } finally {
      const c = this.tables.handleRelease(fh);
      if (c >= 0) native.close(c);
    }
  }

  /** Run a creating op as the caller so the new file gets the caller's uid/gid. */
  private asCaller<T>(ctx: Ctx, f: () => T): T {
    native.setCreds(ctx.uid, ctx.gid);
    try {
      return f();
    } finally {
      native.setCreds(0, 0);
    }
  }

  private statFd(fd: number): number {
    return native.statAt(fd, null, STAT_FLAGS, this.st);
  }

  private get mode(): number {
    return this.stv.getUint32(ATTR_MODE, true);
  }

  /** Look up `name` in the directory fd: one lookup reference on success. */
  private lookupAt(dirFd: number, name: Uint8Array): Entry | number {
    const fd = native.openat2(dirFd, name, PATH_FLAGS, 0, RESOLVE);
    if (fd < 0) return fd;
    return this.enter(fd);
  }

  /** Register an O_PATH fd in the inode table (takes ownership of fd). */
  private enter(fd: number): Entry | number {
    const r = this.statFd(fd);
    if (r < 0) {
      native.close(fd);
      return r;
    }
    const nodeid = this.tables.inodeLookup(this.stv.getBigUint64(ATTR_DEV, true), this.stv.getBigUint64(0, true), fd);
    if (nodeid === 0n) {
      native.close(fd);
      return -Errno.ENFILE;
    }
    if (this.tables.inodeLastExisted()) native.close(fd);
    return { nodeid, generation: 0n, attr: this.st };
  }

  private closeIf(fd: number): void {
    if (fd >= 0) native.close(fd);
  }

  // ---- session ----

  init(opts: InitOptions): void {
    this.writeback = opts.writeback;
  }

  destroy(): void {
    this.tables.inodeDropAll();
    for (let fd = this.tables.inodeDrainNext(); fd >= 0; fd = this.tables.inodeDrainNext()) native.close(fd);
    for (let fd = this.tables.handleDrainNext(); fd >= 0; fd = this.tables.handleDrainNext()) native.close(fd);
  }

  // ---- names ----

  lookup(_ctx: Ctx, parent: bigint, name: Uint8Array): Entry | number {
    return this.withInode(parent, (pfd) => this.markSubmount(parent, this.lookupAt(pfd, name)));
  }

  /** With announceSubmounts: set FUSE_ATTR_SUBMOUNT on a directory whose st_dev is not its parent's. */
  private markSubmount(parent: bigint, e: Entry | number): Entry | number {
    if (!this.opts.announceSubmounts || typeof e === 'number') return e;
    if ((this.stv.getUint32(ATTR_MODE, true) & C.S_IFMT) !== C.S_IFDIR) return e;
    if (this.stv.getBigUint64(ATTR_DEV, true) !== this.tables.inodeDev(parent)) {
      this.stv.setUint32(ATTR_FLAGS, this.stv.getUint32(ATTR_FLAGS, true) | FUSE_ATTR_SUBMOUNT, true);
    }
    return e;
  }

  forget(nodeid: bigint, nlookup: bigint): void {
    this.closeIf(this.tables.inodeForget(nodeid, nlookup));
  }

  getattr(_ctx: Ctx, nodeid: bigint, _fh: bigint | null): Uint8Array | number {
    return this.withInode(nodeid, (fd) => {
      const r = this.statFd(fd);
      return r < 0 ? r : this.st;
    });
  }

  setattr(_ctx: Ctx, nodeid: bigint, a: SetattrArgs): Uint8Array | number {
    return this.withInode(nodeid, (fd) => {
      let r = this.statFd(fd);
      if (r < 0) return r;
      const type = this.mode & C.S_IFMT;
      if (a.mode !== undefined) {
        if (type === C.S_IFLNK) return -Errno.EOPNOTSUPP;
        r = native.fchmodat(fd, null, a.mode & 0o7777);
        if (r < 0) return r;
      }
      if (a.uid !== undefined || a.gid !== undefined) {
        r = native.fchownat(fd, null, a.uid ?? -1, a.gid ?? -1, STAT_FLAGS);
        if (r < 0) return r;
      }
      if (a.size !== undefined) {
        if (a.fh !== undefined) {
          r = this.withHandle(a.fh, (hfd) => native.ftruncate(hfd, a.size!));
        } else {
          if (type === C.S_IFDIR) return -Errno.EISDIR;
          if (type !== C.S_IFREG) return -Errno.EINVAL;
          const wfd = native.openProcFd(this.procSelfFd, fd, C.O_WRONLY);
          if (wfd < 0) return wfd;
          r = native.ftruncate(wfd, a.size);
          native.close(wfd);
        }
        if (r < 0) return r;
      }
      if (a.atime !== undefined || a.mtime !== undefined) {
        const t = (x: SetattrArgs['atime']): [number, number] =>
          x === undefined ? [0, C.UTIME_OMIT] : x === 'now' ? [0, C.UTIME_NOW] : [x.sec, x.nsec];
        const [as, an] = t(a.atime);
        const [ms, mn] = t(a.mtime);
        if (type === C.S_IFLNK) {
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
      r = this.statFd(fd);
      return r < 0 ? r : this.st;
    });
  }

  readlink(_ctx: Ctx, nodeid: bigint): Uint8Array | number {
    return this.withInode(nodeid, (fd) => {
      const buf = new Uint8Array(4096);
      const n = native.readlinkat(fd, null, buf);
      return n < 0 ? n : buf.slice(0, n);
    });
  }

  symlink(ctx: Ctx, parent: bigint, name: Uint8Array, target: Uint8Array): Entry | number {
    return this.withInode(parent, (pfd) => {
      const r = this.asCaller(ctx, () => native.symlinkat(target, pfd, name));
      return r < 0 ? r : this.lookupAt(pfd, name);
    });
  }

  mknod(ctx: Ctx, parent: bigint, name: Uint8Array, mode: number, rdev: number, _umask: number): Entry | number {
    const type = mode & C.S_IFMT;
    if (type === C.S_IFDIR || type === C.S_IFLNK) return -Errno.EINVAL;
    if ((type === C.S_IFBLK || type === C.S_IFCHR) && !this.opts.allowDevices) return -Errno.EPERM;
    return this.withInode(parent, (pfd) => {
      const r = this.asCaller(ctx, () => native.mknodat(pfd, name, mode, rdev));
      return r < 0 ? r : this.lookupAt(pfd, name);
    });
  }

  mkdir(ctx: Ctx, parent: bigint, name: Uint8Array, mode: number, _umask: number): Entry | number {
    return this.withInode(parent, (pfd) => {
      const r = this.asCaller(ctx, () => native.mkdirat(pfd, name, mode & 0o7777));
      return r < 0 ? r : this.lookupAt(pfd, name);
    });
  }

  link(_ctx: Ctx, nodeid: bigint, newParent: bigint, newName: Uint8Array): Entry | number {
    return this.withInode(nodeid, (fd) =>
      this.withInode(newParent, (pfd) => {
        const r = native.linkat(fd, null, pfd, newName, C.AT_EMPTY_PATH);
        if (r < 0) return r;
        // the same inode: take a new lookup reference on its node id
        const dup = native.dup(fd);
        if (dup < 0) return dup;
        return this.enter(dup);
      }),
    );
  }

  unlink(_ctx: Ctx, parent: bigint, name: Uint8Array): number {
    return this.withInode(parent, (pfd) => native.unlinkat(pfd, name, 0));
  }

  rmdir(_ctx: Ctx, parent: bigint, name: Uint8Array): number {
    return this.withInode(parent, (pfd) => native.unlinkat(pfd, name, C.AT_REMOVEDIR));
  }

  rename(_ctx: Ctx, parent: bigint, name: Uint8Array, newParent: bigint, newName: Uint8Array, flags: number): number {
    if ((flags & ~(C.RENAME_NOREPLACE | C.RENAME_EXCHANGE | C.RENAME_WHITEOUT)) !== 0) return -Errno.EINVAL;
    return this.withInode(parent, (pfd) =>
      this.withInode(newParent, (npfd) => native.renameat2(pfd, name, npfd, newName, flags)),
    );
  }

  // ---- files ----

  private openFlags(flags: number): number {
    let f = flags & (this.opts.allowDirectIo ? OPEN_KEEP | C.O_DIRECT : OPEN_KEEP);
    if (this.writeback) {
      // The kernel caches writes and may read to fill pages of a write-only file; it handles O_APPEND.
      if ((f & C.O_ACCMODE) === C.O_WRONLY) f = (f & ~C.O_ACCMODE) | C.O_RDWR;
      f &= ~C.O_APPEND;
    }
    return f;
  }

  private newHandle(fd: number, flags: number): Opened | number {
    const fh = this.tables.handleOpen(fd, flags >>> 0);
    if (fh === 0n) {
      native.close(fd);
      return -Errno.ENFILE;
    }
    return { fh, openFlags: 0 };
  }

  open(_ctx: Ctx, nodeid: bigint, flags: number): Opened | number {
    return this.withInode(nodeid, (fd) => {
      const r = this.statFd(fd);
      if (r < 0) return r;
      const type = this.mode & C.S_IFMT;
      if (type === C.S_IFDIR) {
        if ((flags & C.O_ACCMODE) !== C.O_RDONLY) return -Errno.EISDIR;
      } else if (type !== C.S_IFREG) {
        // fifo (would block the worker), socket, device (host hardware), symlink (never followed)
        return type === C.S_IFLNK ? -Errno.ELOOP : -Errno.EACCES;
      }
      const f = this.openFlags(flags);
      const ofd = native.openProcFd(this.procSelfFd, fd, f);
      if (ofd < 0) return ofd;
      return this.newHandle(ofd, f);
    });
  }

  create(ctx: Ctx, parent: bigint, name: Uint8Array, mode: number, flags: number, _umask: number): Created | number {
    return this.withInode(parent, (pfd) => {
      // Create with O_EXCL first: O_CREAT alone opens an existing FIFO or device node, and that open is
      // itself the harm (a FIFO's reader sees a writer, a watchdog or tape device acts on open). An
      // existing name is opened only if it is a regular file, by reopening its O_PATH fd.
      // O_NONBLOCK: belt and braces should a FIFO appear anyway; on regular files it has no effect.
      const f = this.openFlags(flags) | (flags & C.O_EXCL) | C.O_CREAT | C.O_NOFOLLOW | C.O_NONBLOCK;
      let ofd = this.asCaller(ctx, () => native.openat2(pfd, name, f | C.O_EXCL, mode & 0o7777, RESOLVE));
      if (ofd === -Errno.EEXIST && (flags & C.O_EXCL) === 0) {
        const efd = native.openat2(pfd, name, PATH_FLAGS, 0, RESOLVE);
        if (efd < 0) return efd;
        const r = this.statFd(efd);
        const type = this.mode & C.S_IFMT;
        if (r < 0 || type !== C.S_IFREG) {
          native.close(efd);
          return r < 0 ? r : type === C.S_IFLNK ? -Errno.ELOOP : type === C.S_IFDIR ? -Errno.EISDIR : -Errno.EACCES;
        }
        ofd = this.asCaller(ctx, () => native.openProcFd(this.procSelfFd, efd, f & ~(C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW)));
        native.close(efd);
      }
      if (ofd < 0) return ofd;
      if (this.statFd(ofd) < 0 || (this.mode & C.S_IFMT) !== C.S_IFREG) {
        native.close(ofd);
        return -Errno.EACCES;
      }
      // The inode fd for exactly the file we opened (no second name resolution, no race).
      const pathFd = native.openProcFd(this.procSelfFd, ofd, C.O_PATH);
      if (pathFd < 0) {
        native.close(ofd);
        return pathFd;
      }
      const e = this.enter(pathFd);
      if (typeof e === 'number') {
        native.close(ofd);
        return e;
      }
      const h = this.newHandle(ofd, f & ~(C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW));
      if (typeof h === 'number') {
        this.forget(e.nodeid, 1n);
        return h;
      }
      return { fh: h.fh, openFlags: h.openFlags, entry: e };
    });
  }

  read(_ctx: Ctx, _nodeid: bigint, fh: bigint, offset: number, size: number, sink: FileSink, sinkOff: number): number {
    if (size === 0) return 0;
    return this.withHandle(fh, (fd) => sink.readFromFile(fd, offset, sinkOff, size));
  }

  write(_ctx: Ctx, _nodeid: bigint, fh: bigint, offset: number, size: number, src: FileSource, srcOff: number,
    _killSuidgid: boolean): number {
    if (size === 0) return 0;
    return this.withHandle(fh, (fd) => src.writeToFile(fd, offset, srcOff, size));
  }

  flush(_ctx: Ctx, _nodeid: bigint, fh: bigint, _lockOwner: bigint): number {
    // close(dup(fd)) gives the host file system its flush-on-close (NFS and the like) without closing ours
    return this.withHandle(fh, (fd) => {
      const d = native.dup(fd);
      // Out of descriptors, the flush is skipped rather than failing the guest's close(2) with EMFILE:
      // the data is already with the host file system, and RELEASE closes the handle's own fd.
      if (d === -Errno.EMFILE || d === -Errno.ENFILE) return 0;
      return d < 0 ? d : native.close(d);
    });
  }

  release(_ctx: Ctx, _nodeid: bigint, fh: bigint): number {
    const c = this.tables.handleClose(fh);
    if (c === -2) return -Errno.EBADF;
    this.closeIf(c);
    return 0;
  }

  fsync(_ctx: Ctx, _nodeid: bigint, fh: bigint, datasync: boolean): number {
    return this.withHandle(fh, (fd) => native.fsync(fd, datasync));
  }

  fallocate(_ctx: Ctx, _nodeid: bigint, fh: bigint, mode: number, offset: number, length: number): number {
    return this.withHandle(fh, (fd) => native.fallocate(fd, mode, offset, length));
  }

  lseek(_ctx: Ctx, _nodeid: bigint, fh: bigint, offset: number, whence: number): number {
    if (whence !== C.SEEK_SET && whence !== C.SEEK_CUR && whence !== C.SEEK_END &&
      whence !== C.SEEK_DATA && whence !== C.SEEK_HOLE) return -Errno.EINVAL;
    return this.withHandle(fh, (fd) => native.lseek(fd, offset, whence));
  }

  copyFileRange(_ctx: Ctx, _nodeIn: bigint, fhIn: bigint, offIn: number, _nodeOut: bigint, fhOut: bigint, offOut: number,
    len: number): number {
    if (len === 0) return 0;
    // The host checks what the guest's kernel checked too: fhIn readable, fhOut writable (EBADF),
    // regular files, overlapping ranges in one file (EINVAL).
    return this.withHandle(fhIn, (inFd) => this.withHandle(fhOut, (outFd) => native.copyFileRange(inFd, offIn, outFd, offOut, len, 0)));
  }

  // ---- directories ----

  opendir(_ctx: Ctx, nodeid: bigint, _flags: number): Opened | number {
    return this.withInode(nodeid, (fd) => {
      const r = this.statFd(fd);
      if (r < 0) return r;
      if ((this.mode & C.S_IFMT) !== C.S_IFDIR) return -Errno.ENOTDIR;
      const dfd = native.openProcFd(this.procSelfFd, fd, C.O_RDONLY | C.O_DIRECTORY);
      if (dfd < 0) return dfd;
      return this.newHandle(dfd, C.O_RDONLY | C.O_DIRECTORY);
    });
  }

  readdir(_ctx: Ctx, nodeid: bigint, fh: bigint, offset: bigint, sink: DirSink, plus: boolean): number {
    if (offset > 0x7fffffffffffffffn) return -Errno.EINVAL;
    return this.withHandle(fh, (dfd) => {
      // The handle's file position is where the previous READDIR stopped (the kernel serialises
      // readdir per open file), so a sequential listing needs no seek; any other offset is a cookie
      // (d_off) we handed out earlier, or 0.
      if (offset === 0n || native.lseekBig(dfd, 0n, C.SEEK_CUR) !== offset) {
        const r = seekDir(dfd, offset);
        if (r < 0) return r;
      }
      let lastOff = offset;
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
        const n = native.getdents64(dfd, this.dents.subarray(0, want));
        if (n < 0) return emitted > 0 ? 0 : n;
        if (n === 0) break;
        let p = 0;
        while (p < n) {
          const ino = this.dentv.getBigUint64(p, true);
          const next = BigInt.asUintN(64, this.dentv.getBigInt64(p + 8, true));
          const reclen = this.dentv.getUint16(p + 16, true);
          const type = this.dents[p + 18]!;
          let e = p + 19;
          while (e < p + reclen && this.dents[e] !== 0) e++;
          const name = this.dents.subarray(p + 19, e);
          if (!sink.fits(name.length)) {
            // Does not fit after all (only with a tiny reply buffer): put the position back.
            seekDir(dfd, lastOff);
            return 0;
          }
          const dot = name.length <= 2 && name[0] === 0x2e && (name.length === 1 || name[1] === 0x2e);
          if (!plus) {
            sink.add(ino, next, type, name, null);
          } else if (dot) {
            sink.add(ino, next, type, name, { nodeid: 0n, generation: 0n, attr: new Uint8Array(88) });
          } else {
            const ent = this.markSubmount(nodeid, this.lookupAt(dfd, name)); // the handle's fd is this directory
            // an entry that vanished since getdents is skipped
            if (typeof ent !== 'number') sink.add(ino, next, type, name, ent);
          }
          lastOff = next;
          emitted++;
          p += reclen;
        }
      }
      return 0;
    });
  }

  releasedir(_ctx: Ctx, _nodeid: bigint, fh: bigint): number {
    return this.release(_ctx, _nodeid, fh);
  }

  fsyncdir(_ctx: Ctx, _nodeid: bigint, fh: bigint, datasync: boolean): number {
    return this.fsync(_ctx, _nodeid, fh, datasync);
  }

  // ---- misc ----

  statfs(_ctx: Ctx, nodeid: bigint): Uint8Array | number {
    return this.withInode(nodeid, (fd) => {
      const out = new Uint8Array(80);
      const r = native.fstatfs(fd, out);
      return r < 0 ? r : out;
    });
  }

  syncfs(_ctx: Ctx, nodeid: bigint): number {
    // syncfs(2) refuses O_PATH fds: reopen the inode for reading (a directory, or a regular file).
    // Only the file system holding the node (the share's root, as the guest sends it) is committed;
    // file systems mounted beneath the share are not walked.
    return this.withInode(nodeid, (fd) => {
      const r = this.statFd(fd);
      if (r < 0) return r;
      const type = this.mode & C.S_IFMT;
      if (type !== C.S_IFDIR && type !== C.S_IFREG) return -Errno.EINVAL;
      const rfd = native.openProcFd(this.procSelfFd, fd, C.O_RDONLY | C.O_NONBLOCK);
      if (rfd < 0) return rfd;
      const s = native.syncfs(rfd);
      native.close(rfd);
      return s;
    });
  }

  access(ctx: Ctx, nodeid: bigint, mask: number): number {
    return this.withInode(nodeid, (fd) => {
      const r = this.statFd(fd);
      if (r < 0) return r;
      const m = mask & 7;
      if (m === 0) return 0;
      const mode = this.mode;
      if (ctx.uid === 0) {
        // root may do anything, except execute a non-directory without any x bit
        if ((m & C.X_OK) && (mode & C.S_IFMT) !== C.S_IFDIR && (mode & 0o111) === 0) return -Errno.EACCES;
        return 0;
      }
      const uid = this.stv.getUint32(ATTR_UID, true);
      const gid = this.stv.getUint32(ATTR_GID, true);
      const bits = uid === ctx.uid ? (mode >> 6) & 7 : gid === ctx.gid ? (mode >> 3) & 7 : mode & 7;
      return (bits & m) === m ? 0 : -Errno.EACCES;
    });
  }

  // ---- extended attributes ----
  //
  // f*xattr needs a real fd (an O_PATH fd gives EBADF), and the l*xattr path calls would need a path.
  // So, as the reference daemons do, the inode's O_PATH fd is reopened through /proc/self/fd — only
  // for a regular file or a directory (the type of an inode never changes, so stat-then-open has no
  // race; the magic link names the inode itself, never a path). Symlinks are not followed, FIFOs,
  // sockets and devices are never opened: for them get finds nothing, the list is empty, set and
  // remove are refused. O_NONBLOCK: a regular file under a lease must not block the worker.
  //
  // Credentials: as root, like the reference daemon. The guest kernel has already checked the
  // caller's permission (default_permissions, xattr_permission), so guest root may also set trusted.*
  // and security.* names on the host file.

  /** f(fd) on a real fd for nodeid, or `other` for a file type that is never opened. */
  private withXattrFd(nodeid: bigint, f: (fd: number) => number, other: number): number {
    return this.withInode(nodeid, (ifd) => {
      const r = this.statFd(ifd);
      if (r < 0) return r;
      const type = this.mode & C.S_IFMT;
      let flags: number;
      if (type === C.S_IFREG) flags = C.O_RDONLY | C.O_NONBLOCK;
      else if (type === C.S_IFDIR) flags = C.O_RDONLY | C.O_DIRECTORY;
      else return other;
      const fd = native.openProcFd(this.procSelfFd, ifd, flags);
      if (fd < 0) return fd;
      try {
        return f(fd);
      } finally {
        native.close(fd);
      }
    });
  }

  setxattr(_ctx: Ctx, nodeid: bigint, name: Uint8Array, value: Uint8Array, flags: number): number {
    return this.withXattrFd(nodeid, (fd) => native.fsetxattr(fd, name, value, flags), -Errno.EOPNOTSUPP);
  }

  getxattr(_ctx: Ctx, nodeid: bigint, name: Uint8Array, out: Uint8Array): number {
    return this.withXattrFd(nodeid, (fd) => native.fgetxattr(fd, name, out), -Errno.ENODATA);
  }

  listxattr(_ctx: Ctx, nodeid: bigint, out: Uint8Array): number {
    return this.withXattrFd(nodeid, (fd) => native.flistxattr(fd, out), 0);
  }

  removexattr(_ctx: Ctx, nodeid: bigint, name: Uint8Array): number {
    return this.withXattrFd(nodeid, (fd) => native.fremovexattr(fd, name), -Errno.EOPNOTSUPP);
  }
}
