/**
 * guest-fio: the reference daemon (QEMU 7.2's C virtiofsd) and ours, side by side in one run, each
 * serving the same fixture to a real TCG guest that runs fio (direct I/O) and a busybox-sh metadata
 * loop. Results are ratios (ours / reference), never pass/fail: the guest is TCG-bound and numbers
 * move between runs and machines, so only the same-run comparison means anything.
 *
 * The guest gets the harness's base initramfs plus the fio extension (fio-initramfs.ts). While each
 * job runs, the daemon's threads (and QEMU) are sampled from /proc (harness/proc-cpu.ts) so the
 * report can say where the daemon spends its CPU, or that it waits.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defaultCacheDir, guestSkipReason } from '../../harness/index.js';
import { wantsHelp } from '../cli.js';
import { fioFiles, prepareInitramfs } from './fio-initramfs.js';
import { CONTENDED_PCT, waitQuiet } from './host-load.js';
import { selectedJobs } from './jobs.js';
import { parseOptions, USAGE } from './options.js';
import { bestOf, type DaemonRun, fmt, table, writeResults } from './report.js';
import { runOne } from './run-one.js';

const MiB = 1 << 20;

export async function main(args: string[]): Promise<number> {
  if (wantsHelp(args)) {
    console.log(USAGE);
    return 0;
  }
  const o = parseOptions(args);
  const jobs = selectedJobs(o);
  const skip = guestSkipReason(o.daemons.includes('reference') ? 'reference' : 'ours');
  if (skip) {
    console.error(`guest-fio: cannot run: ${skip}`);
    return 2;
  }
  const ff = fioFiles();
  const cacheDir = path.join(defaultCacheDir(), 'bench-guest-fio');
  const t0 = Date.now();
  const initrd = prepareInitramfs(cacheDir, ff, o.kernel);
  console.log(
    `guest-fio: ${jobs.length} jobs (runtime ${o.runtimeSec}s + ramp ${o.rampSec}s, size ${o.sizeMiB} MiB, ${o.ioengine}, direct=1), ` +
      `${o.cpus}-vCPU TCG guest${o.kernel ? ` (${o.kernel})` : ''}${o.queues > 1 ? `, ${o.queues} request queues for ours (1 for the reference)` : ''}, initramfs ${(fs.statSync(initrd).size / MiB).toFixed(0)} MiB (${((Date.now() - t0) / 1000).toFixed(1)} s), ` +
      `daemons: ${o.daemons.join(' then ')}${o.profile ? ' (ours under --cpu-prof)' : ''}`,
  );
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-bench-'));
  const all: DaemonRun[] = [];
  try {
    for (let round = 1; round <= o.repeat; round++) {
      for (const kind of o.daemons) {
        await waitQuiet(o.quietWaitSec);
        console.log(`--- ${kind}${o.repeat > 1 ? ` (round ${round}/${o.repeat})` : ''}`);
        const r = await runOne(kind, o, jobs, ff, cacheDir, path.join(root, `r${round}`));
        all.push(r);
        console.log(
          `--- ${kind}: guest rc=${r.guest.rc}, ${(r.guest.durationMs / 1000).toFixed(0)} s (modules at ${fmt((r.guest.bootMs ?? NaN) / 1000, 1)} s)`,
        );
      }
    }
  } finally {
    // Profiles are summarised already; keep them only if asked to (they are large).
    if (!process.env.BENCH_KEEP) fs.rmSync(root, { recursive: true, force: true });
    else console.log(`kept ${root}`);
  }
  const runs = o.daemons.map((k) => bestOf(all.filter((r) => r.kind === k))).filter((r) => r !== undefined);
  console.log(`\n${table(runs, jobs)}`);
  console.log(
    'ratio = ours / reference (higher is better for every metric); latency: fio clat per I/O, or the mean time per operation;\n' +
      `* = measured while other host load exceeded ${CONTENDED_PCT}% of a core${o.repeat > 1 ? `; best of ${o.repeat} rounds` : ''}.`,
  );
  for (const r of runs) if (r.profile?.length) console.log(`\nCPU profiles of ours (${r.profile.length} threads):\n\n${r.profile.join('\n\n')}`);
  const out = writeResults(o, jobs, runs, all);
  console.log(`\nresults: ${path.relative(process.cwd(), out)}`);
  return all.every((r) => r.guest.rc === 0) ? 0 : 1;
}
