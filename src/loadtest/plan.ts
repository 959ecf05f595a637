/**
 * What a driver thread is told to do: the workload, the fixture's node ids and handles, its queues,
 * and the shared arrays it reports through. Plain data (it crosses to the thread as workerData).
 */
import type { QueuePlan } from './guest.js';

/** The single-kind workloads; `mixed` picks among them by weight. */
export const OP_KINDS = [
  'read-seq', 'read-rand', 'write-seq', 'write-rand', 'getattr', 'lookup', 'lookup-miss', 'create-unlink', 'readdir',
  'open-close',
] as const;
export type OpKindName = (typeof OP_KINDS)[number];
export const WORKLOADS = [...OP_KINDS, 'mixed'] as const;
export type WorkloadName = (typeof WORKLOADS)[number];

/** Whether an op kind moves bs bytes of file data. */
export function movesData(k: OpKindName): boolean {
  return k === 'read-seq' || k === 'read-rand' || k === 'write-seq' || k === 'write-rand';
}

/** A u64 as two u32 halves (node ids and file handles: no BigInt on the hot path). */
export type U64 = [lo: number, hi: number];

export interface Fixture {
  /** the read file (pattern under fixtureSeed), its open handle (O_RDWR) */
  file: U64;
  fileFh: U64;
  /** the write file and its handle */
  wfile: U64;
  wfileFh: U64;
  /** the directory of `entries` empty files f0000000.. */
  tree: U64;
  /** an empty directory for create-unlink */
  scratch: U64;
  fileBytes: number;
  entries: number;
  fixtureSeed: number;
}

/** Shared control words (Int32Array over `ctl`). */
export const CTL_PHASE = 0;
export const CTL_ABORT = 1;
export const PHASE_WAIT = 0;
export const PHASE_WARMUP = 1;
export const PHASE_MEASURE = 2;
export const PHASE_STOP = 3;

/** Per-thread counters (Float64Array over `counters`, COUNTER_STRIDE per thread). */
export const C_OPS = 0;
export const C_BYTES = 1;
export const C_REQUESTS = 2;
export const C_ERRORS = 3;
export const C_VERIFIED = 4;
export const C_DONE = 5;
/** seconds from the thread's seeing PHASE_MEASURE to its seeing PHASE_STOP (or its quota done) */
export const C_SECONDS = 6;
/**
 * Everything the thread sent, in every phase (warmup and the tail too), for comparing with what a
 * backend counted: requests by opcode from C_SENT (OPCODE_SLOTS of them; larger opcodes at C_SENT),
 * and the file data READ replies returned and WRITEs wrote.
 */
export const C_READ_DATA = 7;
export const C_WRITE_DATA = 8;
export const C_SENT = 16;
export const OPCODE_SLOTS = 64;
export const COUNTER_STRIDE = C_SENT + OPCODE_SLOTS;

export interface ThreadPlan {
  thread: number;
  memory: WebAssembly.Memory;
  /** the queues this thread drives (request queues only) */
  queues: QueuePlan[];
  kinds: OpKindName[];
  /** cumulative weights of kinds (mixed), ascending; last = total */
  weights: number[];
  bs: number;
  writeSeed: number;
  fixture: Fixture;
  /** operations to complete in the measured phase (0: run until PHASE_STOP) */
  opsQuota: number;
  /** a request unanswered this long ends the run */
  timeoutMs: number;
  ctl: SharedArrayBuffer;
  counters: SharedArrayBuffer;
  /** this thread's histogram counts (Histogram over a Float64Array) */
  histogram: SharedArrayBuffer;
  /** bytes of the window that are guest RAM (for the typed-array views) */
  viewBytes: number;
}

/** What a thread posts when it ends. */
export interface ThreadReport {
  thread: number;
  failure?: string;
  errnos: Record<string, number>;
  /** offsets written last (write workloads), for the read-back check */
  written: number[];
  /** LOOKUPs that found an entry, by entry: [index, nodeid lo, hi, count] for FORGET afterwards */
  lookups: Array<[number, number, number, number]>;
  maxNs: number;
}
