/**
 * The cache policy: how long the guest may trust what we tell it. The only place that decides the
 * entry and attribute timeouts (fuse_entry_out/fuse_attr_out validity), whether a missing name is
 * answered with a cacheable negative entry, and the FOPEN_* flags OPEN/CREATE and OPENDIR add.
 * The modes mean what the reference daemon's cache=never|metadata|auto|always mean.
 */
import { FOPEN_CACHE_DIR, FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE } from '../abi/fuse.js';

export type CacheMode = 'never' | 'metadata' | 'auto' | 'always';

export interface CachePolicy {
  /** validity of a name (LOOKUP and creating replies, READDIRPLUS records), in seconds */
  readonly entryTimeout: number;
  /** validity of attributes (GETATTR, SETATTR, and every entry's), in seconds */
  readonly attrTimeout: number;
  /**
   * LOOKUP of a missing name answers node id 0 with the entry timeout ("no such name", cached by the
   * guest: fuse.h) instead of ENOENT, so repeated probes (PATH and include searches) stay in the guest.
   */
  readonly negativeEntries: boolean;
  /** FOPEN_* bits every OPEN and CREATE reply carries (besides the file system's own) */
  readonly fileOpenFlags: number;
  /** FOPEN_* bits every OPENDIR reply carries */
  readonly dirOpenFlags: number;
}

/** Seconds the metadata and always modes let the guest cache names and attributes. */
const LONG = 86400;

/**
 * The policy for a cache mode; `timeout` (seconds, fractions allowed: the reference daemon's
 * -o timeout=) replaces the mode's entry and attribute timeouts, and 0 also stops negative entries.
 */
export function cachePolicy(mode: CacheMode = 'auto', timeout?: number): CachePolicy {
  let t: number;
  let fileOpenFlags: number;
  let dirOpenFlags = 0;
  switch (mode) {
    // never: nothing cached; file data bypasses the guest page cache
    case 'never': t = 0; fileOpenFlags = FOPEN_DIRECT_IO; break;
    // metadata: names and attributes cached long, file data never
    case 'metadata': t = LONG; fileOpenFlags = FOPEN_DIRECT_IO; break;
    // auto: short validity; the guest keeps file data while the size and mtime stay the same
    case 'auto': t = 1; fileOpenFlags = 0; break;
    // always: everything cached long, file and directory contents kept across opens
    case 'always': t = LONG; fileOpenFlags = FOPEN_KEEP_CACHE; dirOpenFlags = FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR; break;
    default: throw new RangeError(`unknown cache policy ${String(mode)}`);
  }
  if (timeout !== undefined) {
    if (!Number.isFinite(timeout) || timeout < 0) throw new RangeError(`bad timeout ${timeout}`);
    t = timeout;
  }
  return { entryTimeout: t, attrTimeout: t, negativeEntries: t > 0, fileOpenFlags, dirOpenFlags };
}
