/**
 * The guest window's geometry: where whole regions go when they all fit (first fit, 2 MiB aligned, so
 * huge-page backed regions stay aligned), and how the aperture area is cut when they do not: the rings'
 * pinned slots, then one partition per worker (docs/internals.md, "Guests of any size").
 */

/** The AS layout constants this needs (assembly/layout.ts). */
export interface WindowLayout {
  readonly WINDOW_BASE: number;
  readonly WINDOW_END: number;
  readonly GRANULE_SHIFT: number;
  readonly APERTURE_SLOT_SIZE: number;
  readonly APERTURE_PINNED: number;
  readonly APERTURE_MAX_SLOTS: number;
  readonly APERTURE_WAYS: number;
  readonly STATS_BASE: number;
  readonly STATS_STRIDE: number;
  readonly STAT_APERTURE_HITS: number;
  readonly STAT_APERTURE_MISSES: number;
}

/** Regions are placed on 2 MiB boundaries in the window, so huge-page backed regions stay aligned. */
export const WINDOW_ALIGN = 2 * 1024 * 1024;

/** The window's size in MiB (for messages). */
export function windowMiB(L: WindowLayout): number {
  return Math.floor((L.WINDOW_END - L.WINDOW_BASE) / 2 ** 20);
}

/** First fit for `len` bytes in [lo, hi) around the `used` ranges, 2 MiB aligned; -1 if none. */
export function firstFit(used: ReadonlyArray<readonly [number, number]>, len: number, lo: number, hi: number): number {
  const sorted = [...used].sort((a, b) => a[0] - b[0]);
  let cursor = Math.ceil(lo / WINDOW_ALIGN) * WINDOW_ALIGN;
  for (const [s, e] of sorted) {
    if (s - cursor >= len) return cursor;
    cursor = Math.max(cursor, Math.ceil(e / WINDOW_ALIGN) * WINDOW_ALIGN);
  }
  return hi - cursor >= len ? cursor : -1;
}

export interface ApertureGeometry {
  /** Window address of slot 0 and the bytes of all slots. */
  area: number;
  areaLen: number;
  /** Slots in each worker's partition (a multiple of APERTURE_WAYS). */
  slotsPerWorker: number;
}

/** The aperture area for `workers` workers: as many slots as the window holds, split evenly. */
export function apertureGeometry(L: WindowLayout, workers: number): ApertureGeometry {
  const area = Math.ceil(L.WINDOW_BASE / WINDOW_ALIGN) * WINDOW_ALIGN;
  const fit = Math.min(Math.floor((L.WINDOW_END - area) / L.APERTURE_SLOT_SIZE), L.APERTURE_MAX_SLOTS);
  const perWorker = Math.floor((fit - L.APERTURE_PINNED) / workers / L.APERTURE_WAYS) * L.APERTURE_WAYS;
  if (workers < 1 || perWorker < L.APERTURE_WAYS) {
    throw new RangeError(`the window has no room for ${workers} workers' apertures`);
  }
  return { area, areaLen: (L.APERTURE_PINNED + perWorker * workers) * L.APERTURE_SLOT_SIZE, slotsPerWorker: perWorker };
}
