/** host-fuse's output: one line per run as it finishes, then the ours/reference table. */
import type { DaemonKind } from '../../harness/index.js';
import type { Options, Workload } from './options.js';
import type { Result } from './run-one.js';

export function printRun(r: Result): void {
  console.log(
    `  ${r.kind.padEnd(9)} ${r.workload.padEnd(11)} depth ${r.depth}: ${r.opsPerSec.toFixed(0).padStart(7)} ops/s, daemon CPU ${r.cpuUsPerOp.toFixed(1)} µs/op, p50/p99 ${r.p50Us.toFixed(0)}/${r.p99Us.toFixed(0)} µs`,
  );
}

export function printTable(o: Options, results: Result[]): void {
  const get = (k: DaemonKind, w: Workload, d: number) => results.find((r) => r.kind === k && r.workload === w && r.depth === d);
  const rows = [['workload', 'depth', 'ref ops/s', 'ours ops/s', 'ratio', 'ref cpu µs/op', 'ours cpu µs/op', 'cpu ratio', 'ref p50/p99 µs', 'ours p50/p99 µs']];
  const lat = (r: Result | undefined): string => (r ? `${r.p50Us.toFixed(0)}/${r.p99Us.toFixed(0)}` : '-');
  for (const w of o.workloads) {
    for (const depth of o.depths) {
      const ref = get('reference', w, depth);
      const ours = get('ours', w, depth);
      rows.push([
        w, String(depth),
        ref ? ref.opsPerSec.toFixed(0) : '-', ours ? ours.opsPerSec.toFixed(0) : '-',
        ref && ours ? (ours.opsPerSec / ref.opsPerSec).toFixed(2) : '-',
        ref ? ref.cpuUsPerOp.toFixed(1) : '-', ours ? ours.cpuUsPerOp.toFixed(1) : '-',
        ref && ours ? (ref.cpuUsPerOp / ours.cpuUsPerOp).toFixed(2) : '-',
        lat(ref), lat(ours),
      ]);
    }
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  console.log('');
  for (const r of rows) console.log(r.map((v, c) => v.padStart(widths[c]!)).join('  '));
  console.log('ratio = ours/reference ops/s; cpu ratio = reference/ours CPU per op (higher is better for both).');
}
