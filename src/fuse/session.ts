/**
 * The FUSE session: INIT negotiation, DESTROY, and the state they leave behind. INIT reaches one
 * worker's server only, so the negotiated state lives in an Int32Array every worker's server shares
 * (the control block's session slots: docs/internals.md "FUSE server ↔ virtio layer"); each server
 * tells its own FileSystem of flags negotiated elsewhere before its next request (sync()).
 */
import {
  FUSE_ASYNC_DIO, FUSE_ASYNC_READ, FUSE_ATOMIC_O_TRUNC, FUSE_AUTO_INVAL_DATA, FUSE_BIG_WRITES, FUSE_CREATE_SUPP_GROUP2,
  FUSE_DIRECT_IO_ALLOW_MMAP2, FUSE_DO_READDIRPLUS, FUSE_DONT_MASK, FUSE_HANDLE_KILLPRIV_V2, FUSE_INIT_EXT, FUSE_KERNEL_MINOR_VERSION,
  FUSE_KERNEL_VERSION,
  FUSE_MAX_PAGES, FUSE_MIN_MINOR_VERSION, FUSE_PARALLEL_DIROPS, FUSE_POSIX_ACL, FUSE_SETXATTR_EXT, FUSE_READDIRPLUS_AUTO,
  FUSE_SECURITY_CTX2, FUSE_SUBMOUNTS, FUSE_WRITEBACK_CACHE, INIT_IN_SIZE_COMPAT,
  INIT_OUT_SIZE, IN_HEADER_SIZE, decodeInitIn,
} from '../abi/fuse.js';
import { Errno } from '../errors.js';
import type { FileSystem, InitOptions } from '../fs/filesystem.js';
import type { Handler } from './handler.js';
import { errorReply, initReply, okReply, room } from './reply.js';

/** Largest WRITE/READ payload we negotiate (max_write) and the matching max_pages (4 KiB pages). */
export const MAX_WRITE = 1024 * 1024;
export const MAX_PAGES = 256;

/** Slots of the shared session array: [0] initialized (0/1), [1] negotiated minor, [2] flags, [3] flags2. */
const S_INIT = 0;
const S_MINOR = 1;
const S_FLAGS = 2;
const S_FLAGS2 = 3;
export const SESSION_SLOTS = 4;

/**
 * The flags we ask for (each only if the kernel offers it). FUSE_HANDLE_KILLPRIV_V2: the daemon clears
 * set-user-ID/set-group-ID bits itself when a WRITE, a truncate (SETATTR, OPEN or CREATE with O_TRUNC) or
 * a chown says so (the *_KILL_SUIDGID flags; src/fs/passthrough/core.ts killSuidgid), instead of the guest
 * sending a chmod of its own after each.
 */
const WANTED_FLAGS =
  FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES | FUSE_AUTO_INVAL_DATA | FUSE_DO_READDIRPLUS |
  FUSE_READDIRPLUS_AUTO | FUSE_ASYNC_DIO | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES | FUSE_INIT_EXT |
  FUSE_HANDLE_KILLPRIV_V2;

/**
 * The flags2 bits (INIT's second word, with FUSE_INIT_EXT) we ask for. FUSE_CREATE_SUPP_GROUP: the
 * creating requests carry the caller's supplementary group that owns the parent directory
 * (src/fuse/server.ts reads it into the request's Ctx).
 */
const WANTED_FLAGS2 = FUSE_CREATE_SUPP_GROUP2;

export interface SessionOptions {
  /** negotiate FUSE_WRITEBACK_CACHE */
  writeback: boolean;
  /** negotiate READDIRPLUS */
  readdirplus: boolean;
  /** negotiate FUSE_SUBMOUNTS */
  announceSubmounts: boolean;
  /**
   * negotiate FUSE_POSIX_ACL (--posix-acl): the guest kernel enforces ACLs it reads with GETXATTR, and
   * FUSE_SETXATTR_EXT, whose setxattr_flags carry FUSE_SETXATTR_ACL_KILL_SGID (src/fuse/ops/xattr.ts), and
   * FUSE_DONT_MASK: the kernel leaves the caller's umask to us, so that a parent's default ACL can
   * replace it as on a local file system (src/fs/passthrough/entry.ts createMode)
   */
  posixAcl?: boolean;
  /**
   * negotiate FUSE_SECURITY_CTX (--security-label): the creating requests carry the new node's security
   * context (src/fuse/args.ts securityContext); a guest kernel that does not offer it is refused (EPROTO),
   * as virtiofsd does
   */
  securityLabel?: boolean;
  /** negotiate FUSE_DIRECT_IO_ALLOW_MMAP (--allow-mmap): shared mmap of FOPEN_DIRECT_IO files */
  allowMmap?: boolean;
}

/** What a FileSystem is told of the negotiated flags. */
function initOptions(flags: number): InitOptions {
  return { writeback: (flags & FUSE_WRITEBACK_CACHE) !== 0, dontMask: (flags & FUSE_DONT_MASK) !== 0 };
}

/** One server's handle on the shared session state. */
export class Session {
  /** The INIT flags this server offers to take. */
  readonly wanted: number;
  /** The flags2 bits this server offers to take. */
  readonly wanted2: number;
  /** The session flags this server last told its file system about. */
  private seenFlags = -1;

  constructor(private readonly shared: Int32Array, opts: SessionOptions) {
    if (shared.length < SESSION_SLOTS) throw new RangeError(`session needs ${SESSION_SLOTS} slots`);
    let wanted = WANTED_FLAGS;
    if (opts.writeback) wanted |= FUSE_WRITEBACK_CACHE;
    if (!opts.readdirplus) wanted &= ~(FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO);
    if (opts.announceSubmounts) wanted |= FUSE_SUBMOUNTS;
    if (opts.posixAcl) wanted |= FUSE_POSIX_ACL | FUSE_SETXATTR_EXT | FUSE_DONT_MASK;
    this.wanted = wanted;
    let wanted2 = WANTED_FLAGS2;
    if (opts.securityLabel) wanted2 |= FUSE_SECURITY_CTX2;
    if (opts.allowMmap) wanted2 |= FUSE_DIRECT_IO_ALLOW_MMAP2;
    this.wanted2 = wanted2;
  }

  get initialized(): boolean {
    return Atomics.load(this.shared, S_INIT) === 1;
  }

  /** The negotiated INIT flags (0 before INIT). */
  get flags(): number {
    return Atomics.load(this.shared, S_FLAGS);
  }

  /** The negotiated flags2 bits (0 before INIT, or without FUSE_INIT_EXT). */
  get flags2(): number {
    return Atomics.load(this.shared, S_FLAGS2);
  }

  /** INIT may have reached another worker's server: pass its negotiated options to this fs. */
  sync(fs: FileSystem): void {
    const flags = Atomics.load(this.shared, S_FLAGS);
    if (flags !== this.seenFlags) {
      this.seenFlags = flags;
      fs.init?.(initOptions(flags));
    }
  }

  /** A session negotiated here: tell fs, then publish it (initialized last). */
  start(fs: FileSystem, minor: number, flags: number, flags2 = 0): void {
    fs.init?.(initOptions(flags));
    this.seenFlags = flags | 0;
    Atomics.store(this.shared, S_MINOR, minor);
    Atomics.store(this.shared, S_FLAGS, flags | 0);
    Atomics.store(this.shared, S_FLAGS2, flags2 | 0);
    Atomics.store(this.shared, S_INIT, 1);
  }

  /** The session is over (DESTROY, or a re-INIT): fs drops its inodes and handles. */
  end(fs: FileSystem): void {
    fs.destroy?.();
    Atomics.store(this.shared, S_INIT, 0);
  }
}

/** INIT: version and flag negotiation. Runs with or without a live session. */
export const init: Handler = (s, q) => {
  const { v, w } = q;
  if (q.len > q.r.head.length || q.len - IN_HEADER_SIZE < INIT_IN_SIZE_COMPAT) return errorReply(q, -Errno.EINVAL);
  const i = decodeInitIn(v, IN_HEADER_SIZE, q.len - IN_HEADER_SIZE);
  if (i.major < FUSE_KERNEL_VERSION) {
    s.warn(`unsupported FUSE protocol ${i.major}.${i.minor}`);
    return errorReply(q, -Errno.EPROTO);
  }
  // (the reply's room is checked before the minor: a too small buffer is ERANGE either way)
  room(w, INIT_OUT_SIZE);
  if (i.major > FUSE_KERNEL_VERSION) {
    // A newer kernel: answer with only our version so it retries INIT with major 7 (fuse.h).
    return initReply(q, {
      major: FUSE_KERNEL_VERSION, minor: FUSE_KERNEL_MINOR_VERSION, maxReadahead: 0, flags: 0, maxBackground: 0,
      congestionThreshold: 0, maxWrite: 0, timeGran: 0, maxPages: 0, mapAlignment: 0, flags2: 0,
    });
  }
  if (i.minor < FUSE_MIN_MINOR_VERSION) {
    s.warn(`unsupported FUSE protocol ${i.major}.${i.minor} (need 7.${FUSE_MIN_MINOR_VERSION})`);
    return errorReply(q, -Errno.EPROTO);
  }
  if (s.session.initialized) {
    // A re-INIT without DESTROY (guest reboot): start the session over.
    s.log?.info('INIT on a live session: resetting it');
    s.session.end(s.fs);
  }
  const minor = Math.min(i.minor, FUSE_KERNEL_MINOR_VERSION);
  const flags = (i.flags & s.session.wanted) >>> 0;
  if ((s.session.wanted & ~flags & FUSE_POSIX_ACL) !== 0) s.warn('--posix-acl: the guest kernel does not offer FUSE_POSIX_ACL; its ACLs are not enforced by it');
  // flags2 counts only with FUSE_INIT_EXT on both sides (decodeInitIn gives 0 without it)
  const flags2 = (flags & FUSE_INIT_EXT) !== 0 ? (i.flags2 & s.session.wanted2) >>> 0 : 0;
  const missing2 = s.session.wanted2 & ~flags2;
  if ((missing2 & FUSE_SECURITY_CTX2) !== 0) {
    // as virtiofsd: the operator asked for labels, and a guest that cannot send them would create
    // unlabelled files unnoticed (Linux offers FUSE_SECURITY_CTX from 5.17 on)
    s.log?.error('--security-label: the guest kernel does not offer FUSE_SECURITY_CTX (Linux 5.17 or later); refusing the session');
    return errorReply(q, -Errno.EPROTO);
  }
  if ((missing2 & FUSE_DIRECT_IO_ALLOW_MMAP2) !== 0) {
    s.warn('--allow-mmap: the guest kernel does not offer FUSE_DIRECT_IO_ALLOW_MMAP (Linux 6.6 or later); shared mmap of files opened for direct I/O stays refused');
  }
  s.session.start(s.fs, minor, flags, flags2);
  s.log?.info(`FUSE session 7.${minor}, flags 0x${flags.toString(16)}, flags2 0x${flags2.toString(16)}`);
  return initReply(q, {
    major: FUSE_KERNEL_VERSION, minor, maxReadahead: i.maxReadahead, flags, maxBackground: 64,
    congestionThreshold: 48, maxWrite: MAX_WRITE, timeGran: 1, maxPages: MAX_PAGES, mapAlignment: 0, flags2,
  });
};

/** DESTROY: the guest unmounts. */
export const destroy: Handler = (s, q) => {
  s.session.end(s.fs);
  return okReply(q, 0);
};
