import {
  MEMTABLE_BASE, MEMTABLE_ENTRIES, MEMTABLE_STRIDE, MAX_REGIONS, WINDOW_BASE, WINDOW_END, MT_GPA, MT_SIZE,
  MT_UADDR, MT_HVA, MT_FILE_OFF, MT_WIN, MT_FD,
} from './layout';
import { BAD_ADDR, BAD_SIZE, FULL, ALIGN } from './errors';

// The guest's memory regions, sorted by guest-physical address. The main thread writes the table only
// while every worker is paused (docs/internals.md), so readers use plain loads. A region is either
// resident (mapped whole into the window at MT_WIN) or reached through apertures (aperture.ts); the
// addon's vectored I/O always uses the host mapping at MT_HVA.

// @ts-ignore: decorator
@inline export function mtEntry(i: u32): u32 { return MEMTABLE_BASE + MEMTABLE_ENTRIES + i * MEMTABLE_STRIDE; }
// @ts-ignore: decorator
@inline export function mtCount(): u32 { return min(load<u32>(MEMTABLE_BASE), MAX_REGIONS); }

export function memtableClear(): void {
  memory.fill(MEMTABLE_BASE, 0, MEMTABLE_ENTRIES + MAX_REGIONS * MEMTABLE_STRIDE);
}

export function memtableCount(): u32 { return mtCount(); }

/** True when [a, a+as) and [b, b+bs) intersect; sizes are non-zero and the ends do not overflow. */
// @ts-ignore: decorator
@inline function overlaps(a: u64, as: u64, b: u64, bs: u64): bool { return a < b + bs && b < a + as; }

/** Adds a region, keeping the table sorted by gpa. `win` is its window address when resident (page
 *  aligned, inside [WINDOW_BASE, WINDOW_END)), else 0. The index it got, or an error: regions that
 *  overlap in guest-physical space, in the frontend's address space or in the window are refused. */
export function memtableAdd(gpa: u64, size: u64, uaddr: u64, hva: u64, fileOff: u64, win: u32, fd: i32): i32 {
  const n = mtCount();
  if (n >= MAX_REGIONS) return FULL;
  if (size == 0) return BAD_SIZE;
  if (win & 0xFFF) return ALIGN;
  // u64 sums: no overflow past 2^64 (a hostile frontend can send anything).
  if (gpa > U64.MAX_VALUE - size || uaddr > U64.MAX_VALUE - size || hva > U64.MAX_VALUE - size) return BAD_ADDR;
  if (fileOff > U64.MAX_VALUE - size) return BAD_ADDR;
  if (win != 0 && (win < WINDOW_BASE || u64(win) + size > u64(WINDOW_END))) return BAD_ADDR;
  let at = n;
  for (let i: u32 = 0; i < n; i++) {
    const e = mtEntry(i);
    const esize = load<u64>(e, MT_SIZE);
    const egpa = load<u64>(e, MT_GPA);
    if (overlaps(gpa, size, egpa, esize)) return BAD_ADDR;
    if (overlaps(uaddr, size, load<u64>(e, MT_UADDR), esize)) return BAD_ADDR;
    const ewin = load<u32>(e, MT_WIN);
    if (win != 0 && ewin != 0 && overlaps(u64(win), size, u64(ewin), esize)) return BAD_ADDR;
    if (at == n && gpa < egpa) at = i;
  }
  if (at < n) memory.copy(mtEntry(at + 1), mtEntry(at), (n - at) * MEMTABLE_STRIDE);
  const e = mtEntry(at);
  store<u64>(e, gpa, MT_GPA);
  store<u64>(e, size, MT_SIZE);
  store<u64>(e, uaddr, MT_UADDR);
  store<u64>(e, hva, MT_HVA);
  store<u64>(e, fileOff, MT_FILE_OFF);
  store<u32>(e, win, MT_WIN);
  store<i32>(e, fd, MT_FD);
  store<u32>(MEMTABLE_BASE, n + 1);
  return <i32>at;
}

/** The region holding [gpa, gpa+len) whole (binary search), or -1. Offset: gpa - MT_GPA of that entry. */
export function gpaRegion(gpa: u64, len: u32): i32 {
  let lo: u32 = 0;
  let hi = mtCount();
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const e = mtEntry(mid);
    const base = load<u64>(e, MT_GPA);
    if (gpa < base) { hi = mid; continue; }
    // off < size: gpa is inside; the rest must fit in what is left of the region.
    const off = gpa - base;
    const size = load<u64>(e, MT_SIZE);
    if (off < size) return u64(len) <= size - off ? <i32>mid : -1;
    lo = mid + 1;
  }
  return -1;
}

/** The region holding the frontend address range [ua, ua+len) whole (linear: ring setup only), or -1. */
export function uaddrRegion(ua: u64, len: u32): i32 {
  const n = mtCount();
  for (let i: u32 = 0; i < n; i++) {
    const e = mtEntry(i);
    // off < size also rejects ua < base (the subtraction wraps to a huge value).
    const off = ua - load<u64>(e, MT_UADDR);
    const size = load<u64>(e, MT_SIZE);
    if (off < size && u64(len) <= size - off) return <i32>i;
  }
  return -1;
}
