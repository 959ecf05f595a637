/**
 * guest-fio's jobs and the guest script that runs them: fio jobs (direct I/O on the fixture files)
 * and a busybox-sh metadata loop, each between console markers the host parses (run-one.ts).
 */
import { UsageError } from '../../src/errors.js';
import type { Options } from './options.js';

export const TAG = 'benchfs';

export interface JobSpec {
  name: string;
  kind: 'fio' | 'meta';
  /** fio arguments beyond the common ones. */
  fio?: string[];
  /** the figure that is compared: bandwidth for 1 MiB jobs, IOPS for 4 KiB jobs, ops/s for metadata */
  metric: 'MB/s' | 'IOPS' | 'ops/s';
  dir?: 'read' | 'write';
}

export const JOBS: JobSpec[] = [
  { name: 'seqread-1M-1j', kind: 'fio', fio: ['--rw=read', '--bs=1M', '--numjobs=1', '--filename=/mnt/fio/read.dat'], metric: 'MB/s', dir: 'read' },
  { name: 'seqread-1M-4j', kind: 'fio', fio: ['--rw=read', '--bs=1M', '--numjobs=4', '--filename=/mnt/fio/read.dat'], metric: 'MB/s', dir: 'read' },
  { name: 'randread-4k-1j', kind: 'fio', fio: ['--rw=randread', '--bs=4k', '--numjobs=1', '--filename=/mnt/fio/read.dat'], metric: 'IOPS', dir: 'read' },
  { name: 'randread-4k-4j', kind: 'fio', fio: ['--rw=randread', '--bs=4k', '--numjobs=4', '--filename=/mnt/fio/read.dat'], metric: 'IOPS', dir: 'read' },
  { name: 'seqwrite-1M-1j', kind: 'fio', fio: ['--rw=write', '--bs=1M', '--numjobs=1', '--filename=/mnt/fio/write.dat'], metric: 'MB/s', dir: 'write' },
  { name: 'randwrite-4k-1j', kind: 'fio', fio: ['--rw=randwrite', '--bs=4k', '--numjobs=1', '--filename=/mnt/fio/write.dat'], metric: 'IOPS', dir: 'write' },
  { name: 'meta-create', kind: 'meta', metric: 'ops/s' },
  { name: 'meta-stat', kind: 'meta', metric: 'ops/s' },
  { name: 'meta-unlink', kind: 'meta', metric: 'ops/s' },
];

/** The jobs --jobs names (all without it); an unknown name is a UsageError. */
export function selectedJobs(o: Options): JobSpec[] {
  const want = o.jobs;
  if (!want) return JOBS;
  const unknown = want.filter((j) => !JOBS.some((x) => x.name === j || (j === 'meta' && x.kind === 'meta')));
  if (unknown.length) throw new UsageError(`unknown job(s) ${unknown.join(', ')}; known: ${JOBS.map((j) => j.name).join(', ')}, meta`);
  return JOBS.filter((j) => want.includes(j.name) || (j.kind === 'meta' && want.includes('meta')));
}

/** The guest's /test.sh: mount, then every job between markers the host parses. */
export function guestScript(o: Options, jobs: JobSpec[], libDirs: string[]): string {
  const common = [
    '--output-format=json',
    '--direct=1',
    `--ioengine=${o.ioengine}`,
    `--size=${o.sizeMiB}M`,
    `--runtime=${o.runtimeSec}`,
    '--time_based',
    `--ramp_time=${o.rampSec}`,
    '--thread',
    '--group_reporting',
    '--percentile_list=50:99:99.9',
  ].join(' ');
  const lines = [
    `export LD_LIBRARY_PATH=${libDirs.join(':')}`,
    `mount -t virtiofs ${TAG} /mnt || { echo "@@MOUNT FAILED@@"; exit 1; }`,
    // Fail early and visibly if fio cannot run (a missing library, a loader path).
    `/usr/bin/fio --version || { echo "@@FIO BROKEN@@"; exit 1; }`,
    'up() { cut -d" " -f1 /proc/uptime; }',
    'runfio() {',
    '  n=$1; shift',
    '  echo "@@JOB-START $n@@"',
    `  /usr/bin/fio --name=$n ${common} --output=/tmp/$n.json "$@" 2>/tmp/$n.err`,
    '  rc=$?',
    '  echo "@@JOB-END $n rc=$rc@@"',
    '  [ $rc -eq 0 ] || cat /tmp/$n.err',
    '  echo "@@BEGIN fio:$n@@"; cat /tmp/$n.json; echo; echo "@@END fio:$n@@"',
    '}',
  ];
  for (const j of jobs.filter((x) => x.kind === 'fio')) lines.push(`runfio ${j.name} ${j.fio!.join(' ')}`);
  const meta = jobs.filter((x) => x.kind === 'meta').map((x) => x.name);
  if (meta.length) {
    const N = o.metaFiles;
    // create: a shell redirect (open O_CREAT + close, no fork); stat: after dropping the guest's
    // dentries and inodes, so every `[ -e ]` (a builtin stat) is a LOOKUP the daemon serves; unlink:
    // one busybox rm over the glob (a fork per file would measure the TCG guest's fork instead).
    lines.push(
      'mkdir -p /mnt/meta/d && cd /mnt/meta/d || exit 1',
      'meta() { echo "@@JOB-START $1@@"; t0=$(up); }',
      `metaend() { t1=$(up); echo "@@JOB-END $1 rc=$2@@"; echo "@@META $1 ${N} $t0 $t1 rc=$2@@"; }`,
      `meta meta-create; i=0; r=0; while [ $i -lt ${N} ]; do : > f$i || r=1; i=$((i+1)); done; metaend meta-create $r`,
      'cd / && sync && echo 2 > /proc/sys/vm/drop_caches && cd /mnt/meta/d',
      `meta meta-stat; i=0; r=0; while [ $i -lt ${N} ]; do [ -e f$i ] || r=1; i=$((i+1)); done; metaend meta-stat $r`,
      `meta meta-unlink; r=0; rm f* || r=1; metaend meta-unlink $r`,
      'cd /',
    );
  }
  lines.push('umount /mnt', 'exit 0');
  return `${lines.join('\n')}\n`;
}
