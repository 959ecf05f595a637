/**
 * The virtqueue fuzz's rig and properties, shared by the time-boxed tap test (chain-parse.test.ts) and
 * the long-running fuzzer (run.ts): a MockDriver queue on one region of the wasm memory table and a
 * second, adjacent region outside the window; generators of hostile descriptor tables (addresses inside,
 * around each region's end and anywhere, lengths up to 4 GiB, any flags and next index); and the two
 * properties, chainParse's lists always inside guest RAM and queuePop's heads always < size or an error.
 */
import fc from 'fast-check';
import { native } from '../../src/native.js';
import { VqError, type VqExports, createSharedMemory, loadVirtqueueModule } from '../../src/virtio/wasm.js';
import { MockDriver, defaultRegion } from '../helpers/mock-driver.js';

export const SIZE = 16;
/** the worker slot whose scratch chainParse fills */
const W = 1;
/** the second region's size */
const NEXT_SIZE = 1 << 20;

export interface VirtqueueRig {
  vq: VqExports;
  memory: WebAssembly.Memory;
  d: MockDriver;
  /** the region sizes, by region index in the segment lists */
  sizes: number[];
  /** a scratch page in guest RAM used as an indirect table target */
  table: bigint;
  desc: fc.Arbitrary<{ addr: bigint; len: number; flags: number; next: number }>;
}

export interface ChainStats {
  runs: number;
  ok: number;
  inSecond: number;
  seen: Set<number>;
}

export async function virtqueueRig(): Promise<VirtqueueRig> {
  const memory = createSharedMemory();
  const vq = await loadVirtqueueModule(memory);
  const d = new MockDriver(memory.buffer, { region: defaultRegion(vq), queueSize: SIZE });
  if (d.attach(vq, 0) !== 0) throw new Error('attach');
  const region = d.region;
  const regionEnd = BigInt(region.size) + region.gpa;
  // A second region right after the first in guest-physical space (not in the window or the frontend's
  // space): a buffer may span both (chainParse splits it), or run past the second's end (refused).
  const hva = (win: number): bigint => native.memoryAddress(memory.buffer as unknown as SharedArrayBuffer) + BigInt(win);
  const nextWin = region.win + region.size + (2 << 20);
  if (vq.memtableAdd(regionEnd, BigInt(NEXT_SIZE), region.uaddr + (1n << 30n), hva(nextWin), 0n, nextWin, -1) !== 1) throw new Error('second region');
  const table = d.alloc(16 * 64, 16);
  const addr = fc.oneof(
    fc.bigInt({ min: region.gpa, max: regionEnd - 1n }),            // inside
    fc.bigInt({ min: regionEnd - 64n, max: regionEnd + 64n }),       // around the end of the first
    fc.bigInt({ min: regionEnd + BigInt(NEXT_SIZE) - 64n, max: regionEnd + BigInt(NEXT_SIZE) + 64n }), // and of the second
    fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),                   // anywhere
    fc.constant(table),
  );
  const len = fc.oneof(fc.integer({ min: 0, max: 4096 }), fc.constantFrom(0, 16, 64, 0xffffffff, 0x80000000, region.size));
  const desc = fc.record({ addr, len, flags: fc.integer({ min: 0, max: 7 }), next: fc.integer({ min: 0, max: 70 }) });
  return { vq, memory, d, sizes: [region.size, NEXT_SIZE], table, desc };
}

export function chainStats(): ChainStats {
  return { runs: 0, ok: 0, inSecond: 0, seen: new Set() };
}

/** chainParse never traps; its codes are 0 or a VqError; its segment lists lie inside a region and add up. */
export function chainParseProperty(rig: VirtqueueRig, st: ChainStats) {
  const { vq, memory, d, sizes, table, desc } = rig;
  const L = vq.layout;
  const codes = new Set<number>([0, ...Object.values(VqError)]);
  return fc.property(
    fc.array(desc, { minLength: SIZE, maxLength: SIZE }),
    fc.array(desc, { minLength: 0, maxLength: 64 }),
    fc.integer({ min: 0, max: SIZE }),
    (main, indirect, head) => {
      st.runs++;
      for (const [i, x] of main.entries()) d.writeDesc(i, x);
      for (const [i, x] of indirect.entries()) d.writeDesc(i, x, table);
      const rc = vq.chainParse(0, head, W);
      st.seen.add(rc);
      if (!codes.has(rc)) return false;
      if (rc === 0) st.ok++;
      const s = new DataView(memory.buffer, L.SCRATCH_BASE + W * L.SCRATCH_SIZE, L.SCRATCH_SIZE);
      for (const [cOff, tOff, lOff] of [[L.SCR_RCOUNT, L.SCR_RTOTAL, L.SCR_RLIST], [L.SCR_WCOUNT, L.SCR_WTOTAL, L.SCR_WLIST]] as const) {
        const n = s.getUint32(cOff, true);
        if (n > L.MAX_SEGS) return false;
        let sum = 0;
        for (let i = 0; i < n; i++) {
          // {u64 off, u32 len, u32 region}: one of the two regions, inside it.
          const e = lOff + L.SEG_STRIDE * i;
          const off = Number(s.getBigUint64(e, true)), l = s.getUint32(e + 8, true), r = s.getUint32(e + 12, true);
          if (l === 0 || r > 1 || off + l > sizes[r]!) return false;
          if (r === 1) st.inSecond++;
          sum += l;
        }
        if (sum !== s.getUint32(tOff, true)) return false;
      }
      return true;
    },
  );
}

/** queuePop on a random avail ring and base returns each pending head (< size) once, then EMPTY; or BROKEN for good. */
export function queuePopProperty(rig: VirtqueueRig, st: { runs: number }) {
  const { vq, d } = rig;
  return fc.property(
    fc.integer({ min: 0, max: 0xffff }),
    fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: SIZE, maxLength: SIZE }),
    fc.integer({ min: 0, max: 0xffff }),
    (base, ring, idx) => {
      st.runs++;
      vq.queueReset(0);
      vq.queueSetBase(0, base);
      if (vq.queueSetup(0, SIZE, d.descUa, d.availUa, d.usedUa, 0) !== 0) return false;
      for (const h of ring) d.pushAvail(h);
      d.setAvailIdx(idx);
      const pending = (idx - base) & 0xffff;
      for (let i = 0; i <= Math.min(pending, SIZE); i++) {
        const h = vq.queuePop(0);
        if (h === VqError.EMPTY) return i === pending;
        if (h === VqError.BROKEN) return vq.queueIsBroken(0) === 1 && vq.queuePop(0) === VqError.BROKEN;
        if (h < 0 || h >= SIZE || pending > SIZE) return false;
      }
      return true;
    },
  );
}
