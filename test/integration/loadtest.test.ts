/**
 * `virtiofsd-ts loadtest` end to end, as a user runs it: every workload for about a second against our
 * daemon and against the reference C daemon (each one started fresh per workload by the tester), the
 * JSON it writes, --compare, and the runs that must end without a result: a backend killed mid-run and
 * one that stops answering (SIGSTOP) end within seconds with a message, never a hang.
 * (A backend returning corrupted data: test/integration/loadtest-corrupt.test.ts.)
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { REFERENCE_DAEMON, repoRoot } from '../../harness/locations.js';
import { servingChild } from '../../harness/daemon.js';
import { WORKLOADS } from '../../src/loadtest/plan.js';
import type { CompareRow, WorkloadResult } from '../../src/loadtest/report-types.js';

const BIN = path.join(repoRoot(), 'bin', 'virtiofsd-ts.js');
const OURS = `${process.execPath} ${BIN} --socket-path={socket} --shared-dir={share}`;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

interface Running {
  done: Promise<Ran>;
  /** resolves once stderr matches (the live line: the run is in its measured part) */
  waitFor(re: RegExp, ms: number): Promise<boolean>;
}

function start(args: string[], timeoutMs = 240_000): Running {
  const t0 = Date.now();
  const child = spawn(process.execPath, [BIN, 'loadtest', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<Ran>((resolve) => {
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - t0 });
    });
  });
  return {
    done,
    waitFor: async (re, ms) => {
      const end = Date.now() + ms;
      while (!re.test(stderr) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      return re.test(stderr);
    },
  };
}

function loadtest(args: string[]): Promise<Ran> {
  return start(args).done;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-loadtest-test-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

const FIELDS = [
  'workload', 'backend', 'depth', 'queues', 'bs', 'ops', 'seconds', 'ops_per_s', 'mib_per_s', 'p50_us', 'p90_us', 'p99_us',
  'p999_us', 'max_us', 'errors', 'backend_cpu_us_per_op', 'client_cpu_us_per_op',
] as const;

function readJson(file: string): Array<WorkloadResult | CompareRow> {
  return fs
    .readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as WorkloadResult | CompareRow);
}

function checkAll(tt: Test, backend: string, results: WorkloadResult[]): void {
  tt.same(results.map((r) => r.workload), [...WORKLOADS], 'one result per workload, in order');
  for (const r of results) {
    for (const f of FIELDS) tt.ok(f in r, `${r.workload}: field ${f}`);
    tt.equal(r.backend, backend, `${r.workload}: backend label`);
    tt.ok(r.ops > 0, `${r.workload}: ops ${r.ops} > 0`);
    tt.equal(r.errors, 0, `${r.workload}: no errors`);
    tt.ok(r.seconds >= 0.9 && r.seconds < 3, `${r.workload}: measured ${r.seconds} s`);
    tt.ok(r.p50_us > 0 && r.p50_us <= r.p90_us && r.p90_us <= r.p99_us && r.p99_us <= r.p999_us && r.p999_us <= r.max_us, `${r.workload}: percentiles ordered`);
    tt.ok(r.backend_cpu_us_per_op !== null && r.backend_cpu_us_per_op > 0, `${r.workload}: backend CPU measured (${r.backend_cpu_us_per_op} µs/op)`);
    tt.ok(r.client_cpu_us_per_op > 0, `${r.workload}: client CPU measured`);
    tt.equal(r.latency_histogram.reduce((a, [, n]) => a + n, 0), r.ops, `${r.workload}: histogram holds every op`);
    if (/^read-/.test(r.workload)) tt.equal(r.verified_bytes, r.ops * r.bs, `${r.workload}: every byte read was verified`);
    if (/^(read|write)-/.test(r.workload)) tt.ok(r.mib_per_s > 0, `${r.workload}: MiB/s`);
  }
}

t.test('every workload runs against our daemon: results, verified data, the JSON fields', async (tt) => {
  const json = path.join(tmp, 'ours.json');
  const r = await loadtest(['--backend', OURS, '--duration=1', '--warmup=0.2', '--depth=8', '--bs=16k', '--entries=200', '--file-size=8M', `--json=${json}`]);
  tt.equal(r.code, 0, `exit 0\n${r.stderr}`);
  tt.match(r.stdout, /workload\s+backend\s+ops\/s\s+MiB\/s\s+p50 µs/, 'the table');
  checkAll(tt, OURS, readJson(json) as WorkloadResult[]);
});

t.test('every workload runs against the reference daemon', { skip: fs.existsSync(REFERENCE_DAEMON) ? false : `no ${REFERENCE_DAEMON}` }, async (tt) => {
  const json = path.join(tmp, 'ref.json');
  const r = await loadtest(['--backend=reference', '--duration=1', '--warmup=0.2', '--depth=8', '--bs=16k', '--entries=200', '--file-size=8M', `--json=${json}`]);
  tt.equal(r.code, 0, `exit 0\n${r.stderr}`);
  checkAll(tt, 'reference', readJson(json) as WorkloadResult[]);
});

t.test('without indirect descriptors and EVENT_IDX (direct chains, flag-based notifications), with --ops', async (tt) => {
  const json = path.join(tmp, 'direct.json');
  const r = await loadtest(['--backend', OURS, '--no-indirect', '--no-event-idx', '--workloads=read-rand,write-seq,create-unlink,readdir', '--ops=400',
    '--depth=4', '--queues=2', '--threads=2', '--bs=64k', '--entries=50', '--file-size=4M', '--quiet', `--json=${json}`]);
  tt.equal(r.code, 0, r.stderr);
  const results = readJson(json) as WorkloadResult[];
  tt.equal(results.length, 4);
  for (const x of results) {
    tt.equal(x.ops, 400, `${x.workload}: exactly --ops operations`);
    tt.equal(x.errors, 0, `${x.workload}: no errors`);
    tt.equal(x.queues, 2);
    tt.equal(x.threads, 2);
  }
  tt.equal(results[0]!.verified_bytes, 400 * 65536, 'every READ verified');
});

t.test('--compare: both backends, alternating, a ratio with its spread', { skip: fs.existsSync(REFERENCE_DAEMON) ? false : `no ${REFERENCE_DAEMON}` }, async (tt) => {
  const json = path.join(tmp, 'cmp.json');
  const r = await loadtest(['--compare', 'reference', 'ours', '--rounds=2', '--workloads=getattr', '--duration=0.5', '--quiet', `--json=${json}`]);
  tt.equal(r.code, 0, r.stderr);
  const lines = readJson(json);
  const results = lines.filter((l): l is WorkloadResult => l.kind === 'result');
  tt.same(results.map((x) => [x.backend, x.round]), [['reference', 1], ['ours', 1], ['ours', 2], ['reference', 2]], 'the order alternates per round');
  const rows = lines.filter((l): l is CompareRow => l.kind === 'compare');
  tt.equal(rows.length, 1);
  const row = rows[0]!;
  const ratios = [1, 2].map((n) => results.find((x) => x.backend === 'ours' && x.round === n)!.ops_per_s / results.find((x) => x.backend === 'reference' && x.round === n)!.ops_per_s);
  tt.ok(Math.abs(row.ratio_min - Math.min(...ratios)) < 0.01 && Math.abs(row.ratio_max - Math.max(...ratios)) < 0.01, 'spread = the per-round ratios');
  tt.match(r.stdout, /B\/A\s+spread/, 'the compare table');
});

t.test('a backend killed mid-run ends the run with an error within seconds', async (tt) => {
  const pidFile = path.join(tmp, 'killed.pid');
  // The backend writes its pid where the test finds it, then becomes our daemon.
  const backend = `sh -c 'echo $$ > ${pidFile}; exec ${process.execPath} ${BIN} --socket-path={socket} --shared-dir={share}'`;
  const run = start(['--backend', backend, '--workloads=read-rand', '--duration=60', '--file-size=8M']);
  tt.ok(await run.waitFor(/ops\/s/, 60_000), 'the run got to its measured part');
  const killedAt = Date.now();
  process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGKILL');
  const r = await run.done;
  tt.equal(r.code, 1, `exit status 1\n${r.stdout}\n${r.stderr}`);
  tt.ok(Date.now() - killedAt < 5000, `ended ${Date.now() - killedAt} ms after the kill`);
  tt.match(r.stdout + r.stderr, /read-rand on .*NO RESULT: the backend (was killed by SIGKILL|closed the vhost-user connection)/, 'says what happened');
  tt.notMatch(r.stdout, /read-rand\s+sh -c.*\d+\s*$/m, 'no result row for it');
});

t.test('a backend that stops answering ends the run after --timeout, not a hang', async (tt) => {
  const pidFile = path.join(tmp, 'stopped.pid');
  const backend = `sh -c 'echo $$ > ${pidFile}; exec ${process.execPath} ${BIN} --socket-path={socket} --shared-dir={share}'`;
  const run = start(['--backend', backend, '--workloads=getattr', '--duration=60', '--timeout=2']);
  tt.ok(await run.waitFor(/ops\/s/, 60_000), 'the run got to its measured part');
  // the process that answers: under the namespace sandbox, the launcher's child
  const launched = Number(fs.readFileSync(pidFile, 'utf8'));
  const pid = servingChild(launched) ?? launched;
  const stoppedAt = Date.now();
  process.kill(pid, 'SIGSTOP');
  const r = await run.done;
  try {
    process.kill(pid, 'SIGCONT'); // the tester has usually SIGKILLed it by now
  } catch {
    /* gone */
  }
  tt.equal(r.code, 1, `exit status 1\n${r.stdout}\n${r.stderr}`);
  tt.ok(Date.now() - stoppedAt < 12_000, `ended ${Date.now() - stoppedAt} ms after SIGSTOP`);
  tt.match(r.stdout + r.stderr, /getattr on .*NO RESULT: no reply from the backend for 2\.0 s/, 'says what happened');
});
