// A futex-style mutex on one u32 word of shared memory: 0 free, 1 held, 2 held with waiters.
// Cmpxchg fast path, a short spin (critical sections are a few dozen instructions), then
// memory.atomic.wait32. Node allows wait on every thread, including main.

const SPIN: i32 = 100;

export function lockAcquire(p: u32): void {
  if (atomic.cmpxchg<u32>(p, 0, 1) == 0) return;
  for (let i = 0; i < SPIN; i++) {
    if (atomic.load<u32>(p) == 0 && atomic.cmpxchg<u32>(p, 0, 1) == 0) return;
  }
  // Mark contended; whoever sees 2 on unlock wakes one waiter. Taking the lock with 2 is
  // conservative (one spurious notify at most), never a lost wake-up.
  while (atomic.xchg<u32>(p, 2) != 0) {
    memory.atomic.wait32(p, 2, -1);
  }
}

export function lockRelease(p: u32): void {
  if (atomic.xchg<u32>(p, 0) == 2) {
    atomic.notify(p, 1);
  }
}
