import {
  MAX_QUEUES, MAX_WORKERS, MAX_SEGS, SCRATCH_BASE, SCRATCH_SIZE, SCR_RCOUNT, SCR_WCOUNT, SCR_RTOTAL,
  SCR_WTOTAL, SCR_RLIST, SCR_WLIST, Q_SIZE, Q_DESC, Q_READY, SEG_STRIDE, MT_GPA, MT_SIZE, SCR_MISS, SCR_PARSE,
  SCR_GOT, SCR_HEAD, SCR_INBUF, INBUF_SIZE,
} from './layout';
import {
  BROKEN, BAD_ADDR, BAD_LEN, LOOP, NESTED_INDIRECT, ORDER, TOO_MANY_SEGS, BAD_INDIRECT, BAD_HEAD, BAD_SIZE,
  NEED_MAP,
} from './errors';
import { gpaRegion, mtEntry } from './memtable';
import { apertureMissPending, regionWin } from './aperture';
import { qaddr, queuePop } from './queue';
import { gather } from './copy';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_SIZE } from './virtio';

/** §2.6.5.3.1: an indirect table holds at most 32768 descriptors (Queue Size maximum). */
export const MAX_INDIRECT: u32 = 32768;
/** An indirect table is a whole number of descriptors (VIRTQ_DESC_SIZE is a power of two). */
const DESC_SIZE_MASK: u32 = VIRTQ_DESC_SIZE - 1;

/** Append {region, off, len} to a segment list whose count lives at countPtr; merges with the previous
 *  segment when contiguous in the same region (fewer iovecs for preadv/pwritev). 0 or TOO_MANY_SEGS. */
// @ts-ignore: decorator
@inline function append(list: u32, countPtr: u32, region: u32, off: u64, len: u32): i32 {
  const c = load<u32>(countPtr);
  if (c > 0) {
    const last = list + (c - 1) * SEG_STRIDE;
    const llen = load<u32>(last, 8);
    // loff + llen cannot wrap: both lie inside one region (its end fits in u64).
    if (load<u32>(last, 12) == region && load<u64>(last) + u64(llen) == off && u64(llen) + u64(len) <= 0xFFFFFFFF) {
      store<u32>(last, llen + len, 8);
      return 0;
    }
  }
  if (c >= MAX_SEGS) return TOO_MANY_SEGS;
  const e = list + c * SEG_STRIDE;
  store<u64>(e, off);
  store<u32>(e, len, 8);
  store<u32>(e, region, 12);
  store<u32>(countPtr, c + 1);
  return 0;
}

/** Append the guest buffer [addr, addr+len) as segments: one when a region holds it whole (the common
 *  case), else one per region it crosses, which must follow one another in guest-physical space (the
 *  buffer is guest-physically contiguous; nothing forbids it to span two regions). 0, BAD_ADDR or
 *  TOO_MANY_SEGS. */
function appendBuffer(list: u32, countPtr: u32, addr: u64, len: u32): i32 {
  const whole = gpaRegion(addr, len);
  if (whole >= 0) return append(list, countPtr, <u32>whole, addr - load<u64>(mtEntry(<u32>whole), MT_GPA), len);
  // Two passes: check that regions cover the whole buffer, then append, so a refused buffer leaves the
  // list as it was (the lists and totals must agree on error too).
  let pieces: u32 = 0;
  for (let pass = 0; pass < 2; pass++) {
    if (pass == 1 && load<u32>(countPtr) + pieces > MAX_SEGS) return TOO_MANY_SEGS;
    let a = addr;
    let left = len;
    while (left > 0) {
      const r = gpaRegion(a, 1);
      if (r < 0) return BAD_ADDR;
      const e = mtEntry(<u32>r);
      const off = a - load<u64>(e, MT_GPA);
      const avail = load<u64>(e, MT_SIZE) - off;
      const take = avail < u64(left) ? <u32>avail : left;
      if (pass == 0) pieces++;
      else {
        const rc = append(list, countPtr, <u32>r, off, take);
        if (rc != 0) return rc;
      }
      // a + take ≤ the region's end, which does not overflow (memtableAdd).
      a += u64(take);
      left -= take;
    }
  }
  return 0;
}

/** Walk the chain of `head` into worker w's scratch (§2.6.5): every guest address is checked here, once,
 *  against the memory table, and becomes {region, offset}. 0 or an error; on error the counts and lists
 *  describe what was accepted so far. NEED_MAP: an indirect table lies behind an aperture not mapped yet
 *  (map it, then parse again). */
export function chainParse(q: u32, head: u32, w: u32): i32 {
  if (w >= MAX_WORKERS) return BAD_SIZE;
  const s = SCRATCH_BASE + w * SCRATCH_SIZE;
  store<u32>(s, 0, SCR_RCOUNT);
  store<u32>(s, 0, SCR_WCOUNT);
  store<u32>(s, 0, SCR_RTOTAL);
  store<u32>(s, 0, SCR_WTOTAL);
  store<u32>(s, 0, SCR_MISS);
  if (q >= MAX_QUEUES) return BROKEN;
  const a = qaddr(q);
  if (atomic.load<u32>(a, Q_READY) == 0) return BROKEN;
  const size = load<u32>(a, Q_SIZE);
  if (head >= size) return BAD_HEAD;

  let table = load<u32>(a, Q_DESC);   // mapped for VIRTQ_DESC_SIZE*size bytes in queueSetup
  let tableLen = size;
  let ttl = size;                     // a chain visits each descriptor at most once
  let indirect = false;
  let idx = head;
  let rtotal: u64 = 0;
  let wtotal: u64 = 0;
  let writing = false;
  while (true) {
    if (ttl == 0) return LOOP;
    ttl--;
    // idx < tableLen (checked below / head check above), so d lies inside the mapped table.
    const d = table + idx * VIRTQ_DESC_SIZE;
    const addr = load<u64>(d);
    const len = load<u32>(d, 8);
    const flags = <u32>load<u16>(d, 12);
    const next = <u32>load<u16>(d, 14);
    if ((flags & VIRTQ_DESC_F_INDIRECT) != 0) {
      // §2.6.5.3.1: no indirect inside an indirect table; INDIRECT and NEXT never together.
      if (indirect) return NESTED_INDIRECT;
      if ((flags & VIRTQ_DESC_F_NEXT) != 0) return BAD_INDIRECT;
      if (len == 0 || (len & DESC_SIZE_MASK) != 0 || len / VIRTQ_DESC_SIZE > MAX_INDIRECT) return BAD_INDIRECT;
      const tr = gpaRegion(addr, len);
      if (tr < 0) return BAD_ADDR;
      const t = regionWin(w, <u32>tr, addr - load<u64>(mtEntry(<u32>tr), MT_GPA), len);
      if (t == 0) return apertureMissPending(w) != 0 ? NEED_MAP : BAD_ADDR;
      // No alignment demand: plain wasm loads work unaligned.
      table = t;
      tableLen = len / VIRTQ_DESC_SIZE;
      ttl = tableLen;
      indirect = true;
      idx = 0;
      continue;
    }
    if (len != 0) {
      if ((flags & VIRTQ_DESC_F_WRITE) != 0) {
        writing = true;
        // §2.6.4.2 totals fit in u32 (the used element's len is u32).
        if (wtotal + u64(len) > 0xFFFFFFFF) return BAD_LEN;
        const r = appendBuffer(s + SCR_WLIST, s + SCR_WCOUNT, addr, len);
        if (r != 0) return r;
        wtotal += len;
        store<u32>(s, <u32>wtotal, SCR_WTOTAL);
      } else {
        // §2.6.4.2: device-readable descriptors come before device-writable ones.
        if (writing) return ORDER;
        if (rtotal + u64(len) > 0xFFFFFFFF) return BAD_LEN;
        const r = appendBuffer(s + SCR_RLIST, s + SCR_RCOUNT, addr, len);
        if (r != 0) return r;
        rtotal += len;
        store<u32>(s, <u32>rtotal, SCR_RTOTAL);
      }
    } else if ((flags & VIRTQ_DESC_F_WRITE) != 0) {
      writing = true;
    } else if (writing) {
      return ORDER;
    }
    if ((flags & VIRTQ_DESC_F_NEXT) == 0) return 0;
    if (next >= tableLen) return BAD_HEAD;
    idx = next;
  }
  return 0;
}

/** A worker's whole intake of one request in one call: pops the next head of queue q, parses its chain
 *  into worker w's scratch (chainParse) and copies the first min(prefix, readable total, INBUF_SIZE)
 *  bytes of its readable part into w's inbuf. The head, or EMPTY / BROKEN from queuePop. With a head,
 *  the scratch holds chainParse's result at SCR_PARSE (nothing was gathered unless it is 0) and the
 *  bytes gathered at SCR_GOT (fewer than asked after an aperture miss: the caller maps and goes on),
 *  and the head at SCR_HEAD. */
export function chainNext(q: u32, w: u32, prefix: u32): i32 {
  if (w >= MAX_WORKERS) return BROKEN;
  const s = SCRATCH_BASE + w * SCRATCH_SIZE;
  store<i32>(s, -1, SCR_HEAD);
  const head = queuePop(q);
  if (head < 0) return head;
  store<i32>(s, head, SCR_HEAD);
  const rc = chainParse(q, <u32>head, w);
  store<i32>(s, rc, SCR_PARSE);
  let got: u32 = 0;
  if (rc == 0) {
    const want = min(prefix, min(load<u32>(s, SCR_RTOTAL), INBUF_SIZE));
    got = gather(w, s + SCR_RLIST, load<u32>(s, SCR_RCOUNT), 0, s + SCR_INBUF, want);
  }
  store<u32>(s, got, SCR_GOT);
  return head;
}
