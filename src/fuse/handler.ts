/**
 * The shape of a FUSE opcode handler (src/fuse/ops/*): a plain function of the server's fixed state
 * and one decoded request, returning the reply length written to the Writer (0: no reply). A handler
 * checks its arguments through src/fuse/args.ts, calls the FileSystem and encodes through
 * src/fuse/reply.ts; an argument it refuses is thrown as a ReplyError and answered by the server.
 */
import type { InHeader } from '../abi/fuse.js';
import type { Ctx, FileSystem } from '../fs/filesystem.js';
import type { Logger } from '../log.js';
import type { CachePolicy } from './cache-policy.js';
import type { Reader, Writer } from './io.js';
import type { Session } from './session.js';

/** One request: its header, a view of the head copy (fuse_in_header at 0), its Reader and Writer. */
export interface Req {
  readonly h: InHeader;
  readonly v: DataView;
  readonly r: Reader;
  readonly w: Writer;
  /** the caller, from the header */
  readonly ctx: Ctx;
}

/** What handlers see of the server: fixed for its life (the session's state is shared). */
export interface Served {
  readonly fs: FileSystem;
  readonly cache: CachePolicy;
  readonly session: Session;
  /** serve the xattr opcodes (--xattr); off, they answer ENOSYS */
  readonly xattr: boolean;
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
}
