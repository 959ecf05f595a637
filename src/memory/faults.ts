/**
 * Guest RAM that shrinks under the daemon (docs/internals.md, "Guest RAM that shrinks"). A frontend
 * whose memory fd cannot be sealed may truncate it while the daemon has it mapped; the next access to a
 * lost page in the guest window raises SIGBUS in whichever thread made it. The addon's handler
 * (native/src/sigbus.cc) maps zero pages over the page, so the access reads zeros instead of killing the
 * daemon, and signals an eventfd; this module watches that eventfd on the main thread and says which
 * guest memory the fault hit. Dropping the connection is the vhost layer's business (the daemon wires
 * the two together).
 */
import fs from 'node:fs';
import { MemoryError } from '../errors.js';
import { native, type FdWatcher } from '../native.js';
import type { GuestMemory } from './guest-memory.js';
import type { WindowLayout } from './window.js';

export interface GuestMemoryFault {
  /** pages replaced by zero pages since the last report */
  pages: number;
  /** offset in the wasm memory of the last faulting access */
  offset: number;
}

export class GuestMemoryFaults {
  private seen = 0;
  private watch: FdWatcher | null;

  private constructor(
    private readonly fd: number,
    private readonly report: (f: GuestMemoryFault) => void,
  ) {
    this.watch = native.watchFd(fd, () => this.drain());
  }

  /**
   * Guards the guest window of `memory` (every resident region and aperture is mapped there) and calls
   * `report` on the main thread after faults in it. Throws MemoryError when the handler cannot be set.
   */
  static guard(memory: WebAssembly.Memory, layout: WindowLayout, report: (f: GuestMemoryFault) => void): GuestMemoryFaults {
    const fd = native.sigbusGuard(memory.buffer as unknown as SharedArrayBuffer, layout.WINDOW_BASE, layout.WINDOW_END - layout.WINDOW_BASE);
    if (fd < 0) throw new MemoryError(`cannot install the SIGBUS handler for guest memory: errno ${-fd}`, -fd);
    return new GuestMemoryFaults(fd, report);
  }

  /** Faults survived since the process started. */
  get total(): number {
    return this.seen;
  }

  private drain(): void {
    // Only wakes us: the count below is what counts (a failed read would leave it readable, and the
    // next fault's write would wake us again anyway).
    native.eventfdRead(this.fd);
    const { count, offset } = native.sigbusFaults();
    if (count <= this.seen) return;
    const pages = count - this.seen;
    this.seen = count;
    this.report({ pages, offset });
  }

  /** Stops watching (the handler stays: a later fault is still survived, only not reported). */
  stop(): void {
    this.watch?.stop();
    this.watch = null;
  }
}

/**
 * Which guest memory a fault at wasm-memory offset `offset` hit: `owned` when the offset lies in memory
 * mapped now (a resident region or the aperture area), and for the log the region (the guest-physical
 * address) or the aperture, and every region whose file is now shorter than the region (the truncation
 * itself).
 */
export function describeFault(memory: GuestMemory, offset: number): { owned: boolean; text: string } {
  const hex = (v: bigint | number): string => `0x${v.toString(16)}`;
  const parts: string[] = [];
  const resident = memory.mapped.find((m) => m.mapLen > 0 && offset >= m.mapStart && offset < m.mapStart + m.mapLen);
  const g = memory.apertures;
  const inApertures = g !== null && offset >= g.area && offset < g.area + g.areaLen;
  if (resident) {
    const gpa = resident.guestPhysAddr + BigInt(offset - resident.win);
    parts.push(`at guest-physical ${hex(gpa)} in the region gpa=${hex(resident.guestPhysAddr)} size=${hex(resident.memorySize)}`);
  } else if (inApertures) {
    parts.push(`in an aperture onto guest memory (window offset ${hex(offset)})`);
  } else {
    parts.push(`at window offset ${hex(offset)}, in no region mapped now`);
  }
  for (const m of memory.mapped) {
    let size: number;
    try {
      size = fs.fstatSync(m.fd).size;
    } catch {
      continue;
    }
    const need = m.mmapOffset + m.memorySize;
    if (BigInt(size) < need) parts.push(`the file of region gpa=${hex(m.guestPhysAddr)} is now ${size} bytes, the region needs ${need}`);
  }
  return { owned: resident !== undefined || inApertures, text: parts.join('; ') };
}
