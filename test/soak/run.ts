/**
 * `npm run soak -- --minutes N`: our daemon on a temporary share, driven by the load tester
 * (`virtiofsd-ts loadtest --socket-path=...`, one process per slice, workloads in turn) for N minutes,
 * sampled at the start, every --sample-every seconds and at the end: VmRSS and /proc/PID/fd of the
 * daemon, and its inode and handle counts from the status line it logs on SIGUSR1. Fails (exit 1) if
 * RSS grows past the bound after the warm-up, if fds/inodes/handles do not return to the start values
 * once the load stops, or if a slice fails; bad options exit 2. docs/testing.md "Soak".
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageRoot } from '../../src/package-root.js';
import { DEFAULT_BOUNDS, type Sample, describeBounds, formatTable, judge, parseStatus } from './check.js';

const USAGE = `usage: npm run soak -- [options]

Starts virtiofsd-ts on a temporary share, runs the load tester against it in slices for the given
time and samples the daemon (RSS, open fds, inode and handle counts via SIGUSR1).

  --minutes=N         how long to run the load (default 10; fractions allowed)
  --slice=SECONDS     length of one load tester run (default 20); each is a new connection
  --workloads=LIST    run in turn, one per slice (default mixed,create-unlink,open-close,readdir)
  --sample-every=S    seconds between samples (default 60)
  --warmup=SECONDS    warm-up before the RSS baseline (default 60)
  --file-size=SIZE    the load tester's file size (default 16M)
  -h, --help          this text

Passes (exit 0) only if ${describeBounds(DEFAULT_BOUNDS)}.
A failed slice or a dead daemon fails the run too (exit 1). Exit 2: bad options.
`;

interface Options {
  minutes: number;
  sliceS: number;
  workloads: string[];
  sampleS: number;
  warmupS: number;
  fileSize: string;
}

class Usage extends Error {}

export function parseOptions(argv: string[]): Options | 'help' {
  const o: Options = { minutes: 10, sliceS: 20, workloads: ['mixed', 'create-unlink', 'open-close', 'readdir'], sampleS: 60, warmupS: 60, fileSize: '16M' };
  const num = (name: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (v === undefined || v === '' || !Number.isFinite(n) || n < min) throw new Usage(`--${name} needs a number >= ${min}, not '${v ?? ''}'`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') return 'help';
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Usage(`unexpected argument '${a}'`);
    const name = m[1]!;
    const v = m[2] ?? argv[++i];
    switch (name) {
      case 'minutes': o.minutes = num(name, v, 0.05); break;
      case 'slice': o.sliceS = num(name, v, 1); break;
      case 'sample-every': o.sampleS = num(name, v, 1); break;
      case 'warmup': o.warmupS = num(name, v, 0); break;
      case 'workloads':
        if (!v || !/^[a-z-]+(,[a-z-]+)*$/.test(v)) throw new Usage(`--workloads needs a comma-separated list, not '${v ?? ''}'`);
        o.workloads = v.split(',');
        break;
      case 'file-size':
        if (!v || !/^\d+[kKmM]?$/.test(v)) throw new Usage(`--file-size needs a size like 16M, not '${v ?? ''}'`);
        o.fileSize = v;
        break;
      default:
        throw new Usage(`unknown option --${name}`);
    }
  }
  return o;
}

/** The daemon under soak: its process, its log (kept whole: a status line a minute is little). */
class Daemon {
  log = '';
  exit: string | undefined;
  readonly child: ChildProcess;
  constructor(bin: string, readonly socket: string, share: string) {
    this.child = spawn(process.execPath, [bin, `--socket-path=${socket}`, `--shared-dir=${share}`, '--log-level=info'], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child.stderr!.on('data', (c: Buffer) => {
      this.log += c.toString();
      // Only status lines and the last lines matter; the connect/reset lines of every slice are dropped.
      if (this.log.length > 1 << 20) this.log = this.log.slice(-(1 << 18));
    });
    this.child.on('exit', (code, sig) => {
      this.exit = sig ? `killed by ${sig}` : `exited with code ${code}`;
    });
  }
  get pid(): number {
    return this.child.pid!;
  }
  tail(): string {
    return this.log.trimEnd().split('\n').slice(-10).join('\n');
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function sample(d: Daemon, t0: number, phase: Sample['phase']): Promise<Sample> {
  const before = d.log.length;
  process.kill(d.pid, 'SIGUSR1');
  const deadline = Date.now() + 10_000;
  let asked = Date.now();
  let st = parseStatus(d.log.slice(before));
  while (!st) {
    if (d.exit) throw new Error(`the daemon ${d.exit}:\n${d.tail()}`);
    if (Date.now() > deadline) throw new Error('the daemon did not log its status within 10 s of SIGUSR1');
    await sleep(20);
    st = parseStatus(d.log.slice(before));
    // A signal that came before the daemon listened for it is gone: ask again now and then.
    if (!st && Date.now() - asked > 2000) {
      process.kill(d.pid, 'SIGUSR1');
      asked = Date.now();
    }
  }
  // RSS and fds read from outside too: the status line's own figures are the daemon's view.
  const status = fs.readFileSync(`/proc/${d.pid}/status`, 'utf8');
  const rssKib = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? -1);
  const fds = fs.readdirSync(`/proc/${d.pid}/fd`).length;
  return { t: Math.round((Date.now() - t0) / 100) / 10, phase, rssKib, fds, inodes: st.inodes, handles: st.handles, sessions: st.sessions };
}

interface Slice {
  ok: boolean;
  ops: number;
  errors: number;
  why?: string;
}

function runSlice(bin: string, d: Daemon, share: string, workload: string, seconds: number, fileSize: string): Promise<Slice> {
  const args = [bin, 'loadtest', `--socket-path=${d.socket}`, `--backend-pid=${d.pid}`, `--share=${share}`, `--workloads=${workload}`,
    `--duration=${seconds}`, `--file-size=${fileSize}`, '--quiet', '--json=-'];
  return new Promise((resolve) => {
    const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    c.stderr.on('data', (b: Buffer) => { err = (err + b.toString()).slice(-4000); });
    c.on('exit', (code) => {
      let ops = 0;
      let errors = 0;
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const r = JSON.parse(line) as { kind: string; ops?: number; errors?: number };
          if (r.kind === 'result') { ops += r.ops ?? 0; errors += r.errors ?? 0; }
        } catch {
          // not a JSON line after all (a table cell): the exit status still says how the slice went
        }
      }
      const why = code === 0 ? undefined : `loadtest ${workload} exited with ${code}: ${(out.split('no result for:')[1] ?? err).trim().slice(-800)}`;
      resolve({ ok: code === 0 && errors === 0, ops, errors, ...(why ? { why } : errors ? { why: `${errors} operations failed` } : {}) });
    });
  });
}

const mmss = (s: number): string => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`;
const liveFigures = (s: Sample): string => `rss ${(s.rssKib / 1024).toFixed(1)} MiB, fds ${s.fds}, inodes ${s.inodes}, handles ${s.handles}`;

export async function main(argv: string[]): Promise<number> {
  let o: Options;
  try {
    const p = parseOptions(argv);
    if (p === 'help') {
      process.stdout.write(USAGE);
      return 0;
    }
    o = p;
  } catch (e) {
    if (!(e instanceof Usage)) throw e;
    process.stderr.write(`soak: ${e.message}\nTry 'npm run soak -- --help'.\n`);
    return 2;
  }
  const bin = path.join(packageRoot(), 'bin', 'virtiofsd-ts.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-soak-'));
  const share = path.join(dir, 'share');
  fs.mkdirSync(share);
  const d = new Daemon(bin, path.join(dir, 'daemon.sock'), share);
  const samples: Sample[] = [];
  const problems: string[] = [];
  const totalS = o.minutes * 60;
  const t0 = Date.now();
  const elapsed = (): number => (Date.now() - t0) / 1000;
  let ops = 0;
  let slices = 0;
  let interrupted = false;
  const onSignal = (): void => { interrupted = true; };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    for (const deadline = Date.now() + 15_000; !fs.existsSync(d.socket); await sleep(20)) {
      if (d.exit || Date.now() > deadline) throw new Error(`the daemon ${d.exit ?? 'did not listen within 15 s'}:\n${d.tail()}`);
    }
    process.stderr.write(`soak: ${o.minutes} min of ${o.workloads.join(', ')} in ${o.sliceS} s slices against pid ${d.pid}; ${describeBounds({ ...DEFAULT_BOUNDS, warmupS: o.warmupS })}\n`);
    samples.push(await sample(d, t0, 'start'));
    process.stderr.write(`[${mmss(0)}] start: ${liveFigures(samples[0]!)}\n`);
    let nextSample = o.sampleS;
    // Samples are taken between slices' requests, while a slice runs: a timer, not the slice loop.
    let sampling: Promise<void> = Promise.resolve();
    const timer = setInterval(() => {
      if (elapsed() < nextSample) return;
      nextSample += o.sampleS;
      sampling = sampling.then(async () => {
        const s = await sample(d, t0, 'load');
        samples.push(s);
        process.stderr.write(`[${mmss(s.t)}] sample: ${liveFigures(s)}, sessions ${s.sessions}; ${slices} slices, ${ops} ops so far\n`);
      }).catch((e: Error) => { problems.push(e.message); });
    }, 250);
    try {
      while (!interrupted && problems.length === 0) {
        const left = totalS - elapsed();
        if (left < 1) break;
        const w = o.workloads[slices % o.workloads.length]!;
        const r = await runSlice(bin, d, share, w, Math.max(1, Math.min(o.sliceS, Math.floor(left))), o.fileSize);
        slices++;
        ops += r.ops;
        process.stderr.write(`[${mmss(elapsed())}/${mmss(totalS)}] slice ${slices} ${w}: ${r.ops} ops, ${r.errors} errors; ${ops} ops in all\n`);
        if (!r.ok) problems.push(`slice ${slices} (${w}): ${r.why}`);
        if (d.exit) problems.push(`the daemon ${d.exit}:\n${d.tail()}`);
      }
    } finally {
      clearInterval(timer);
      await sampling;
    }
    if (interrupted) problems.push('interrupted');
    // The tester has forgotten and released what it held and disconnected; the daemon resets the
    // session after the disconnect. Wait (bounded) for the counts to settle, then take the end sample.
    const start = samples[0]!;
    let end = await sample(d, t0, 'end');
    for (const deadline = Date.now() + 15_000; Date.now() < deadline; end = await sample(d, t0, 'end')) {
      if (end.sessions === 0 && end.fds === start.fds && end.inodes === start.inodes && end.handles === start.handles) break;
      await sleep(500);
    }
    samples.push(end);
  } catch (e) {
    problems.push((e as Error).message);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (!d.exit) {
      d.child.kill('SIGTERM');
      for (const deadline = Date.now() + 10_000; !d.exit && Date.now() < deadline; await sleep(50));
      if (!d.exit) d.child.kill('SIGKILL');
      else if (d.exit !== 'exited with code 0') problems.push(`the daemon ${d.exit} on SIGTERM:\n${d.tail()}`);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const v = judge(samples, { ...DEFAULT_BOUNDS, warmupS: o.warmupS });
  const bad = [...problems, ...v.failures];
  process.stdout.write(`\nsoak: ${mmss(elapsed())}, ${slices} slices, ${ops} operations, ${samples.length} samples\n`);
  process.stdout.write(`${formatTable(v.rows)}\n`);
  process.stdout.write(`bounds: ${describeBounds({ ...DEFAULT_BOUNDS, warmupS: o.warmupS })}\n`);
  process.stdout.write(bad.length === 0 ? 'soak: PASS\n' : `soak: FAIL\n${bad.map((b) => `  ${b}`).join('\n')}\n`);
  return bad.length === 0 ? 0 : 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  process.exitCode = await main(process.argv.slice(2));
}
