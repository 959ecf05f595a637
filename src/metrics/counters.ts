/**
 * The request counters: one block of f64 slots per worker in a SharedArrayBuffer that the control
 * plane creates and every worker thread receives (docs/metrics.md, "How it is counted"). A worker
 * counts into its own block with plain stores, never messaging the main thread; a scrape sums the
 * blocks (src/metrics/collect.ts). One writer per block, so no slot needs an atomic add; a scrape may
 * read a count one request old, never a torn one (aligned 8-byte stores). f64 counts stay exact to 2^53.
 */

/** Opcode slots: FUSE opcodes 1..52 today; anything at or past OPCODE_SLOTS (CUSE_INIT, unknown) counts at 0. */
export const OPCODE_SLOTS = 64;
/** errno slots: 1..133 (EHWPOISON, the last Linux errno); 0 counts anything else. */
export const ERRNO_SLOTS = 134;
/** Virtqueues a device has (assembly/layout.ts MAX_QUEUES). */
export const QUEUE_SLOTS = 16;

/**
 * Latency bucket upper bounds in seconds, 1-2-5 steps from 2 µs to 10 s: a GETATTR served from a polling
 * worker takes a few µs, a WRITE that waits on a slow disk seconds.
 */
export const LATENCY_BOUNDS: readonly number[] = [
  2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10,
];
/** Buckets counted: one per bound plus the one past the last (+Inf). Not cumulative in the slots. */
export const BUCKETS = LATENCY_BOUNDS.length + 1;

/** Per-worker slots (W_*), from the block's start. */
export const W = {
  /** chains served (runner) */
  REQUESTS: 0,
  BAD_CHAINS: 1,
  /** sleeps in epoll_wait that ended (wakeups) */
  WAKEUPS: 2,
  /** polls before sleeping that found a request */
  POLL_HITS: 3,
  HAND_ONS: 4,
  STALL_TAKEOVERS: 5,
  /** seconds spent serving chains: from finding work after idling to finding none (queue-runner.ts) */
  BUSY_SECONDS: 6,
  /** file data bytes read into / written from guest buffers by READ and WRITE */
  READ_BYTES: 7,
  WRITE_BYTES: 8,
} as const;

/** Per-queue slots, QUEUE_STRIDE of them per queue from QUEUE_AT. */
export const Q = {
  REQUESTS: 0,
  /** call eventfd writes */
  NOTIFIES: 1,
  /** notification decisions that found the driver did not want one (EVENT_IDX, NO_INTERRUPT) */
  SUPPRESSED: 2,
  /** wakeups of this worker by the queue's kick eventfd */
  KICKS: 3,
  BAD_CHAINS: 4,
} as const;
export const QUEUE_AT = 16;
export const QUEUE_STRIDE = 8;

/** Per-opcode slots: requests, error replies, latency sum (s), then BUCKETS bucket counts. */
export const O = {
  REQUESTS: 0,
  ERRORS: 1,
  SECONDS: 2,
  BUCKET0: 3,
} as const;
export const OP_AT = QUEUE_AT + QUEUE_SLOTS * QUEUE_STRIDE;
export const OP_STRIDE = 3 + BUCKETS;
/** Error replies by opcode and errno: ERRNO_SLOTS per opcode. */
export const ERR_AT = OP_AT + OPCODE_SLOTS * OP_STRIDE;
/** f64 slots in one worker's block. */
export const WORKER_SLOTS = ERR_AT + OPCODE_SLOTS * ERRNO_SLOTS;

/** A SharedArrayBuffer holding `workers` blocks, all zero. */
export function counterBuffer(workers: number): SharedArrayBuffer {
  return new SharedArrayBuffer(workers * WORKER_SLOTS * 8);
}

/** One worker's block of `buf` (a private one, counted and never read, when `buf` is null). */
export function workerBlock(buf: SharedArrayBuffer | null, wid: number): Float64Array {
  if (buf === null) return new Float64Array(WORKER_SLOTS);
  return new Float64Array(buf, wid * WORKER_SLOTS * 8, WORKER_SLOTS);
}

/** The latency bucket of `seconds`: a scan from the small end, where nearly every request falls. */
export function bucketOf(seconds: number): number {
  const b = LATENCY_BOUNDS;
  let i = 0;
  while (i < b.length && seconds > b[i]!) i++;
  return i;
}

/**
 * Counts one FUSE request into a worker's block: its opcode, how long it took (-1: not timed, see
 * queue-runner.ts LATENCY_SAMPLE; it is counted all the same) and the reply's error (0 or a negative
 * errno; a request without reply counts as 0).
 */
export function countRequest(c: Float64Array, opcode: number, seconds: number, error: number): void {
  const op = opcode < OPCODE_SLOTS && opcode > 0 ? opcode : 0;
  const at = OP_AT + op * OP_STRIDE;
  c[at + O.REQUESTS]!++;
  if (seconds >= 0) {
    c[at + O.SECONDS]! += seconds;
    c[at + O.BUCKET0 + bucketOf(seconds)]!++;
  }
  if (error < 0) {
    c[at + O.ERRORS]!++;
    const e = -error < ERRNO_SLOTS ? -error : 0;
    c[ERR_AT + op * ERRNO_SLOTS + e]!++;
  }
}
