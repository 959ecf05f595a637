import { BAD_LEN, TOO_MANY_SEGS } from './errors';
import { GRANULE_SHIFT, MT_WIN, SEG_STRIDE } from './layout';
import { mtEntry } from './memtable';
import { apertureWin } from './aperture';

// Copies between linear memory and a segment list {u64 off, u32 len, u32 region}[count] (layout.ts,
// SEG_STRIDE). The lists come from chainParse (every segment checked against the memory table), so only
// list bounds are checked here. A resident region is one memory.copy; a region behind apertures is
// copied in pieces of at most a granule, each through one aperture of worker w.

const GRANULE: u32 = 1 << GRANULE_SHIFT;

/** Copy up to len bytes between buf and the list, starting `skip` bytes into the list: into the list
 *  when `toList`, else out of it. Bytes copied; fewer than asked when the list is shorter or an
 *  aperture missed (then the miss is recorded: apertureMissPending). Callers pass `toList` as a
 *  constant, so each of them compiles to its own loop. */
// @ts-ignore: decorator
@inline function copySegs(w: u32, list: u32, count: u32, skip: u32, buf: u32, len: u32, toList: bool): u32 {
  let done: u32 = 0;
  for (let i: u32 = 0; i < count && done < len; i++) {
    const e = list + i * SEG_STRIDE;
    const slen = load<u32>(e, 8);
    if (skip >= slen) { skip -= slen; continue; }
    let n = slen - skip;
    if (n > len - done) n = len - done;
    const region = load<u32>(e, 12);
    let off = load<u64>(e) + u64(skip);
    const win = load<u32>(mtEntry(region), MT_WIN);
    if (win != 0) {
      // off + n lies inside the region, which lies inside the window.
      if (toList) memory.copy(win + <u32>off, buf + done, n);
      else memory.copy(buf + done, win + <u32>off, n);
      done += n;
    } else {
      while (n > 0) {
        const piece = min(n, GRANULE);
        const a = apertureWin(w, region, off, piece);
        if (a == 0) return done;
        if (toList) memory.copy(a, buf + done, piece);
        else memory.copy(buf + done, a, piece);
        done += piece;
        off += u64(piece);
        n -= piece;
      }
    }
    skip = 0;
  }
  return done;
}

/** Copy up to len bytes of the list, starting `skip` bytes in, to dst. Returns bytes copied. */
export function gather(w: u32, list: u32, count: u32, skip: u32, dst: u32, len: u32): u32 {
  return copySegs(w, list, count, skip, dst, len, false);
}

/** Copy up to len bytes from src into the list, starting `skip` bytes in. Returns bytes copied. */
export function scatter(w: u32, src: u32, len: u32, list: u32, count: u32, skip: u32): u32 {
  return copySegs(w, list, count, skip, src, len, true);
}

/** The segments covering [skip, skip+len) of the list, written to out (at most max). Count, BAD_LEN
 *  if the list is shorter than skip+len, TOO_MANY_SEGS if more than max segments are needed. */
export function subList(list: u32, count: u32, skip: u32, len: u32, out: u32, max: u32): i32 {
  if (len == 0) return 0;
  let n: u32 = 0;
  let left = len;
  for (let i: u32 = 0; i < count; i++) {
    const e = list + i * SEG_STRIDE;
    const slen = load<u32>(e, 8);
    if (skip >= slen) { skip -= slen; continue; }
    let take = slen - skip;
    if (take > left) take = left;
    if (n >= max) return TOO_MANY_SEGS;
    const o = out + n * SEG_STRIDE;
    store<u64>(o, load<u64>(e) + u64(skip));
    store<u32>(o, take, 8);
    store<u32>(o, load<u32>(e, 12), 12);
    n++;
    left -= take;
    skip = 0;
    if (left == 0) return <i32>n;
  }
  return BAD_LEN;
}
