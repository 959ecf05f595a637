import { INODE_BASE, INODE_MAX, INODE_STRIDE, INODE_SLOTS, INODE_BUCKETS } from './layout';
import {
  H_COUNT, H_HIWATER, NO_SLOT, idOf, countOf, tableLock, tableUnlock, tableCount, tableClear, slotFind, slotTake, slotOpen, slotFree,
  slotUnpin, slotDoom, drainFrom, drainPast, drainRewind,
} from './slots';

// The shared inode table (a slot table, slots.ts): node ids for the FUSE layer, each holding an
// O_PATH fd, found again by (st_dev, st_ino) through INODE_MAX hash buckets after the slots.

/** An inode slot (INODE_STRIDE = 48 B; the last 4 are padding). */
@unmanaged class Inode {
  fd: i32;
  gen: u32;
  dev: u64;
  ino: u64;
  nlookup: u64;
  pins: u32;
  next: u32;   // hash chain while in use, free list while free (0 = end)
  flags: u32;  // F_*
  // The words the slot-table helpers work on (slots.ts).
  // @ts-ignore: decorator
  @inline get state(): u32 { return this.flags; }
  // @ts-ignore: decorator
  @inline set state(v: u32) { this.flags = v; }
  // @ts-ignore: decorator
  @inline get link(): u32 { return this.next; }
  // @ts-ignore: decorator
  @inline set link(v: u32) { this.next = v; }
  // @ts-ignore: decorator
  @inline get pinWord(): u32 { return this.pins; }
  // @ts-ignore: decorator
  @inline set pinWord(v: u32) { this.pins = v; }
  // @ts-ignore: decorator
  @inline get doomWord(): u32 { return this.flags; }
  // @ts-ignore: decorator
  @inline set doomWord(v: u32) { this.flags = v; }
}

// The class is the shared-memory layout of a slot: a field added or moved above fails the build.
if (offsetof<Inode>('fd') != 0 || offsetof<Inode>('gen') != 4 || offsetof<Inode>('dev') != 8 ||
  offsetof<Inode>('ino') != 16 || offsetof<Inode>('nlookup') != 24 || offsetof<Inode>('pins') != 32 ||
  offsetof<Inode>('next') != 36 || offsetof<Inode>('flags') != 40) ERROR('Inode: a field moved');
if (offsetof<Inode>() > INODE_STRIDE) ERROR('Inode: larger than INODE_STRIDE');

const F_INUSE: u32 = 1;
const F_FORGOTTEN: u32 = 2;  // no lookups left, unhashed, kept until the last pin goes
const ALL_PINS: u32 = 0xFFFFFFFF;  // `pins` is a whole word
const ROOT: u32 = 1;
const FIRST: u32 = 2;  // the first slot after the root: where slots are handed out and drained

/** Per instance: whether the last inodeLookup on this thread found a known inode. */
let lastExisted: i32 = 0;

// @ts-ignore: decorator
@inline function islot(s: u32): Inode { return changetype<Inode>(INODE_SLOTS + s * INODE_STRIDE); }

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
  let p = bucketOf(e.dev, e.ino);
  // Walk the chain to the link that points at s. Chains only hold in-use slots (< INODE_MAX).
  while (true) {
    const cur = load<u32>(p);
    if (cur == 0) return;
    if (cur == s) { store<u32>(p, e.next); return; }
    p = changetype<u32>(islot(cur)) + offsetof<Inode>('next');
  }
}

function inodeFree(s: u32): i32 { return slotFree<Inode>(INODE_BASE, INODE_SLOTS, INODE_STRIDE, s); }

/** Slot of a valid in-use nodeid, or 0. Call with the lock held. */
function inodeFind(nodeid: u64): u32 {
  return slotFind<Inode>(INODE_BASE, INODE_SLOTS, INODE_STRIDE, F_INUSE, nodeid);
}

export function inodeInit(rootFd: i32, dev: u64, ino: u64): void {
  tableClear(INODE_BASE, INODE_SLOTS, INODE_STRIDE, INODE_MAX, FIRST);
  // The buckets too; the rest of the 52 MiB is never touched until slots are handed out.
  memory.fill(INODE_BUCKETS, 0, INODE_MAX * 4);
  const e = islot(ROOT);
  e.fd = rootFd;
  e.gen = 0;  // root nodeid is exactly 1 (FUSE_ROOT_ID)
  e.dev = dev;
  e.ino = ino;
  e.nlookup = 1;
  e.flags = F_INUSE;
  store<u32>(bucketOf(dev, ino), ROOT);
  store<u32>(INODE_BASE, 1, H_COUNT);
}

/** Insert (dev, ino) with fd, or add one lookup to it; its node id (0: full). dev and ino come as u32
 *  halves (lo, hi), so that JavaScript passes them without making BigInts. */
export function inodeLookup(devLo: u32, devHi: u32, inoLo: u32, inoHi: u32, fd: i32): f64 {
  tableLock(INODE_BASE);  // first: see tableLock
  const dev = (u64(devHi) << 32) | u64(devLo);
  const ino = (u64(inoHi) << 32) | u64(inoLo);
  const b = bucketOf(dev, ino);
  let s = load<u32>(b);
  while (s != 0) {
    const e = islot(s);
    if (e.dev == dev && e.ino == ino) {
      // The root's count is never used (it is never dropped), so don't let it grow either.
      if (s != ROOT) e.nlookup = e.nlookup + 1;
      const id = (u64(e.gen) << 32) | u64(s);
      tableUnlock(INODE_BASE);
      lastExisted = 1;
      return <f64>id;
    }
    s = e.next;
  }
  lastExisted = 0;
  // Floor 0: unlike the handle table, this one counts on inodeInit to set the high-water mark past the root.
  s = slotTake<Inode>(INODE_BASE, INODE_SLOTS, INODE_STRIDE, INODE_MAX, 0);
  if (s == NO_SLOT) { tableUnlock(INODE_BASE); return 0; }
  const e = islot(s);
  const id = slotOpen<Inode>(INODE_BASE, e, s, fd);
  e.dev = dev;
  e.ino = ino;
  e.nlookup = 1;
  e.pins = 0;
  e.flags = F_INUSE;
  e.next = load<u32>(b);
  store<u32>(b, s);
  tableUnlock(INODE_BASE);
  return <f64>id;
}

export function inodeLastExisted(): i32 { return lastExisted; }

/** The st_dev recorded for a node id, 0 for an unknown or stale one (call it with the node pinned). */
export function inodeDev(nodeid: f64): u64 {
  const s = inodeFind(idOf(nodeid));  // (no lock)
  return s == 0 ? 0 : islot(s).dev;
}

export function inodeAcquire(nodeid: f64): i32 {
  tableLock(INODE_BASE);  // first: see tableLock
  const s = inodeFind(idOf(nodeid));
  let ret: i32 = -1;
  if (s != 0) {
    const e = islot(s);
    if ((e.flags & F_FORGOTTEN) == 0) {
      e.pins = e.pins + 1;
      ret = e.fd;
    }
  }
  tableUnlock(INODE_BASE);
  return ret;
}

export function inodeRelease(nodeid: f64): i32 {
  tableLock(INODE_BASE);  // first: see tableLock
  const s = inodeFind(idOf(nodeid));
  const ret = s != 0 && slotUnpin<Inode>(islot(s), ALL_PINS, F_FORGOTTEN) ? inodeFree(s) : -1;
  tableUnlock(INODE_BASE);
  return ret;
}

export function inodeForget(nodeid: f64, count: f64): i32 {
  tableLock(INODE_BASE);  // first: see tableLock
  const s = inodeFind(idOf(nodeid));
  const nlookup = countOf(count);
  let ret: i32 = -1;
  if (s != 0 && s != ROOT) {
    const e = islot(s);
    if ((e.flags & F_FORGOTTEN) == 0) {
      const cur = e.nlookup;
      const left = nlookup >= cur ? 0 : cur - nlookup;
      e.nlookup = left;
      if (left == 0) {
        // Unhash now so a new lookup of (dev, ino) gets a fresh slot and fd.
        inodeUnhash(s);
        if (slotDoom<Inode>(e, ALL_PINS, F_FORGOTTEN)) ret = inodeFree(s);
      }
    }
  }
  tableUnlock(INODE_BASE);
  return ret;
}

/** DESTROY: forget everything but the root. Unpinned inodes are handed out by inodeDrainNext,
 *  pinned ones by their last inodeRelease. */
export function inodeDropAll(): void {
  tableLock(INODE_BASE);
  const hi = load<u32>(INODE_BASE, H_HIWATER);
  const root = islot(ROOT);
  memory.fill(INODE_BUCKETS, 0, INODE_MAX * 4);
  root.next = 0;
  store<u32>(bucketOf(root.dev, root.ino), ROOT);
  for (let s = FIRST; s < hi; s++) {
    const e = islot(s);
    const f = e.flags;
    if ((f & F_INUSE) != 0) {
      e.nlookup = 0;
      e.flags = f | F_FORGOTTEN;
      e.next = 0;
    }
  }
  drainRewind(INODE_BASE, FIRST);
  tableUnlock(INODE_BASE);
}

/** Next fd to close after inodeDropAll, or -1 when none is left (the cursor then rewinds). */
export function inodeDrainNext(): i32 {
  tableLock(INODE_BASE);
  const hi = load<u32>(INODE_BASE, H_HIWATER);
  for (let s = drainFrom(INODE_BASE, FIRST); s < hi; s++) {
    const e = islot(s);
    if ((e.flags & (F_INUSE | F_FORGOTTEN)) == (F_INUSE | F_FORGOTTEN) && e.pins == 0) {
      drainPast(INODE_BASE, s);
      const fd = inodeFree(s);
      tableUnlock(INODE_BASE);
      return fd;
    }
  }
  const none = drainRewind(INODE_BASE, FIRST);
  tableUnlock(INODE_BASE);
  return none;
}

/** Slots in use, root and forgotten-but-pinned inodes included. */
export function inodeCount(): u32 { return tableCount(INODE_BASE); }
