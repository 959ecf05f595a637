/**
 * Loader for build/virtqueue.wasm (assembly/): compiles it once per thread and instantiates it on
 * the one shared memory. The layout constants are read once into `layout`; functions whose wasm
 * result is u32 or u64 are wrapped so JS sees unsigned values (wasm i32/i64 results are signed).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from '../package-root.js';

/** Negative i32 codes returned by the AS module (assembly/errors.ts). */
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
} as const;
export type VqErrorCode = (typeof VqError)[keyof typeof VqError];

const ERROR_NAMES = new Map<number, string>(Object.entries(VqError).map(([k, v]) => [v, k]));
/** 'BAD_ADDR' for -3, etc.; `String(code)` for anything else. */
export function vqErrorName(code: number): string {
  return ERROR_NAMES.get(code) ?? String(code);
}

/** Fixed addresses and sizes in the shared memory (assembly/layout.ts). All unsigned. */
export const LAYOUT_KEYS = [
  'CONTROL_BASE', 'CONTROL_SIZE',
  'MEMTABLE_BASE', 'MEMTABLE_ENTRIES', 'MEMTABLE_STRIDE', 'MAX_REGIONS', 'MEMTABLE_SIZE',
  'QUEUE_BASE', 'QUEUE_STRIDE', 'MAX_QUEUES',
  'STATS_BASE', 'STATS_STRIDE', 'MAX_WORKERS',
  'INODE_BASE', 'INODE_MAX', 'INODE_STRIDE', 'INODE_SLOTS', 'INODE_BUCKETS', 'INODE_SIZE',
  'HANDLE_BASE', 'HANDLE_MAX', 'HANDLE_STRIDE', 'HANDLE_SLOTS', 'HANDLE_SIZE',
  'SCRATCH_BASE', 'SCRATCH_SIZE', 'MAX_SEGS', 'INBUF_SIZE', 'OUTBUF_SIZE',
  'SCR_RCOUNT', 'SCR_WCOUNT', 'SCR_RTOTAL', 'SCR_WTOTAL', 'SCR_STAT', 'SCR_STAT_SIZE',
  'SCR_RLIST', 'SCR_WLIST', 'SCR_SUBLIST', 'SCR_INBUF', 'SCR_OUTBUF',
  'WINDOW_BASE', 'WINDOW_END',
  'Q_LOCK', 'Q_SIZE', 'Q_DESC', 'Q_AVAIL', 'Q_USED', 'Q_LAST_AVAIL', 'Q_NEXT_USED', 'Q_EVENT_IDX',
  'Q_BROKEN', 'Q_READY',
] as const;
export type VqLayout = { readonly [K in (typeof LAYOUT_KEYS)[number]]: number };

/** The AS exports. u64 parameters and results are bigint, everything else number. */
export interface VqExports {
  readonly layout: VqLayout;
  // memory table
  memtableClear(): void;
  memtableAdd(gpa: bigint, size: bigint, uaddr: bigint, win: number): number;
  gpaToWin(gpa: bigint, len: number): number;
  uaddrToWin(ua: bigint, len: number): number;
  // split virtqueue
  queueSetup(q: number, size: number, descUa: bigint, availUa: bigint, usedUa: bigint, eventIdx: number): number;
  queueSetBase(q: number, idx: number): void;
  queueGetBase(q: number): number;
  queueReset(q: number): void;
  queuePop(q: number): number;
  chainParse(q: number, head: number, w: number): number;
  queuePush(q: number, head: number, len: number): number;
  queueEnableNotify(q: number): number;
  queueIsBroken(q: number): number;
  queueIsReady(q: number): number;
  queueSize(q: number): number;
  // copies
  gather(list: number, count: number, skip: number, dst: number, len: number): number;
  scatter(src: number, len: number, list: number, count: number, skip: number): number;
  subList(list: number, count: number, skip: number, len: number, out: number, max: number): number;
  // inode table
  inodeInit(rootFd: number, dev: bigint, ino: bigint): void;
  inodeLookup(dev: bigint, ino: bigint, fd: number): bigint;
  inodeLastExisted(): number;
  inodeDev(nodeid: bigint): bigint;
  inodeAcquire(nodeid: bigint): number;
  inodeRelease(nodeid: bigint): number;
  inodeForget(nodeid: bigint, nlookup: bigint): number;
  inodeDropAll(): void;
  inodeDrainNext(): number;
  inodeCount(): number;
  // file handle table
  handleInit(): void;
  handleOpen(fd: number, flags: number): bigint;
  handleAcquire(fh: bigint): number;
  handleFlags(fh: bigint): number;
  handleRelease(fh: bigint): number;
  handleClose(fh: bigint): number;
  handleDrainNext(): number;
  handleCount(): number;
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
type Fn = (...args: never[]) => unknown;

function fn(raw: Raw, name: string): Fn {
  const f = raw[name];
  if (typeof f !== 'function') throw new Error(`virtqueue.wasm: missing export ${name}`);
  return f as Fn;
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
  const layout = {} as Record<string, number>;
  for (const k of LAYOUT_KEYS) layout[k] = constant(raw, k);
  Object.freeze(layout);

  // Raw, correctly typed views of the exports (wasm i32 → number, i64 → bigint).
  const u32 = <A extends unknown[]>(name: string) => {
    const f = fn(raw, name) as unknown as (...a: A) => number;
    return (...a: A): number => f(...a) >>> 0;
  };
  const u64 = <A extends unknown[]>(name: string) => {
    const f = fn(raw, name) as unknown as (...a: A) => bigint;
    return (...a: A): bigint => BigInt.asUintN(64, f(...a));
  };
  const same = <F>(name: string): F => fn(raw, name) as unknown as F;
  const gatherRaw = same<VqExports['gather']>('gather');
  const scatterRaw = same<VqExports['scatter']>('scatter');

  return {
    layout: layout as VqLayout,
    memtableClear: same('memtableClear'),
    memtableAdd: same('memtableAdd'),
    gpaToWin: u32<[bigint, number]>('gpaToWin'),
    uaddrToWin: u32<[bigint, number]>('uaddrToWin'),
    queueSetup: same('queueSetup'),
    queueSetBase: same('queueSetBase'),
    queueGetBase: u32<[number]>('queueGetBase'),
    queueReset: same('queueReset'),
    queuePop: same('queuePop'),
    chainParse: same('chainParse'),
    queuePush: same('queuePush'),
    queueEnableNotify: same('queueEnableNotify'),
    queueIsBroken: u32<[number]>('queueIsBroken'),
    queueIsReady: u32<[number]>('queueIsReady'),
    queueSize: u32<[number]>('queueSize'),
    // Hot path: explicit arity, no rest arguments.
    gather: (list, count, skip, dst, len) => gatherRaw(list, count, skip, dst, len) >>> 0,
    scatter: (src, len, list, count, skip) => scatterRaw(src, len, list, count, skip) >>> 0,
    subList: same('subList'),
    inodeInit: same('inodeInit'),
    inodeLookup: u64<[bigint, bigint, number]>('inodeLookup'),
    inodeLastExisted: same('inodeLastExisted'),
    inodeDev: u64<[bigint]>('inodeDev'),
    inodeAcquire: same('inodeAcquire'),
    inodeRelease: same('inodeRelease'),
    inodeForget: same('inodeForget'),
    inodeDropAll: same('inodeDropAll'),
    inodeDrainNext: same('inodeDrainNext'),
    inodeCount: u32<[]>('inodeCount'),
    handleInit: same('handleInit'),
    handleOpen: u64<[number, number]>('handleOpen'),
    handleAcquire: same('handleAcquire'),
    handleFlags: same('handleFlags'),
    handleRelease: same('handleRelease'),
    handleClose: same('handleClose'),
    handleDrainNext: same('handleDrainNext'),
    handleCount: u32<[]>('handleCount'),
  };
}
