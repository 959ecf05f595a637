// guest-fio: the reference daemon (QEMU 7.2's C virtiofsd) and ours, side by side in one run, each
// serving the same fixture to a real TCG guest that runs fio (direct I/O) and a busybox-sh metadata
// loop. Results are ratios (ours / reference), never pass/fail: the guest is TCG-bound and numbers
// move between runs and machines, so only the same-run comparison means anything.
//
// The guest gets the harness's base initramfs (busybox + virtiofs modules) plus an extension archive
// with the host's fio, every shared library `ldd` lists for it and the dynamic loader, at the same
// paths. While each job runs, the daemon's threads (and QEMU) are sampled from /proc so the report
// can say where the daemon spends its CPU, or that it waits.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  buildBaseInitramfs,
  cpioDirMaker,
  cpioNewc,
  defaultCacheDir,
  findKernel,
  guestSkipReason,
  repoRoot,
  runGuest,
  startDaemon,
  type CpioEntry,
  type DaemonKind,
  type GuestResult,
} from '../test/e2e/harness.js';
import { formatSummary, profileFiles, summarise } from './cpuprofile.js';

const S_IFREG = 0o100000;
const TAG = 'benchfs';
const MiB = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Options

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
  /** rounds (reference then ours each); the table keeps each job's best uncontended figure */
  repeat: number;
  /** seconds to wait for a quiet host (no other QEMU, little load) before each boot */
  quietWaitSec: number;
}

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
    repeat: 1,
    quietWaitSec: 300,
  };
  for (const a of args) {
    const eq = a.indexOf('=');
    const k = eq < 0 ? a : a.slice(0, eq);
    const v = eq < 0 ? '' : a.slice(eq + 1);
    switch (k) {
      case '--only':
        if (v !== 'ours' && v !== 'reference') throw new Error('--only=ours|reference');
        o.daemons = [v];
        break;
      case '--jobs':
        o.jobs = v.split(',').filter(Boolean);
        break;
      case '--runtime':
        o.runtimeSec = Number(v);
        break;
      case '--ramp':
        o.rampSec = Number(v);
        break;
      case '--size':
        o.sizeMiB = Number(v);
        break;
      case '--meta-files':
        o.metaFiles = Number(v);
        break;
      case '--ioengine':
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
        o.cpus = Number(v);
        break;
      case '--mem':
        o.memMiB = Number(v);
        break;
      case '--repeat':
        o.repeat = Number(v);
        break;
      case '--quiet-wait':
        o.quietWaitSec = Number(v);
        break;
      default:
        throw new Error(`unknown option ${a}`);
    }
  }
  for (const [n, x] of [['runtime', o.runtimeSec], ['size', o.sizeMiB], ['meta-files', o.metaFiles]] as const) {
    if (!Number.isFinite(x) || x <= 0) throw new Error(`--${n} must be a positive number`);
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// Jobs

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

function selectedJobs(o: Options): JobSpec[] {
  if (!o.jobs) return JOBS;
  const unknown = o.jobs.filter((j) => !JOBS.some((x) => x.name === j || (j === 'meta' && x.kind === 'meta')));
  if (unknown.length) throw new Error(`unknown job(s) ${unknown.join(', ')}; known: ${JOBS.map((j) => j.name).join(', ')}, meta`);
  return JOBS.filter((j) => o.jobs!.includes(j.name) || (j.kind === 'meta' && o.jobs!.includes('meta')));
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

// ---------------------------------------------------------------------------------------------
// The fio extension archive

interface FioFiles {
  /** host path → guest path (the same) */
  files: string[];
  libDirs: string[];
}

export function fioFiles(): FioFiles {
  const fio = spawnSync('sh', ['-c', 'command -v fio'], { encoding: 'utf8' }).stdout.trim();
  if (!fio) throw new Error('fio not found on the host (apt-get install fio)');
  const r = spawnSync('ldd', [fio], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ldd ${fio} failed: ${r.stderr}`);
  const files = [fio];
  for (const line of r.stdout.split('\n')) {
    // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1] && !files.includes(m[1])) files.push(m[1]);
    if (/=>\s+not found/.test(line)) throw new Error(`fio needs a library that is missing: ${line.trim()}`);
  }
  const libDirs = [...new Set(files.slice(1).map((f) => path.dirname(f)))];
  return { files, libDirs };
}

function fioExtension(ff: FioFiles): Buffer {
  const entries: CpioEntry[] = [];
  const dir = cpioDirMaker(entries);
  for (const f of ff.files) {
    const rel = f.replace(/^\/+/, '');
    dir(path.dirname(rel));
    // Symlinks are dereferenced: the guest gets the file's content at the path the loader asks for.
    entries.push({ name: rel, mode: S_IFREG | 0o755, data: fs.readFileSync(fs.realpathSync(f)) });
  }
  return cpioNewc(entries);
}

/**
 * The base initramfs with the fio extension appended, placed where `runGuest({cacheDir})` looks for
 * its base image (runGuest has no option for an extra archive): `buildBaseInitramfs(dir)` names the
 * file; we keep the pristine copy beside it and rewrite the combined one when either input changes.
 */
export function prepareInitramfs(cacheDir: string, ff: FioFiles): string {
  const k = findKernel();
  if (!k) throw new Error('no guest kernel');
  const pristine = buildBaseInitramfs(defaultCacheDir(), k);
  const target = buildBaseInitramfs(cacheDir, k); // creates it (pristine) the first time
  const h = createHash('sha256').update(path.basename(pristine));
  for (const f of ff.files) h.update(f).update(String(fs.statSync(fs.realpathSync(f)).mtimeMs));
  const key = h.digest('hex').slice(0, 16);
  const stamp = `${target}.fio-stamp`;
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === key) return target;
  const tmp = `${target}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, Buffer.concat([fs.readFileSync(pristine), fioExtension(ff)]));
  fs.renameSync(tmp, target);
  fs.writeFileSync(stamp, key);
  return target;
}

// ---------------------------------------------------------------------------------------------
// Fixture

/** A fresh share: fio/read.dat and fio/write.dat (sizeMiB each, non-zero data, on disk), meta/. */
export function makeFixture(root: string, sizeMiB: number): string {
  const share = path.join(root, 'share');
  fs.mkdirSync(path.join(share, 'fio'), { recursive: true });
  fs.mkdirSync(path.join(share, 'meta'), { recursive: true });
  const block = Buffer.alloc(MiB);
  let x = 0x9e3779b9;
  for (let i = 0; i < MiB; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    block.writeUInt32LE(x >>> 0, i);
  }
  for (const name of ['read.dat', 'write.dat']) {
    const fd = fs.openSync(path.join(share, 'fio', name), 'w');
    for (let i = 0; i < sizeMiB; i++) {
      block.writeUInt32LE(i, 0); // no two MiB alike
      fs.writeSync(fd, block);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
  }
  return share;
}

// ---------------------------------------------------------------------------------------------
// CPU sampling from /proc

/** Other load on the host (% of one core) above which a job's figure is marked contended. */
const CONTENDED_PCT = 25;

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

interface ThreadStat {
  comm: string;
  ticks: number;
}

function readStat(file: string): ThreadStat | null {
  try {
    const s = fs.readFileSync(file, 'latin1');
    const open = s.indexOf('(');
    const close = s.lastIndexOf(')');
    const f = s.slice(close + 2).split(' ');
    return { comm: s.slice(open + 1, close), ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return null;
  }
}

/** pid and its descendants: the reference daemon forks its sandboxed server and waits for it. */
function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let tids: string[] = [];
    try {
      tids = fs.readdirSync(`/proc/${out[i]}/task`);
    } catch {
      continue;
    }
    for (const t of tids) {
      try {
        for (const c of fs.readFileSync(`/proc/${out[i]}/task/${t}/children`, 'latin1').trim().split(/\s+/)) {
          if (c && !out.includes(Number(c))) out.push(Number(c));
        }
      } catch {
        /* gone */
      }
    }
  }
  return out;
}

/** Every thread of pid and its descendants: tid → stat. */
function threadsOf(pid: number): Map<number, ThreadStat> {
  const out = new Map<number, ThreadStat>();
  for (const p of processTree(pid)) {
    let tids: string[] = [];
    try {
      tids = fs.readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tids) {
      const st = readStat(`/proc/${p}/task/${t}/stat`);
      if (st) out.set(Number(t), st);
    }
  }
  return out;
}

export interface FixtureFd {
  file: string;
  /** open(2) flags in octal, from /proc/PID/fdinfo */
  flags: string;
  direct: boolean;
}

const O_DIRECT = 0o40000;

/** The daemon's open fds on the fio fixture files, with their flags (is the host side O_DIRECT?). */
function fixtureFds(pid: number): FixtureFd[] {
  const out: FixtureFd[] = [];
  for (const p of processTree(pid)) {
    let fds: string[] = [];
    try {
      fds = fs.readdirSync(`/proc/${p}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const target = fs.readlinkSync(`/proc/${p}/fd/${fd}`);
        if (!/\/fio\/(read|write)\.dat$/.test(target)) continue;
        const m = /^flags:\s+([0-7]+)/m.exec(fs.readFileSync(`/proc/${p}/fdinfo/${fd}`, 'latin1'));
        if (!m?.[1]) continue;
        const flags = parseInt(m[1], 8);
        if ((flags & 0o10000000) !== 0) continue; // O_PATH inode fds
        out.push({ file: path.basename(target), flags: m[1], direct: (flags & O_DIRECT) !== 0 });
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return out;
}

function hostCpuTicks(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'latin1').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** The QEMU process serving our socket (runGuest does not hand out its pid). */
function findQemu(socketPath: string): number | null {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'latin1');
      if (cmd.includes('qemu-system') && cmd.includes(socketPath) && !cmd.startsWith('timeout')) return Number(d);
    } catch {
      /* gone */
    }
  }
  return null;
}

export interface ThreadCpu {
  tid: number;
  role: string;
  /** % of one core over the job */
  pct: number;
}

export interface JobCpu {
  wallSec: number;
  /** whole daemon, % of one core */
  daemonPct: number;
  mainPct: number;
  workersPct: number;
  otherPct: number;
  threads: ThreadCpu[];
  qemuPct: number | null;
  /** all host CPUs busy, % of the whole machine */
  hostBusyPct: number;
  /** CPU used by everything else on the host (other guests, builds), % of one core */
  otherLoadPct: number;
  /** the daemon's fds on the fixture files one second into the job */
  fixtureFds?: FixtureFd[];
}

class CpuSampler {
  private roles = new Map<number, string>();
  private start: { t: number; threads: Map<number, ThreadStat>; qemu: number | null; host: { busy: number; total: number } } | null = null;
  private fds: FixtureFd[] | undefined;
  private fdTimer: NodeJS.Timeout | undefined;
  qemuPid: number | null = null;

  constructor(private readonly kind: DaemonKind, private readonly pid: number, private readonly socketPath: string) {}

  /**
   * Our queue workers sleep in epoll_wait(2) (syscall 232) or, paused, poll(2) (7); learn their tids
   * while the daemon is idle. (The main thread's libuv loop also uses epoll, but it is the pid.)
   */
  classify(): void {
    for (const [tid, st] of threadsOf(this.pid)) {
      if (this.roles.has(tid)) continue;
      if (tid === this.pid) {
        this.roles.set(tid, 'main');
        continue;
      }
      let role = this.kind === 'reference' ? st.comm : 'other';
      if (this.kind === 'ours') {
        try {
          const sc = fs.readFileSync(`/proc/${this.pid}/task/${tid}/syscall`, 'latin1').split(' ')[0];
          if (sc === '7' || sc === '232' || sc === '281') role = 'worker';
        } catch {
          /* not permitted: stays 'other' */
        }
      }
      this.roles.set(tid, role);
    }
    this.qemuPid ??= findQemu(this.socketPath);
  }

  begin(): void {
    this.classify();
    this.start = {
      t: performance.now(),
      threads: threadsOf(this.pid),
      qemu: this.qemuPid ? (readStat(`/proc/${this.qemuPid}/stat`)?.ticks ?? null) : null,
      host: hostCpuTicks(),
    };
    this.fds = undefined;
    clearTimeout(this.fdTimer);
    this.fdTimer = setTimeout(() => (this.fds = fixtureFds(this.pid)), 1000);
  }

  end(): JobCpu | null {
    const s = this.start;
    if (!s) return null;
    this.start = null;
    clearTimeout(this.fdTimer);
    const wallSec = (performance.now() - s.t) / 1000;
    const pct = (ticks: number) => (100 * ticks) / CLK_TCK / wallSec;
    const threads: ThreadCpu[] = [];
    for (const [tid, st] of threadsOf(this.pid)) {
      const before = s.threads.get(tid)?.ticks ?? 0;
      const role = this.roles.get(tid) ?? (this.kind === 'reference' ? st.comm : 'other');
      threads.push({ tid, role, pct: pct(st.ticks - before) });
    }
    threads.sort((a, b) => b.pct - a.pct);
    const sum = (f: (t: ThreadCpu) => boolean) => threads.filter(f).reduce((a, t) => a + t.pct, 0);
    const q = this.qemuPid ? readStat(`/proc/${this.qemuPid}/stat`) : null;
    const host = hostCpuTicks();
    const qemuPct = q && s.qemu !== null ? pct(q.ticks - s.qemu) : null;
    const daemonPct = sum(() => true);
    const hostPct = pct(host.busy - s.host.busy); // all CPUs, in % of one core
    return {
      otherLoadPct: Math.max(0, hostPct - daemonPct - (qemuPct ?? 0)),
      wallSec,
      daemonPct,
      mainPct: sum((t) => t.role === 'main'),
      workersPct: sum((t) => t.role === 'worker'),
      otherPct: sum((t) => t.role !== 'main' && t.role !== 'worker'),
      threads: threads.filter((t) => t.pct >= 0.5),
      qemuPct,
      hostBusyPct: (100 * (host.busy - s.host.busy)) / Math.max(1, host.total - s.host.total),
      fixtureFds: this.fds,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// fio JSON

export interface JobResult {
  name: string;
  metric: JobSpec['metric'];
  value: number | null;
  bwMBs?: number;
  iops?: number;
  p50us?: number;
  p99us?: number;
  p999us?: number;
  meanLatUs?: number;
  ok: boolean;
  error?: string;
  cpu?: JobCpu | null;
}

interface FioDir {
  bw_bytes: number;
  iops: number;
  clat_ns?: { mean?: number; percentile?: Record<string, number> };
  lat_ns?: { mean?: number };
}

export function parseFio(spec: JobSpec, text: string): JobResult {
  const start = text.indexOf('{');
  if (start < 0) return { name: spec.name, metric: spec.metric, value: null, ok: false, error: 'no JSON from fio' };
  const j = JSON.parse(text.slice(start)) as { jobs: Array<{ error?: number; read: FioDir; write: FioDir }> };
  const jobs = j.jobs ?? [];
  if (!jobs.length) return { name: spec.name, metric: spec.metric, value: null, ok: false, error: 'fio JSON without jobs' };
  // group_reporting merges the clones into jobs[0]; add up anyway in case it did not.
  const dirs = jobs.map((x) => x[spec.dir ?? 'read']);
  const bw = dirs.reduce((a, d) => a + (d.bw_bytes ?? 0), 0);
  const iops = dirs.reduce((a, d) => a + (d.iops ?? 0), 0);
  const d0 = dirs[0]!;
  const pct = d0.clat_ns?.percentile ?? {};
  const us = (k: string) => (pct[k] !== undefined ? pct[k]! / 1000 : undefined);
  const bwMBs = bw / 1e6;
  const err = jobs.find((x) => x.error)?.error;
  return {
    name: spec.name,
    metric: spec.metric,
    value: spec.metric === 'MB/s' ? bwMBs : iops,
    bwMBs,
    iops,
    p50us: us('50.000000'),
    p99us: us('99.000000'),
    p999us: us('99.900000'),
    meanLatUs: d0.lat_ns?.mean !== undefined ? d0.lat_ns.mean / 1000 : undefined,
    ok: !err,
    error: err ? `fio error ${err}` : undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// One guest boot against one daemon

export interface DaemonRun {
  kind: DaemonKind;
  results: JobResult[];
  guest: { rc: number | null; durationMs: number; bootMs: number | null; timedOut: boolean };
  profile?: string[];
  profileDir?: string;
}

const fmt = (x: number | null | undefined, digits = 0) =>
  x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);

function fmtValue(r: JobResult): string {
  if (r.value === null) return 'FAILED';
  return `${r.value.toFixed(r.metric === 'MB/s' ? 1 : 0)} ${r.metric}`;
}

function cpuLine(c: JobCpu | null | undefined, kind: DaemonKind): string {
  if (!c) return '';
  const d =
    kind === 'ours'
      ? `daemon ${fmt(c.daemonPct)}% (main ${fmt(c.mainPct)}%, workers ${fmt(c.workersPct)}%, other ${fmt(c.otherPct)}%)`
      : `daemon ${fmt(c.daemonPct)}% (${c.threads.slice(0, 3).map((t) => `${t.role}:${t.tid} ${fmt(t.pct)}%`).join(', ')})`;
  const fds = c.fixtureFds?.length
    ? `; host fds ${[...new Set(c.fixtureFds.map((f) => `${f.file}${f.direct ? ' O_DIRECT' : ''}`))].join(', ')}`
    : '';
  const other = c.otherLoadPct > CONTENDED_PCT ? `  CONTENDED: other host load ${fmt(c.otherLoadPct)}% of a core` : '';
  return `cpu: ${d}, qemu ${fmt(c.qemuPct)}%, host ${fmt(c.hostBusyPct)}% busy${fds}${other}`;
}

async function runOne(kind: DaemonKind, o: Options, jobs: JobSpec[], ff: FioFiles, cacheDir: string, root: string): Promise<DaemonRun> {
  const share = makeFixture(path.join(root, kind), o.sizeMiB);
  const sock = path.join(root, kind, 'vfs.sock');
  let profileDir: string | undefined;
  const dopts: { sharedDir: string; socketPath: string; extraArgs?: string[]; nodeArgs?: string[] } = {
    sharedDir: share,
    socketPath: sock,
    extraArgs: kind === 'ours' ? o.oursArgs : o.refArgs,
  };
  if (kind === 'ours' && o.profile) {
    profileDir = path.join(root, 'cpuprof');
    fs.mkdirSync(profileDir, { recursive: true });
    dopts.nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
  }
  const daemon = await startDaemon(kind, dopts);
  const sampler = new CpuSampler(kind, daemon.pid, sock);
  const results = new Map<string, JobResult>();
  const cpu = new Map<string, JobCpu | null>();
  let block: { name: string; lines: string[] } | null = null;
  const specOf = (n: string) => jobs.find((j) => j.name === n);
  const report = (r: JobResult) => {
    results.set(r.name, r);
    const lat = r.p50us !== undefined ? `  p50 ${fmt(r.p50us)} us  p99 ${fmt(r.p99us)} us` : '';
    console.log(`[${kind.padEnd(9)}] ${r.name.padEnd(16)} ${fmtValue(r).padStart(14)}${lat}${r.error ? `  (${r.error})` : ''}`);
    const c = cpuLine(r.cpu, kind);
    if (c) console.log(`${' '.repeat(12)}${c}`);
  };
  const onLine = (line: string) => {
    if (process.env.BENCH_VERBOSE) console.error(`  [${kind} guest] ${line}`);
    if (block) {
      if (line.includes(`@@END fio:${block.name}@@`)) {
        const spec = specOf(block.name);
        if (spec) {
          let r: JobResult;
          try {
            r = parseFio(spec, block.lines.join('\n'));
          } catch (e) {
            r = { name: spec.name, metric: spec.metric, value: null, ok: false, error: `bad fio JSON: ${(e as Error).message}` };
          }
          r.cpu = cpu.get(spec.name) ?? null;
          report(r);
        }
        block = null;
      } else block.lines.push(line);
      return;
    }
    const jobEnd = /@@JOB-END (\S+) rc=(\d+)@@/.exec(line);
    const fioBegin = /@@BEGIN fio:(\S+)@@/.exec(line);
    const m = /@@META (\S+) (\d+) ([\d.]+) ([\d.]+) rc=(\d+)@@/.exec(line);
    if (line.includes('@@BOOTED')) sampler.classify();
    else if (/@@JOB-START (\S+)@@/.test(line)) sampler.begin();
    else if (jobEnd) cpu.set(jobEnd[1]!, sampler.end());
    else if (fioBegin) block = { name: fioBegin[1]!, lines: [] };
    else if (m) {
      const spec = specOf(m[1]!);
      if (!spec) return;
      const n = Number(m[2]);
      const secs = Number(m[4]) - Number(m[3]);
      report({
        name: spec.name,
        metric: 'ops/s',
        value: secs > 0 ? n / secs : null,
        meanLatUs: secs > 0 ? (secs * 1e6) / n : undefined,
        ok: m[5] === '0',
        error: m[5] === '0' ? undefined : 'some operations failed',
        cpu: cpu.get(spec.name) ?? null,
      });
    }
  };
  const fioCount = jobs.filter((j) => j.kind === 'fio').length;
  const timeoutSec = 180 + fioCount * (o.runtimeSec + o.rampSec + 40) + (jobs.some((j) => j.kind === 'meta') ? 60 + o.metaFiles * 0.1 : 0);
  let g: GuestResult;
  try {
    g = await runGuest({
      socketPath: sock,
      tag: TAG,
      script: guestScript(o, jobs, ff.libDirs),
      timeoutSec: Math.ceil(timeoutSec),
      cacheDir,
      cpus: o.cpus,
      memMiB: o.memMiB,
      onLine,
    });
  } finally {
    await daemon.stop(15000);
    if (!process.env.BENCH_KEEP) fs.rmSync(share, { recursive: true, force: true });
  }
  if (g.rc !== 0 || g.timedOut) {
    console.error(`[${kind}] guest rc=${g.rc} timedOut=${g.timedOut} qemu=${g.qemuExitCode}; last console lines:`);
    console.error(g.output.split('\n').slice(-30).join('\n'));
    if (g.stderr.trim()) console.error(`qemu stderr: ${g.stderr.trim()}`);
    console.error(`daemon log tail:\n${daemon.logs().split('\n').slice(-20).join('\n')}`);
  }
  const run: DaemonRun = {
    kind,
    results: jobs.map(
      (j) => results.get(j.name) ?? { name: j.name, metric: j.metric, value: null, ok: false, error: 'no result from the guest' },
    ),
    guest: { rc: g.rc, durationMs: g.durationMs, bootMs: g.bootMs, timedOut: g.timedOut },
  };
  if (profileDir) {
    run.profileDir = profileDir;
    run.profile = [];
    for (const f of profileFiles(profileDir)) {
      try {
        run.profile.push(formatSummary(summarise(f, 20)));
      } catch (e) {
        run.profile.push(`${f}: ${(e as Error).message}`);
      }
    }
  }
  return run;
}

/** Other QEMU guests on this host (other test suites): they compete with ours for the 2 cores. */
function foreignQemus(): number {
  let n = 0;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'latin1');
      if (cmd.startsWith('qemu-system') || cmd.includes('/qemu-system')) n++;
    } catch {
      /* gone */
    }
  }
  return n;
}

/** Waits until the host is mostly idle (at most `maxSec`). */
async function waitQuiet(maxSec: number): Promise<void> {
  const deadline = Date.now() + maxSec * 1000;
  let said = false;
  for (;;) {
    const a = hostCpuTicks();
    await new Promise((r) => setTimeout(r, 1000));
    const b = hostCpuTicks();
    const busyPct = (100 * (b.busy - a.busy)) / CLK_TCK;
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

const contended = (r: JobResult) => (r.cpu?.otherLoadPct ?? 0) > CONTENDED_PCT;

/** Per job, the best figure over the rounds, preferring uncontended ones. */
export function bestOf(rounds: DaemonRun[]): DaemonRun {
  const first = rounds[0]!;
  const results = first.results.map((r0) => {
    const all = rounds.map((r) => r.results.find((x) => x.name === r0.name)!).filter((x) => x && x.value !== null);
    const clean = all.filter((x) => !contended(x));
    const pool = clean.length ? clean : all;
    return pool.sort((a, b) => b.value! - a.value!)[0] ?? r0;
  });
  return { ...first, results, profile: rounds.flatMap((r) => r.profile ?? []) };
}

// ---------------------------------------------------------------------------------------------
// Report

export function table(runs: DaemonRun[], jobs: JobSpec[]): string {
  const ref = runs.find((r) => r.kind === 'reference');
  const ours = runs.find((r) => r.kind === 'ours');
  const rows: string[][] = [['job', 'metric', 'reference', 'ours', 'ratio', 'ref p50/p99 us', 'ours p50/p99 us', 'ours cpu main/workers %']];
  for (const j of jobs) {
    const a = ref?.results.find((r) => r.name === j.name);
    const b = ours?.results.find((r) => r.name === j.name);
    const v = (r?: JobResult) =>
      r?.value == null ? '-' : r.value.toFixed(j.metric === 'MB/s' ? 1 : 0) + (contended(r) ? '*' : '');
    const ratio = a?.value && b?.value != null ? (b.value / a.value).toFixed(2) : '-';
    const lat = (r?: JobResult) =>
      r?.p50us !== undefined ? `${fmt(r.p50us)}/${fmt(r.p99us)}` : r?.meanLatUs !== undefined ? `mean ${fmt(r.meanLatUs)}` : '-';
    const c = b?.cpu ? `${fmt(b.cpu.mainPct)}/${fmt(b.cpu.workersPct)}` : '-';
    rows.push([j.name, j.metric, v(a), v(b), ratio, lat(a), lat(b), c]);
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i < 2 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ')).join('\n');
}

export async function main(args: string[]): Promise<number> {
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
  const initrd = prepareInitramfs(cacheDir, ff);
  console.log(
    `guest-fio: ${jobs.length} jobs (runtime ${o.runtimeSec}s + ramp ${o.rampSec}s, size ${o.sizeMiB} MiB, ${o.ioengine}, direct=1), ` +
      `${o.cpus}-vCPU TCG guest, initramfs ${(fs.statSync(initrd).size / MiB).toFixed(0)} MiB (${((Date.now() - t0) / 1000).toFixed(1)} s), ` +
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

  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const outDir = path.join(repoRoot(), 'bench', 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, `${stamp}.json`);
  const kernel = findKernel();
  fs.writeFileSync(
    out,
    `${JSON.stringify(
      {
        benchmark: 'guest-fio',
        date: new Date().toISOString(),
        host: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, kernel: os.release() },
        guestKernel: kernel?.kver,
        options: o,
        fio: spawnSync('fio', ['--version'], { encoding: 'utf8' }).stdout.trim(),
        runs,
        rounds: all,
        ratios: Object.fromEntries(
          jobs.map((j) => {
            const a = runs.find((r) => r.kind === 'reference')?.results.find((x) => x.name === j.name)?.value;
            const b = runs.find((r) => r.kind === 'ours')?.results.find((x) => x.name === j.name)?.value;
            return [j.name, a && b != null ? b / a : null];
          }),
        ),
      },
      null,
      2,
    )}\n`,
  );
  console.log(`\nresults: ${path.relative(process.cwd(), out)}`);
  return all.every((r) => r.guest.rc === 0) ? 0 : 1;
}
