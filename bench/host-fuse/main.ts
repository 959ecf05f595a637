/**
 * host-fuse: FUSE request loops sent straight to a vhost-user-fs backend by our own frontend
 * (src/frontend/), with no guest: what each daemon costs per request, without TCG in the way.
 * Both daemons run in the same invocation, one after the other, order alternating per workload; the
 * table gives ops/s, the daemon's CPU per operation (all its processes and threads, from /proc) and
 * ours/reference ratios.
 *
 * The frontend shares the 2-core host with the daemon, so ops/s at depth > 1 are partly the
 * frontend's limit; CPU per operation is the daemon's own and is the figure to compare.
 */
import fs from 'node:fs';
import { REFERENCE_DAEMON } from '../../harness/index.js';
import { wantsHelp } from '../cli.js';
import { parseOptions, USAGE } from './options.js';
import { printRun, printTable } from './report.js';
import { type Result, runOne } from './run-one.js';

export async function main(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) {
    console.log(USAGE);
    return 0;
  }
  const o = parseOptions(argv);
  if (o.kinds.includes('reference') && !fs.existsSync(REFERENCE_DAEMON)) {
    console.error(`host-fuse: ${REFERENCE_DAEMON} is missing (apt-get install qemu-system-x86); use --only=ours`);
    return 2;
  }
  console.log(`host-fuse: ${o.ops} operations per run, workloads ${o.workloads.join(',')}, depths ${o.depths.join(',')}`);
  const results: Result[] = [];
  let flip = false;
  for (const w of o.workloads) {
    for (const depth of o.depths) {
      // alternate who goes first: the host file system's state (caches, inode reuse) favours the later run
      const order = flip ? [...o.kinds].reverse() : o.kinds;
      flip = !flip;
      for (const kind of order) {
        const r = await runOne(kind, w, depth, o);
        results.push(r);
        printRun(r);
      }
    }
  }
  printTable(o, results);
  return 0;
}
