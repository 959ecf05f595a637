import { BAD_LEN, TOO_MANY_SEGS } from './errors';

// Copies between linear memory and a segment list {u32 win, u32 len}[count]. The lists come from
// chainParse (every segment checked against the memory table), so only list bounds are checked here.

/** Copy up to len bytes between buf and the list, starting `skip` bytes into the list: into the list
 *  when `toList`, else out of it. Bytes copied. Callers pass `toList` as a constant, so each of them
 *  compiles to its own loop with one memory.copy. */
// @ts-ignore: decorator
@inline function copySegs(list: u32, count: u32, skip: u32, buf: u32, len: u32, toList: bool): u32 {
  let done: u32 = 0;
  for (let i: u32 = 0; i < count && done < len; i++) {
    const e = list + i * 8;
    const slen = load<u32>(e, 4);
    if (skip >= slen) { skip -= slen; continue; }
    let n = slen - skip;
    if (n > len - done) n = len - done;
    if (toList) memory.copy(load<u32>(e) + skip, buf + done, n);
    else memory.copy(buf + done, load<u32>(e) + skip, n);
    done += n;
    skip = 0;
  }
  return done;
}

/** Copy up to len bytes of the list, starting `skip` bytes in, to dst. Returns bytes copied. */
export function gather(list: u32, count: u32, skip: u32, dst: u32, len: u32): u32 {
  return copySegs(list, count, skip, dst, len, false);
}

/** Copy up to len bytes from src into the list, starting `skip` bytes in. Returns bytes copied. */
export function scatter(src: u32, len: u32, list: u32, count: u32, skip: u32): u32 {
  return copySegs(list, count, skip, src, len, true);
}

/** The segments covering [skip, skip+len) of the list, written to out (at most max). Count, BAD_LEN
 *  if the list is shorter than skip+len, TOO_MANY_SEGS if more than max segments are needed. */
export function subList(list: u32, count: u32, skip: u32, len: u32, out: u32, max: u32): i32 {
  if (len == 0) return 0;
  let n: u32 = 0;
  let left = len;
  for (let i: u32 = 0; i < count; i++) {
    const e = list + i * 8;
    const slen = load<u32>(e, 4);
    if (skip >= slen) { skip -= slen; continue; }
    let take = slen - skip;
    if (take > left) take = left;
    if (n >= max) return TOO_MANY_SEGS;
    store<u32>(out + n * 8, load<u32>(e) + skip);
    store<u32>(out + n * 8, take, 4);
    n++;
    left -= take;
    skip = 0;
    if (left == 0) return <i32>n;
  }
  return BAD_LEN;
}
