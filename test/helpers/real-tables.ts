/**
 * The real inode and file-handle tables for the file-system tests: the AssemblyScript module
 * (assembly/inodes.ts, assembly/handles.ts over one shared linear memory) that the daemon hands the
 * passthrough (src/fs/tables.ts), instantiated once per test file (per process). The tests share it
 * the way the daemon's sessions do: `resetTables` empties it between tests as DESTROY would, and
 * `Passthrough.open` initialises the inode table with its root.
 *
 * The tables hold 2^20 inodes and 2^18 handles (assembly/layout.ts), more descriptors than a test
 * process may open, so `fillInodes`/`fillHandles` fill them through the exports with fake entries
 * whose fd (FAKE_FD) lies above the process's hard open-file limit: it can never be a real
 * descriptor, and a DESTROY that closes it gets EBADF. About half a second for the inode table.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { native } from '../../src/native.js';
import { type VqExports, createSharedMemory, loadVirtqueueModule } from '../../src/virtio/wasm.js';

/** The fd of every fake entry: no process descriptor can have it (checked against RLIMIT_NOFILE). */
export const FAKE_FD = 0x3fff_ffff;
/** The st_dev of fake inodes, as u32 halves (0xffff_ffff_ffff_f000): no file system has it. */
const FAKE_DEV_LO = 0xffff_f000;
const FAKE_DEV_HI = 0xffff_ffff;

// The inode slot's layout (the @unmanaged class Inode in assembly/inodes.ts, whose build fails if a
// field moves) and the slot-table header (assembly/slots.ts), for `nlookup`.
const I_GEN = 4;
const I_NLOOKUP = 24;
const I_FLAGS = 40;
const F_INUSE = 1;
const F_FORGOTTEN = 2;
const H_HIWATER = 12;

let loaded: Promise<{ vq: VqExports; memory: WebAssembly.Memory }> | undefined;
let current: { vq: VqExports; memory: WebAssembly.Memory } | undefined;

/** The real tables of this test file (instantiated on first use, on a shared memory of their own). */
export async function realTables(): Promise<VqExports> {
  if (!loaded) {
    const memory = createSharedMemory();
    loaded = loadVirtqueueModule(memory).then((vq) => {
      vq.handleInit();
      current = { vq, memory };
      return current;
    });
  }
  return (await loaded).vq;
}

/** The shared memory the real tables live in (after realTables()). */
export function realMemory(): WebAssembly.Memory {
  if (!current) throw new Error('realMemory: realTables() was not loaded');
  return current.memory;
}

/**
 * Empty the tables for the next test: close what an earlier test's passthrough left in them, as its
 * DESTROY would (inodes but the root, every handle), then clear the handle table. Returns them.
 */
export function resetTables(vq: VqExports): VqExports {
  vq.inodeDropAll();
  for (let fd = vq.inodeDrainNext(); fd >= 0; fd = vq.inodeDrainNext()) if (fd !== FAKE_FD) native.close(fd);
  for (let fd = vq.handleDrainNext(); fd >= 0; fd = vq.handleDrainNext()) if (fd !== FAKE_FD) native.close(fd);
  vq.handleInit();
  return vq;
}

/** The lookup count of a node id, read from the slot in shared memory; undefined for an unknown or
 *  forgotten node id (as the tables' own inodeAcquire sees it). */
export function nlookup(nodeid: bigint): bigint | undefined {
  if (!current) throw new Error('nlookup: realTables() was not loaded');
  const L = current.vq.layout;
  const v = new DataView(current.memory.buffer);
  const s = Number(nodeid & 0xffff_ffffn);
  if (s === 0 || s >= v.getUint32(L.INODE_BASE + H_HIWATER, true)) return undefined;
  const at = L.INODE_SLOTS + s * L.INODE_STRIDE;
  if ((v.getUint32(at + I_FLAGS, true) & (F_INUSE | F_FORGOTTEN)) !== F_INUSE) return undefined;
  if (v.getUint32(at + I_GEN, true) !== Number(nodeid >> 32n)) return undefined;
  return v.getBigUint64(at + I_NLOOKUP, true);
}

/** Open descriptors of this process. */
export function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

function checkFakeFd(): void {
  const m = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  const hard = m?.[1] === undefined || m[1] === 'unlimited' ? Infinity : Number(m[1]);
  if (!(hard <= FAKE_FD)) throw new Error(`the open-file hard limit (${m?.[1]}) reaches FAKE_FD: a fake fd could be real`);
}

/** Fake entries that fill a table; `free(n)` removes the last n of them, `unfill()` all that are left. */
export interface Filler {
  /** entries added */
  readonly count: number;
  /** remove the n most recent fake entries (freeing n slots); how many gave FAKE_FD back (each should) */
  free(n: number): number;
  unfill(): number;
}

/** Fill every free slot of the inode table with fake inodes (one lookup each). */
export function fillInodes(vq: VqExports): Filler {
  checkFakeFd();
  const ids = new Float64Array(vq.layout.INODE_MAX);
  let n = 0;
  const next = () => vq.inodeLookup(FAKE_DEV_LO, FAKE_DEV_HI, n + 1, 0, FAKE_FD);
  for (let id = next(); id !== 0; id = next()) ids[n++] = id;
  return filler(ids, n, (id) => vq.inodeForget(id, 1));
}

/** Fill every free slot of the handle table with fake handles. */
export function fillHandles(vq: VqExports): Filler {
  checkFakeFd();
  const ids = new Float64Array(vq.layout.HANDLE_MAX);
  let n = 0;
  for (let fh = vq.handleOpen(FAKE_FD, 0); fh !== 0; fh = vq.handleOpen(FAKE_FD, 0)) ids[n++] = fh;
  return filler(ids, n, (fh) => vq.handleClose(fh));
}

/** ids[0..count) in a typed array: a million entries in a JS array cost more than the fill. */
function filler(ids: Float64Array, count: number, drop: (id: number) => number): Filler {
  let left = count;
  const free = (n: number) => {
    let back = 0;
    for (; n > 0 && left > 0; n--) if (drop(ids[--left]!) === FAKE_FD) back++;
    return back;
  };
  return { count, free, unfill: () => free(left) };
}
