/** guest-fio's command line: its options, their defaults and the usage text. */
import { type DaemonKind, kernelInfo } from '../../harness/index.js';
import { nonNegative, positive, positiveInt, splitOption } from '../cli.js';
import { UsageError } from '../../src/errors.js';

export const USAGE = `usage: npm run bench -- guest-fio [options]      (see bench/README.md)

Boots the same TCG guest once per daemon (the reference first, then ours) and runs fio and a
metadata loop against each; prints per-job figures and the ratio ours/reference.

  --only=ours|reference        run one daemon only
  --jobs=a,b,meta              jobs to run (default all; 'meta' = the three metadata jobs)
  --runtime=S                  fio runtime per job (default 10)
  --ramp=S                     fio ramp time (default 1)
  --size=MiB                   fixture file size (default 256)
  --meta-files=N               files in the metadata loop (default 2000)
  --ioengine=psync|libaio      fio ioengine (default psync)
  --repeat=N                   rounds; the table keeps each job's best uncontended figure (default 1)
  --quiet-wait=S               wait up to S seconds for an idle host before each boot (default 300)
  --cpus=N  --mem=MiB          guest vCPUs (default 2) and RAM (default 2048)
  --kernel=VERSION             guest kernel, e.g. 6.12.95+deb12-amd64 (default: the harness's, 6.1)
  --queues=N                   request queues of our daemon's device (num-request-queues; default 1;
                               a guest spreads them over its CPUs from Linux 6.11). The reference
                               always gets one: QEMU 7.2's virtiofsd exits when offered more
  --ours-args="..."            extra arguments for our daemon
  --ref-args="..."             extra arguments for the reference (e.g. "-o allow_direct_io")
  --profile                    run ours under node --cpu-prof and summarise the profiles
  --help                       this text

Environment: BENCH_VERBOSE=1 echoes the guest console, BENCH_KEEP=1 keeps fixtures and profiles.`;

export interface Options {
  daemons: DaemonKind[];
  jobs: string[] | null; // null: all
  runtimeSec: number;
  rampSec: number;
  sizeMiB: number;
  metaFiles: number;
  ioengine: string;
  /** Run our daemon under `node --cpu-prof` (main thread and workers) and summarise the profiles. */
  profile: boolean;
  oursArgs: string[];
  /** extra reference-daemon arguments, e.g. `-o allow_direct_io` (it strips O_DIRECT by default) */
  refArgs: string[];
  cpus: number;
  memMiB: number;
  /** the guest kernel (a version under /boot, or a vmlinuz path); null: the harness's default */
  kernel: string | null;
  /** vhost-user-fs-pci num-request-queues */
  queues: number;
  /** rounds (reference then ours each); the table keeps each job's best uncontended figure */
  repeat: number;
  /** seconds to wait for a quiet host (no other QEMU, little load) before each boot */
  quietWaitSec: number;
}

/** Parses the options (throws UsageError on a bad one). */
export function parseOptions(args: string[]): Options {
  const o: Options = {
    daemons: ['reference', 'ours'],
    jobs: null,
    runtimeSec: 10,
    rampSec: 1,
    sizeMiB: 256,
    metaFiles: 2000,
    ioengine: 'psync',
    profile: false,
    oursArgs: [],
    refArgs: [],
    cpus: 2,
    memMiB: 2048,
    kernel: null,
    queues: 1,
    repeat: 1,
    quietWaitSec: 300,
  };
  for (const a of args) {
    const [k, v] = splitOption(a);
    switch (k) {
      case '--only':
        if (v !== 'ours' && v !== 'reference') throw new UsageError(`--only=ours|reference, not '${v}'`);
        o.daemons = [v];
        break;
      case '--jobs':
        o.jobs = v.split(',').filter(Boolean);
        break;
      case '--runtime':
        o.runtimeSec = positive('runtime', v);
        break;
      case '--ramp':
        o.rampSec = nonNegative('ramp', v);
        break;
      case '--size':
        o.sizeMiB = positive('size', v);
        break;
      case '--meta-files':
        o.metaFiles = positive('meta-files', v);
        break;
      case '--ioengine':
        if (!v) throw new UsageError('--ioengine needs a value (psync, libaio, ...)');
        o.ioengine = v;
        break;
      case '--profile':
        o.profile = true;
        break;
      case '--ours-args':
        o.oursArgs = v.split(/\s+/).filter(Boolean);
        break;
      case '--ref-args':
        o.refArgs = v.split(/\s+/).filter(Boolean);
        break;
      case '--cpus':
        o.cpus = positiveInt('cpus', v);
        break;
      case '--mem':
        o.memMiB = positiveInt('mem', v);
        break;
      case '--kernel':
        if (!kernelInfo(v)) throw new UsageError(`--kernel: no bootable kernel '${v}' (/boot/vmlinuz-VERSION with /lib/modules/VERSION)`);
        o.kernel = v;
        break;
      case '--queues':
        o.queues = positiveInt('queues', v);
        break;
      case '--repeat':
        o.repeat = positiveInt('repeat', v);
        break;
      case '--quiet-wait':
        o.quietWaitSec = nonNegative('quiet-wait', v);
        break;
      default:
        throw new UsageError(`unknown option ${a}`);
    }
  }
  return o;
}
