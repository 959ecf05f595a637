import {
  QUEUE_BASE, QUEUE_STRIDE, MAX_QUEUES, Q_LOCK, Q_SIZE, Q_DESC, Q_AVAIL, Q_USED, Q_LAST_AVAIL,
  Q_NEXT_USED, Q_EVENT_IDX, Q_BROKEN, Q_READY, Q_SIGNALLED,
} from './layout';
import { EMPTY, BROKEN, BAD_ADDR, BAD_HEAD, BAD_SIZE, ALIGN } from './errors';
import { uaddrToWin } from './aperture';
import { lockAcquire, lockRelease } from './lock';
import { VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_SIZE } from './virtio';

// Split virtqueue, virtio 1.1 §2.6. Ring layouts (little endian):
//   desc  [size] {u64 addr, u32 len, u16 flags, u16 next}
//   avail {u16 flags, u16 idx, u16 ring[size], u16 used_event}
//   used  {u16 flags, u16 idx, {u32 id, u32 len} ring[size], u16 avail_event}
// All wasm atomics are sequentially consistent: the atomic load of avail.idx orders the ring reads
// after it, the atomic store of used.idx publishes the element written before it, and the store/load
// pair in push (used.idx then used_event) is the full barrier the EVENT_IDX protocol needs (§2.6.7.2).

/** §2.7.7.2 vring_need_event(event, new, old): the other side asked to be notified when the index passes
 *  `event`, and this update moved it from `old` past it. Both sides of the ring use it (the device for
 *  used_event, the load tester's driver for avail_event). */
// @ts-ignore: decorator
@inline export function vringNeedEvent(event: u32, nu: u32, old: u32): bool {
  return ((nu - event - 1) & 0xFFFF) < ((nu - old) & 0xFFFF);
}

// @ts-ignore: decorator
@inline export function qaddr(q: u32): u32 { return QUEUE_BASE + q * QUEUE_STRIDE; }

// queueLocked: every function here that takes a queue's lock computes what it uses after the lock from
// its arguments, never before: Node 20's baseline wasm compiler (Liftoff) can lose a value computed before
// an inlined lockAcquire that had to wait (seen in the table exports: tableLock in slots.ts, caught by
// test/unit/tables.test.ts). The queue's own two-worker stress (test/unit/driver-ring.test.ts) has not
// caught it with the old code (its critical sections rarely wait), so this is the rule, not a fix proven.

export function queueReset(q: u32): void {
  if (q >= MAX_QUEUES) return;
  // Called only while workers are paused; the lock word is left alone (it is 0).
  memory.fill(qaddr(q) + 4, 0, QUEUE_STRIDE - 4);
}

/** §2.6: Queue Size is a power of 2 ≤ 32768; desc aligned 16, avail 2, used 4 (§2.6 table). */
export function queueSetup(q: u32, size: u32, descUa: u64, availUa: u64, usedUa: u64, eventIdx: u32): i32 {
  if (q >= MAX_QUEUES) return BAD_SIZE;
  if (size == 0 || size > 32768 || (size & (size - 1)) != 0) return BAD_SIZE;
  if ((descUa & 15) != 0 || (availUa & 1) != 0 || (usedUa & 3) != 0) return ALIGN;
  const desc = uaddrToWin(descUa, VIRTQ_DESC_SIZE * size);
  const avail = uaddrToWin(availUa, 6 + 2 * size);
  const used = uaddrToWin(usedUa, 6 + 8 * size);
  if (desc == 0 || avail == 0 || used == 0) return BAD_ADDR;
  // The window keeps the guest alignment only if the region was mapped so; wasm atomics trap when
  // misaligned, so check the window addresses too.
  if ((desc & 15) != 0 || (avail & 1) != 0 || (used & 3) != 0) return ALIGN;
  const a = qaddr(q);
  store<u32>(a, size, Q_SIZE);
  store<u32>(a, desc, Q_DESC);
  store<u32>(a, avail, Q_AVAIL);
  store<u32>(a, used, Q_USED);
  // Continue from the used index the driver sees (a restarted ring keeps its used.idx).
  const usedIdx = <u32>atomic.load<u16>(used, 2);
  store<u32>(a, usedIdx, Q_NEXT_USED);
  store<u32>(a, usedIdx, Q_SIGNALLED);
  store<u32>(a, eventIdx != 0 ? 1 : 0, Q_EVENT_IDX);
  atomic.store<u32>(a, 1, Q_READY);
  return 0;
}

export function queueSetBase(q: u32, idx: u32): void {
  if (q >= MAX_QUEUES) return;
  atomic.store<u32>(qaddr(q), idx & 0xFFFF, Q_LAST_AVAIL);
}

export function queueGetBase(q: u32): u32 {
  if (q >= MAX_QUEUES) return 0;
  return atomic.load<u32>(qaddr(q), Q_LAST_AVAIL);
}

export function queueIsBroken(q: u32): u32 {
  if (q >= MAX_QUEUES) return 1;
  return atomic.load<u32>(qaddr(q), Q_BROKEN);
}

export function queueIsReady(q: u32): u32 {
  if (q >= MAX_QUEUES) return 0;
  return atomic.load<u32>(qaddr(q), Q_READY);
}

export function queueSize(q: u32): u32 {
  if (q >= MAX_QUEUES) return 0;
  return load<u32>(qaddr(q), Q_SIZE);
}

/** Next head from the avail ring, EMPTY, or BROKEN. */
export function queuePop(q: u32): i32 {
  if (q >= MAX_QUEUES) return BROKEN;
  if (atomic.load<u32>(qaddr(q), Q_READY) == 0) return EMPTY;
  lockAcquire(qaddr(q) + Q_LOCK);
  // Nothing computed before the lock is used after it (see queueLocked).
  const a = qaddr(q);
  if (load<u32>(a, Q_BROKEN) != 0) { lockRelease(a + Q_LOCK); return BROKEN; }
  const size = load<u32>(a, Q_SIZE);
  const avail = load<u32>(a, Q_AVAIL);
  const last = load<u32>(a, Q_LAST_AVAIL);
  const idx = <u32>atomic.load<u16>(avail, 2);
  const pending = (idx - last) & 0xFFFF;
  // §2.6.6: the driver can be at most `size` entries ahead; more is a corrupt ring.
  if (pending > size) {
    store<u32>(a, 1, Q_BROKEN);
    lockRelease(a + Q_LOCK);
    return BROKEN;
  }
  if (pending == 0) { lockRelease(a + Q_LOCK); return EMPTY; }
  // size is a power of two, so & (size-1) keeps the slot inside ring[size] (mapped in setup).
  const head = <u32>load<u16>(avail + 4 + 2 * (last & (size - 1)));
  atomic.store<u32>(a, (last + 1) & 0xFFFF, Q_LAST_AVAIL);
  if (head >= size) {
    // §2.6.5: a head must index the descriptor table.
    store<u32>(a, 1, Q_BROKEN);
    lockRelease(a + Q_LOCK);
    return BROKEN;
  }
  lockRelease(a + Q_LOCK);
  return <i32>head;
}

/** Publish {head, len} in the used ring, then decide on notifying (queueNotify): 1 if the driver should
 *  be notified, else 0, or an error. */
export function queuePush(q: u32, head: u32, len: u32): i32 {
  const rc = queuePushQuiet(q, head, len);
  return rc < 0 ? rc : queueNotify(q);
}

/** Publish {head, len} in the used ring without deciding on a notification: the caller calls queueNotify
 *  later (after a batch of replies, and always before it stops serving the queue). 0 or an error. */
export function queuePushQuiet(q: u32, head: u32, len: u32): i32 {
  if (q >= MAX_QUEUES) return BROKEN;
  if (atomic.load<u32>(qaddr(q), Q_READY) == 0) return BROKEN;
  lockAcquire(qaddr(q) + Q_LOCK);
  const a = qaddr(q);
  const size = load<u32>(a, Q_SIZE);
  if (head >= size) { lockRelease(a + Q_LOCK); return BAD_HEAD; }
  if (load<u32>(a, Q_BROKEN) != 0) { lockRelease(a + Q_LOCK); return BROKEN; }
  const used = load<u32>(a, Q_USED);
  const old = load<u32>(a, Q_NEXT_USED);
  const elem = used + 4 + 8 * (old & (size - 1));
  store<u32>(elem, head);
  store<u32>(elem, len, 4);
  const nu = (old + 1) & 0xFFFF;
  atomic.store<u16>(used, <u16>nu, 2);
  store<u32>(a, nu, Q_NEXT_USED);
  lockRelease(a + Q_LOCK);
  return 0;
}

/** Whether the driver wants a notification for the used elements published since the last decision
 *  (by any worker): 1 or 0. With EVENT_IDX, §2.6.7.2 vring_need_event(used_event, new, old) with old the
 *  used index at that decision, so one notification can cover a batch; else the avail ring's
 *  NO_INTERRUPT flag, for a batch that is not empty. */
export function queueNotify(q: u32): i32 {
  if (q >= MAX_QUEUES) return 0;
  if (atomic.load<u32>(qaddr(q), Q_READY) == 0) return 0;
  lockAcquire(qaddr(q) + Q_LOCK);
  const a = qaddr(q);
  if (load<u32>(a, Q_BROKEN) != 0) { lockRelease(a + Q_LOCK); return 0; }
  const nu = load<u32>(a, Q_NEXT_USED);
  const old = load<u32>(a, Q_SIGNALLED);
  store<u32>(a, nu, Q_SIGNALLED);
  let notify: i32 = 0;
  if (nu != old) {
    const avail = load<u32>(a, Q_AVAIL);
    if (load<u32>(a, Q_EVENT_IDX) != 0) {
      // The used.idx store above (seq-cst) orders this read of used_event after it (§2.6.7.2).
      notify = vringNeedEvent(<u32>atomic.load<u16>(avail + 4 + 2 * load<u32>(a, Q_SIZE)), nu, old) ? 1 : 0;
    } else {
      notify = (<u32>atomic.load<u16>(avail) & VIRTQ_AVAIL_F_NO_INTERRUPT) != 0 ? 0 : 1;
    }
  }
  lockRelease(a + Q_LOCK);
  return notify;
}

/** Heads the driver has published and no worker popped yet: a lock-free peek (for polling before a
 *  sleep, for judging a backlog); queuePop, under the lock, decides what is really there. */
export function queuePending(q: u32): u32 {
  if (q >= MAX_QUEUES) return 0;
  const a = qaddr(q);
  if (atomic.load<u32>(a, Q_READY) == 0 || atomic.load<u32>(a, Q_BROKEN) != 0) return 0;
  return (<u32>atomic.load<u16>(load<u32>(a, Q_AVAIL), 2) - atomic.load<u32>(a, Q_LAST_AVAIL)) & 0xFFFF;
}

/** Before sleeping: with EVENT_IDX publish avail_event = last_avail (§2.6.7.2), then re-check the
 *  avail index so a request that raced with the store is not missed. 1 if work is pending. */
export function queueEnableNotify(q: u32): i32 {
  if (q >= MAX_QUEUES) return 0;
  if (atomic.load<u32>(qaddr(q), Q_READY) == 0) return 0;
  lockAcquire(qaddr(q) + Q_LOCK);
  const a = qaddr(q);
  if (load<u32>(a, Q_BROKEN) != 0) { lockRelease(a + Q_LOCK); return 0; }
  const size = load<u32>(a, Q_SIZE);
  const avail = load<u32>(a, Q_AVAIL);
  const last = load<u32>(a, Q_LAST_AVAIL);
  if (load<u32>(a, Q_EVENT_IDX) != 0) {
    atomic.store<u16>(load<u32>(a, Q_USED) + 4 + 8 * size, <u16>last);
  }
  const idx = <u32>atomic.load<u16>(avail, 2);
  lockRelease(a + Q_LOCK);
  return idx != last ? 1 : 0;
}
