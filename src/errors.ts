/**
 * Errors, in one module (a leaf: it imports nothing).
 *
 * - `Errno`: the Linux errno values (asm-generic/errno-base.h, errno.h), the one TypeScript source for
 *   errno numbers. File-system code returns them negated; the FUSE reply header carries the negative
 *   value as is. The native addon's errno table is checked against it (test/unit/abi-drift).
 * - `VirtiofsdError` and one subclass per layer, for failures that are not a FUSE reply: a bad
 *   command line, a vhost-user message the frontend got wrong, a memory table or ring setup the
 *   daemon refuses. Each has a stable `code` (VIRTIOFSD_*, never reworded: operators grep for it),
 *   the `errno` that best describes it, and a cross-realm brand (`Symbol.for`), so `instanceof`
 *   holds for errors made by another copy of this module (a worker, a bundled frontend).
 */

export const Errno = {
  EPERM: 1, ENOENT: 2, ESRCH: 3, EINTR: 4, EIO: 5, ENXIO: 6, E2BIG: 7, EBADF: 9, EAGAIN: 11,
  ENOMEM: 12, EACCES: 13, EFAULT: 14, EBUSY: 16, EEXIST: 17, EXDEV: 18, ENODEV: 19, ENOTDIR: 20,
  EISDIR: 21, EINVAL: 22, ENFILE: 23, EMFILE: 24, ETXTBSY: 26, EFBIG: 27, ENOSPC: 28, ESPIPE: 29,
  EROFS: 30, EMLINK: 31, EPIPE: 32, ERANGE: 34, ENAMETOOLONG: 36, ENOSYS: 38, ENOTEMPTY: 39,
  ELOOP: 40, ENODATA: 61, EPROTO: 71, EOVERFLOW: 75, EOPNOTSUPP: 95, ECONNRESET: 104, ENOTCONN: 107,
  ETIMEDOUT: 110, ECONNREFUSED: 111, ESTALE: 116,
} as const;

/** Is `r` an errno result (a negative number) rather than a value? */
export function isErr(r: unknown): r is number {
  return typeof r === 'number' && r < 0;
}

/** A negative errno for anything thrown (a JS exception is an internal bug: EIO). */
export function errnoFromException(e: unknown): number {
  const n = (e as { errno?: unknown } | null)?.errno;
  return typeof n === 'number' && n < 0 && n > -4096 ? n : -Errno.EIO;
}

const kVirtiofsdError = Symbol.for('virtiofsd-ts.error');

/** The stable codes, one per subclass. */
export const ErrorCode = {
  USAGE: 'VIRTIOFSD_USAGE',
  VHOST_PROTOCOL: 'VIRTIOFSD_VHOST_PROTOCOL',
  DEVICE: 'VIRTIOFSD_DEVICE',
  MEMORY: 'VIRTIOFSD_MEMORY',
  FRONTEND: 'VIRTIOFSD_FRONTEND',
} as const;
export type ErrorCodeName = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Base of the daemon's own errors. `errno` is positive (EINVAL, ENOSPC …); `code` is stable.
 * Subclasses add only a code (and a default errno where EINVAL is not it).
 */
export abstract class VirtiofsdError extends Error {
  abstract readonly code: ErrorCodeName;
  readonly errno: number;
  constructor(message: string, errno: number = Errno.EINVAL) {
    super(message);
    this.errno = errno;
    Object.defineProperty(this, kVirtiofsdError, { value: true });
  }

  /** The subclass's own name (UsageError, MemoryError …): stack traces and logs start with it. */
  override get name(): string {
    return this.constructor.name;
  }

  // Subclasses inherit this static method, so `this` is the class on the right of `instanceof`: the
  // base answers by brand (any realm), a subclass by its prototype chain as usual.
  static [Symbol.hasInstance](x: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the class being tested (see above)
    if (this === VirtiofsdError) {
      return typeof x === 'object' && x !== null && (x as Record<symbol, unknown>)[kVirtiofsdError] === true;
    }
    // biome-ignore lint/complexity/noThisInStatic: `this` is the class being tested (see above)
    return Function.prototype[Symbol.hasInstance].call(this, x);
  }
}

// One subclass per layer: a code and nothing else (the name comes from the class, see the base).

/** A bad command line: printed with the usage hint, exit code 2. */
export class UsageError extends VirtiofsdError { readonly code = ErrorCode.USAGE; readonly exitCode = 2; }

/** A vhost-user protocol violation by the frontend: the message is rejected (and acked with failure if asked). */
export class VhostUserProtocolError extends VirtiofsdError { readonly code = ErrorCode.VHOST_PROTOCOL; }

/** The virtio device refused a ring configuration (size, addresses, state). */
export class DeviceError extends VirtiofsdError { readonly code = ErrorCode.DEVICE; }

/** A memory table or region the daemon cannot map or refuses (overlap, no slot, bad fd). */
export class MemoryError extends VirtiofsdError { readonly code = ErrorCode.MEMORY; }

/** Our vhost-user frontend (load tester, tests): the backend misbehaved or went away (default EPROTO). */
export class FrontendError extends VirtiofsdError {
  readonly code = ErrorCode.FRONTEND;
  constructor(message: string, errno: number = Errno.EPROTO) {
    super(message, errno);
  }
}
