/**
 * The passthrough file system: serves a host directory to the guest.
 *
 * Confinement (README.md "Security"; docs/internals.md "The native addon"): an inode is an
 * O_PATH|O_NOFOLLOW fd; a name is only ever resolved one component at a time relative to its parent's
 * fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS), so a guest symlink is
 * returned to the guest, never followed on the host, and ".." cannot leave the share. Files are opened
 * by reopening the inode fd via /proc/self/fd (the magic link names the inode itself, not a path), and
 * only regular files and directories are opened at all: a fifo would block the worker, a device node
 * would reach host hardware.
 *
 * Node ids and handles live in the shared tables (src/fs/tables.ts), so any worker may serve any
 * request. Every inode fd is pinned (acquire/release) around each use. Node ids and handles are numbers
 * (src/fs/tables.ts); the hot calls (GETATTR, LOOKUP, OPEN, READ, WRITE, FLUSH, RELEASE, FORGET)
 * allocate nothing: they pin in plain code, and return the core's scratch attr, Entry and Opened.
 *
 * Modes: the daemon runs with umask 0. The kernel applies the caller's umask before sending, unless
 * FUSE_DONT_MASK is negotiated (with --posix-acl): then the request's umask is applied here, only where
 * the parent directory has no default ACL (entry.ts createMode).
 *
 * This file is the FileSystem face and the session (open, init, destroy); the work is in
 * src/fs/passthrough/: core.ts (shared state and helpers), entry.ts (names), attr.ts (attributes),
 * file.ts (open files), dir.ts (directories), xattr.ts (extended attributes).
 */
import { AttrOff } from '../abi/fuse.js';
import { Errno } from '../errors.js';
import { C, STAT_OUT_SIZE, native } from '../native.js';
import type {
  Created, Ctx, DirSink, Entry, FileSink, FileSource, FileSystem, InitOptions, Opened, SetattrArgs,
} from './filesystem.js';
import * as attr from './passthrough/attr.js';
import { Core, type PassthroughOptions, STAT_FLAGS } from './passthrough/core.js';
import * as dir from './passthrough/dir.js';
import * as entry from './passthrough/entry.js';
import * as file from './passthrough/file.js';
import * as xattr from './passthrough/xattr.js';
import type { Tables } from './tables.js';

export type { PassthroughOptions } from './passthrough/core.js';

export class Passthrough implements FileSystem {
  private readonly c: Core;
  /** The root inode's fd, when this instance opened the session (`open`). */
  private ownedRootFd = -1;

  /**
   * @param tables the shared inode/handle tables, already initialised (see `Passthrough.open`)
   * @param procSelfFd an O_PATH fd on /proc/self/fd (fds are process wide: one for all workers)
   */
  constructor(tables: Tables, procSelfFd: number, opts: PassthroughOptions = {}) {
    this.c = new Core(tables, procSelfFd, opts);
  }

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
    const st = new Uint8Array(STAT_OUT_SIZE);
    const r = native.statAt(rootFd, null, STAT_FLAGS, st);
    if (r < 0) {
      native.close(rootFd);
      native.close(procFd);
      throw new Error(`cannot stat shared directory ${sharedDir}: errno ${-r}`);
    }
    const v = new DataView(st.buffer);
    tables.inodeInit(rootFd, v.getBigUint64(AttrOff.dev, true), v.getBigUint64(AttrOff.ino, true));
    const fs = new Passthrough(tables, procFd, opts);
    fs.ownedRootFd = rootFd;
    return fs;
  }

  /** Closes what `open` opened (the root inode's fd and /proc/self/fd); for the session owner only. */
  close(): void {
    if (this.ownedRootFd >= 0) {
      native.close(this.ownedRootFd);
      native.close(this.c.procSelfFd);
    }
    this.ownedRootFd = -1;
  }

  /** The share root's fd (node id 1) for the session owner; -1 otherwise. */
  get rootFd(): number {
    return this.ownedRootFd;
  }

  get procFd(): number {
    return this.c.procSelfFd;
  }

  // ---- session ----

  init(opts: InitOptions): void {
    this.c.writeback = opts.writeback;
    this.c.dontMask = opts.dontMask ?? false;
  }

  destroy(): void {
    const t = this.c.tables;
    t.inodeDropAll();
    for (let fd = t.inodeDrainNext(); fd >= 0; fd = t.inodeDrainNext()) native.close(fd);
    for (let fd = t.handleDrainNext(); fd >= 0; fd = t.handleDrainNext()) native.close(fd);
  }

  // ---- names (entry.ts) ----

  lookup(_ctx: Ctx, parent: number, name: Uint8Array): Entry | number {
    return entry.lookup(this.c, parent, name);
  }

  forget(nodeid: number, nlookup: number): void {
    this.c.forget(nodeid, nlookup);
  }

  symlink(ctx: Ctx, parent: number, name: Uint8Array, target: Uint8Array): Entry | number {
    return entry.symlink(this.c, ctx, parent, name, target);
  }

  mknod(ctx: Ctx, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number): Entry | number {
    return entry.mknod(this.c, ctx, parent, name, entry.createMode(this.c, parent, mode, umask), rdev);
  }

  mkdir(ctx: Ctx, parent: number, name: Uint8Array, mode: number, umask: number): Entry | number {
    return entry.mkdir(this.c, ctx, parent, name, entry.createMode(this.c, parent, mode, umask));
  }

  link(_ctx: Ctx, nodeid: number, newParent: number, newName: Uint8Array): Entry | number {
    return entry.link(this.c, nodeid, newParent, newName);
  }

  unlink(_ctx: Ctx, parent: number, name: Uint8Array): number {
    return entry.unlink(this.c, parent, name);
  }

  rmdir(_ctx: Ctx, parent: number, name: Uint8Array): number {
    return entry.rmdir(this.c, parent, name);
  }

  rename(_ctx: Ctx, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number): number {
    return entry.rename(this.c, parent, name, newParent, newName, flags);
  }

  // ---- attributes (attr.ts) ----

  getattr(_ctx: Ctx, nodeid: number, _fh: number | null): Uint8Array | number {
    return attr.getattr(this.c, nodeid);
  }

  setattr(_ctx: Ctx, nodeid: number, a: SetattrArgs): Uint8Array | number {
    return attr.setattr(this.c, nodeid, a);
  }

  readlink(_ctx: Ctx, nodeid: number): Uint8Array | number {
    return attr.readlink(this.c, nodeid);
  }

  statfs(_ctx: Ctx, nodeid: number): Uint8Array | number {
    return attr.statfs(this.c, nodeid);
  }

  syncfs(_ctx: Ctx, nodeid: number): number {
    return attr.syncfs(this.c, nodeid);
  }

  access(ctx: Ctx, nodeid: number, mask: number): number {
    return attr.access(this.c, ctx, nodeid, mask);
  }

  // ---- files (file.ts) ----

  open(_ctx: Ctx, nodeid: number, flags: number, killSuidgid = false): Opened | number {
    return file.open(this.c, nodeid, flags, killSuidgid);
  }

  create(ctx: Ctx, parent: number, name: Uint8Array, mode: number, flags: number, umask: number,
    killSuidgid = false): Created | number {
    return file.create(this.c, ctx, parent, name, entry.createMode(this.c, parent, mode, umask), flags, killSuidgid);
  }

  read(_ctx: Ctx, _nodeid: number, fh: number, offset: number, size: number, sink: FileSink, sinkOff: number): number {
    return file.read(this.c, fh, offset, size, sink, sinkOff);
  }

  write(_ctx: Ctx, _nodeid: number, fh: number, offset: number, size: number, src: FileSource, srcOff: number,
    killSuidgid: boolean): number {
    return file.write(this.c, fh, offset, size, src, srcOff, killSuidgid);
  }

  flush(_ctx: Ctx, _nodeid: number, fh: number): number {
    return file.flush(this.c, fh);
  }

  release(_ctx: Ctx, _nodeid: number, fh: number, _flags: number, flush: boolean): number {
    return file.release(this.c, fh, flush);
  }

  fsync(_ctx: Ctx, _nodeid: number, fh: number, datasync: boolean): number {
    return file.fsync(this.c, fh, datasync);
  }

  fallocate(_ctx: Ctx, _nodeid: number, fh: number, mode: number, offset: number, length: number): number {
    return file.fallocate(this.c, fh, mode, offset, length);
  }

  lseek(_ctx: Ctx, _nodeid: number, fh: number, offset: number, whence: number): number {
    return file.lseek(this.c, fh, offset, whence);
  }

  copyFileRange(_ctx: Ctx, _nodeIn: number, fhIn: number, offIn: number, _nodeOut: number, fhOut: number, offOut: number,
    len: number): number {
    return file.copyFileRange(this.c, fhIn, offIn, fhOut, offOut, len);
  }

  // ---- directories (dir.ts) ----

  opendir(_ctx: Ctx, nodeid: number, _flags: number): Opened | number {
    return dir.opendir(this.c, nodeid);
  }

  readdir(_ctx: Ctx, nodeid: number, fh: number, offset: bigint, sink: DirSink, plus: boolean): number {
    return dir.readdir(this.c, nodeid, fh, offset, sink, plus);
  }

  releasedir(_ctx: Ctx, _nodeid: number, fh: number): number {
    return file.release(this.c, fh);
  }

  fsyncdir(_ctx: Ctx, _nodeid: number, fh: number, datasync: boolean): number {
    return file.fsync(this.c, fh, datasync);
  }

  // ---- extended attributes (xattr.ts) ----

  setxattr(_ctx: Ctx, nodeid: number, name: Uint8Array, value: Uint8Array, flags: number): number {
    return xattr.setxattr(this.c, nodeid, name, value, flags);
  }

  getxattr(_ctx: Ctx, nodeid: number, name: Uint8Array, out: Uint8Array): number {
    return xattr.getxattr(this.c, nodeid, name, out);
  }

  listxattr(_ctx: Ctx, nodeid: number, out: Uint8Array): number {
    return xattr.listxattr(this.c, nodeid, out);
  }

  removexattr(ctx: Ctx, nodeid: number, name: Uint8Array): number {
    return xattr.removexattr(this.c, ctx, nodeid, name);
  }
}
