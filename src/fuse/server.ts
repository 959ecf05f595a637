/**
 * FUSE request dispatch: check one request's header, gate it on the session (and, on a read-only
 * share, on whether its opcode writes), and hand it to its opcode's handler (the table in
 * src/fuse/ops/table.ts). Handlers check every guest number once, at
 * this boundary (src/fuse/args.ts), so the FileSystem gets decoded, validated arguments
 * (docs/internals.md "FUSE server ↔ virtio layer"). `handle` never throws: an exception is logged and
 * becomes EIO.
 */
import { IN_HEADER_SIZE, Opcode, decodeExtGroups, decodeInHeaderInto } from '../abi/fuse.js';
import { Errno } from '../errors.js';
import type { Ctx, FileSystem } from '../fs/filesystem.js';
import type { IdMaps } from '../fs/idmap.js';
import { type Logger, RateLimitedLogger } from '../log.js';
import { type CacheMode, cachePolicy } from './cache-policy.js';
import { Req, type Served } from './handler.js';
import type { Reader, Writer } from './io.js';
import { OPS } from './ops/table.js';
import { ReplyError, errorReply } from './reply.js';
import { SESSION_SLOTS, Session } from './session.js';
import { ViewCache } from './views.js';

export interface FuseServerOptions {
  cache?: CacheMode;
  /** negotiate FUSE_WRITEBACK_CACHE */
  writeback?: boolean;
  /** negotiate READDIRPLUS (default true) */
  readdirplus?: boolean;
  /**
   * Serve SETXATTR/GETXATTR/LISTXATTR/REMOVEXATTR (--xattr, -o xattr; default false). Off, they answer
   * ENOSYS and the guest kernel stops sending them (its callers then see EOPNOTSUPP). INIT is the same
   * either way (no flag announces xattr support; FUSE_SETXATTR_EXT only comes with posixAcl).
   */
  xattr?: boolean;
  /**
   * Entry and attribute validity in seconds (fractions allowed), instead of the cache policy's
   * (never 0, metadata/always 86400, auto 1): virtiofsd's -o timeout=. 0 also stops negative entries.
   */
  timeout?: number;
  /**
   * Export the share read-only (--readonly): every request that would change the host tree is
   * answered EROFS (INIT is the same either way: the protocol has no read-only flag, so the guest
   * learns it per request, as from a read-only mount).
   */
  readOnly?: boolean;
  /** negotiate FUSE_SUBMOUNTS (--announce-submounts; the file system marks mount points) */
  announceSubmounts?: boolean;
  /** negotiate FUSE_POSIX_ACL and FUSE_SETXATTR_EXT (--posix-acl; with xattr) */
  posixAcl?: boolean;
  /**
   * negotiate FUSE_SECURITY_CTX (--security-label): CREATE, MKDIR, MKNOD and SYMLINK carry the new
   * node's security context, which the file system sets as an xattr (Ctx.secctx); INIT from a guest
   * kernel that does not offer it is refused (EPROTO), as virtiofsd does
   */
  securityLabel?: boolean;
  /** negotiate FUSE_DIRECT_IO_ALLOW_MMAP (--allow-mmap): the guest may map FOPEN_DIRECT_IO files shared */
  allowMmap?: boolean;
  /**
   * uid/gid translation (--translate-uid/--translate-gid, src/fs/idmap.ts): the caller's ids and a
   * SETATTR's new owner guest→host (a forbidden one answers EPERM), every reply's fuse_attr owner
   * host→guest. Null or absent: ids pass unchanged, at the cost of one null check per request.
   */
  idmap?: IdMaps | null;
  log?: Logger;
  /**
   * Session state shared by every worker's FuseServer (INIT reaches one worker only): 4 × i32 in a
   * SharedArrayBuffer, [0] initialized (0/1), [1] negotiated minor, [2] negotiated flags, [3] negotiated flags2.
   * Defaults to a private array (one server per session).
   */
  session?: Int32Array;
}

/**
 * Requests the kernel may send without the caller's credentials (fuse_args.nocreds, or from its own
 * threads: uid and gid 0): a forbidden guest id there is no caller to refuse, and refusing would leak
 * the kernel's references (FORGET, RELEASE), stop the mount (INIT) or lose written data (WRITE from
 * page writeback: shared mmap writes, the writeback cache; FLUSH of an exiting process). WRITE and
 * FLUSH need an open file, which the forbidden caller could not have opened itself.
 */
const NO_CALLER = new Uint8Array(64);
for (const op of [Opcode.Init, Opcode.Forget, Opcode.BatchForget, Opcode.Release, Opcode.Releasedir,
  Opcode.Interrupt, Opcode.Destroy, Opcode.Write, Opcode.Flush]) NO_CALLER[op] = 1;
/** The host id a request without a caller acts as when its header's id is forbidden (the overflow id). */
const NOBODY = 65534;

/**
 * The request's extensions (fuse_in_header.total_extlen 8-byte units at its end, 7.38), checked here,
 * once: they must lie inside the request and its head copy and be well formed (decodeExtGroups). The
 * supplementary groups they carry go to ctx, translated guest→host (a group without a host id is
 * dropped: the caller simply is not in it on the host); where a security context block lies goes to
 * q.secctx (read by the creating handlers: src/fuse/args.ts securityContext). The request's length then
 * ends where the extensions begin, so a handler sees its own arguments only. False: malformed (EINVAL,
 * nothing done).
 */
function extensions(s: Served, q: Req, ctx: Ctx): boolean {
  const bytes = q.totalExtlen * 8;
  if (bytes > q.len - IN_HEADER_SIZE || q.len > q.r.head.length) return false;
  const start = q.len - bytes;
  const n = decodeExtGroups(q.v, start, q.len, ctx.groups, q.secctx);
  if (n < 0) return false;
  const ids = s.ids;
  if (ids === null) {
    ctx.ngroups = n;
  } else {
    let k = 0;
    for (let i = 0; i < n; i++) {
      const g = ids.gid.guestToHost(ctx.groups[i]!);
      if (g >= 0) ctx.groups[k++] = g;
    }
    ctx.ngroups = k;
  }
  q.len = start;
  return true;
}

export class FuseServer {
  /** what every handler sees */
  private readonly served: Served;
  /** the request being served: one object, filled anew for each (no allocation per request) */
  private readonly q = new Req();
  private readonly headViews = new ViewCache();
  private readonly replyViews = new ViewCache();

  constructor(fs: FileSystem, opts: FuseServerOptions = {}) {
    // Every line a handler logs is one a guest can trigger per request (INIT's, a handler's exception,
    // a malformed request's warning): all are rate limited per kind, so a hostile guest cannot flood
    // the log, and a flood of one kind does not hide the others.
    const log = opts.log ? new RateLimitedLogger(opts.log) : undefined;
    const session = new Session(opts.session ?? new Int32Array(SESSION_SLOTS), {
      writeback: opts.writeback ?? false,
      readdirplus: opts.readdirplus ?? true,
      announceSubmounts: opts.announceSubmounts ?? false,
      posixAcl: (opts.posixAcl ?? false) && (opts.xattr ?? false),
      securityLabel: opts.securityLabel ?? false,
      allowMmap: opts.allowMmap ?? false,
    });
    this.served = {
      fs,
      cache: cachePolicy(opts.cache ?? 'auto', opts.timeout),
      session,
      xattr: opts.xattr ?? false,
      readOnly: opts.readOnly ?? false,
      ids: opts.idmap ?? null,
      log,
      warn: (msg) => log?.warn(msg),
    };
    this.q.ids = this.served.ids;
  }

  get initialized(): boolean {
    return this.served.session.initialized;
  }

  /** Handle one request; returns the reply length written to w (0: no reply). Never throws. */
  handle(r: Reader, w: Writer): number {
    const s = this.served;
    const q = this.q;
    q.r = r;
    q.w = w;
    q.wv = this.replyViews.of(w.buf);
    if (r.total < IN_HEADER_SIZE || r.head.length < IN_HEADER_SIZE) {
      q.uniqueLo = 0;
      q.uniqueHi = 0;
      s.warn(`request shorter than fuse_in_header (${r.total})`);
      return errorReply(q, -Errno.EINVAL);
    }
    const v = this.headViews.of(r.head);
    q.v = v;
    decodeInHeaderInto(v, 0, q);
    if (q.len < IN_HEADER_SIZE || q.len > r.total) {
      s.warn(`fuse_in_header.len ${q.len} disagrees with the chain (${r.total})`);
      return errorReply(q, -Errno.EINVAL);
    }
    try {
      const op = OPS[q.opcode];
      if (op?.gate !== 'init') {
        if (!s.session.initialized) {
          // FORGETs get no reply, even before INIT; anything else is answered EIO.
          if (op?.gate === 'forget') return 0;
          s.warn(`op ${q.opcode} before INIT`);
          return errorReply(q, -Errno.EIO);
        }
        if (op?.gate !== 'forget') s.session.sync(s.fs);
      }
      if (op === undefined) return errorReply(q, -Errno.ENOSYS);
      // --readonly: the one check for the opcodes that always write (marked in src/fuse/ops/table.ts);
      // off, it costs the load of a boolean.
      if (s.readOnly && op.modifies === true) return errorReply(q, -Errno.EROFS);
      const ctx = q.ctx;
      const ids = s.ids;
      if (ids === null) {
        ctx.uid = q.uid;
        ctx.gid = q.gid;
      } else {
        // the caller as the host sees it: the file system creates files as, and checks access for, these
        const uid = ids.uid.guestToHost(q.uid);
        const gid = ids.gid.guestToHost(q.gid);
        if ((uid < 0 || gid < 0) && NO_CALLER[q.opcode] !== 1) return errorReply(q, -Errno.EPERM);
        ctx.uid = uid < 0 ? NOBODY : uid;
        ctx.gid = gid < 0 ? NOBODY : gid;
      }
      ctx.pid = q.pid;
      ctx.ngroups = 0;
      if (q.totalExtlen !== 0 && !extensions(s, q, ctx)) {
        s.warn(`op ${q.opcode}: malformed request extensions (total_extlen ${q.totalExtlen}, len ${q.len})`);
        return errorReply(q, -Errno.EINVAL);
      }
      return op.run(s, q);
    } catch (e) {
      if (e instanceof ReplyError) return errorReply(q, e.errno);
      s.log?.error(`op ${q.opcode} unique ${q.unique}: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
      return errorReply(q, -Errno.EIO);
    }
  }
}
