/**
 * The shape of a FUSE opcode handler (src/fuse/ops/*): a plain function of the server's fixed state
 * and one decoded request, returning the reply length written to the Writer (0: no reply). The hot
 * handlers allocate nothing (docs/internals.md "FUSE server ↔ virtio layer"). A handler
 * checks its arguments through src/fuse/args.ts, calls the FileSystem and encodes through
 * src/fuse/reply.ts; an argument it refuses is thrown as a ReplyError and answered by the server.
 */
import type { InHeaderFields } from '../abi/fuse.js';
import { CTX_GROUPS_MAX, type Ctx, type FileSystem } from '../fs/filesystem.js';
import type { IdMaps } from '../fs/idmap.js';
import type { Logger } from '../log.js';
import type { CachePolicy } from './cache-policy.js';
import type { Reader, Writer } from './io.js';
import type { Session } from './session.js';

/**
 * One request: its header (decoded in place), a view of the head copy (fuse_in_header at 0), its Reader
 * and Writer and a view of the reply scratch. The server owns one Req and fills it anew for every
 * request, so nothing here outlives the request: a handler never keeps it (or `ctx`) beyond its return.
 * The views are cached per buffer (src/fuse/views.ts): both may reach past the head copy or the scratch,
 * so every read is after a length check (src/fuse/args.ts) and every write after room()
 * (src/fuse/reply.ts).
 */
export class Req implements InHeaderFields {
  len = 0;
  opcode = 0;
  uniqueLo = 0;
  uniqueHi = 0;
  /** the header's node id (getId in src/abi/fuse.ts: 0 for one ≥ 2^53, which nothing has) */
  nodeid = 0;
  uid = 0;
  gid = 0;
  pid = 0;
  totalExtlen = 0;
  /** the caller, from the header (and the request's FUSE_EXT_GROUPS extension) */
  readonly ctx: Ctx = { uid: 0, gid: 0, pid: 0, groups: new Uint32Array(CTX_GROUPS_MAX), ngroups: 0, secctx: null };
  /** view of the head copy: fuse_in_header at 0 */
  v!: DataView;
  r!: Reader;
  w!: Writer;
  /** view of w.buf: the reply's header at 0 */
  wv!: DataView;
  /** where the last name checked (src/fuse/args.ts entryName, xattrName, symlinkTarget) ended, after its NUL */
  next = 0;
  /**
   * [0, 1): where the request's security context block lies in the head copy, as its extensions
   * (src/fuse/server.ts) found it: -1 -1 for none. Valid only when the request has extensions
   * (totalExtlen ≠ 0); src/fuse/args.ts securityContext reads it.
   */
  readonly secctx = new Int32Array(2);
  /** the name's and the value's [start, end) of a security context (decodeSecctx's output) */
  readonly secctxParts = new Int32Array(4);
  /** the server's id translation (fixed for its life), for the replies' fuse_attr; null: none */
  ids: IdMaps | null = null;

  /** The request's unique as a bigint, for a log line (never on a path that answers a request). */
  get unique(): bigint {
    return (BigInt(this.uniqueHi) << 32n) | BigInt(this.uniqueLo);
  }
}

/** What handlers see of the server: fixed for its life (the session's state is shared). */
export interface Served {
  readonly fs: FileSystem;
  readonly cache: CachePolicy;
  readonly session: Session;
  /** serve the xattr opcodes (--xattr); off, they answer ENOSYS */
  readonly xattr: boolean;
  /**
   * A read-only share (--readonly): the server answers EROFS to every opcode marked `modifies`, and
   * OPEN and ACCESS refuse write access themselves (their requests may or may not write).
   */
  readonly readOnly: boolean;
  /** uid/gid translation (--translate-uid/--translate-gid); null: ids pass unchanged */
  readonly ids: IdMaps | null;
  readonly log: Logger | undefined;
  /** a warning a guest can trigger: rate limited */
  warn(msg: string): void;
}

export type Handler = (s: Served, q: Req) => number;

/** A dispatch table entry. */
export interface Op {
  readonly run: Handler;
  /**
   * Default: needs an initialized session (before INIT the server answers EIO). 'init': runs without
   * one (INIT itself). 'forget': the kernel expects no reply, so without a session it is dropped.
   */
  readonly gate?: 'init' | 'forget';
  /**
   * Every request of this opcode changes the host tree (a name, a file's data or attributes, an
   * xattr): on a read-only share it is answered EROFS before its handler runs, as a read-only mount
   * answers the syscall.
   */
  readonly modifies?: true;
}
