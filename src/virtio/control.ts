/**
 * The control block: a small area of the shared linear memory (at the module's CONTROL_BASE) through
 * which the control plane (main thread) steers the workers. Slots have names, never bare indices.
 *
 * Protocol: main changes queue or memory state only while every live worker is paused. To pause, main
 * sets STATE=PAUSE, bumps GEN and writes every worker's control eventfd; a worker acknowledges a
 * generation (ACK[w] = GEN) only at the top of its loop, i.e. with no request in flight. So "every live
 * worker acked" means "nothing touches guest memory or the rings": main may unmap, remap and re-point.
 *
 * After the slots, from byte FLIGHT_BASE, one FLIGHT_STRIDE record per worker says what it holds right
 * now, so that whoever outlives a worker that dies mid-request can answer and unpin for it (inflight.ts).
 */
export const Ctl = {
  GEN: 0,
  STATE: 1,
  NWORKERS: 2,
  /** wid + 1 of the worker polling the rings before it sleeps (QueueRunner.spin), 0 none: one at a time. */
  SPINNER: 3,
  /** 4 slots of FUSE session state shared by every worker (INIT reaches only one of them). */
  SESSION: 8,
  SESSION_LEN: 4,
  /** Workers asleep waiting for kicks (see QueueRunner.handOn: a busy worker hands work on only if > 0). */
  IDLE: 12,
  /** Worker w's last acknowledged generation. */
  ACK: 16,
  /** Worker w's control eventfd. */
  CTLFD: 96,
  /** Per queue q: Q + q*Q_STRIDE + {ACTIVE, KICKFD, CALLFD}. */
  Q: 192,
  Q_STRIDE: 4,
  Q_ACTIVE: 0,
  Q_KICKFD: 1,
  Q_CALLFD: 2,
} as const;

export const CTL_MAX_WORKERS = 64;
export const CTL_INTS = 1024;

/**
 * Worker w's in-flight record at byte FLIGHT_BASE + w * FLIGHT_STRIDE of the control block (inside its
 * 64 KiB, after the CTL_INTS slots). Word offsets (i32) unless named _BYTE.
 */
export const Flight = {
  /** queue + 1 of the chain the worker popped and has not published yet, -(queue + 1) while it
   *  publishes it; 0: none */
  QUEUE: 0,
  /** that chain's head */
  HEAD: 1,
  /** the worker's epoll fd + 1, 0 none (closed for it if it dies) */
  EPFD: 2,
  /** pins held now (a stack: withInode/withHandle nest); entries past PIN_SLOTS are not recorded */
  PINS: 3,
  /** per pin slot: PIN_INODE or PIN_HANDLE */
  PIN_KIND: 4,
  PIN_SLOTS: 8,
  /** chains the worker has begun (a counter that wraps): another worker that sees it hold a chain with
   *  the same count for a while knows it is stuck in that request (QueueRunner, stall watch) */
  SEQ: 12,
  /** per pin slot: the node id or fh (u64), at this byte offset of the record */
  PIN_ID_BYTE: 64,
  PIN_INODE: 1,
  PIN_HANDLE: 2,
} as const;
export const FLIGHT_BASE = CTL_INTS * 4;
export const FLIGHT_STRIDE = 128;

export enum WorkerState {
  RUN = 0,
  PAUSE = 1,
  STOP = 2,
}

export function controlView(buffer: ArrayBufferLike, controlBase: number): Int32Array {
  return new Int32Array(buffer, controlBase, CTL_INTS);
}

export function qslot(q: number, field: number): number {
  return Ctl.Q + q * Ctl.Q_STRIDE + field;
}
