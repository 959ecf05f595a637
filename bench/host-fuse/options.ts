/** host-fuse's command line: its options, their defaults and the usage text. */
import fs from 'node:fs';
import path from 'node:path';
import { positiveInt, splitOption } from '../cli.js';
import { UsageError } from '../../src/errors.js';

export const WORKLOADS = ['getattr', 'lookup-miss', 'create', 'read-4k', 'write-4k', 'read-1m'] as const;
export type Workload = (typeof WORKLOADS)[number];

/** Who a run measures: the reference daemon, this checkout's, or a baseline checkout's (--baseline). */
export type Subject = 'reference' | 'ours' | 'baseline';

export const USAGE = `usage: npm run bench -- host-fuse [options]      (see bench/README.md)

Sends FUSE requests straight to each daemon from our own vhost-user frontend (no guest) and reports
ops/s, latency and the daemon's CPU per operation, ours against the reference.

  --ops=N                      operations per run after 500 warm-up ones (default 20000)
  --depth=1,4                  requests in flight, one run per value (1..32; default 1,4)
  --workloads=a,b              ${WORKLOADS.join(', ')} (default all)
  --only=ours|reference        run one daemon only
  --ours-args="..."            extra arguments for our daemon (e.g. "--thread-pool-size=2")
  --baseline=DIR               also run the daemon of another built checkout of this project (same
                               arguments as ours): the table adds its figures and baseline/ours ratios
  --help                       this text`;

export interface Options {
  ops: number;
  depths: number[];
  workloads: Workload[];
  kinds: Subject[];
  oursArgs: string[];
  /** bin/virtiofsd-ts.js of the baseline checkout, when --baseline is given. */
  baselineBin?: string;
}

/** Parses the options (throws UsageError on a bad one). */
export function parseOptions(argv: string[]): Options {
  const o: Options = { ops: 20000, depths: [1, 4], workloads: [...WORKLOADS], kinds: ['reference', 'ours'], oursArgs: [] };
  for (const a of argv) {
    const [k, v] = splitOption(a);
    if (k === '--ops') o.ops = positiveInt('ops', v);
    else if (k === '--depth') o.depths = v.split(',').map(Number);
    else if (k === '--workloads') o.workloads = v.split(',') as Workload[];
    else if (k === '--only') o.kinds = [v as Subject];
    else if (k === '--baseline') o.baselineBin = path.resolve(v, 'bin', 'virtiofsd-ts.js');
    else if (k === '--ours-args') o.oursArgs = v.split(/\s+/).filter(Boolean);
    else throw new UsageError(`unknown option ${a}`);
  }
  if (o.depths.some((d) => !Number.isInteger(d) || d < 1 || d > 32)) throw new UsageError('--depth takes 1..32');
  for (const w of o.workloads) if (!WORKLOADS.includes(w)) throw new UsageError(`unknown workload ${w} (${WORKLOADS.join(', ')})`);
  for (const k of o.kinds) if (k !== 'ours' && k !== 'reference') throw new UsageError(`--only=ours|reference, not ${k}`);
  if (o.baselineBin !== undefined) {
    if (!fs.existsSync(o.baselineBin)) throw new UsageError(`--baseline: ${o.baselineBin} is missing (a built checkout of this project?)`);
    o.kinds = ['baseline', ...o.kinds];
  }
  return o;
}
