/** host-fuse's output: one line per run as it finishes, then the table with ratios against ours. */
import type { Options, Subject, Workload } from './options.js';
import type { Result } from './run-one.js';

export function printRun(r: Result): void {
  console.log(
    `  ${r.kind.padEnd(9)} ${r.workload.padEnd(11)} depth ${r.depth}: ${r.opsPerSec.toFixed(0).padStart(7)} ops/s, daemon CPU ${r.cpuUsPerOp.toFixed(1)} µs/op, p50/p99 ${r.p50Us.toFixed(0)}/${r.p99Us.toFixed(0)} µs`,
  );
}

const SHORT: Record<Subject, string> = { reference: 'ref', baseline: 'base', ours: 'ours' };

export function printTable(o: Options, results: Result[]): void {
  const get = (k: Subject, w: Workload, d: number) => results.find((r) => r.kind === k && r.workload === w && r.depth === d);
  const others = o.kinds.filter((k): k is Exclude<Subject, 'ours'> => k !== 'ours');
  const header = ['workload', 'depth'];
  for (const k of o.kinds) header.push(`${SHORT[k]} ops/s`, `${SHORT[k]} cpu µs/op`, `${SHORT[k]} p50/p99 µs`);
  if (o.kinds.includes('ours')) for (const k of others) header.push(`ours/${SHORT[k]} ops/s`, `${SHORT[k]}/ours cpu`);
  const rows = [header];
  const lat = (r: Result | undefined): string => (r ? `${r.p50Us.toFixed(0)}/${r.p99Us.toFixed(0)}` : '-');
  for (const w of o.workloads) {
    for (const depth of o.depths) {
      const row = [w, String(depth)];
      for (const k of o.kinds) {
        const r = get(k, w, depth);
        row.push(r ? r.opsPerSec.toFixed(0) : '-', r ? r.cpuUsPerOp.toFixed(1) : '-', lat(r));
      }
      const ours = get('ours', w, depth);
      if (ours) {
        for (const k of others) {
          const r = get(k, w, depth);
          row.push(r ? (ours.opsPerSec / r.opsPerSec).toFixed(2) : '-', r ? (r.cpuUsPerOp / ours.cpuUsPerOp).toFixed(2) : '-');
        }
      }
      rows.push(row);
    }
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  console.log('');
  for (const r of rows) console.log(r.map((v, c) => v.padStart(widths[c]!)).join('  '));
  console.log('ours/X ops/s and X/ours CPU per op: higher is better for ours in both.');
}
