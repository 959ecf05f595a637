/** Reading fio's `--output-format=json` into one job's figures. */
import type { CpuSample } from '../../harness/index.js';
import type { FixtureFd } from './fixture.js';
import type { JobSpec } from './jobs.js';

/** The CPU a job used (harness/proc-cpu.ts), with the daemon's fds on the fixture one second in. */
export interface JobCpu extends CpuSample {
  fixtureFds?: FixtureFd[];
}

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

/** One job's result from fio's JSON (text before the first '{' is fio's noise and skipped). */
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
