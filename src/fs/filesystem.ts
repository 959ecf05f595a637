/**
 * The file-system interface the FUSE server dispatches to: one method per opcode. Every method returns
 * a value or a **negative errno** (never throws for a failed syscall; a throw is a bug and becomes EIO).
 * A missing method answers ENOSYS. Node ids and file handles are numbers (the u64 ids of the shared
 * tables are all below 2^53: src/fs/tables.ts; a guest's id beyond that arrives as 0, which no node or
 * handle has); FUSE_ROOT_ID (1) is the share root. This layer knows nothing of the wire format (fuse →
 * fs, never the reverse).
 *
 * Attributes are `Uint8Array`s holding a struct fuse_attr (88 bytes, little endian; linux/fuse.h), the
 * layout native.statAt writes; its field offsets are `AttrOff` in src/abi/fuse.ts. A returned attr buffer may be a scratch buffer of the file system: it is
 * valid only until the next call on the same instance (the server copies it at once). So may a returned
 * Entry or Opened object be (the server reads it at once), and the server's arguments are its scratch in
 * turn: `ctx` and `name` are valid for the call only. Nothing is allocated per request on the hot paths.
 */

/** Room for supplementary groups in a Ctx (the kernel sends one: see Ctx.groups). */
export const CTX_GROUPS_MAX = 32;

/**
 * The caller of a request, as the host sees it (ids already translated by --translate-uid/gid). The
 * creating calls run with these credentials (fsuid, fsgid and supplementary groups of the worker thread).
 */
export interface Ctx {
  uid: number;
  gid: number;
  pid: number;
  /**
   * Supplementary groups of the caller that the request carried (FUSE_CREATE_SUPP_GROUP): the first
   * `ngroups` entries, CTX_GROUPS_MAX long, reused for every request. A Linux guest sends at most one,
   * and only on CREATE, MKDIR, MKNOD and SYMLINK (and TMPFILE): the new entry's parent directory's group,
   * when the caller is a member of it other than by its own gid. It is there to pass the host's
   * permission check on that directory (group write and search); the caller's other groups are never
   * known to the daemon, so a host ACL entry naming another of its groups does not apply.
   */
  groups: Uint32Array;
  ngroups: number;
  /**
   * The new node's security context (--security-label, FUSE_SECURITY_CTX), on CREATE, MKDIR, MKNOD and
   * SYMLINK only: the xattr the file system sets on it before it answers, removing the node again when
   * that fails. Null or absent: none. Valid for the call only.
   */
  secctx?: SecurityContext | null;
}

/** A security context as the guest kernel's LSM computed it: an xattr name (e.g. security.selinux) and value. */
export interface SecurityContext {
  name: Uint8Array;
  value: Uint8Array;
}

export interface Entry {
  /** 0 only in READDIRPLUS records for "." and ".." and in negative LOOKUP answers (no reference taken) */
  nodeid: number;
  generation: number;
  /** fuse_attr, 88 bytes */
  attr: Uint8Array;
}

export interface Opened {
  fh: number;
  /** FOPEN_* bits the file system needs (the server adds the cache policy's own) */
  openFlags: number;
}

export interface Created extends Opened {
  entry: Entry;
}

export type TimeSpec = { sec: number; nsec: number } | 'now';

/** SETATTR, decoded: only the present fields are to be changed. */
export interface SetattrArgs {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: TimeSpec;
  mtime?: TimeSpec;
  /** FATTR_FH: an open handle to use (truncate through it) */
  fh?: number;
  /** FATTR_KILL_SUIDGID (a truncate or chown by a caller without CAP_FSETID): as WRITE's killSuidgid */
  killSuidgid?: boolean;
}

/** Where READ data goes: the server's Writer (zero copy into guest pages). */
export interface FileSink {
  readFromFile(fd: number, pos: number, off: number, len: number): number;
}
/** Where WRITE data comes from: the server's Reader. */
export interface FileSource {
  writeToFile(fd: number, pos: number, off: number, len: number): number;
}

/** READDIR(PLUS) output: the server encodes fuse_dirent/fuse_direntplus records. */
export interface DirSink {
  /** would a record with a name of this many bytes still fit? */
  fits(nameLen: number): boolean;
  /** bytes left in the reply */
  remaining(): number;
  /**
   * Append a record; only after fits() said yes. `off` is the offset of the *next* entry (d_off).
   * `entry` is required for READDIRPLUS (nodeid 0 for "." and "..") and ignored for READDIR.
   */
  add(ino: bigint, off: bigint, type: number, name: Uint8Array, entry: Entry | null): void;
  /**
   * READDIR only (null for READDIRPLUS): the reply buffer, for a file system that writes struct
   * fuse_dirent records itself (linux/fuse.h) at rawAt(), up to remaining() bytes, then says how many
   * bytes it wrote with rawCommit. Records and add() may be mixed.
   */
  rawBuffer?(): Uint8Array | null;
  rawAt?(): number;
  rawCommit?(bytes: number): void;
}

export interface InitOptions {
  /** FUSE_WRITEBACK_CACHE was negotiated: the kernel may read files opened O_WRONLY, and does O_APPEND itself */
  writeback: boolean;
  /**
   * FUSE_DONT_MASK was negotiated (with --posix-acl): the kernel no longer applies the caller's umask
   * to a creating request's mode; the file system applies the request's `umask` unless the parent
   * directory has a default ACL (which then replaces it, as on a local file system)
   */
  dontMask?: boolean;
}

export interface FileSystem {
  /** INIT succeeded; called once per session (again after DESTROY or a re-INIT). */
  init?(opts: InitOptions): void;
  /** DESTROY (or a new INIT): forget every inode but the root and close every handle. */
  destroy?(): void;

  /** LOOKUP: on success adds one lookup reference to the returned node id (undone by FORGET). */
  lookup?(ctx: Ctx, parent: number, name: Uint8Array): Entry | number;
  /** FORGET / BATCH_FORGET: drop `nlookup` lookup references. No reply, so no result. */
  forget?(nodeid: number, nlookup: number): void;
  getattr?(ctx: Ctx, nodeid: number, fh: number | null): Uint8Array | number;
  /** returns the attributes after the change */
  setattr?(ctx: Ctx, nodeid: number, args: SetattrArgs): Uint8Array | number;
  /** the link target bytes */
  readlink?(ctx: Ctx, nodeid: number): Uint8Array | number;

  // Creating ops run as the caller (fsuid/fsgid = ctx.uid/ctx.gid, supplementary groups ctx.groups)
  // and, like lookup, add one lookup reference to the new entry. `mode` has the caller's umask applied
  // by the kernel unless FUSE_DONT_MASK was negotiated (InitOptions.dontMask): then `umask` is to be
  // applied where the parent has no default ACL.
  symlink?(ctx: Ctx, parent: number, name: Uint8Array, target: Uint8Array): Entry | number;
  mknod?(ctx: Ctx, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number): Entry | number;
  mkdir?(ctx: Ctx, parent: number, name: Uint8Array, mode: number, umask: number): Entry | number;
  link?(ctx: Ctx, nodeid: number, newParent: number, newName: Uint8Array): Entry | number;
  /**
   * CREATE: create-and-open; a lookup reference on the entry plus an open handle. `killSuidgid`
   * (FUSE_OPEN_KILL_SUIDGID): an existing file truncated by O_TRUNC loses its set-user-ID bit, and its
   * set-group-ID bit if group-executable.
   */
  create?(ctx: Ctx, parent: number, name: Uint8Array, mode: number, flags: number, umask: number,
    killSuidgid: boolean): Created | number;

  unlink?(ctx: Ctx, parent: number, name: Uint8Array): number;
  rmdir?(ctx: Ctx, parent: number, name: Uint8Array): number;
  /** RENAME (flags 0) and RENAME2 (RENAME_NOREPLACE/EXCHANGE/WHITEOUT) */
  rename?(ctx: Ctx, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number): number;

  /**
   * OPEN: `flags` are the guest's open(2) flags. Only regular files may be opened. `killSuidgid`
   * (FUSE_OPEN_KILL_SUIDGID) as in create.
   */
  open?(ctx: Ctx, nodeid: number, flags: number, killSuidgid: boolean): Opened | number;
  /** READ: bytes placed via sink.readFromFile(fd, offset, sinkOff, ≤size) or -errno. Short reads are EOF. */
  read?(ctx: Ctx, nodeid: number, fh: number, offset: number, size: number, sink: FileSink, sinkOff: number): number;
  /**
   * WRITE: bytes taken via src.writeToFile(fd, offset, srcOff, size) or -errno. `killSuidgid`
   * (FUSE_WRITE_KILL_SUIDGID): the file loses its set-user-ID bit, and its set-group-ID bit if
   * group-executable, as a write by a caller without CAP_FSETID does.
   */
  write?(ctx: Ctx, nodeid: number, fh: number, offset: number, size: number, src: FileSource, srcOff: number,
    killSuidgid: boolean): number;
  flush?(ctx: Ctx, nodeid: number, fh: number): number;
  /** RELEASE: the handle is gone afterwards whatever the result. */
  release?(ctx: Ctx, nodeid: number, fh: number, flags: number, flush: boolean): number;
  fsync?(ctx: Ctx, nodeid: number, fh: number, datasync: boolean): number;
  fallocate?(ctx: Ctx, nodeid: number, fh: number, mode: number, offset: number, length: number): number;
  /** the resulting offset (≥ 0) or -errno */
  lseek?(ctx: Ctx, nodeid: number, fh: number, offset: number, whence: number): number;
  /**
   * COPY_FILE_RANGE: up to `len` bytes from (fhIn, offIn) to (fhOut, offOut) without passing through
   * the daemon; bytes copied (0 at EOF) or -errno. `nodeOut` is the destination's node id.
   */
  copyFileRange?(ctx: Ctx, nodeIn: number, fhIn: number, offIn: number, nodeOut: number, fhOut: number, offOut: number,
    len: number): number;

  opendir?(ctx: Ctx, nodeid: number, flags: number): Opened | number;
  /**
   * READDIR / READDIRPLUS from `offset` (0 or a d_off previously returned) until the sink is full or the
   * directory ends; 0 or -errno. With `plus`, every entry but "." and ".." gets a lookup reference
   * (as LOOKUP would), taken only once the record is known to fit.
   */
  readdir?(ctx: Ctx, nodeid: number, fh: number, offset: bigint, sink: DirSink, plus: boolean): number;
  releasedir?(ctx: Ctx, nodeid: number, fh: number): number;
  fsyncdir?(ctx: Ctx, nodeid: number, fh: number, datasync: boolean): number;

  /** SYNCFS (the guest's sync(2)/syncfs(2)): commit the host file system under `nodeid`. 0 or -errno */
  syncfs?(ctx: Ctx, nodeid: number): number;
  /** struct fuse_kstatfs (80 bytes) */
  statfs?(ctx: Ctx, nodeid: number): Uint8Array | number;
  /** ACCESS: `mask` is R_OK|W_OK|X_OK (or F_OK = 0) checked for ctx; 0 or -errno */
  access?(ctx: Ctx, nodeid: number, mask: number): number;

  // Extended attributes (served only when the daemon runs with --xattr / -o xattr; the server answers
  // ENOSYS otherwise). Names are 1..255 bytes without NUL, values ≤ 64 KiB: the server checked both.
  // `out` may be the reply scratch itself (the value lands where the reply is built): an empty `out`
  // asks for the size only.
  /** SETXATTR: flags XATTR_CREATE (1) / XATTR_REPLACE (2). 0 or -errno */
  setxattr?(ctx: Ctx, nodeid: number, name: Uint8Array, value: Uint8Array, flags: number): number;
  /** GETXATTR: the value into `out`; its length (or, `out` empty, its size) or -errno (ERANGE: too small) */
  getxattr?(ctx: Ctx, nodeid: number, name: Uint8Array, out: Uint8Array): number;
  /** LISTXATTR: the NUL-separated names into `out`; bytes (or, `out` empty, the size needed) or -errno */
  listxattr?(ctx: Ctx, nodeid: number, out: Uint8Array): number;
  /** REMOVEXATTR. 0 or -errno */
  removexattr?(ctx: Ctx, nodeid: number, name: Uint8Array): number;
}
