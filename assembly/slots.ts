import { lockAcquire, lockRelease } from './lock';

// A slot table in shared memory; the inode table (inodes.ts) and the file-handle table (handles.ts)
// are each one. Any worker may call; each table has one mutex, the word at H_LOCK.
// Layout: a 64-byte header at `base` (H_* below), then slot s at `slots + s * stride`. Ids are
// (u64(gen) << 32) | slot: a slot's gen changes on every reuse, so a stale id is rejected; slotFind
// never accepts slot 0, and the tables return id 0 for "full". gen has GEN_BITS (21) bits, so every id
// is below 2^53 and crosses to JavaScript as an exact f64 (a number, not a BigInt: docs/internals.md
// "Shared tables"); idOf turns an f64 argument back into an id, anything not one into 0 (unknown).
//
// A table describes its slot with an @unmanaged class S laid over the slot's address (no object is
// ever allocated: changetype only retypes the address). S has the fields `fd` (i32, at 0) and `gen`
// (u32), and accessors naming the words the helpers below work on:
//   state     the in-use bit (`inUse`) while the slot is in use; zeroed when it is freed
//   link      the next free slot while it is free (0 = end)
//   pinWord   holds the pin count, in its `pins` bits
//   doomWord  holds the `doomBit`: no new pins, the last unpin frees the slot
// The helpers are @inline and generic, and every caller passes constants, so each table compiles to
// its own straight-line code with fixed field offsets, as if written out by hand.

// ---- header: lock, free list head, count, high water (first never-used slot), drain cursor
const H_LOCK: u32 = 0;
export const H_FREE: u32 = 4;
export const H_COUNT: u32 = 8;
export const H_HIWATER: u32 = 12;
export const H_CURSOR: u32 = 16;

/** Bits of a slot's generation: ids are below 2^(32 + GEN_BITS) = 2^53. */
export const GEN_BITS: u32 = 21;
const GEN_MASK: u32 = (1 << GEN_BITS) - 1;
/** 2^53: the first integer an f64 cannot hold exactly next to its neighbours. */
const ID_LIMIT: f64 = 9007199254740992.0;

/** An id passed as an f64: the integer, or 0 (no slot: unknown) for anything that cannot be an id
 *  (negative, ≥ 2^53, a fraction, NaN). Never traps. */
// @ts-ignore: decorator
@inline export function idOf(x: f64): u64 { return x >= 0 && x < ID_LIMIT && x == floor<f64>(x) ? <u64>x : 0; }

/** A count passed as an f64 (FORGET's nlookup): saturated, never trapping. */
// @ts-ignore: decorator
@inline export function countOf(x: f64): u64 { return x >= 0 ? (x < ID_LIMIT ? <u64>x : <u64>ID_LIMIT) : 0; }

/** slotTake: every slot is in use. */
export const NO_SLOT: u32 = 0xFFFFFFFF;

/**
 * Take the table's lock. Call it before computing anything from the arguments: code that V8's baseline
 * wasm compiler (Liftoff, Node 20) made can lose a value computed before an inlined lockAcquire when
 * the lock is contended (measured under node --liftoff-only: a node id converted before the lock came
 * out wrong thousands of times in 300 000 contended calls, none with the conversion after the lock; the
 * arguments themselves, as used since the tables exist, were never hit). test/unit/tables.test.ts
 * "two worker threads" catches it.
 */
// @ts-ignore: decorator
@inline export function tableLock(base: u32): void { lockAcquire(base + H_LOCK); }
// @ts-ignore: decorator
@inline export function tableUnlock(base: u32): void { lockRelease(base + H_LOCK); }

/** Slots in use; an atomic read without the lock (a snapshot). */
// @ts-ignore: decorator
@inline export function tableCount(base: u32): u32 { return atomic.load<u32>(base, H_COUNT); }

/** Init (main, once): zero the header and the slots an earlier session used (below its high-water
 *  mark; fresh memory is zero, the rest is never touched until slots are handed out). Slots are
 *  handed out and drained from `first` on. */
// @ts-ignore: decorator
@inline export function tableClear(base: u32, slots: u32, stride: u32, max: u32, first: u32): void {
  let hi = load<u32>(base, H_HIWATER);
  if (hi > max) hi = max;
  memory.fill(base, 0, slots - base + hi * stride);
  store<u32>(base, first, H_HIWATER);
  store<u32>(base, first, H_CURSOR);
}

/** Slot of a valid in-use id, or 0. Call with the lock held. */
// @ts-ignore: decorator
@inline export function slotFind<S>(base: u32, slots: u32, stride: u32, inUse: u32, id: u64): u32 {
  const s = <u32>id;
  // Below the high-water mark, so the slot lies inside the table.
  if (s == 0 || s >= load<u32>(base, H_HIWATER)) return 0;
  const e = changetype<S>(slots + s * stride);
  if ((e.state & inUse) == 0) return 0;
  if (e.gen != <u32>(id >> 32)) return 0;
  return s;
}

/** A slot for a new entry, off the free list or else the high-water one (at least `floor`); NO_SLOT
 *  when all `max` are in use. Call with the lock held. */
// @ts-ignore: decorator
@inline export function slotTake<S>(base: u32, slots: u32, stride: u32, max: u32, floor: u32): u32 {
  let s = load<u32>(base, H_FREE);
  if (s != 0) {
    store<u32>(base, changetype<S>(slots + s * stride).link, H_FREE);
    return s;
  }
  s = load<u32>(base, H_HIWATER);
  if (s < floor) s = floor;
  if (s >= max) return NO_SLOT;
  store<u32>(base, s + 1, H_HIWATER);
  return s;
}

/** Give slot s, just taken, its fd and the next generation (GEN_BITS wide, skipping 0 on wrap) and
 *  count it. Its id. */
// @ts-ignore: decorator
@inline export function slotOpen<S>(base: u32, e: S, s: u32, fd: i32): u64 {
  let gen = (e.gen + 1) & GEN_MASK;
  if (gen == 0) gen = 1;
  e.fd = fd;
  e.gen = gen;
  store<u32>(base, load<u32>(base, H_COUNT) + 1, H_COUNT);
  return (u64(gen) << 32) | u64(s);
}

/** Put slot s on the free list. Its fd, for the caller to close. Call with the lock held. */
// @ts-ignore: decorator
@inline export function slotFree<S>(base: u32, slots: u32, stride: u32, s: u32): i32 {
  const e = changetype<S>(slots + s * stride);
  const fd = e.fd;
  e.state = 0;
  e.fd = -1;
  e.link = load<u32>(base, H_FREE);
  store<u32>(base, s, H_FREE);
  store<u32>(base, load<u32>(base, H_COUNT) - 1, H_COUNT);
  return fd;
}

/** Drop one pin of e. True when it was the last pin of a doomed slot: the caller frees it. */
// @ts-ignore: decorator
@inline export function slotUnpin<S>(e: S, pins: u32, doomBit: u32): bool {
  const p = e.pinWord;
  if ((p & pins) == 0) return false;
  e.pinWord = p - 1;
  return (p & pins) == 1 && (e.doomWord & doomBit) != 0;
}

/** Doom e. True when it has no pins: the caller frees it now; otherwise it is marked, and its last
 *  unpin frees it. */
// @ts-ignore: decorator
@inline export function slotDoom<S>(e: S, pins: u32, doomBit: u32): bool {
  if ((e.pinWord & pins) == 0) return true;
  e.doomWord = e.doomWord | doomBit;
  return false;
}

/** Where a drain goes on: its cursor, at least `first`. Call with the lock held. */
// @ts-ignore: decorator
@inline export function drainFrom(base: u32, first: u32): u32 {
  const s = load<u32>(base, H_CURSOR);
  return s < first ? first : s;
}

/** The drain hands out slot s: the next call goes on after it. */
// @ts-ignore: decorator
@inline export function drainPast(base: u32, s: u32): void { store<u32>(base, s + 1, H_CURSOR); }

/** Rewind the drain cursor, so that the next drain starts over. -1: a drain's "none left". */
// @ts-ignore: decorator
@inline export function drainRewind(base: u32, first: u32): i32 {
  store<u32>(base, first, H_CURSOR);
  return -1;
}
