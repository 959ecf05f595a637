/**
 * Guest memory: the frontend's memory regions, mapped for the addon's vectored I/O and made reachable
 * by the AS module, and the AS memory table that translates guest-physical and frontend-virtual
 * addresses. Main thread only, and only while the workers are paused: the table is rebuilt whole, then
 * published (docs/internals.md, "Guests of any size").
 *
 * Every region gets a host mapping outside the wasm memory (any size, any number). What the AS module
 * reads (rings, descriptor tables, request headers, small replies) it reaches through the window:
 * - resident: when all regions fit the window, each is mapped there whole (no cost per request);
 * - apertures: otherwise the window holds 4 MiB apertures onto guest RAM, a cache per worker that the
 *   worker fills on a miss (window.ts), plus pinned apertures for the rings (pinRings).
 */
import { Errno, MemoryError } from '../errors.js';
import { native } from '../native.js';
import type { Logger } from '../log.js';
import { closeRegion, type MappedRegion, openRegion, type RegionDesc, windowSpan } from './region.js';
import { type ApertureGeometry, apertureGeometry, firstFit, type WindowLayout, WINDOW_ALIGN, windowMiB } from './window.js';

export type { MappedRegion, RegionDesc } from './region.js';


/**
 * How many regions the memory table holds: what GET_MAX_MEM_SLOTS reports (vhost-user spec: "Memory
 * slots"). QEMU takes at most 512 from a backend; it never sends more than 8 in one SET_MEM_TABLE.
 */
export const MAX_MEM_SLOTS = 509;

/**
 * What this layer needs of the AS module: the window's bounds, the translation table it fills and the
 * aperture cache it configures. (The module is loaded by the virtio layer above, which passes it in;
 * memory does not import virtio.)
 */
export interface MemoryTable {
  readonly layout: WindowLayout;
  memtableClear(): void;
  /** the entry's index, or a negative code when the table refuses it */
  memtableAdd(gpa: bigint, size: bigint, uaddr: bigint, hva: bigint, fileOff: bigint, win: number, fd: number): number;
  apertureConfig(area: number, workers: number, slots: number): number;
  apertureOff(): void;
  aperturePin(slot: number, region: number, granule: bigint): number;
  apertureUnpin(slot: number): void;
  /** bytes to map for a granule of a region (0: unknown region) */
  apertureSpan(region: number, granule: bigint): number;
}

/** The shared memory's buffer (a SharedArrayBuffer: the Memory is created shared). */
export function sharedBuffer(m: WebAssembly.Memory): SharedArrayBuffer {
  return m.buffer as unknown as SharedArrayBuffer;
}

export type MemoryMode = 'none' | 'resident' | 'apertures';

export interface GuestMemoryOptions {
  /** Reach guest RAM through apertures even when it would fit the window (tests of that path). */
  forceApertures?: boolean;
}

export class GuestMemory {
  /** Sorted by guest-physical address: the index here is the index in the AS table. */
  private regions: MappedRegion[] = [];
  private warnedUnsealed = false;
  private mode: MemoryMode = 'none';
  private geometry: ApertureGeometry | null = null;
  /** Pinned apertures: "region:granule" → slot. */
  private pins = new Map<string, number>();

  constructor(
    private readonly vq: MemoryTable,
    private readonly memory: WebAssembly.Memory,
    private readonly log: Logger,
    private readonly maxRegions: number,
    /** Worker threads: each gets its own aperture partition. */
    private readonly workers: number,
    private readonly options: GuestMemoryOptions = {},
  ) {}

  /** the most regions mapped at once (GET_MAX_MEM_SLOTS) */
  get maxSlots(): number {
    return this.maxRegions;
  }

  get mapped(): readonly MappedRegion[] {
    return this.regions;
  }

  get totalBytes(): bigint {
    return this.regions.reduce((s, r) => s + r.memorySize, 0n);
  }

  /** How the AS module reaches guest RAM now. */
  get memoryMode(): MemoryMode {
    return this.mode;
  }

  /** The aperture partitions, in aperture mode. */
  get apertures(): ApertureGeometry | null {
    return this.geometry;
  }

  /** Aperture lookups of every worker since the daemon started (the AS module counts them). */
  apertureStats(): { hits: bigint; misses: bigint } {
    const L = this.vq.layout;
    const v = new DataView(this.memory.buffer, L.STATS_BASE, L.STATS_STRIDE * this.workers);
    let hits = 0n;
    let misses = 0n;
    for (let w = 0; w < this.workers; w++) {
      hits += v.getBigUint64(w * L.STATS_STRIDE + L.STAT_APERTURE_HITS, true);
      misses += v.getBigUint64(w * L.STATS_STRIDE + L.STAT_APERTURE_MISSES, true);
    }
    return { hits, misses };
  }

  /** Maps a region outside the window (region.ts); the missing seal is logged once. */
  private open(r: RegionDesc, fd: number): MappedRegion {
    return openRegion(r, fd, (errno) => {
      if (this.warnedUnsealed) return;
      this.warnedUnsealed = true;
      this.log.warn(
        `guest memory cannot be sealed against shrinking (errno ${errno}: a memfd made without MFD_ALLOW_SEALING, a hugetlbfs or plain file): ` +
          'the daemon relies on the VMM never to truncate guest RAM while it is shared (QEMU does not); one that does loses its connection (the daemon survives the fault). Said once per daemon.',
      );
    });
  }

  private close(m: MappedRegion): void {
    this.unmapWindow(m);
    const rc = closeRegion(m);
    if (rc < 0) this.log.error(`unmapping a guest memory region failed: errno ${-rc}`);
  }

  private unmapWindow(m: MappedRegion): void {
    if (m.mapLen === 0) return;
    const rc = native.unmapFixed(sharedBuffer(this.memory), m.mapStart, m.mapLen);
    if (rc < 0) this.log.error(`unmapping a guest memory region from the window failed: errno ${-rc}`);
    m.win = m.mapStart = m.mapLen = 0;
  }

  /**
   * Resident when every region fits the window: regions already there stay where they are, new ones
   * go first-fit (a full re-layout if that fragments). False when they do not fit: nothing is resident.
   */
  private layoutResident(): boolean {
    const L = this.vq.layout;
    const windowSize = L.WINDOW_END - L.WINDOW_BASE;
    const need = this.regions.reduce((s, m) => s + Math.ceil(windowSpan(m).len / WINDOW_ALIGN) * WINDOW_ALIGN, 0);
    if (need > windowSize) return false;
    const place = (keepPlaced: boolean): boolean => {
      for (const m of this.regions) {
        if (keepPlaced && m.mapLen > 0) continue;
        const { len, delta } = windowSpan(m);
        const used = this.regions.filter((o) => o.mapLen > 0).map((o) => [o.mapStart, o.mapStart + o.mapLen] as const);
        const start = firstFit(used, len, L.WINDOW_BASE, L.WINDOW_END);
        if (start < 0) return false;
        const rc = native.mapFixed(sharedBuffer(this.memory), start, len, m.fd, Number(m.mmapOffset) - delta);
        if (rc < 0) throw new MemoryError(`mmap of a guest memory region into the window failed: errno ${-rc}`, -rc);
        m.mapStart = start;
        m.mapLen = len;
        m.win = start + delta;
      }
      return true;
    };
    if (place(true)) return true;
    for (const m of this.regions) this.unmapWindow(m);
    return place(false);
  }

  /** Aperture mode: nothing resident, the area cleared and the cache configured empty. */
  private layoutApertures(): void {
    const L = this.vq.layout;
    for (const m of this.regions) {
      this.unmapWindow(m);
      if (m.pageSize > 1 << L.GRANULE_SHIFT) {
        throw new MemoryError(
          `guest memory of ${this.totalBytes >> 20n} MiB does not fit the ${windowMiB(L)} MiB window, and a region backed by ${m.pageSize >> 20} MiB pages cannot be reached through 2 MiB apertures (use 2 MiB huge pages or smaller)`,
          Errno.ENOMEM,
        );
      }
    }
    const g = apertureGeometry(L, this.workers);
    // Drop whatever the area held (apertures onto regions that may be gone): one anonymous mapping.
    const rc = native.unmapFixed(sharedBuffer(this.memory), g.area, g.areaLen);
    if (rc < 0) throw new MemoryError(`clearing the aperture area failed: errno ${-rc}`, -rc);
    const crc = this.vq.apertureConfig(g.area, this.workers, g.slotsPerWorker);
    if (crc < 0) throw new MemoryError(`aperture configuration refused (error ${crc})`, Errno.EINVAL);
    if (this.mode !== 'apertures') {
      this.log.info(
        `guest memory (${this.totalBytes >> 20n} MiB) does not fit the ${windowMiB(L)} MiB window: reaching it through apertures (${g.slotsPerWorker} × ${L.APERTURE_SLOT_SIZE >> 20} MiB per worker)`,
      );
    }
    this.geometry = g;
  }

  /** Re-derives the window layout and rewrites the AS table (workers paused). */
  private publish(): void {
    this.regions.sort((a, b) => (a.guestPhysAddr < b.guestPhysAddr ? -1 : 1));
    this.dropApertures();
    try {
      if (this.regions.length === 0) {
        this.mode = 'none';
      } else if (!this.options.forceApertures && this.layoutResident()) {
        if (this.mode === 'apertures') this.log.info('guest memory fits the window again: all regions resident');
        this.mode = 'resident';
      } else {
        this.layoutApertures();
        this.mode = 'apertures';
      }
      this.vq.memtableClear();
      for (const m of this.regions) {
        const rc = this.vq.memtableAdd(m.guestPhysAddr, m.memorySize, m.userspaceAddr, m.hva, m.mmapOffset, m.win, m.fd);
        if (rc < 0) throw new MemoryError(`memory table rejected a region (error ${rc})`, Errno.EINVAL);
      }
    } catch (e) {
      // Leave nothing a worker could follow to a region in a half-built state.
      this.vq.memtableClear();
      this.dropApertures();
      this.mode = 'none';
      throw e;
    }
    for (const m of this.regions) {
      this.log.debug(
        `region gpa=0x${m.guestPhysAddr.toString(16)} size=0x${m.memorySize.toString(16)} ua=0x${m.userspaceAddr.toString(16)} ${m.win ? `window 0x${m.win.toString(16)}` : 'through apertures'}`,
      );
    }
  }

  /** Forgets every aperture and unmaps the area (one anonymous mapping), so no region stays mapped
   *  through a slot after it is gone. */
  private dropApertures(): void {
    this.pins.clear();
    this.vq.apertureOff();
    const g = this.geometry;
    this.geometry = null;
    if (g === null) return;
    this.reportApertures();
    const rc = native.unmapFixed(sharedBuffer(this.memory), g.area, g.areaLen);
    if (rc < 0) this.log.error(`clearing the aperture area failed: errno ${-rc}`);
  }

  /**
   * SET_MEM_TABLE: replaces the whole table. The fds are consumed whatever happens. On failure nothing is
   * mapped (the old table is already gone: the frontend asked to replace it).
   */
  replace(regions: RegionDesc[], fds: number[]): void {
    this.clear();
    const opened: MappedRegion[] = [];
    try {
      if (regions.length > this.maxRegions) throw new MemoryError(`too many memory regions (${regions.length})`, Errno.EINVAL);
      checkOverlaps(regions);
      for (let i = 0; i < regions.length; i++) opened.push(this.open(regions[i]!, fds[i]!));
    } catch (e) {
      for (let i = opened.length; i < fds.length; i++) native.close(fds[i]!);
      for (const m of opened) this.close(m);
      throw e;
    }
    this.regions = opened;
    try {
      this.publish();
    } catch (e) {
      this.clear();
      throw e;
    }
  }

  /** ADD_MEM_REG. The fd is consumed. */
  add(r: RegionDesc, fd: number): void {
    let m: MappedRegion;
    try {
      if (this.regions.length >= this.maxRegions) throw new MemoryError('no free memory slot', Errno.ENOSPC);
      checkOverlaps([...this.regions, r]);
      m = this.open(r, fd);
    } catch (e) {
      native.close(fd);
      throw e;
    }
    this.regions.push(m);
    try {
      this.publish();
    } catch (e) {
      this.regions = this.regions.filter((o) => o !== m);
      this.close(m);
      this.publish();
      throw e;
    }
  }

  /** REM_MEM_REG: the region is named by its guest address, size and user address. */
  remove(r: RegionDesc): void {
    const i = this.regions.findIndex(
      (m) => m.guestPhysAddr === r.guestPhysAddr && m.memorySize === r.memorySize && m.userspaceAddr === r.userspaceAddr,
    );
    if (i < 0) throw new MemoryError(`REM_MEM_REG: no region at gpa 0x${r.guestPhysAddr.toString(16)}`, Errno.EINVAL);
    const [m] = this.regions.splice(i, 1);
    this.close(m!);
    this.publish();
  }

  /** Unmaps everything (disconnect, RESET_OWNER, replacement). */
  clear(): void {
    const old = this.regions;
    this.regions = [];
    this.vq.memtableClear();
    this.dropApertures();
    this.mode = 'none';
    for (const m of old) this.close(m);
  }

  private reported = { hits: 0n, misses: 0n };

  /** Logs the aperture hit rate since the last report (the cost of a miss is a mmap: docs/internals.md). */
  private reportApertures(): void {
    const now = this.apertureStats();
    const hits = now.hits - this.reported.hits;
    const misses = now.misses - this.reported.misses;
    this.reported = now;
    if (hits + misses === 0n) return;
    const rate = Number((hits * 10000n) / (hits + misses)) / 100;
    this.log.info(`guest memory apertures: ${hits} hits, ${misses} misses (${rate}% hits)`);
  }

  /** Index (in the AS table's order) of the region holding frontend addresses [ua, ua+len) whole, or -1. */
  regionByUaddr(ua: bigint, len: number): number {
    const end = ua + BigInt(len);
    return this.regions.findIndex((m) => ua >= m.userspaceAddr && end <= m.userspaceAddr + m.memorySize);
  }

  /**
   * Makes the rings' frontend-address ranges reachable by the main thread (the queue records keep window
   * addresses): nothing to do when resident; with apertures, pins the granule each range starts in
   * and drops pins no range needs. A range outside every region is left for queueSetup to refuse.
   */
  pinRings(ranges: ReadonlyArray<{ ua: bigint; len: number }>): void {
    if (this.mode !== 'apertures') return;
    const L = this.vq.layout;
    const want = new Map<string, { region: number; granule: bigint }>();
    for (const { ua, len } of ranges) {
      const region = this.regionByUaddr(ua, len);
      if (region < 0) continue;
      const m = this.regions[region]!;
      const granule = (m.mmapOffset + ua - m.userspaceAddr) >> BigInt(L.GRANULE_SHIFT);
      want.set(`${region}:${granule}`, { region, granule });
    }
    for (const [key, slot] of this.pins) {
      if (!want.has(key)) {
        this.vq.apertureUnpin(slot);
        this.pins.delete(key);
      }
    }
    const used = new Set(this.pins.values());
    let next = 0;
    for (const [key, { region, granule }] of want) {
      if (this.pins.has(key)) continue;
      while (used.has(next)) next++;
      if (next >= L.APERTURE_PINNED) throw new MemoryError('more rings than pinned apertures', Errno.ENOSPC);
      const win = this.vq.aperturePin(next, region, granule);
      const len = this.vq.apertureSpan(region, granule);
      const fileOff = Number(granule << BigInt(L.GRANULE_SHIFT));
      const rc = win === 0 || len === 0 ? -Errno.EINVAL : native.mapFixed(sharedBuffer(this.memory), win, len, this.regions[region]!.fd, fileOff);
      if (rc < 0) {
        this.vq.apertureUnpin(next);
        this.log.error(`mapping a ring aperture failed: errno ${-rc}`);
        continue;
      }
      this.pins.set(key, next);
      used.add(next);
    }
  }
}

/** Regions may not overlap, neither in guest-physical space nor in the frontend's address space. */
function checkOverlaps(rs: readonly RegionDesc[]): void {
  const check = (key: (r: RegionDesc) => bigint, what: string): void => {
    const sorted = [...rs].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
    for (let i = 1; i < sorted.length; i++) {
      const p = sorted[i - 1]!;
      if (key(p) + p.memorySize > key(sorted[i]!)) throw new MemoryError(`memory regions overlap in ${what}`, Errno.EINVAL);
    }
  };
  check((r) => r.guestPhysAddr, 'guest-physical space');
  check((r) => r.userspaceAddr, "the frontend's address space");
}
