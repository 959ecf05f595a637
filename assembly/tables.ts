import {
  INODE_BASE, INODE_MAX, INODE_STRIDE, INODE_SLOTS, INODE_BUCKETS, INODE_SIZE,
  HANDLE_BASE, HANDLE_MAX, HANDLE_STRIDE, HANDLE_SLOTS, HANDLE_SIZE,
} from './layout';
import { lockAcquire, lockRelease } from './lock';

// Shared inode and file-handle tables. Any worker may call; each table has one mutex.
// Ids are (u64(gen) << 32) | slot: a slot's gen changes on every reuse, so a stale id is rejected.

// ---- common header: lock, free list head, count, high water (first never-used slot), drain cursor
const H_LOCK: u32 = 0;
const H_FREE: u32 = 4;
const H_COUNT: u32 = 8;
const H_HIWATER: u32 = 12;
const H_CURSOR: u32 = 16;

// ---- inode slot (INODE_STRIDE = 48 B)
const I_FD: u32 = 0;
const I_GEN: u32 = 4;
const I_DEV: u32 = 8;
const I_INO: u32 = 16;
const I_NLOOKUP: u32 = 24;
const I_PINS: u32 = 32;
const I_NEXT: u32 = 36;   // hash chain while in use, free list while free (0 = end)
const I_FLAGS: u32 = 40;

const F_INUSE: u32 = 1;
const F_FORGOTTEN: u32 = 2;  // no lookups left, unhashed, kept until the last pin goes
const ROOT: u32 = 1;

/** Per instance: whether the last inodeLookup on this thread found a known inode. */
let lastExisted: i32 = 0;

// @ts-ignore: decorator
@inline function islot(s: u32): u32 { return INODE_SLOTS + s * INODE_STRIDE; }

// @ts-ignore: decorator
@inline function bucketOf(dev: u64, ino: u64): u32 {
  let h = dev * 0x9E3779B97F4A7C15 ^ ino;
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCD;
  h ^= h >> 33;
  return INODE_BUCKETS + ((<u32>h) & (INODE_MAX - 1)) * 4;
}

function inodeUnhash(s: u32): void {
  const e = islot(s);
  let p = bucketOf(load<u64>(e, I_DEV), load<u64>(e, I_INO));
  // Walk the chain to the link that points at s. Chains only hold in-use slots (< INODE_MAX).
  while (true) {
    const cur = load<u32>(p);
    if (cur == 0) return;
    if (cur == s) { store<u32>(p, load<u32>(e, I_NEXT)); return; }
    p = islot(cur) + I_NEXT;
  }
}

function inodeFree(s: u32): i32 {
  const e = islot(s);
  const fd = load<i32>(e, I_FD);
  store<u32>(e, 0, I_FLAGS);
  store<i32>(e, -1, I_FD);
  store<u32>(e, load<u32>(INODE_BASE, H_FREE), I_NEXT);
  store<u32>(INODE_BASE, s, H_FREE);
  store<u32>(INODE_BASE, load<u32>(INODE_BASE, H_COUNT) - 1, H_COUNT);
  return fd;
}

/** Slot of a valid in-use nodeid, or 0. Call with the lock held. */
function inodeFind(nodeid: u64): u32 {
  const s = <u32>nodeid;
  if (s == 0 || s >= load<u32>(INODE_BASE, H_HIWATER)) return 0;
  const e = islot(s);
  if ((load<u32>(e, I_FLAGS) & F_INUSE) == 0) return 0;
  if (load<u32>(e, I_GEN) != <u32>(nodeid >> 32)) return 0;
  return s;
}

export function inodeInit(rootFd: i32, dev: u64, ino: u64): void {
  // Clear the header, the slots an earlier session used (below its high-water mark; fresh memory is
  // zero) and the buckets: the rest of the 52 MiB is never touched until slots are handed out.
  let hi = load<u32>(INODE_BASE, H_HIWATER);
  if (hi > INODE_MAX) hi = INODE_MAX;
  memory.fill(INODE_BASE, 0, INODE_SLOTS - INODE_BASE + hi * INODE_STRIDE);
  memory.fill(INODE_BUCKETS, 0, INODE_MAX * 4);
  const e = islot(ROOT);
  store<i32>(e, rootFd, I_FD);
  store<u32>(e, 0, I_GEN);  // root nodeid is exactly 1 (FUSE_ROOT_ID)
  store<u64>(e, dev, I_DEV);
  store<u64>(e, ino, I_INO);
  store<u64>(e, 1, I_NLOOKUP);
  store<u32>(e, F_INUSE, I_FLAGS);
  store<u32>(bucketOf(dev, ino), ROOT);
  store<u32>(INODE_BASE, 1, H_COUNT);
  store<u32>(INODE_BASE, 2, H_HIWATER);
  store<u32>(INODE_BASE, 2, H_CURSOR);
}

export function inodeLookup(dev: u64, ino: u64, fd: i32): u64 {
  lockAcquire(INODE_BASE + H_LOCK);
  const b = bucketOf(dev, ino);
  let s = load<u32>(b);
  while (s != 0) {
    const e = islot(s);
    if (load<u64>(e, I_DEV) == dev && load<u64>(e, I_INO) == ino) {
      // The root's count is never used (it is never dropped), so don't let it grow either.
      if (s != ROOT) store<u64>(e, load<u64>(e, I_NLOOKUP) + 1, I_NLOOKUP);
      const id = (u64(load<u32>(e, I_GEN)) << 32) | u64(s);
      lockRelease(INODE_BASE + H_LOCK);
      lastExisted = 1;
      return id;
    }
    s = load<u32>(e, I_NEXT);
  }
  lastExisted = 0;
  s = load<u32>(INODE_BASE, H_FREE);
  if (s != 0) {
    store<u32>(INODE_BASE, load<u32>(islot(s), I_NEXT), H_FREE);
  } else {
    s = load<u32>(INODE_BASE, H_HIWATER);
    if (s >= INODE_MAX) { lockRelease(INODE_BASE + H_LOCK); return 0; }
    store<u32>(INODE_BASE, s + 1, H_HIWATER);
  }
  const e = islot(s);
  let gen = load<u32>(e, I_GEN) + 1;
  if (gen == 0) gen = 1;
  store<i32>(e, fd, I_FD);
  store<u32>(e, gen, I_GEN);
  store<u64>(e, dev, I_DEV);
  store<u64>(e, ino, I_INO);
  store<u64>(e, 1, I_NLOOKUP);
  store<u32>(e, 0, I_PINS);
  store<u32>(e, F_INUSE, I_FLAGS);
  store<u32>(e, load<u32>(b), I_NEXT);
  store<u32>(b, s);
  store<u32>(INODE_BASE, load<u32>(INODE_BASE, H_COUNT) + 1, H_COUNT);
  lockRelease(INODE_BASE + H_LOCK);
  return (u64(gen) << 32) | u64(s);
}

export function inodeLastExisted(): i32 { return lastExisted; }

/** The st_dev recorded for a node id, 0 for an unknown or stale one (call it with the node pinned). */
export function inodeDev(nodeid: u64): u64 {
  const s = inodeFind(nodeid);
  return s == 0 ? 0 : load<u64>(islot(s), I_DEV);
}

export function inodeAcquire(nodeid: u64): i32 {
  lockAcquire(INODE_BASE + H_LOCK);
  const s = inodeFind(nodeid);
  if (s == 0 || (load<u32>(islot(s), I_FLAGS) & F_FORGOTTEN) != 0) {
    lockRelease(INODE_BASE + H_LOCK);
    return -1;
  }
  const e = islot(s);
  store<u32>(e, load<u32>(e, I_PINS) + 1, I_PINS);
  const fd = load<i32>(e, I_FD);
  lockRelease(INODE_BASE + H_LOCK);
  return fd;
}

export function inodeRelease(nodeid: u64): i32 {
  lockAcquire(INODE_BASE + H_LOCK);
  const s = inodeFind(nodeid);
  let ret: i32 = -1;
  if (s != 0) {
    const e = islot(s);
    const pins = load<u32>(e, I_PINS);
    if (pins != 0) {
      store<u32>(e, pins - 1, I_PINS);
      if (pins == 1 && (load<u32>(e, I_FLAGS) & F_FORGOTTEN) != 0) ret = inodeFree(s);
    }
  }
  lockRelease(INODE_BASE + H_LOCK);
  return ret;
}

export function inodeForget(nodeid: u64, nlookup: u64): i32 {
  lockAcquire(INODE_BASE + H_LOCK);
  const s = inodeFind(nodeid);
  let ret: i32 = -1;
  if (s != 0 && s != ROOT) {
    const e = islot(s);
    const flags = load<u32>(e, I_FLAGS);
    if ((flags & F_FORGOTTEN) == 0) {
      const cur = load<u64>(e, I_NLOOKUP);
      const left = nlookup >= cur ? 0 : cur - nlookup;
      store<u64>(e, left, I_NLOOKUP);
      if (left == 0) {
        // Unhash now so a new lookup of (dev, ino) gets a fresh slot and fd.
        inodeUnhash(s);
        if (load<u32>(e, I_PINS) != 0) store<u32>(e, flags | F_FORGOTTEN, I_FLAGS);
        else ret = inodeFree(s);
      }
    }
  }
  lockRelease(INODE_BASE + H_LOCK);
  return ret;
}

/** DESTROY: forget everything but the root. Unpinned inodes are handed out by inodeDrainNext,
 *  pinned ones by their last inodeRelease. */
export function inodeDropAll(): void {
  lockAcquire(INODE_BASE + H_LOCK);
  const hi = load<u32>(INODE_BASE, H_HIWATER);
  const root = islot(ROOT);
  memory.fill(INODE_BUCKETS, 0, INODE_MAX * 4);
  store<u32>(root, 0, I_NEXT);
  store<u32>(bucketOf(load<u64>(root, I_DEV), load<u64>(root, I_INO)), ROOT);
  for (let s: u32 = 2; s < hi; s++) {
    const e = islot(s);
    const f = load<u32>(e, I_FLAGS);
    if ((f & F_INUSE) != 0) {
      store<u64>(e, 0, I_NLOOKUP);
      store<u32>(e, f | F_FORGOTTEN, I_FLAGS);
      store<u32>(e, 0, I_NEXT);
    }
  }
  store<u32>(INODE_BASE, 2, H_CURSOR);
  lockRelease(INODE_BASE + H_LOCK);
}

/** Next fd to close after inodeDropAll, or -1 when none is left (the cursor then rewinds). */
export function inodeDrainNext(): i32 {
  lockAcquire(INODE_BASE + H_LOCK);
  const hi = load<u32>(INODE_BASE, H_HIWATER);
  let s = load<u32>(INODE_BASE, H_CURSOR);
  if (s < 2) s = 2;
  for (; s < hi; s++) {
    const e = islot(s);
    if ((load<u32>(e, I_FLAGS) & (F_INUSE | F_FORGOTTEN)) == (F_INUSE | F_FORGOTTEN) && load<u32>(e, I_PINS) == 0) {
      store<u32>(INODE_BASE, s + 1, H_CURSOR);
      const fd = inodeFree(s);
      lockRelease(INODE_BASE + H_LOCK);
      return fd;
    }
  }
  store<u32>(INODE_BASE, 2, H_CURSOR);
  lockRelease(INODE_BASE + H_LOCK);
  return -1;
}

/** Slots in use, root and forgotten-but-pinned inodes included. */
export function inodeCount(): u32 { return atomic.load<u32>(INODE_BASE, H_COUNT); }

// ---- handle slot (HANDLE_STRIDE = 16 B): i32 fd, u32 gen, u32 flags (free list link while free),
// u32 state = INUSE | CLOSED | pins
const FH_FD: u32 = 0;
const FH_GEN: u32 = 4;
const FH_FLAGS: u32 = 8;
const FH_STATE: u32 = 12;
const S_INUSE: u32 = 0x80000000;
const S_CLOSED: u32 = 0x40000000;
const S_PINS: u32 = 0x3FFFFFFF;

// @ts-ignore: decorator
@inline function hslot(s: u32): u32 { return HANDLE_SLOTS + s * HANDLE_STRIDE; }

/** Slot of a valid in-use fh (closed or not), or 0. Call with the lock held. */
function handleFind(fh: u64): u32 {
  const s = <u32>fh;
  if (s == 0 || s >= load<u32>(HANDLE_BASE, H_HIWATER)) return 0;
  const e = hslot(s);
  if ((load<u32>(e, FH_STATE) & S_INUSE) == 0) return 0;
  if (load<u32>(e, FH_GEN) != <u32>(fh >> 32)) return 0;
  return s;
}

function handleFree(s: u32): i32 {
  const e = hslot(s);
  const fd = load<i32>(e, FH_FD);
  store<u32>(e, 0, FH_STATE);
  store<i32>(e, -1, FH_FD);
  store<u32>(e, load<u32>(HANDLE_BASE, H_FREE), FH_FLAGS);
  store<u32>(HANDLE_BASE, s, H_FREE);
  store<u32>(HANDLE_BASE, load<u32>(HANDLE_BASE, H_COUNT) - 1, H_COUNT);
  return fd;
}

/** Clears the handle table (main, once, like inodeInit). */
export function handleInit(): void {
  let hi = load<u32>(HANDLE_BASE, H_HIWATER);
  if (hi > HANDLE_MAX) hi = HANDLE_MAX;
  memory.fill(HANDLE_BASE, 0, HANDLE_SLOTS - HANDLE_BASE + hi * HANDLE_STRIDE);
  store<u32>(HANDLE_BASE, 1, H_HIWATER);
  store<u32>(HANDLE_BASE, 1, H_CURSOR);
}

export function handleOpen(fd: i32, flags: u32): u64 {
  lockAcquire(HANDLE_BASE + H_LOCK);
  let s = load<u32>(HANDLE_BASE, H_FREE);
  if (s != 0) {
    store<u32>(HANDLE_BASE, load<u32>(hslot(s), FH_FLAGS), H_FREE);
  } else {
    s = load<u32>(HANDLE_BASE, H_HIWATER);
    if (s == 0) s = 1;  // table never initialised: slot 0 stays unused anyway
    if (s >= HANDLE_MAX) { lockRelease(HANDLE_BASE + H_LOCK); return 0; }
    store<u32>(HANDLE_BASE, s + 1, H_HIWATER);
  }
  const e = hslot(s);
  let gen = load<u32>(e, FH_GEN) + 1;
  if (gen == 0) gen = 1;
  store<i32>(e, fd, FH_FD);
  store<u32>(e, gen, FH_GEN);
  store<u32>(e, flags, FH_FLAGS);
  store<u32>(e, S_INUSE, FH_STATE);
  store<u32>(HANDLE_BASE, load<u32>(HANDLE_BASE, H_COUNT) + 1, H_COUNT);
  lockRelease(HANDLE_BASE + H_LOCK);
  return (u64(gen) << 32) | u64(s);
}

export function handleAcquire(fh: u64): i32 {
  lockAcquire(HANDLE_BASE + H_LOCK);
  const s = handleFind(fh);
  let ret: i32 = -1;
  if (s != 0) {
    const e = hslot(s);
    const st = load<u32>(e, FH_STATE);
    if ((st & S_CLOSED) == 0 && (st & S_PINS) != S_PINS) {
      store<u32>(e, st + 1, FH_STATE);
      ret = load<i32>(e, FH_FD);
    }
  }
  lockRelease(HANDLE_BASE + H_LOCK);
  return ret;
}

/** Open flags given to handleOpen, or -1 for an unknown/closed fh. */
export function handleFlags(fh: u64): i32 {
  lockAcquire(HANDLE_BASE + H_LOCK);
  const s = handleFind(fh);
  let ret: i32 = -1;
  if (s != 0 && (load<u32>(hslot(s), FH_STATE) & S_CLOSED) == 0) ret = <i32>(load<u32>(hslot(s), FH_FLAGS) & 0x7FFFFFFF);
  lockRelease(HANDLE_BASE + H_LOCK);
  return ret;
}

export function handleRelease(fh: u64): i32 {
  lockAcquire(HANDLE_BASE + H_LOCK);
  const s = handleFind(fh);
  let ret: i32 = -1;
  if (s != 0) {
    const e = hslot(s);
    const st = load<u32>(e, FH_STATE);
    if ((st & S_PINS) != 0) {
      store<u32>(e, st - 1, FH_STATE);
      if ((st & S_PINS) == 1 && (st & S_CLOSED) != 0) ret = handleFree(s);
    }
  }
  lockRelease(HANDLE_BASE + H_LOCK);
  return ret;
}

/** RELEASE: fd to close, -1 if deferred to the last handleRelease, -2 for an unknown fh. */
export function handleClose(fh: u64): i32 {
  lockAcquire(HANDLE_BASE + H_LOCK);
  const s = handleFind(fh);
  let ret: i32 = -2;
  if (s != 0) {
    const e = hslot(s);
    const st = load<u32>(e, FH_STATE);
    if ((st & S_CLOSED) == 0) {
      if ((st & S_PINS) != 0) { store<u32>(e, st | S_CLOSED, FH_STATE); ret = -1; }
      else ret = handleFree(s);
    }
  }
  lockRelease(HANDLE_BASE + H_LOCK);
  return ret;
}

/** DESTROY: close every handle, one fd per call; pinned handles are marked closed (their last
 *  release returns the fd). -1 when done (the cursor then rewinds). */
export function handleDrainNext(): i32 {
  lockAcquire(HANDLE_BASE + H_LOCK);
  const hi = load<u32>(HANDLE_BASE, H_HIWATER);
  let s = load<u32>(HANDLE_BASE, H_CURSOR);
  if (s < 1) s = 1;
  for (; s < hi; s++) {
    const e = hslot(s);
    const st = load<u32>(e, FH_STATE);
    if ((st & S_INUSE) == 0 || (st & S_CLOSED) != 0) continue;
    if ((st & S_PINS) != 0) { store<u32>(e, st | S_CLOSED, FH_STATE); continue; }
    store<u32>(HANDLE_BASE, s + 1, H_CURSOR);
    const fd = handleFree(s);
    lockRelease(HANDLE_BASE + H_LOCK);
    return fd;
  }
  store<u32>(HANDLE_BASE, 1, H_CURSOR);
  lockRelease(HANDLE_BASE + H_LOCK);
  return -1;
}

export function handleCount(): u32 { return atomic.load<u32>(HANDLE_BASE, H_COUNT); }
