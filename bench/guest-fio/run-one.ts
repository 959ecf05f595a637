/**
 * One guest boot against one daemon: a fresh fixture, the daemon (ours optionally under
 * --cpu-prof), the guest running every job, and the console parsed as it arrives so each job's
 * CPU sample brackets exactly that job.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CpuSampler, type DaemonKind, type GuestResult, runGuest, type StartDaemonOptions, startDaemon } from '../../harness/index.js';
import { formatSummary, profileFiles, summarise } from '../cpuprofile.js';
import type { FioFiles } from './fio-initramfs.js';
import { type JobCpu, type JobResult, parseFio } from './fio-json.js';
import { type FixtureFd, fixtureFds, makeFixture } from './fixture.js';
import { guestScript, type JobSpec, TAG } from './jobs.js';
import type { Options } from './options.js';
import { type DaemonRun, printJob } from './report.js';

/**
 * The CPU sampler per job, plus the daemon's fds on the fixture files one second into each job (the
 * files are open by then): the report says whether the host side is O_DIRECT.
 */
class JobSampler {
  private readonly cpu: CpuSampler;
  private fds: FixtureFd[] | undefined;
  private fdTimer: NodeJS.Timeout | undefined;

  constructor(kind: DaemonKind, private readonly pid: number, socketPath: string) {
    this.cpu = new CpuSampler(kind, pid, socketPath);
  }

  classify(): void {
    this.cpu.classify();
  }

  begin(): void {
    this.cpu.begin();
    this.fds = undefined;
    clearTimeout(this.fdTimer);
    this.fdTimer = setTimeout(() => (this.fds = fixtureFds(this.pid)), 1000);
  }

  end(): JobCpu | null {
    clearTimeout(this.fdTimer);
    const s = this.cpu.end();
    return s ? { ...s, fixtureFds: this.fds } : null;
  }
}

export async function runOne(kind: DaemonKind, o: Options, jobs: JobSpec[], ff: FioFiles, cacheDir: string, root: string): Promise<DaemonRun> {
  const share = makeFixture(path.join(root, kind), o.sizeMiB);
  const sock = path.join(root, kind, 'vfs.sock');
  let profileDir: string | undefined;
  const dopts: StartDaemonOptions = {
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
  const sampler = new JobSampler(kind, daemon.pid, sock);
  const results = new Map<string, JobResult>();
  const cpu = new Map<string, JobCpu | null>();
  let block: { name: string; lines: string[] } | null = null;
  const specOf = (n: string) => jobs.find((j) => j.name === n);
  const report = (r: JobResult) => {
    results.set(r.name, r);
    printJob(kind, r);
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
  // QEMU 7.2's virtiofsd exits when the device has more than one request queue: it serves one.
  const queues = kind === 'reference' ? 1 : o.queues;
  const fioCount = jobs.filter((j) => j.kind === 'fio').length;
  const timeoutSec = 180 + fioCount * (o.runtimeSec + o.rampSec + 40) + (jobs.some((j) => j.kind === 'meta') ? 60 + o.metaFiles * 0.1 : 0);
  // A daemon that exits while its guest runs leaves the guest waiting on requests nobody serves:
  // end the boot then instead of at its timeout.
  const gone = new AbortController();
  void daemon.exited.then((st) => gone.abort(`the ${kind} daemon exited (code ${st.code}, signal ${st.signal})`));
  let g: GuestResult;
  try {
    g = await runGuest({
      signal: gone.signal,
      socketPath: sock,
      tag: TAG,
      script: guestScript(o, jobs, ff.libDirs),
      timeoutSec: Math.ceil(timeoutSec),
      cacheDir,
      cpus: o.cpus,
      memMiB: o.memMiB,
      ...(o.kernel === null ? {} : { kernel: o.kernel }),
      ...(queues > 1 ? { deviceProps: [`num-request-queues=${queues}`] } : {}),
      onLine,
    });
  } finally {
    await daemon.stop(15000);
    if (!process.env.BENCH_KEEP) fs.rmSync(share, { recursive: true, force: true });
  }
  if (g.rc !== 0 || g.timedOut) {
    console.error(`[${kind}] guest rc=${g.rc} timedOut=${g.timedOut} qemu=${g.qemuExitCode}${g.aborted ? ` (${g.aborted})` : ''}; last console lines:`);
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
