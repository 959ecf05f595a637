import { HANDLE_BASE, HANDLE_MAX, HANDLE_STRIDE, HANDLE_SLOTS, DIRPOS_BASE, INODE_BASE, INODE_SIZE, WINDOW_BASE } from './layout';
import {
  H_HIWATER, NO_SLOT, idOf, tableLock, tableUnlock, tableCount, tableClear, slotFind, slotTake, slotOpen, slotFree,
  slotUnpin, slotDoom, drainFrom, drainPast, drainRewind,
} from './slots';

// The shared file-handle table (a slot table, slots.ts): the fh of every open file or directory,
// holding its fd and open flags.

/** A handle slot (HANDLE_STRIDE = 16 B). */
@unmanaged class Handle {
  fd: i32;
  gen: u32;
  flags: u32;  // open flags; the free list link while free (0 = end)
  state: u32;  // S_INUSE | S_CLOSED | pins
  // The words the slot-table helpers work on (slots.ts).
  // @ts-ignore: decorator
  @inline get link(): u32 { return this.flags; }
  // @ts-ignore: decorator
  @inline set link(v: u32) { this.flags = v; }
  // @ts-ignore: decorator
  @inline get pinWord(): u32 { return this.state; }
  // @ts-ignore: decorator
  @inline set pinWord(v: u32) { this.state = v; }
  // @ts-ignore: decorator
  @inline get doomWord(): u32 { return this.state; }
  // @ts-ignore: decorator
  @inline set doomWord(v: u32) { this.state = v; }
}

// The class is the shared-memory layout of a slot: a field added or moved above fails the build.
if (offsetof<Handle>('fd') != 0 || offsetof<Handle>('gen') != 4 || offsetof<Handle>('flags') != 8 ||
  offsetof<Handle>('state') != 12) ERROR('Handle: a field moved');
if (offsetof<Handle>() > HANDLE_STRIDE) ERROR('Handle: larger than HANDLE_STRIDE');

// The directory positions lie between the inode table and the window.
if (INODE_BASE + INODE_SIZE > DIRPOS_BASE || DIRPOS_BASE + HANDLE_MAX * 8 > WINDOW_BASE) ERROR('DIRPOS_BASE: no room');

const S_INUSE: u32 = 0x80000000;
const S_CLOSED: u32 = 0x40000000;
const S_PINS: u32 = 0x3FFFFFFF;
const FIRST: u32 = 1;  // slot 0 is never handed out: fh 0 is no handle

// @ts-ignore: decorator
@inline function hslot(s: u32): Handle { return changetype<Handle>(HANDLE_SLOTS + s * HANDLE_STRIDE); }

/** Slot of a valid in-use fh (closed or not), or 0. Call with the lock held. */
function handleFind(fh: u64): u32 {
  return slotFind<Handle>(HANDLE_BASE, HANDLE_SLOTS, HANDLE_STRIDE, S_INUSE, fh);
}

function handleFree(s: u32): i32 { return slotFree<Handle>(HANDLE_BASE, HANDLE_SLOTS, HANDLE_STRIDE, s); }

/** Clears the handle table (main, once, like inodeInit). */
export function handleInit(): void { tableClear(HANDLE_BASE, HANDLE_SLOTS, HANDLE_STRIDE, HANDLE_MAX, FIRST); }

export function handleOpen(fd: i32, flags: u32): f64 {
  tableLock(HANDLE_BASE);
  // Floor FIRST: a table never initialised still leaves slot 0 unused.
  const s = slotTake<Handle>(HANDLE_BASE, HANDLE_SLOTS, HANDLE_STRIDE, HANDLE_MAX, FIRST);
  if (s == NO_SLOT) { tableUnlock(HANDLE_BASE); return 0; }
  const e = hslot(s);
  const id = slotOpen<Handle>(HANDLE_BASE, e, s, fd);
  e.flags = flags;
  e.state = S_INUSE;
  // A new fd's position is 0 (handleDirPos).
  store<i64>(DIRPOS_BASE + s * 8, 0);
  tableUnlock(HANDLE_BASE);
  return <f64>id;
}

/** The file position the open directory fh's fd was left at (handleSetDirPos; 0 after handleOpen), or
 *  -1 for an unknown fh: READDIR seeks only when the guest asks for another offset, because a seek on
 *  an ext4 directory makes its next getdents rebuild the directory's hash-order cache. */
export function handleDirPos(fh: f64): i64 {
  tableLock(HANDLE_BASE);  // first: see tableLock
  const s = handleFind(idOf(fh));
  const ret: i64 = s != 0 ? load<i64>(DIRPOS_BASE + s * 8) : -1;
  tableUnlock(HANDLE_BASE);
  return ret;
}

/** Records where READDIR left the open directory fh's fd (-1: not known; the next READDIR seeks). */
export function handleSetDirPos(fh: f64, pos: i64): void {
  tableLock(HANDLE_BASE);  // first: see tableLock
  const s = handleFind(idOf(fh));
  if (s != 0) store<i64>(DIRPOS_BASE + s * 8, pos);
  tableUnlock(HANDLE_BASE);
}

export function handleAcquire(fh: f64): i32 {
  tableLock(HANDLE_BASE);  // first: see tableLock
  const s = handleFind(idOf(fh));
  let ret: i32 = -1;
  if (s != 0) {
    const e = hslot(s);
    const st = e.state;
    if ((st & S_CLOSED) == 0 && (st & S_PINS) != S_PINS) {
      e.state = st + 1;
      ret = e.fd;
    }
  }
  tableUnlock(HANDLE_BASE);
  return ret;
}

/** Open flags given to handleOpen, or -1 for an unknown/closed fh. */
export function handleFlags(fh: f64): i32 {
  tableLock(HANDLE_BASE);  // first: see tableLock
  const s = handleFind(idOf(fh));
  let ret: i32 = -1;
  if (s != 0 && (hslot(s).state & S_CLOSED) == 0) ret = <i32>(hslot(s).flags & 0x7FFFFFFF);
  tableUnlock(HANDLE_BASE);
  return ret;
}

export function handleRelease(fh: f64): i32 {
  tableLock(HANDLE_BASE);  // first: see tableLock
  const s = handleFind(idOf(fh));
  const ret = s != 0 && slotUnpin<Handle>(hslot(s), S_PINS, S_CLOSED) ? handleFree(s) : -1;
  tableUnlock(HANDLE_BASE);
  return ret;
}

/** RELEASE: fd to close, -1 if deferred to the last handleRelease, -2 for an unknown fh. */
export function handleClose(fh: f64): i32 {
  tableLock(HANDLE_BASE);  // first: see tableLock
  const s = handleFind(idOf(fh));
  let ret: i32 = -2;
  if (s != 0 && (hslot(s).state & S_CLOSED) == 0) {
    ret = slotDoom<Handle>(hslot(s), S_PINS, S_CLOSED) ? handleFree(s) : -1;
  }
  tableUnlock(HANDLE_BASE);
  return ret;
}

/** DESTROY: close every handle, one fd per call; pinned handles are marked closed (their last
 *  release returns the fd). -1 when done (the cursor then rewinds). */
export function handleDrainNext(): i32 {
  tableLock(HANDLE_BASE);
  const hi = load<u32>(HANDLE_BASE, H_HIWATER);
  for (let s = drainFrom(HANDLE_BASE, FIRST); s < hi; s++) {
    const e = hslot(s);
    if ((e.state & S_INUSE) == 0 || (e.state & S_CLOSED) != 0) continue;
    if (!slotDoom<Handle>(e, S_PINS, S_CLOSED)) continue;
    drainPast(HANDLE_BASE, s);
    const fd = handleFree(s);
    tableUnlock(HANDLE_BASE);
    return fd;
  }
  const none = drainRewind(HANDLE_BASE, FIRST);
  tableUnlock(HANDLE_BASE);
  return none;
}

export function handleCount(): u32 { return tableCount(HANDLE_BASE); }
