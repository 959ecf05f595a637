/**
 * Other load on the host: the 2 cores are shared with other test suites' guests, so the bench waits
 * for a quiet host before each boot and marks figures measured under load.
 */
import { findProcesses, hostCpuTicks, USER_HZ } from '../../harness/index.js';
import type { JobResult } from './fio-json.js';

/** Other load on the host (% of one core) above which a job's figure is marked contended. */
export const CONTENDED_PCT = 25;

export const contended = (r: JobResult): boolean => (r.cpu?.otherLoadPct ?? 0) > CONTENDED_PCT;

/** Other QEMU guests on this host (other test suites): they compete with ours for the 2 cores. */
function foreignQemus(): number {
  return findProcesses((cmd) => cmd.startsWith('qemu-system') || cmd.includes('/qemu-system')).length;
}

/** Waits until the host is mostly idle (at most `maxSec`). */
export async function waitQuiet(maxSec: number): Promise<void> {
  const deadline = Date.now() + maxSec * 1000;
  let said = false;
  for (;;) {
    const a = hostCpuTicks();
    await new Promise((r) => setTimeout(r, 1000));
    const b = hostCpuTicks();
    const busyPct = (100 * (b.busy - a.busy)) / USER_HZ;
    const q = foreignQemus();
    // An idle foreign guest (a hung test waiting for its timeout) does not matter; its load does.
    if (busyPct < 30) {
      if (said) console.log('host is quiet now');
      return;
    }
    if (Date.now() > deadline) {
      console.log(`host still busy (${q} other QEMU, ${busyPct.toFixed(0)}% of a core): measuring anyway, see CONTENDED marks`);
      return;
    }
    if (!said) console.log(`waiting for a quiet host (${q} other QEMU running, ${busyPct.toFixed(0)}% of a core busy)...`);
    said = true;
  }
}
