/** guest-fio's output: the live line per job, the best-of-rounds table and the results file. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type DaemonKind, findKernel, repoRoot } from '../../harness/index.js';
import type { JobCpu, JobResult } from './fio-json.js';
import { CONTENDED_PCT, contended } from './host-load.js';
import type { JobSpec } from './jobs.js';
import type { Options } from './options.js';

export interface DaemonRun {
  kind: DaemonKind;
  results: JobResult[];
  guest: { rc: number | null; durationMs: number; bootMs: number | null; timedOut: boolean };
  profile?: string[];
  profileDir?: string;
}

export const fmt = (x: number | null | undefined, digits = 0): string =>
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

/** The live output for one finished job: its figure and latency, then where the CPU went. */
export function printJob(kind: DaemonKind, r: JobResult): void {
  const lat = r.p50us !== undefined ? `  p50 ${fmt(r.p50us)} us  p99 ${fmt(r.p99us)} us` : '';
  console.log(`[${kind.padEnd(9)}] ${r.name.padEnd(16)} ${fmtValue(r).padStart(14)}${lat}${r.error ? `  (${r.error})` : ''}`);
  const c = cpuLine(r.cpu, kind);
  if (c) console.log(`${' '.repeat(12)}${c}`);
}

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

/** Writes bench/results/<timestamp>.json (every round, the per-thread CPU, the options); returns its path. */
export function writeResults(o: Options, jobs: JobSpec[], runs: DaemonRun[], all: DaemonRun[]): string {
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
  return out;
}
