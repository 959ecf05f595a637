// The driver side of a split virtqueue (virtio 1.2 §2.7), as a Linux guest runs it, for the load tester
// (src/loadtest/). The tester maps its own guest RAM into its window and instantiates this module on its
// own memory; the daemon never calls these functions. Rings, chains and request data are reached by
// window address; a queue's record (DRV_BASE, D_* offsets) holds the ring addresses, the shadow indices
// and where each request slot's data and indirect table are.
//
// Ordering: wasm atomics are sequentially consistent. drvKick's store of avail.idx then load of
// used.avail_event, and drvArm's store of avail.used_event then load of used.idx, are the full barriers
// the notification-suppression protocol needs on the driver side (§2.7.10, §2.7.13.4).
import {
  DRV_BASE, DRV_STRIDE, DRV_MAX_QUEUES, DRV_REAP, DRV_REAP_MAX, DRV_SHAPES, DRV_SHAPE_STRIDE, DRV_MAX_SHAPES,
  DRV_SHAPE_MAX_SEGS, DRV_TABLE_STRIDE, D_SIZE, D_DESC, D_AVAIL, D_USED, D_AVAIL_IDX, D_KICKED_IDX, D_LAST_USED,
  D_EVENT_IDX, D_INDIRECT, D_SLOT_BYTES, D_DATA_GPA, D_TABLE_GPA, D_DATA_WIN, D_TABLE_WIN, D_SLOT_DESCS,
} from './layout';
import { BAD_SIZE, BAD_HEAD } from './errors';
import { vringNeedEvent } from './queue';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_SIZE, VIRTQ_USED_F_NO_NOTIFY } from './virtio';

// @ts-ignore: decorator
@inline function daddr(q: u32): u32 { return DRV_BASE + q * DRV_STRIDE; }

/**
 * A queue's driver state. Rings at window addresses desc/avail/used (the caller zeroed them); request
 * slot s has its data at dataWin + s*slotBytes (guest-physical dataGpa + s*slotBytes) and, with indirect
 * descriptors, its table at tableWin + s*DRV_TABLE_STRIDE; without, ring descriptors
 * [s*slotDescs, (s+1)*slotDescs).
 */
export function drvSetup(
  q: u32, size: u32, desc: u32, avail: u32, used: u32, eventIdx: u32, indirect: u32,
  slotBytes: u32, dataGpa: u64, dataWin: u32, tableGpa: u64, tableWin: u32, slotDescs: u32,
): i32 {
  if (q >= DRV_MAX_QUEUES) return BAD_SIZE;
  if (size == 0 || size > 32768 || (size & (size - 1)) != 0) return BAD_SIZE;
  const a = daddr(q);
  memory.fill(a, 0, DRV_STRIDE);
  store<u32>(a, size, D_SIZE);
  store<u32>(a, desc, D_DESC);
  store<u32>(a, avail, D_AVAIL);
  store<u32>(a, used, D_USED);
  store<u32>(a, eventIdx != 0 ? 1 : 0, D_EVENT_IDX);
  store<u32>(a, indirect != 0 ? 1 : 0, D_INDIRECT);
  store<u32>(a, slotBytes, D_SLOT_BYTES);
  store<u64>(a, dataGpa, D_DATA_GPA);
  store<u32>(a, dataWin, D_DATA_WIN);
  store<u64>(a, tableGpa, D_TABLE_GPA);
  store<u32>(a, tableWin, D_TABLE_WIN);
  store<u32>(a, slotDescs, D_SLOT_DESCS);
  return 0;
}

/**
 * Lays out slot `slot`'s request by shape `shape` (buffers at offsets of the slot's data area) as a
 * chain: one ring descriptor pointing to the slot's indirect table, or the slot's own ring descriptors
 * linked by NEXT. Returns the head to drvAdd, or an error.
 */
export function drvChain(q: u32, slot: u32, shape: u32): i32 {
  if (q >= DRV_MAX_QUEUES || shape >= DRV_MAX_SHAPES) return BAD_SIZE;
  const a = daddr(q);
  const sh = DRV_SHAPES + shape * DRV_SHAPE_STRIDE;
  const count = load<u32>(sh);
  if (count == 0 || count > DRV_SHAPE_MAX_SEGS) return BAD_SIZE;
  const slotBytes = load<u32>(a, D_SLOT_BYTES);
  const base = load<u64>(a, D_DATA_GPA) + <u64>slot * <u64>slotBytes;
  const size = load<u32>(a, D_SIZE);
  if (load<u32>(a, D_INDIRECT) != 0) {
    if (slot >= size) return BAD_HEAD;
    const table = load<u32>(a, D_TABLE_WIN) + slot * DRV_TABLE_STRIDE;
    writeDescs(table, 0, sh, count, base);
    const d = load<u32>(a, D_DESC) + slot * VIRTQ_DESC_SIZE;
    store<u64>(d, load<u64>(a, D_TABLE_GPA) + <u64>(slot * DRV_TABLE_STRIDE));
    store<u32>(d, count * VIRTQ_DESC_SIZE, 8);
    store<u16>(d, <u16>VIRTQ_DESC_F_INDIRECT, 12);
    store<u16>(d, 0, 14);
    return <i32>slot;
  }
  const per = load<u32>(a, D_SLOT_DESCS);
  if (count > per || (slot + 1) * per > size) return BAD_HEAD;
  const first = slot * per;
  writeDescs(load<u32>(a, D_DESC), first, sh, count, base);
  return <i32>first;
}

/** Descriptors first.. of the table at `table` from the shape's entries, buffers at base + offset. */
function writeDescs(table: u32, first: u32, sh: u32, count: u32, base: u64): void {
  for (let i: u32 = 0; i < count; i++) {
    const e = sh + 16 + i * 12;
    const d = table + (first + i) * VIRTQ_DESC_SIZE;
    const last = i + 1 == count;
    store<u64>(d, base + <u64>load<u32>(e));
    store<u32>(d, load<u32>(e, 4), 8);
    store<u16>(d, <u16>(load<u32>(e, 8) | (last ? 0 : VIRTQ_DESC_F_NEXT)), 12);
    store<u16>(d, <u16>(last ? 0 : first + i + 1), 14);
  }
}

/** Puts `head` in the next avail entry; visible to the device at the next drvKick. */
export function drvAdd(q: u32, head: u32): void {
  if (q >= DRV_MAX_QUEUES) return;
  const a = daddr(q);
  const idx = load<u32>(a, D_AVAIL_IDX);
  const size = load<u32>(a, D_SIZE);
  store<u16>(load<u32>(a, D_AVAIL) + 4 + 2 * (idx & (size - 1)), <u16>head);
  store<u32>(a, (idx + 1) & 0xFFFF, D_AVAIL_IDX);
}

/**
 * Publishes the entries added since the last call (stores avail.idx) and says whether the device wants
 * a kick: with EVENT_IDX when avail.idx passed its avail_event, otherwise unless used.flags has
 * NO_NOTIFY (§2.7.10). 1: kick; 0: don't.
 */
export function drvKick(q: u32): i32 {
  if (q >= DRV_MAX_QUEUES) return 0;
  const a = daddr(q);
  const nu = load<u32>(a, D_AVAIL_IDX);
  const old = load<u32>(a, D_KICKED_IDX);
  if (nu == old) return 0;
  const size = load<u32>(a, D_SIZE);
  const used = load<u32>(a, D_USED);
  atomic.store<u16>(load<u32>(a, D_AVAIL), <u16>nu, 2);
  store<u32>(a, nu, D_KICKED_IDX);
  if (load<u32>(a, D_EVENT_IDX) != 0) {
    return vringNeedEvent(<u32>atomic.load<u16>(used + 4 + 8 * size), nu, old) ? 1 : 0;
  }
  return (<u32>atomic.load<u16>(used) & VIRTQ_USED_F_NO_NOTIFY) != 0 ? 0 : 1;
}

/** Copies up to DRV_REAP_MAX new used elements {id, len} to the queue's reap list; their count. */
export function drvReap(q: u32): i32 {
  if (q >= DRV_MAX_QUEUES) return 0;
  const a = daddr(q);
  const size = load<u32>(a, D_SIZE);
  const used = load<u32>(a, D_USED);
  let last = load<u32>(a, D_LAST_USED);
  const idx = <u32>atomic.load<u16>(used, 2);
  let n = (idx - last) & 0xFFFF;
  if (n > DRV_REAP_MAX) n = DRV_REAP_MAX;
  const out = DRV_REAP + q * DRV_REAP_MAX * 8;
  for (let i: u32 = 0; i < n; i++) {
    const e = used + 4 + 8 * (last & (size - 1));
    store<u32>(out + i * 8, load<u32>(e));
    store<u32>(out + i * 8, load<u32>(e, 4), 4);
    last = (last + 1) & 0xFFFF;
  }
  store<u32>(a, last, D_LAST_USED);
  return <i32>n;
}

/**
 * Asks for an interrupt at the next used element (with EVENT_IDX: used_event = the last one reaped),
 * then re-reads used.idx so an element published in between is not slept through. 1: more to reap.
 */
export function drvArm(q: u32): i32 {
  if (q >= DRV_MAX_QUEUES) return 0;
  const a = daddr(q);
  const size = load<u32>(a, D_SIZE);
  const last = load<u32>(a, D_LAST_USED);
  if (load<u32>(a, D_EVENT_IDX) != 0) atomic.store<u16>(load<u32>(a, D_AVAIL) + 4 + 2 * size, <u16>last);
  return (<u32>atomic.load<u16>(load<u32>(a, D_USED), 2)) != last ? 1 : 0;
}

/**
 * A reply's fuse_out_header at window address `win`, for a request of `unique` (as two u32 halves) whose
 * writable buffers hold `cap` bytes and of which the device reported `usedLen`: the FUSE error (0 or a
 * negative errno) when the header is sound, else a positive code: 1 shorter than the header, 2 len ≠
 * used length, 3 longer than the buffers, 4 wrong unique, 5 error outside -4095..0, 6 an error with a
 * payload.
 */
export function drvReplyCheck(win: u32, usedLen: u32, cap: u32, uniqueLo: u32, uniqueHi: u32): i32 {
  if (usedLen < 16) return 1;
  const len = load<u32>(win);
  const error = load<i32>(win, 4);
  if (len != usedLen) return 2;
  if (len > cap) return 3;
  if (load<u32>(win, 8) != uniqueLo || load<u32>(win, 12) != uniqueHi) return 4;
  if (error > 0 || error < -4095) return 5;
  if (error != 0 && len != 16) return 6;
  return error;
}

// ---- data patterns: every 8-byte word of a file is a function of its offset and a seed, so any block read
// back can be checked without keeping a copy, and data written under one seed is told from another's.

// @ts-ignore: decorator
@inline function patternWord(off: u64, seed: u64): u64 {
  let x = (off >> 3) * 0x9E3779B97F4A7C15 + seed * 0xBF58476D1CE4E5B9 + 1;
  x ^= x >> 31;
  return x;
}

/** Fills [dst, dst+len) with the pattern of file offset `off` (a multiple of 8) under `seed`. */
export function patternFill(dst: u32, len: u32, off: f64, seed: u32): void {
  const o = <u64>off;
  const words = len >> 3;
  for (let i: u32 = 0; i < words; i++) store<u64>(dst + i * 8, patternWord(o + <u64>(i * 8), <u64>seed));
  const tail = len & 7;
  if (tail != 0) {
    const w = patternWord(o + <u64>(words * 8), <u64>seed);
    for (let k: u32 = 0; k < tail; k++) store<u8>(dst + words * 8 + k, <u8>(w >> (8 * k)));
  }
}

/** -1 when [src, src+len) holds the pattern of file offset `off` under `seed`, else the first wrong byte. */
export function patternCheck(src: u32, len: u32, off: f64, seed: u32): i32 {
  const o = <u64>off;
  const words = len >> 3;
  for (let i: u32 = 0; i < words; i++) {
    const want = patternWord(o + <u64>(i * 8), <u64>seed);
    const got = load<u64>(src + i * 8);
    if (got != want) return <i32>(i * 8 + (<u32>ctz(got ^ want) >> 3));
  }
  const tail = len & 7;
  if (tail != 0) {
    const w = patternWord(o + <u64>(words * 8), <u64>seed);
    for (let k: u32 = 0; k < tail; k++) {
      if (load<u8>(src + words * 8 + k) != <u8>(w >> (8 * k))) return <i32>(words * 8 + k);
    }
  }
  return -1;
}
