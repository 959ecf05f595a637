import {
  APERTURE_BASE, APERTURE_CLOCKS, APERTURE_ENTRIES, APERTURE_STRIDE, APERTURE_MAX_SLOTS, APERTURE_PINNED,
  APERTURE_SLOT_SIZE, APERTURE_WAYS, GRANULE_SHIFT, MAX_WORKERS, WINDOW_BASE, WINDOW_END, SCRATCH_BASE,
  SCRATCH_SIZE, SCR_MISS, STATS_BASE, STATS_STRIDE, STAT_APERTURE_HITS, STAT_APERTURE_MISSES, MT_FILE_OFF,
  MT_SIZE, MT_UADDR, MT_WIN, MT_FD, MT_GPA, MISS_JOB_WIN, MISS_JOB_FD, MISS_JOB_FILE_OFF, MISS_JOB_LEN,
} from './layout';
import { BAD_SIZE, BAD_ADDR, ALIGN } from './errors';
import { mtCount, mtEntry, gpaRegion, uaddrRegion } from './memtable';

// Apertures: when guest RAM does not fit the window, WASM reaches it through 4 MiB windows onto its
// file (docs/internals.md, "Guests of any size"). Partition 0 holds the rings' pinned apertures (the main
// thread maps them); partition 1+w is worker w's cache, set-associative with LRU replacement inside a set.
// A worker maps only into its own partition, only between its own copies, so no aperture is ever
// replaced while another thread reads through it. The cache is reset (and the area re-mapped) whenever
// the memory table changes, with every worker paused.

const GRANULE: u64 = u64(1) << GRANULE_SHIFT;
const GRANULE_MASK: u64 = GRANULE - 1;
// Header fields.
const AP_ON: u32 = 0;
const AP_AREA: u32 = 4;
const AP_WORKERS: u32 = 8;
const AP_SLOTS: u32 = 12;
// Miss record fields (scratch + SCR_MISS).
const MISS_PENDING: u32 = 0;
const MISS_REGION: u32 = 4;
const MISS_GRANULE: u32 = 8;

// @ts-ignore: decorator
@inline function slotEntry(slot: u32): u32 { return APERTURE_BASE + APERTURE_ENTRIES + slot * APERTURE_STRIDE; }
// @ts-ignore: decorator
@inline function slotWin(slot: u32): u32 { return load<u32>(APERTURE_BASE, AP_AREA) + slot * APERTURE_SLOT_SIZE; }
/** Cache key of a granule of region r (r < 2^10, granule < 2^43: file offsets stay below 2^63). */
// @ts-ignore: decorator
@inline function apKey(r: u32, granule: u64): u64 { return (u64(r + 1) << 53) | granule; }
// @ts-ignore: decorator
@inline function missRecord(w: u32): u32 { return SCRATCH_BASE + w * SCRATCH_SIZE + SCR_MISS; }
// @ts-ignore: decorator
@inline function stat(w: u32, field: u32): u32 { return STATS_BASE + w * STATS_STRIDE + field; }

/** Turns apertures on: slot 0 at window address `area`, APERTURE_PINNED pinned slots, then `slots`
 *  slots (a multiple of APERTURE_WAYS) for each of `workers` workers. Every slot starts empty. */
export function apertureConfig(area: u32, workers: u32, slots: u32): i32 {
  if (area & u32(GRANULE_MASK)) return ALIGN;
  if (workers == 0 || workers > MAX_WORKERS || slots == 0 || slots % APERTURE_WAYS != 0) return BAD_SIZE;
  const total = u64(APERTURE_PINNED) + u64(workers) * u64(slots);
  if (total > u64(APERTURE_MAX_SLOTS)) return BAD_SIZE;
  if (area < WINDOW_BASE || u64(area) + total * u64(APERTURE_SLOT_SIZE) > u64(WINDOW_END)) return BAD_ADDR;
  apertureOff();
  store<u32>(APERTURE_BASE, area, AP_AREA);
  store<u32>(APERTURE_BASE, workers, AP_WORKERS);
  store<u32>(APERTURE_BASE, slots, AP_SLOTS);
  store<u32>(APERTURE_BASE, 1, AP_ON);
  return 0;
}

/** Turns apertures off and forgets every slot (all regions resident, or no memory). */
export function apertureOff(): void {
  memory.fill(APERTURE_BASE, 0, APERTURE_ENTRIES + APERTURE_MAX_SLOTS * APERTURE_STRIDE);
}

/** Window address of [off, off+len) of region r's granule through worker w's cache; 0 on a miss, which
 *  is recorded for apertureFill. len ≤ 2 MiB (an aperture covers the granule and the next one). */
export function apertureWin(w: u32, r: u32, off: u64, len: u32): u32 {
  if (load<u32>(APERTURE_BASE, AP_ON) == 0 || w >= load<u32>(APERTURE_BASE, AP_WORKERS)) return 0;
  if (u64(len) > GRANULE) return 0;
  const pos = load<u64>(mtEntry(r), MT_FILE_OFF) + off;
  const granule = pos >> GRANULE_SHIFT;
  const key = apKey(r, granule);
  const base = setBase(w, key);
  const clock = APERTURE_BASE + APERTURE_CLOCKS + (w + 1) * 4;
  const now = load<u32>(clock) + 1;
  store<u32>(clock, now);
  for (let i: u32 = 0; i < APERTURE_WAYS; i++) {
    const e = slotEntry(base + i);
    if (load<u64>(e) == key) {
      store<u32>(e, now, 8);
      const h = stat(w, STAT_APERTURE_HITS);
      store<u64>(h, load<u64>(h) + 1);
      return slotWin(base + i) + <u32>(pos & GRANULE_MASK);
    }
  }
  const m = missRecord(w);
  store<u32>(m, r, MISS_REGION);
  store<u64>(m, granule, MISS_GRANULE);
  store<u32>(m, 1, MISS_PENDING);
  return 0;
}

/** First slot of the set `key` falls in, in worker w's partition. */
// @ts-ignore: decorator
@inline function setBase(w: u32, key: u64): u32 {
  const slots = load<u32>(APERTURE_BASE, AP_SLOTS);
  const sets = slots / APERTURE_WAYS;
  // Fibonacci hashing of the granule and region: neighbouring granules land in different sets.
  const h = <u32>((key * 0x9E3779B97F4A7C15) >> 32);
  return APERTURE_PINNED + w * slots + (h % sets) * APERTURE_WAYS;
}

/** 1 when worker w has a recorded miss. */
export function apertureMissPending(w: u32): u32 {
  if (w >= MAX_WORKERS) return 0;
  return load<u32>(missRecord(w), MISS_PENDING);
}

/** Takes worker w's recorded miss: picks the slot (an empty one in the set, else the least recently used),
 *  gives it the granule and writes the mapping to make after the record (window address, fd, file offset,
 *  length). The window address, or 0 (no miss pending, or apertures are off). */
export function apertureFill(w: u32): u32 {
  if (w >= MAX_WORKERS) return 0;
  const m = missRecord(w);
  if (load<u32>(m, MISS_PENDING) == 0) return 0;
  store<u32>(m, 0, MISS_PENDING);
  const r = load<u32>(m, MISS_REGION);
  if (load<u32>(APERTURE_BASE, AP_ON) == 0 || w >= load<u32>(APERTURE_BASE, AP_WORKERS) || r >= mtCount()) return 0;
  const e = mtEntry(r);
  const granule = load<u64>(m, MISS_GRANULE);
  const key = apKey(r, granule);
  const base = setBase(w, key);
  const clock = load<u32>(APERTURE_BASE + APERTURE_CLOCKS + (w + 1) * 4);
  let victim = base;
  let oldest: u32 = 0;
  for (let i: u32 = 0; i < APERTURE_WAYS; i++) {
    const s = slotEntry(base + i);
    if (load<u64>(s) == 0) { victim = base + i; break; }
    // Ages relative to the clock, so the comparison survives the u32 clock wrapping.
    const age = clock - load<u32>(s, 8);
    if (age >= oldest) { oldest = age; victim = base + i; }
  }
  const s = slotEntry(victim);
  store<u64>(s, key);
  store<u32>(s, clock, 8);
  const ms = stat(w, STAT_APERTURE_MISSES);
  store<u64>(ms, load<u64>(ms) + 1);
  const win = slotWin(victim);
  store<u32>(m, win, MISS_JOB_WIN);
  store<i32>(m, load<i32>(e, MT_FD), MISS_JOB_FD);
  store<u64>(m, granule << GRANULE_SHIFT, MISS_JOB_FILE_OFF);
  store<u32>(m, apertureSpan(r, granule), MISS_JOB_LEN);
  return win;
}

/** Bytes to map for region r's granule: two granules (APERTURE_SLOT_SIZE), but never past the end of
 *  the granule the region ends in (mapping a hugetlbfs file past its end would grow it). 0 for an
 *  unknown region. */
export function apertureSpan(r: u32, granule: u64): u32 {
  if (r >= mtCount()) return 0;
  const e = mtEntry(r);
  const start = granule << GRANULE_SHIFT;
  const end = ((load<u64>(e, MT_FILE_OFF) + load<u64>(e, MT_SIZE) + GRANULE_MASK) >> GRANULE_SHIFT) << GRANULE_SHIFT;
  if (end <= start) return 0;
  return end - start > u64(APERTURE_SLOT_SIZE) ? APERTURE_SLOT_SIZE : <u32>(end - start);
}

/** Forgets the slot at window address `win` of worker w (its mapping failed). */
export function apertureDrop(w: u32, win: u32): void {
  if (load<u32>(APERTURE_BASE, AP_ON) == 0 || w >= load<u32>(APERTURE_BASE, AP_WORKERS)) return;
  const slots = load<u32>(APERTURE_BASE, AP_SLOTS);
  const first = APERTURE_PINNED + w * slots;
  for (let i: u32 = 0; i < slots; i++) {
    if (slotWin(first + i) == win) { store<u64>(slotEntry(first + i), 0); return; }
  }
}

/** Pins region r's granule in pinned slot `slot` (main thread, workers paused). The slot's window
 *  address (the caller maps it: fd at MT_FD, granule << GRANULE_SHIFT), or 0. */
export function aperturePin(slot: u32, r: u32, granule: u64): u32 {
  if (load<u32>(APERTURE_BASE, AP_ON) == 0 || slot >= APERTURE_PINNED || r >= mtCount()) return 0;
  store<u64>(slotEntry(slot), apKey(r, granule));
  return slotWin(slot);
}

/** Empties pinned slot `slot`. */
export function apertureUnpin(slot: u32): void {
  if (slot < APERTURE_PINNED) store<u64>(slotEntry(slot), 0);
}

/** Window address of [off, off+len) of region r for the main thread: the resident mapping or a pinned
 *  aperture; 0 if neither holds it. */
function mainWin(r: i32, off: u64, len: u32): u32 {
  if (r < 0) return 0;
  const e = mtEntry(<u32>r);
  const win = load<u32>(e, MT_WIN);
  if (win != 0) return win + <u32>off;
  if (load<u32>(APERTURE_BASE, AP_ON) == 0 || u64(len) > GRANULE) return 0;
  const pos = load<u64>(e, MT_FILE_OFF) + off;
  const key = apKey(<u32>r, pos >> GRANULE_SHIFT);
  for (let i: u32 = 0; i < APERTURE_PINNED; i++) {
    if (load<u64>(slotEntry(i)) == key) return slotWin(i) + <u32>(pos & GRANULE_MASK);
  }
  return 0;
}

/** Window address of guest-physical [gpa, gpa+len) for the main thread (resident or pinned), or 0. */
export function gpaToWin(gpa: u64, len: u32): u32 {
  const r = gpaRegion(gpa, len);
  return r < 0 ? 0 : mainWin(r, gpa - load<u64>(mtEntry(<u32>r), MT_GPA), len);
}

/** Window address of frontend-virtual [ua, ua+len) for the main thread (resident or pinned), or 0. */
export function uaddrToWin(ua: u64, len: u32): u32 {
  const r = uaddrRegion(ua, len);
  return r < 0 ? 0 : mainWin(r, ua - load<u64>(mtEntry(<u32>r), MT_UADDR), len);
}

/** Window address of [off, off+len) of region r for worker w: the resident mapping, or an aperture
 *  (0 on a miss, recorded). */
// @ts-ignore: decorator
@inline export function regionWin(w: u32, r: u32, off: u64, len: u32): u32 {
  const win = load<u32>(mtEntry(r), MT_WIN);
  return win != 0 ? win + <u32>off : apertureWin(w, r, off, len);
}
