import { MEMTABLE_BASE, MEMTABLE_ENTRIES, MEMTABLE_STRIDE, MAX_REGIONS, WINDOW_BASE, WINDOW_END } from './layout';
import { BAD_ADDR, BAD_SIZE, FULL, ALIGN } from './errors';

// The main thread writes the table only while every worker is paused (docs/internals.md), so
// readers use plain loads.

// @ts-ignore: decorator
@inline function entry(i: u32): u32 { return MEMTABLE_BASE + MEMTABLE_ENTRIES + i * MEMTABLE_STRIDE; }

export function memtableClear(): void {
  memory.fill(MEMTABLE_BASE, 0, MEMTABLE_ENTRIES + MAX_REGIONS * MEMTABLE_STRIDE);
}

/** 0 when [a, a+as) and [b, b+bs) are disjoint; sizes are non-zero and the ends do not overflow. */
// @ts-ignore: decorator
@inline function overlaps(a: u64, as: u64, b: u64, bs: u64): bool { return a < b + bs && b < a + as; }

/** Add a region; its window [win, win+size) must lie in [WINDOW_BASE, WINDOW_END) and be page aligned.
 *  Returns the index or an error. Overlapping guest-physical ranges or windows are refused. */
export function memtableAdd(gpa: u64, size: u64, uaddr: u64, win: u32): i32 {
  const n = load<u32>(MEMTABLE_BASE);
  if (n >= MAX_REGIONS) return FULL;
  if (size == 0) return BAD_SIZE;
  if (win & 0xFFF) return ALIGN;
  // u64 sums: no overflow past 2^64 (a hostile frontend can send anything).
  if (gpa > U64.MAX_VALUE - size || uaddr > U64.MAX_VALUE - size) return BAD_ADDR;
  if (win < WINDOW_BASE || u64(win) + size > u64(WINDOW_END)) return BAD_ADDR;
  for (let i: u32 = 0; i < n; i++) {
    const e = entry(i);
    const esize = load<u64>(e, 8);
    if (overlaps(gpa, size, load<u64>(e), esize)) return BAD_ADDR;
    if (overlaps(u64(win), size, u64(load<u32>(e, 24)), esize)) return BAD_ADDR;
  }
  const e = entry(n);
  store<u64>(e, gpa);
  store<u64>(e, size, 8);
  store<u64>(e, uaddr, 16);
  store<u32>(e, win, 24);
  store<u32>(e, 0, 28);
  store<u32>(MEMTABLE_BASE, n + 1);
  return <i32>n;
}

/** Window address of [addr, addr+len) when it lies inside one region; `field` picks gpa (0) or uaddr (16). */
// @ts-ignore: decorator
@inline function xlate(addr: u64, len: u32, field: u32): u32 {
  const n = load<u32>(MEMTABLE_BASE);
  for (let i: u32 = 0; i < n && i < MAX_REGIONS; i++) {
    const e = entry(i);
    const base = load<u64>(e + field);
    const size = load<u64>(e, 8);
    // off < size also rejects addr < base (the subtraction wraps to a huge value).
    const off = addr - base;
    if (off < size && u64(len) <= size - off) {
      // size fits in the window (checked in memtableAdd), so win + off fits in u32.
      return load<u32>(e, 24) + <u32>off;
    }
  }
  return 0;
}

export function gpaToWin(gpa: u64, len: u32): u32 { return xlate(gpa, len, 0); }
export function uaddrToWin(ua: u64, len: u32): u32 { return xlate(ua, len, 16); }
