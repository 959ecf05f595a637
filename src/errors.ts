/**
 * Linux errno values (asm-generic/errno-base.h, errno.h). File-system code returns them negated;
 * the FUSE reply header carries the negative value as is.
 */
export const Errno = {
  EPERM: 1, ENOENT: 2, ESRCH: 3, EINTR: 4, EIO: 5, ENXIO: 6, E2BIG: 7, EBADF: 9, EAGAIN: 11,
  ENOMEM: 12, EACCES: 13, EFAULT: 14, EBUSY: 16, EEXIST: 17, EXDEV: 18, ENODEV: 19, ENOTDIR: 20,
  EISDIR: 21, EINVAL: 22, ENFILE: 23, EMFILE: 24, ETXTBSY: 26, EFBIG: 27, ENOSPC: 28, ESPIPE: 29,
  EROFS: 30, EMLINK: 31, EPIPE: 32, ERANGE: 34, ENAMETOOLONG: 36, ENOSYS: 38, ENOTEMPTY: 39,
  ELOOP: 40, ENODATA: 61, EPROTO: 71, EOVERFLOW: 75, EOPNOTSUPP: 95, ESTALE: 116,
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
