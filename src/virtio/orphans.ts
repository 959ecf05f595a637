/**
 * The control plane's side of a worker's in-flight record (inflight.ts): when a worker thread dies, what
 * it held is given back for it (docs/internals.md "Worker control").
 *
 * Recovery runs on the main thread while the dead worker still counts as alive for pause(), i.e. before
 * the control plane can have changed any ring or memory: a pause waits for every live worker's ack, a
 * worker acks only between requests, and the changes made under a pause are synchronous. So the ring
 * the orphan came from is the one it is answered on.
 */
import { IN_HEADER_SIZE } from '../abi/fuse.js';
import { native } from '../native.js';
import type { Logger } from '../log.js';
import { Ctl, Flight, controlView, qslot } from './control.js';
import { ApertureMapper, GuestChainIo } from './guest-io.js';
import { recordViews } from './inflight.js';
import { writeEioReply } from './queue-runner.js';
import { VqError, type VqExports } from './wasm.js';

export interface Recovery {
  /** the orphan chain, if there was one: its used length, -1 if it was left (died while publishing it) */
  orphan?: { q: number; head: number; len: number };
  /** pins released */
  pins: number;
}

/**
 * On the main thread, after worker `wid`'s thread has ended and before anything else may change the
 * rings (see the file comment): closes its epoll fd, releases its pins and answers the chain it held
 * with a FUSE EIO reply carrying the request's unique (read again from the chain), or with an empty
 * used element when the chain cannot be parsed or has no room for a reply; notifies the driver. Uses
 * the dead worker's scratch and aperture partition, which nobody else touches. Clears the record.
 */
export function recoverWorker(vq: VqExports, memory: WebAssembly.Memory, wid: number, log: Logger): Recovery {
  const L = vq.layout;
  const { words, ids } = recordViews(memory.buffer, L.CONTROL_BASE, wid);
  const out: Recovery = { pins: 0 };
  // A worker that died polling leaves the poller's token: give it back, or no worker would poll again.
  Atomics.compareExchange(controlView(memory.buffer, L.CONTROL_BASE), Ctl.SPINNER, wid + 1, 0);
  const epfd = words[Flight.EPFD]! - 1;
  words[Flight.EPFD] = 0;
  if (epfd >= 0) native.close(epfd);

  // Each part of the record is cleared before it is acted on: whatever happens, nothing is given back twice.
  const pins = Math.min(words[Flight.PINS]!, Flight.PIN_SLOTS);
  words[Flight.PINS] = 0;
  for (let i = pins - 1; i >= 0; i--) {
    const id = Number(ids[i]!); // an id is below 2^53 (assembly/slots.ts): exact
    const fd = words[Flight.PIN_KIND + i] === Flight.PIN_INODE ? vq.inodeRelease(id) : vq.handleRelease(id);
    if (fd >= 0) native.close(fd);
  }
  out.pins = pins;

  // Replies it published without notifying yet (workers batch notifications): decide for them now, or
  // the driver could wait for an interrupt that never comes.
  notifyQueues(vq, memory);

  const q1 = words[Flight.QUEUE]!;
  words[Flight.QUEUE] = 0;
  if (q1 === 0) return out;
  const q = Math.abs(q1) - 1;
  const head = words[Flight.HEAD]!;
  if (q1 < 0) {
    // It died inside the push (only a thread terminated from outside can): the chain may be published
    // already, and a second used element for it would break the guest's ring. Leave it.
    out.orphan = { q, head, len: -1 };
    return out;
  }
  const ctl = controlView(memory.buffer, L.CONTROL_BASE);
  // A ring the driver corrupted since (or one that is gone) gets nothing more, as for a live worker.
  if (q >= L.MAX_QUEUES || vq.queueIsReady(q) === 0 || vq.queueIsBroken(q) === 1) return out;
  const len = answerOrphan(vq, memory, wid, q, head, log);
  const notify = vq.queuePush(q, head, len);
  if (notify === 1) {
    const call = Atomics.load(ctl, qslot(q, Ctl.Q_CALLFD));
    if (call >= 0) native.eventfdWrite(call, 1);
  }
  out.orphan = { q, head, len };
  return out;
}

/** Notifies the driver of every active queue that has used elements it was not notified of. */
function notifyQueues(vq: VqExports, memory: WebAssembly.Memory): void {
  const ctl = controlView(memory.buffer, vq.layout.CONTROL_BASE);
  for (let q = 0; q < vq.layout.MAX_QUEUES; q++) {
    if (Atomics.load(ctl, qslot(q, Ctl.Q_ACTIVE)) !== 1 || vq.queueNotify(q) !== 1) continue;
    const call = Atomics.load(ctl, qslot(q, Ctl.Q_CALLFD));
    if (call >= 0) native.eventfdWrite(call, 1);
  }
}

/** The used length of an EIO reply written into the chain at `head` (0 when there is no room or no chain). */
function answerOrphan(vq: VqExports, memory: WebAssembly.Memory, wid: number, q: number, head: number, log: Logger): number {
  const L = vq.layout;
  const scratch = L.SCRATCH_BASE + wid * L.SCRATCH_SIZE;
  const apertures = new ApertureMapper(vq, memory.buffer, wid, scratch, log);
  try {
    let rc = vq.chainParse(q, head, wid);
    for (let i = 0; rc === VqError.NEED_MAP && i < 4 && apertures.fault(); i++) rc = vq.chainParse(q, head, wid);
    if (rc < 0) return 0;
    const [rcount = 0, wcount = 0, rtotal = 0, wtotal = 0] = new Uint32Array(memory.buffer, scratch, 4);
    const io = new GuestChainIo(vq, memory.buffer, wid, scratch, apertures);
    io.writer.reset(wcount, wtotal);
    io.reader.load(rcount, rtotal, 0, IN_HEADER_SIZE);
    const inHeader = io.reader.head.length >= IN_HEADER_SIZE ? io.reader.head : null;
    return Math.min(writeEioReply(io.writer, inHeader, log), wtotal);
  } catch (e) {
    log.error(`answering the request of a dead worker failed: ${(e as Error)?.stack ?? e}; returned unused`);
    return 0;
  }
}
