/**
 * Guest RAM as a man-in-the-middle vhost-user proxy sees it (corrupting-backend.ts): the frontend's
 * memory regions (SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG), each with the fd the proxy kept, reached by
 * guest-physical address (descriptors) or by frontend user address (rings; vhost-user spec, "Memory
 * region description").
 *
 * JS reaches a region only through a SharedArrayBuffer, and a region may be larger than any such buffer
 * (a VM's RAM), so the region files are mapped 2 MiB at a time (a multiple of 2 MiB huge pages) into
 * the slots of one small pool (native.mapFixed, as src/frontend/guest-ram.ts maps arenas), and a slot
 * is reused round-robin. The proxy only touches ring entries, descriptors and a few reply bytes.
 */
import fs from 'node:fs';
import { native } from '../../src/native.js';
import type { MemoryRegion } from '../../src/vhost/message.js';

const CHUNK = 2 << 20;
const SLOTS = 32;
const WASM_PAGE = 65536;

interface Region extends MemoryRegion {
  /** the fd the proxy kept (closed when the region goes) */
  fd: number;
  /** unique per region ever added, keys its mapped chunks */
  id: number;
  /** false when the file is shorter than the region says: touching it would raise SIGBUS */
  usable: boolean;
}

/** A byte of guest RAM: the region and the offset into it. */
export interface Where {
  region: Region;
  off: bigint;
}

export class ProxyMemory {
  private regions: Region[] = [];
  private nextId = 1;
  private readonly sab: SharedArrayBuffer;
  private readonly bytes: Uint8Array;
  /** "regionId:chunk" → slot, and what each slot holds */
  private readonly slotOf = new Map<string, number>();
  private readonly slotKey: Array<string | undefined> = new Array(SLOTS).fill(undefined);
  private nextSlot = 0;

  constructor(private readonly warn: (msg: string) => void) {
    const pages = (CHUNK * SLOTS) / WASM_PAGE;
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    this.sab = memory.buffer as unknown as SharedArrayBuffer;
    this.bytes = new Uint8Array(this.sab);
  }

  get count(): number {
    return this.regions.length;
  }

  /** SET_MEM_TABLE: the old regions go, these come (the proxy owns `fds` from now on). */
  setTable(regions: readonly MemoryRegion[], fds: readonly number[]): void {
    for (const r of this.regions) this.drop(r);
    this.regions = [];
    for (const [i, r] of regions.entries()) this.add(r, fds[i]!);
  }

  /** ADD_MEM_REG (the proxy owns `fd` from now on). */
  add(r: MemoryRegion, fd: number): void {
    let usable = r.memorySize > 0n && r.mmapOffset + r.memorySize <= 1n << 53n;
    try {
      if (usable && BigInt(fs.fstatSync(fd).size) < r.mmapOffset + r.memorySize) usable = false;
    } catch {
      usable = false;
    }
    if (!usable) this.warn(`region at gpa 0x${r.guestPhysAddr.toString(16)} is not inside its file: not inspected`);
    this.regions.push({ ...r, fd, id: this.nextId++, usable });
  }

  /** REM_MEM_REG: the region with this guest address, user address and size (the spec ignores the offset). */
  remove(r: MemoryRegion): void {
    const i = this.regions.findIndex(
      (x) => x.guestPhysAddr === r.guestPhysAddr && x.userspaceAddr === r.userspaceAddr && x.memorySize === r.memorySize,
    );
    if (i < 0) return;
    this.drop(this.regions[i]!);
    this.regions.splice(i, 1);
  }

  close(): void {
    for (const r of this.regions) this.drop(r);
    this.regions = [];
  }

  /** The byte at guest-physical `gpa`, if [gpa, gpa+len) lies in one usable region. */
  byGpa(gpa: bigint, len: number): Where | undefined {
    const r = this.regions.find((x) => gpa >= x.guestPhysAddr && gpa + BigInt(len) <= x.guestPhysAddr + x.memorySize);
    return r?.usable ? { region: r, off: gpa - r.guestPhysAddr } : undefined;
  }

  /** The byte at frontend user address `uaddr`, if [uaddr, uaddr+len) lies in one usable region. */
  byUaddr(uaddr: bigint, len: number): Where | undefined {
    const r = this.regions.find((x) => uaddr >= x.userspaceAddr && uaddr + BigInt(len) <= x.userspaceAddr + x.memorySize);
    return r?.usable ? { region: r, off: uaddr - r.userspaceAddr } : undefined;
  }

  /** Copies `len` bytes from w (which the caller found with byGpa/byUaddr for at least `len`). */
  read(w: Where, len: number): Uint8Array {
    const out = new Uint8Array(len);
    this.span(w, len, (pos, at, n) => out.set(this.bytes.subarray(at, at + n), pos));
    return out;
  }

  write(w: Where, data: Uint8Array): void {
    this.span(w, data.length, (pos, at, n) => this.bytes.set(data.subarray(pos, pos + n), at));
  }

  /** Calls fn(position in the range, pool offset, bytes) for each chunk piece of [w, w+len). */
  private span(w: Where, len: number, fn: (pos: number, at: number, n: number) => void): void {
    let pos = 0;
    while (pos < len) {
      const fileOff = w.region.mmapOffset + w.off + BigInt(pos);
      const chunk = fileOff / BigInt(CHUNK);
      const inChunk = Number(fileOff - chunk * BigInt(CHUNK));
      const n = Math.min(len - pos, CHUNK - inChunk);
      fn(pos, this.slot(w.region, Number(chunk)) * CHUNK + inChunk, n);
      pos += n;
    }
  }

  /** The pool slot holding chunk k of a region's file, mapping it there if needed. */
  private slot(r: Region, k: number): number {
    const key = `${r.id}:${k}`;
    const have = this.slotOf.get(key);
    if (have !== undefined) return have;
    const s = this.nextSlot;
    this.nextSlot = (s + 1) % SLOTS;
    const old = this.slotKey[s];
    if (old !== undefined) this.slotOf.delete(old);
    // Past the end of a short file the mapping exists but is never touched: add() checked the region.
    const rc = native.mapFixed(this.sab, s * CHUNK, CHUNK, r.fd, k * CHUNK);
    if (rc < 0) {
      this.slotKey[s] = undefined;
      native.unmapFixed(this.sab, s * CHUNK, CHUNK);
      throw new Error(`mmap of a guest memory region (chunk ${k}) failed: errno ${-rc}`);
    }
    this.slotKey[s] = key;
    this.slotOf.set(key, s);
    return s;
  }

  /** Unmaps a region's chunks from the pool (so its file is not held) and closes its fd. */
  private drop(r: Region): void {
    for (let s = 0; s < SLOTS; s++) {
      const key = this.slotKey[s];
      if (key?.startsWith(`${r.id}:`)) {
        native.unmapFixed(this.sab, s * CHUNK, CHUNK);
        this.slotOf.delete(key);
        this.slotKey[s] = undefined;
      }
    }
    native.close(r.fd);
  }
}
