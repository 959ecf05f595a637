/**
 * Guest memory: the frontend's memory regions mapped into the guest window of the shared
 * WebAssembly.Memory, and the AS memory table that translates guest-physical and frontend-virtual
 * addresses to window addresses. Main thread only, and only while the workers are paused: the table
 * is rebuilt whole, then published (rust-vmm vhost's update_memory does the same).
 */
import fs from 'node:fs';
import { Errno, MemoryError } from '../errors.js';
import { native } from '../native.js';
import type { Logger } from '../log.js';

export const PAGE_SIZE = 4096;

/**
 * How many regions the memory table holds: what GET_MAX_MEM_SLOTS reports (vhost-user spec:
 * "Memory slots"), and the most SET_MEM_TABLE/ADD_MEM_REG may leave mapped at once.
 */
export const MAX_MEM_SLOTS = 32;

/**
 * What this layer needs of the AS module: the guest window's bounds and the translation table it fills.
 * (The module is loaded by the virtio layer above, which passes it in; memory does not import virtio.)
 */
export interface MemoryTable {
  readonly layout: { readonly WINDOW_BASE: number; readonly WINDOW_END: number };
  memtableClear(): void;
  /** 0, or a negative code when the table refuses the entry */
  memtableAdd(gpa: bigint, size: bigint, uaddr: bigint, win: number): number;
}

/** The shared memory's buffer (a SharedArrayBuffer: the Memory is created shared). */
export function sharedBuffer(m: WebAssembly.Memory): SharedArrayBuffer {
  return m.buffer as unknown as SharedArrayBuffer;
}
/** Regions are placed on 2 MiB boundaries in the window, so huge-page backed regions stay aligned. */
const WINDOW_ALIGN = 2 * 1024 * 1024;

export interface RegionDesc {
  guestPhysAddr: bigint;
  memorySize: bigint;
  userspaceAddr: bigint;
  mmapOffset: bigint;
}

export interface MappedRegion extends RegionDesc {
  /** Window address of the region's first byte. */
  win: number;
  /** The page-aligned mapping that holds it. */
  mapStart: number;
  mapLen: number;
}

export class GuestMemory {
  private regions: MappedRegion[] = [];
  private warnedUnsealed = false;
  private readonly windowBase: number;
  private readonly windowEnd: number;

  constructor(
    private readonly vq: MemoryTable,
    private readonly memory: WebAssembly.Memory,
    private readonly log: Logger,
    private readonly maxRegions: number,
  ) {
    this.windowBase = vq.layout.WINDOW_BASE;
    this.windowEnd = vq.layout.WINDOW_END;
  }

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

  /** Checks a region's numbers before anything is mapped (they come from the frontend). */
  private validate(r: RegionDesc): void {
    const U64 = (1n << 64n) - 1n;
    if (r.memorySize === 0n) throw new MemoryError('memory region of size 0', Errno.EINVAL);
    if (r.guestPhysAddr + r.memorySize - 1n > U64 || r.userspaceAddr + r.memorySize - 1n > U64) {
      throw new MemoryError('memory region wraps around the address space', Errno.EINVAL);
    }
    if (r.mmapOffset + r.memorySize > (1n << 63n)) throw new MemoryError('memory region mmap offset too large', Errno.EINVAL);
  }

  /** First fit in the window for `len` bytes (2 MiB aligned), or -1. */
  private allocate(len: number, skip?: MappedRegion[]): number {
    const used = this.regions
      .filter((r) => !skip?.includes(r))
      .map((r) => [r.mapStart, r.mapStart + r.mapLen] as const)
      .sort((a, b) => a[0] - b[0]);
    let cursor = this.windowBase;
    for (const [s, e] of used) {
      if (s - cursor >= len) return cursor;
      cursor = Math.max(cursor, Math.ceil(e / WINDOW_ALIGN) * WINDOW_ALIGN);
    }
    return this.windowEnd - cursor >= len ? cursor : -1;
  }

  private mapOne(r: RegionDesc, fd: number): MappedRegion {
    this.validate(r);
    // Touching a mapping past the end of its file raises SIGBUS, which would kill the daemon: the
    // region must lie inside the file as it is now (memfd and hugetlbfs files have a size).
    let st: fs.Stats;
    try {
      st = fs.fstatSync(fd);
    } catch (e) {
      throw new MemoryError(`memory region fd: ${(e as NodeJS.ErrnoException).code ?? e}`, Errno.EBADF);
    }
    if (!st.isFile()) throw new MemoryError('memory region fd is not a regular file (memfd, tmpfs or hugetlbfs expected)', Errno.EINVAL);
    // ... and must stay so: a memfd gets F_SEAL_SHRINK (QEMU's memfd backend sets it by default).
    const sealed = native.sealShrink(fd);
    if (sealed < 0 && !this.warnedUnsealed) {
      this.warnedUnsealed = true;
      this.log.warn(
        `guest memory fd cannot be sealed against shrinking (errno ${-sealed}): a frontend that truncates it would crash the daemon`,
      );
    }
    if (r.mmapOffset + r.memorySize > BigInt(st.size)) {
      throw new MemoryError(
        `memory region (offset 0x${r.mmapOffset.toString(16)} + size 0x${r.memorySize.toString(16)}) extends past the end of its file (0x${st.size.toString(16)})`,
        Errno.EINVAL,
      );
    }
    const delta = Number(r.mmapOffset % BigInt(PAGE_SIZE));
    const mapLenBig = ((r.memorySize + BigInt(delta) + BigInt(PAGE_SIZE - 1)) / BigInt(PAGE_SIZE)) * BigInt(PAGE_SIZE);
    const windowSize = this.windowEnd - this.windowBase;
    if (mapLenBig > BigInt(windowSize)) {
      throw new MemoryError(
        `memory region of ${r.memorySize} bytes does not fit the ${windowSize}-byte guest window (guests with more than ~3.9 GiB of RAM are not supported yet)`,
        Errno.ENOMEM,
      );
    }
    const mapLen = Number(mapLenBig);
    const start = this.allocate(mapLen);
    if (start < 0) {
      throw new MemoryError(
        `guest memory (${this.totalBytes + r.memorySize} bytes) does not fit the ${windowSize}-byte guest window (guests with more than ~3.9 GiB of RAM are not supported yet)`,
        Errno.ENOMEM,
      );
    }
    const rc = native.mapFixed(sharedBuffer(this.memory), start, mapLen, fd, Number(r.mmapOffset - BigInt(delta)));
    if (rc < 0) throw new MemoryError(`mmap of a guest memory region failed: errno ${-rc}`, -rc);
    const m: MappedRegion = { ...r, win: start + delta, mapStart: start, mapLen };
    this.log.debug(
      `mapped region gpa=0x${r.guestPhysAddr.toString(16)} size=0x${r.memorySize.toString(16)} ua=0x${r.userspaceAddr.toString(16)} at window 0x${m.win.toString(16)}`,
    );
    return m;
  }

  private unmapOne(m: MappedRegion): void {
    const rc = native.unmapFixed(sharedBuffer(this.memory), m.mapStart, m.mapLen);
    if (rc < 0) this.log.error(`unmapping a guest memory region failed: errno ${-rc}`);
  }

  private publish(): void {
    this.vq.memtableClear();
    for (const m of this.regions) {
      const rc = this.vq.memtableAdd(m.guestPhysAddr, m.memorySize, m.userspaceAddr, m.win);
      if (rc < 0) throw new MemoryError(`memory table rejected a region (error ${rc})`, Errno.EINVAL);
    }
  }

  /**
   * SET_MEM_TABLE: replaces the whole table. The fds are consumed (closed) whatever happens. On
   * failure nothing is mapped (the old table is already gone: the frontend asked to replace it).
   */
  replace(regions: RegionDesc[], fds: number[]): void {
    this.clear();
    try {
      if (regions.length > this.maxRegions) throw new MemoryError(`too many memory regions (${regions.length})`, Errno.EINVAL);
      this.checkOverlaps(regions);
      for (let i = 0; i < regions.length; i++) this.regions.push(this.mapOne(regions[i]!, fds[i]!));
      this.publish();
    } catch (e) {
      this.clear();
      throw e;
    } finally {
      for (const fd of fds) native.close(fd);
    }
  }

  /** ADD_MEM_REG. The fd is consumed. */
  add(r: RegionDesc, fd: number): void {
    try {
      if (this.regions.length >= this.maxRegions) throw new MemoryError('no free memory slot', Errno.ENOSPC);
      this.checkOverlaps([...this.regions, r]);
      const m = this.mapOne(r, fd);
      this.regions.push(m);
      try {
        this.publish();
      } catch (e) {
        this.regions.pop();
        this.unmapOne(m);
        this.publish();
        throw e;
      }
    } finally {
      native.close(fd);
    }
  }

  /** REM_MEM_REG: the region is named by its guest address, size and user address. */
  remove(r: RegionDesc): void {
    const i = this.regions.findIndex(
      (m) => m.guestPhysAddr === r.guestPhysAddr && m.memorySize === r.memorySize && m.userspaceAddr === r.userspaceAddr,
    );
    if (i < 0) throw new MemoryError(`REM_MEM_REG: no region at gpa 0x${r.guestPhysAddr.toString(16)}`, Errno.EINVAL);
    const [m] = this.regions.splice(i, 1);
    this.publish();
    this.unmapOne(m!);
  }

  /** Unmaps everything (disconnect, RESET_OWNER, replacement). */
  clear(): void {
    const old = this.regions;
    this.regions = [];
    this.vq.memtableClear();
    for (const m of old) this.unmapOne(m);
  }

  private checkOverlaps(rs: RegionDesc[]): void {
    const sorted = [...rs].sort((a, b) => (a.guestPhysAddr < b.guestPhysAddr ? -1 : 1));
    for (let i = 1; i < sorted.length; i++) {
      const p = sorted[i - 1]!;
      if (p.guestPhysAddr + p.memorySize > sorted[i]!.guestPhysAddr) {
        throw new MemoryError('memory regions overlap in guest-physical space', Errno.EINVAL);
      }
    }
  }
}
