/**
 * Loader for build/virtqueue.wasm (assembly/): compiles it once per thread and instantiates it on
 * the one shared memory. The layout constants are read once into `layout`; functions whose wasm
 * result is u32 or u64 are wrapped so JS sees unsigned values (wasm i32/i64 results are signed).
 * `EXPORTS` below is the one TypeScript declaration of the module's functions (docs/internals.md,
 * "AssemblyScript exports").
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { GuestTableLayout } from '../native.js';
import { packageRoot } from '../package-root.js';

/**
 * Negative i32 codes returned by the AS module (assembly/errors.ts), written out so that code and tests
 * can name them before the module is loaded; test/unit/abi-drift checks them against the module's
 * exported globals.
 */
export const VqError = {
  EMPTY: -1,
  BROKEN: -2,
  BAD_ADDR: -3,
  BAD_LEN: -4,
  LOOP: -5,
  NESTED_INDIRECT: -6,
  ORDER: -7,
  TOO_MANY_SEGS: -8,
  BAD_INDIRECT: -9,
  BAD_HEAD: -10,
  BAD_SIZE: -11,
  ALIGN: -12,
  FULL: -13,
  NEED_MAP: -14,
} as const;
export type VqErrorCode = (typeof VqError)[keyof typeof VqError];

const ERROR_NAMES = new Map<number, string>(Object.entries(VqError).map(([k, v]) => [v, k]));
/** 'BAD_ADDR' for -3, etc.; `String(code)` for anything else. */
export function vqErrorName(code: number): string {
  return ERROR_NAMES.get(code) ?? String(code);
}

/**
 * Fixed addresses and sizes in the shared memory (assembly/layout.ts). All unsigned. The values are read
 * from the module at load; this list names them for the `VqLayout` type, and test/unit/abi-drift checks
 * that it names every layout global the module exports.
 */
export const LAYOUT_KEYS = [
  'CONTROL_BASE', 'CONTROL_SIZE',
  'MEMTABLE_BASE', 'MEMTABLE_ENTRIES', 'MEMTABLE_STRIDE', 'MAX_REGIONS', 'MEMTABLE_SIZE',
  'MT_GPA', 'MT_SIZE', 'MT_UADDR', 'MT_HVA', 'MT_FILE_OFF', 'MT_WIN', 'MT_FD',
  'APERTURE_BASE', 'APERTURE_SIZE', 'APERTURE_CLOCKS', 'APERTURE_ENTRIES', 'APERTURE_STRIDE', 'APERTURE_MAX_SLOTS',
  'GRANULE_SHIFT', 'APERTURE_SLOT_SIZE', 'APERTURE_PINNED', 'APERTURE_WAYS',
  'QUEUE_BASE', 'QUEUE_STRIDE', 'MAX_QUEUES',
  'STATS_BASE', 'STATS_STRIDE', 'STAT_APERTURE_HITS', 'STAT_APERTURE_MISSES', 'MAX_WORKERS',
  'INODE_BASE', 'INODE_MAX', 'INODE_STRIDE', 'INODE_SLOTS', 'INODE_BUCKETS', 'INODE_SIZE',
  'DIRPOS_BASE', 'HANDLE_BASE', 'HANDLE_MAX', 'HANDLE_STRIDE', 'HANDLE_SLOTS', 'HANDLE_SIZE',
  'SCRATCH_BASE', 'SCRATCH_SIZE', 'MAX_SEGS', 'INBUF_SIZE', 'OUTBUF_SIZE',
  'SCR_RCOUNT', 'SCR_WCOUNT', 'SCR_RTOTAL', 'SCR_WTOTAL', 'SCR_MISS', 'SCR_MISS_SIZE', 'MISS_JOB_WIN', 'MISS_JOB_FD', 'MISS_JOB_FILE_OFF', 'MISS_JOB_LEN', 'SCR_STAT', 'SCR_STAT_SIZE', 'SCR_PARSE', 'SCR_GOT', 'SCR_HEAD',
  'SEG_STRIDE',
  'SCR_RLIST', 'SCR_WLIST', 'SCR_SUBLIST', 'SCR_INBUF', 'SCR_OUTBUF',
  'WINDOW_BASE', 'WINDOW_END',
  'Q_LOCK', 'Q_SIZE', 'Q_DESC', 'Q_AVAIL', 'Q_USED', 'Q_LAST_AVAIL', 'Q_NEXT_USED', 'Q_EVENT_IDX',
  'Q_BROKEN', 'Q_READY', 'Q_SIGNALLED',
  'DRV_BASE', 'DRV_STRIDE', 'DRV_MAX_QUEUES', 'DRV_REAP', 'DRV_REAP_MAX', 'DRV_SHAPES', 'DRV_SHAPE_STRIDE',
  'DRV_MAX_SHAPES', 'DRV_SHAPE_MAX_SEGS', 'DRV_TABLE_STRIDE',
  'D_SIZE', 'D_DESC', 'D_AVAIL', 'D_USED', 'D_AVAIL_IDX', 'D_KICKED_IDX', 'D_LAST_USED', 'D_EVENT_IDX', 'D_INDIRECT',
  'D_SLOT_BYTES', 'D_DATA_GPA', 'D_TABLE_GPA', 'D_DATA_WIN', 'D_TABLE_WIN', 'D_SLOT_DESCS',
] as const;
export type VqLayout = { readonly [K in (typeof LAYOUT_KEYS)[number]]: number };

type RawFn = (...args: never[]) => unknown;
/** Makes the typed JS function from the raw wasm export (called once, at load). */
type Adapter<F> = (f: RawFn) => F;

/** The wasm function itself: i32 results stay signed numbers (errors are negative), i64 are bigints. */
const asIs = <F>(): Adapter<F> => (f) => f as unknown as F;
/** A u32 result: wasm returns it as a signed i32, so it is made unsigned with `>>> 0`. */
const u32 = <A extends unknown[]>(): Adapter<(...a: A) => number> => (f) => {
  const g = f as unknown as (...a: A) => number;
  return (...a: A): number => g(...a) >>> 0;
};
/** A u64 result: wasm returns it as a signed i64 bigint. */
const u64 = <A extends unknown[]>(): Adapter<(...a: A) => bigint> => (f) => {
  const g = f as unknown as (...a: A) => bigint;
  return (...a: A): bigint => BigInt.asUintN(64, g(...a));
};
type Fn6 = (a: number, b: number, c: number, d: number, e: number, f: number) => number;
/** A u32 result of six number arguments (the hot copy functions): explicit arity, no rest arguments. */
const u32Of6 = <F extends Fn6>(): Adapter<F> => (fn) => {
  const g = fn as unknown as Fn6;
  return ((a, b, c, d, e, f) => g(a, b, c, d, e, f) >>> 0) as F;
};

/**
 * The AS module's function exports (assembly/index.ts), each with its JS type: the one TypeScript
 * declaration of the wasm interface. `VqExports` is derived from it, `wrap` builds from it, and
 * test/unit/abi-drift checks that its names are exactly the module's function exports.
 * u64 parameters and results are bigint, everything else number (f64 node ids and fhs included).
 */
const EXPORTS = {
  // memory table
  memtableClear: asIs<() => void>(),
  memtableAdd: asIs<
    (gpa: bigint, size: bigint, uaddr: bigint, hva: bigint, fileOff: bigint, win: number, fd: number) => number
  >(),
  memtableCount: u32<[]>(),
  gpaRegion: asIs<(gpa: bigint, len: number) => number>(),
  uaddrRegion: asIs<(ua: bigint, len: number) => number>(),
  // apertures
  apertureConfig: asIs<(area: number, workers: number, slots: number) => number>(),
  apertureOff: asIs<() => void>(),
  apertureWin: u32<[w: number, region: number, off: bigint, len: number]>(),
  apertureMissPending: u32<[w: number]>(),
  apertureFill: u32<[w: number]>(),
  apertureDrop: asIs<(w: number, win: number) => void>(),
  apertureSpan: u32<[region: number, granule: bigint]>(),
  aperturePin: u32<[slot: number, region: number, granule: bigint]>(),
  apertureUnpin: asIs<(slot: number) => void>(),
  gpaToWin: u32<[gpa: bigint, len: number]>(),
  uaddrToWin: u32<[ua: bigint, len: number]>(),
  // split virtqueue
  queueSetup: asIs<
    (q: number, size: number, descUa: bigint, availUa: bigint, usedUa: bigint, eventIdx: number) => number
  >(),
  queueSetBase: asIs<(q: number, idx: number) => void>(),
  queueGetBase: u32<[q: number]>(),
  queueReset: asIs<(q: number) => void>(),
  queuePop: asIs<(q: number) => number>(),
  chainParse: asIs<(q: number, head: number, w: number) => number>(),
  chainNext: asIs<(q: number, w: number, prefix: number) => number>(),
  queuePush: asIs<(q: number, head: number, len: number) => number>(),
  queuePushQuiet: asIs<(q: number, head: number, len: number) => number>(),
  queueNotify: asIs<(q: number) => number>(),
  queueEnableNotify: asIs<(q: number) => number>(),
  queuePending: u32<[q: number]>(),
  queueIsBroken: u32<[q: number]>(),
  queueIsReady: u32<[q: number]>(),
  queueSize: u32<[q: number]>(),
  // copies
  gather: u32Of6<(w: number, list: number, count: number, skip: number, dst: number, len: number) => number>(),
  scatter: u32Of6<(w: number, src: number, len: number, list: number, count: number, skip: number) => number>(),
  subList: asIs<(list: number, count: number, skip: number, len: number, out: number, max: number) => number>(),
  // the driver side (the load tester, assembly/driver.ts)
  drvSetup: asIs<
    (
      q: number, size: number, desc: number, avail: number, used: number, eventIdx: number, indirect: number,
      slotBytes: number, dataGpa: bigint, dataWin: number, tableGpa: bigint, tableWin: number, slotDescs: number,
    ) => number
  >(),
  drvChain: asIs<(q: number, slot: number, shape: number) => number>(),
  drvAdd: asIs<(q: number, head: number) => void>(),
  drvKick: asIs<(q: number) => number>(),
  drvReap: asIs<(q: number) => number>(),
  drvArm: asIs<(q: number) => number>(),
  drvReplyCheck: asIs<(win: number, usedLen: number, cap: number, uniqueLo: number, uniqueHi: number) => number>(),
  patternFill: asIs<(dst: number, len: number, off: number, seed: number) => void>(),
  patternCheck: asIs<(src: number, len: number, off: number, seed: number) => number>(),
  // inode table (node ids and fhs are numbers: every id is below 2^53, assembly/slots.ts)
  inodeInit: asIs<(rootFd: number, dev: bigint, ino: bigint) => void>(),
  inodeLookup: asIs<(devLo: number, devHi: number, inoLo: number, inoHi: number, fd: number) => number>(),
  inodeLastExisted: asIs<() => number>(),
  inodeDev: u64<[nodeid: number]>(),
  inodeAcquire: asIs<(nodeid: number) => number>(),
  inodeRelease: asIs<(nodeid: number) => number>(),
  inodeForget: asIs<(nodeid: number, nlookup: number) => number>(),
  inodeDropAll: asIs<() => void>(),
  inodeDrainNext: asIs<() => number>(),
  inodeCount: u32<[]>(),
  // file handle table
  handleInit: asIs<() => void>(),
  handleOpen: asIs<(fd: number, flags: number) => number>(),
  handleAcquire: asIs<(fh: number) => number>(),
  handleFlags: asIs<(fh: number) => number>(),
  handleRelease: asIs<(fh: number) => number>(),
  handleClose: asIs<(fh: number) => number>(),
  handleDrainNext: asIs<() => number>(),
  handleCount: u32<[]>(),
  handleDirPos: asIs<(fh: number) => bigint>(),
  handleSetDirPos: asIs<(fh: number, pos: bigint) => void>(),
};

/** The names of the AS module's function exports. */
export type VqFunctionName = keyof typeof EXPORTS;
/** Those names at run time (for test/unit/abi-drift). */
export const VQ_FUNCTIONS: readonly VqFunctionName[] = Object.keys(EXPORTS) as VqFunctionName[];

/** The AS exports, typed: the layout constants and every function of `EXPORTS`. */
export type VqExports = { readonly layout: VqLayout } & {
  [K in VqFunctionName]: ReturnType<(typeof EXPORTS)[K]>;
};

/** Where the guest memory table lies, for the addon's vectored I/O (native.setWindow). */
export function guestTableOf(L: VqLayout): GuestTableLayout {
  return {
    base: L.MEMTABLE_BASE,
    entries: L.MEMTABLE_ENTRIES,
    stride: L.MEMTABLE_STRIDE,
    max: L.MAX_REGIONS,
    sizeOff: L.MT_SIZE,
    hvaOff: L.MT_HVA,
  };
}

/** The 4 GiB shared memory every thread instantiates the module on. */
export function createSharedMemory(): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: 65536, maximum: 65536, shared: true });
}


/** Path of the compiled module (build/virtqueue.wasm under the package root). */
export function virtqueueWasmPath(): string {
  return join(packageRoot(), 'build', 'virtqueue.wasm');
}

let compiled: Promise<WebAssembly.Module> | undefined;

function compileOnce(): Promise<WebAssembly.Module> {
  if (!compiled) {
    const p = readFile(virtqueueWasmPath()).then((bytes) => WebAssembly.compile(bytes));
    // A failed compile is not cached, so a later call (after `npm run build:wasm`) can succeed.
    p.catch(() => { if (compiled === p) compiled = undefined; });
    compiled = p;
  }
  return compiled;
}

type Raw = Record<string, unknown>;

function fn(raw: Raw, name: string): RawFn {
  const f = raw[name];
  if (typeof f !== 'function') throw new Error(`virtqueue.wasm: missing export ${name}`);
  return f as RawFn;
}

function constant(raw: Raw, name: string): number {
  const g = raw[name];
  if (!(g instanceof WebAssembly.Global)) throw new Error(`virtqueue.wasm: missing global ${name}`);
  return (g.value as number) >>> 0;
}

/** Instantiate the virtqueue module on `memory` (compiled once per thread, instantiated per call). */
export async function loadVirtqueueModule(memory: WebAssembly.Memory): Promise<VqExports> {
  const mod = await compileOnce();
  const inst = await WebAssembly.instantiate(mod, { env: { memory } });
  return wrap(inst.exports as Raw);
}

function wrap(raw: Raw): VqExports {
  // Object.fromEntries, not keyed stores in a loop: V8 keeps an object built so in fast mode (a loop of
  // `o[k] = v` past a dozen keys turns it into a dictionary, slower to read on the hot path).
  const layout = Object.freeze(Object.fromEntries(LAYOUT_KEYS.map((k) => [k, constant(raw, k)])));
  const fns = Object.fromEntries(VQ_FUNCTIONS.map((name) => [name, EXPORTS[name](fn(raw, name))]));
  return { layout, ...fns } as unknown as VqExports;
}
