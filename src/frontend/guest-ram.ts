/**
 * Guest RAM as the frontend of a large VM describes it: a list of memory regions, each backed by its
 * own sparse memfd, at any 64-bit guest-physical and user address and of any size (the backend maps
 * whole regions; nothing touches most of them). This process maps only the parts it uses, "arenas" of
 * a few MiB at chosen offsets inside a region, into one shared view of its own, and places rings and
 * buffers by guest-physical address (vhost-user spec, "Memory region description").
 *
 * Arenas that follow each other in guest-physical space are placed one after the other in the view
 * too, so a buffer may straddle them; between any others the view leaves a gap, and a range that is not
 * mapped in one piece is a RangeError, never a silent write into a neighbour.
 */
import { native } from '../native.js';
import type { MemoryRegion } from '../vhost/message.js';
import type { GuestView } from './driver-queue.js';

export const PAGE_SIZE = 4096;
const WASM_PAGE = 65536;
/** View bytes between arenas that are not contiguous in guest-physical space. */
const GAP = 65536;
/** View bytes kept free for regions added later (ADD_MEM_REG), unless the caller says otherwise. */
const DEFAULT_SPARE = 64 << 20;

/** A part of a region this process maps: `bytes` at `offset` into the region (both 4 KiB multiples). */
export interface ArenaSpec {
  offset: bigint;
  bytes: number;
}

export interface RegionSpec {
  guestPhysAddr: bigint;
  userspaceAddr: bigint;
  size: bigint;
  /** where the region starts in its memfd (mmap_offset; a 4 KiB multiple; default 0) */
  mmapOffset?: bigint;
  arenas: readonly ArenaSpec[];
  /** false: a memfd created without MFD_ALLOW_SEALING, as some frontends' are (default true) */
  sealable?: boolean;
}

/** An arena as mapped: its guest-physical address and its offset in the view. */
export interface Arena {
  region: number;
  gpa: bigint;
  bytes: number;
  off: number;
}

export interface GuestRegion {
  readonly spec: RegionSpec;
  /** the memfd behind the region (mmapOffset + size bytes, sparse) */
  readonly fd: number;
  /** the region as SET_MEM_TABLE / ADD_MEM_REG / REM_MEM_REG carry it */
  readonly wire: MemoryRegion;
  readonly arenas: readonly Arena[];
}

export class GuestRam implements GuestView {
  /** the whole view (arenas and the gaps between them) */
  readonly bytes: Uint8Array;
  private readonly sab: SharedArrayBuffer;
  private readonly regions: GuestRegion[] = [];
  /** every arena, sorted by guest-physical address */
  private arenas: Arena[] = [];
  private last: Arena | undefined;
  private cursor = 0;
  private closed = false;

  private constructor(memory: WebAssembly.Memory) {
    // The buffer holds the Memory's backing store (and so the mappings in it) alive.
    this.sab = memory.buffer as unknown as SharedArrayBuffer;
    this.bytes = new Uint8Array(this.sab);
  }

  /** Creates the regions' memfds and maps their arenas; `spareBytes` of view stay free for add(). */
  static create(specs: readonly RegionSpec[], spareBytes = DEFAULT_SPARE): GuestRam {
    const need = specs.reduce((s, r) => s + r.arenas.reduce((a, x) => a + roundUp(x.bytes, PAGE_SIZE) + GAP, 0), 0) + spareBytes;
    const pages = Math.ceil(need / WASM_PAGE);
    if (pages > 65536) throw new RangeError(`arenas of ${need} bytes do not fit a 4 GiB view`);
    const ram = new GuestRam(new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }));
    try {
      for (const s of specs) ram.add(s);
    } catch (e) {
      ram.close();
      throw e;
    }
    return ram;
  }

  get count(): number {
    return this.regions.length;
  }

  region(i: number): GuestRegion {
    const r = this.regions[i];
    if (!r) throw new RangeError(`no region ${i}`);
    return r;
  }

  /** Arena k of region i. */
  arena(i: number, k: number): Arena {
    const a = this.region(i).arenas[k];
    if (!a) throw new RangeError(`region ${i} has no arena ${k}`);
    return a;
  }

  /** Creates a region's memfd and maps its arenas into the view; returns its index. */
  add(spec: RegionSpec): number {
    if (this.closed) throw new Error('guest RAM closed');
    const mmapOffset = spec.mmapOffset ?? 0n;
    if (spec.size <= 0n || mmapOffset < 0n || mmapOffset % BigInt(PAGE_SIZE) !== 0n) {
      throw new RangeError('a region needs a size and a page-aligned mmap offset');
    }
    const index = this.regions.length;
    const sorted = [...spec.arenas].sort((a, b) => (a.offset < b.offset ? -1 : 1));
    for (const a of sorted) {
      if (a.bytes <= 0 || a.offset < 0n || a.offset % BigInt(PAGE_SIZE) !== 0n || a.offset + BigInt(a.bytes) > spec.size) {
        throw new RangeError(`arena at 0x${a.offset.toString(16)} (${a.bytes} bytes) is not page-aligned inside its region`);
      }
      const gpa = spec.guestPhysAddr + a.offset;
      if (this.arenas.some((o) => gpa < o.gpa + BigInt(o.bytes) && o.gpa < gpa + BigInt(a.bytes))) {
        throw new RangeError(`arena at gpa 0x${gpa.toString(16)} overlaps another`);
      }
    }
    const fd = native.memfdCreate(`guest-ram-${index}`, Number(mmapOffset + spec.size), spec.sealable === false);
    if (fd < 0) throw new Error(`memfd_create: errno ${-fd}`);
    const placed: Arena[] = [];
    const region: GuestRegion = {
      spec,
      fd,
      wire: { guestPhysAddr: spec.guestPhysAddr, memorySize: spec.size, userspaceAddr: spec.userspaceAddr, mmapOffset },
      arenas: placed,
    };
    this.regions.push(region);
    for (const a of sorted) {
      const gpa = spec.guestPhysAddr + a.offset;
      const prev = this.last;
      // Contiguous in gpa with the arena placed just before: contiguous in the view as well.
      const off = prev && prev.gpa + BigInt(prev.bytes) === gpa && prev.off + prev.bytes === this.cursor ? this.cursor : this.cursor === 0 ? 0 : this.cursor + GAP;
      const len = roundUp(a.bytes, PAGE_SIZE);
      if (off + len > this.sab.byteLength) throw new RangeError('the view has no room left for this arena');
      const rc = native.mapFixed(this.sab, off, len, fd, Number(mmapOffset + a.offset));
      if (rc < 0) throw new Error(`mapping an arena failed: errno ${-rc}`);
      const arena: Arena = { region: index, gpa, bytes: a.bytes, off };
      placed.push(arena);
      this.arenas.push(arena);
      this.last = arena;
      this.cursor = off + len;
    }
    this.arenas.sort((x, y) => (x.gpa < y.gpa ? -1 : 1));
    return index;
  }

  /** Offset in the view of [gpa, gpa+len): RangeError unless it is mapped in one piece. */
  offsetOf(gpa: bigint, len = 1): number {
    let k = this.arenas.findIndex((x) => gpa >= x.gpa && gpa < x.gpa + BigInt(x.bytes));
    if (k < 0) throw new RangeError(`gpa 0x${gpa.toString(16)} is in no mapped arena`);
    let a: Arena = this.arenas[k]!;
    const off = a.off + Number(gpa - a.gpa);
    const end = gpa + BigInt(len);
    while (end > a.gpa + BigInt(a.bytes)) {
      const next: Arena | undefined = this.arenas[++k];
      if (!next || next.gpa !== a.gpa + BigInt(a.bytes) || next.off !== a.off + a.bytes) {
        throw new RangeError(`[0x${gpa.toString(16)}, +${len}) leaves its arena and the next one is not contiguous`);
      }
      a = next;
    }
    return off;
  }

  /** Guest-physical address of view offset `off`. */
  gpaAt(off: number): bigint {
    const a = this.arenas.find((x) => off >= x.off && off < x.off + x.bytes);
    if (!a) throw new RangeError(`view offset ${off} is in no arena`);
    return a.gpa + BigInt(off - a.off);
  }

  /** The frontend (user) address of a guest-physical address, through the region holding it. */
  uaddrOf(gpa: bigint): bigint {
    const r = this.regions.find((x) => gpa >= x.spec.guestPhysAddr && gpa < x.spec.guestPhysAddr + x.spec.size);
    if (!r) throw new RangeError(`gpa 0x${gpa.toString(16)} is in no region`);
    return gpa - r.spec.guestPhysAddr + r.spec.userspaceAddr;
  }

  write(gpa: bigint, data: Uint8Array): void {
    this.bytes.set(data, this.offsetOf(gpa, data.length));
  }

  read(gpa: bigint, len: number): Uint8Array {
    const o = this.offsetOf(gpa, len);
    return this.bytes.slice(o, o + len);
  }

  /** Unmaps the arenas (the view keeps anonymous pages) and closes the memfds. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const a of this.arenas) native.unmapFixed(this.sab, a.off, roundUp(a.bytes, PAGE_SIZE));
    for (const r of this.regions) native.close(r.fd);
  }
}

function roundUp(v: number, a: number): number {
  return Math.ceil(v / a) * a;
}
