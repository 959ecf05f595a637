/**
 * The text tables: one row per result, the errors by errno under it, and the compare table with the
 * spread of the per-round ratios.
 */
import { fmt } from './progress.js';
import type { CompareRow, WorkloadResult } from './report-types.js';

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 || i === 1 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ').trimEnd();
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}

const cpu = (x: number | null): string => (x === null ? '-' : x.toFixed(1));

export function formatResults(results: WorkloadResult[], bare = false): string {
  if (results.length === 0) return 'no results';
  const head = ['workload', 'backend', 'ops/s', 'MiB/s', 'p50 µs', 'p90 µs', 'p99 µs', 'p99.9 µs', 'max µs', 'errors', 'backend CPU µs/op', 'client CPU µs/op'];
  const rows = results.map((r) => [
    r.workload + (r.round ? ` #${r.round}` : ''),
    r.backend,
    fmt(r.ops_per_s),
    r.mib_per_s.toFixed(1),
    fmt(r.p50_us),
    fmt(r.p90_us),
    fmt(r.p99_us),
    fmt(r.p999_us),
    fmt(r.max_us),
    String(r.errors),
    cpu(r.backend_cpu_us_per_op),
    cpu(r.client_cpu_us_per_op),
  ]);
  const t = table(head, rows);
  const errs = results
    .filter((r) => r.errors > 0)
    .map((r) => `  ${r.workload} on ${r.backend}: ${Object.entries(r.errors_by_errno).map(([e, n]) => `${e} ×${n}`).join(', ')}`);
  const out = errs.length > 0 ? `${t}\nerrors:\n${errs.join('\n')}` : t;
  return bare ? out.split('\n').slice(2).join('\n') : out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? 0 : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Per workload: B against A over the rounds both produced a result in. */
export function compareRows(results: WorkloadResult[], a: string, b: string): CompareRow[] {
  const rows: CompareRow[] = [];
  for (const w of [...new Set(results.map((r) => r.workload))]) {
    const of = (label: string): WorkloadResult[] => results.filter((r) => r.workload === w && r.backend === label);
    // Only the rounds both backends completed count, for the ratios and the medians alike.
    const ra: WorkloadResult[] = [];
    const rb: WorkloadResult[] = [];
    const ratios: number[] = [];
    for (const x of of(a)) {
      const y = of(b).find((r) => r.round === x.round);
      if (!y || x.ops_per_s <= 0) continue;
      ra.push(x);
      rb.push(y);
      ratios.push(y.ops_per_s / x.ops_per_s);
    }
    if (ratios.length === 0) continue;
    const cpuOf = (rs: WorkloadResult[]): number | null => {
      const v = rs.map((r) => r.backend_cpu_us_per_op).filter((x): x is number => x !== null);
      return v.length > 0 ? median(v) : null;
    };
    rows.push({
      kind: 'compare',
      workload: w,
      a,
      b,
      rounds: ratios.length,
      a_ops_per_s: median(ra.map((r) => r.ops_per_s)),
      b_ops_per_s: median(rb.map((r) => r.ops_per_s)),
      ratio: round3(median(ratios)),
      ratio_min: round3(Math.min(...ratios)),
      ratio_max: round3(Math.max(...ratios)),
      a_p99_us: median(ra.map((r) => r.p99_us)),
      b_p99_us: median(rb.map((r) => r.p99_us)),
      a_backend_cpu_us_per_op: cpuOf(ra),
      b_backend_cpu_us_per_op: cpuOf(rb),
    });
  }
  return rows;
}

export function formatCompare(rows: CompareRow[]): string {
  const a = rows[0]?.a ?? 'A';
  const b = rows[0]?.b ?? 'B';
  const head = ['workload', 'rounds', `A ops/s`, `B ops/s`, 'B/A', 'spread', 'A p99 µs', 'B p99 µs', 'A CPU µs/op', 'B CPU µs/op'];
  const body = rows.map((r) => [
    r.workload,
    String(r.rounds),
    fmt(r.a_ops_per_s),
    fmt(r.b_ops_per_s),
    `${r.ratio.toFixed(2)}×`,
    `${r.ratio_min.toFixed(2)}–${r.ratio_max.toFixed(2)}`,
    fmt(r.a_p99_us),
    fmt(r.b_p99_us),
    cpu(r.a_backend_cpu_us_per_op),
    cpu(r.b_backend_cpu_us_per_op),
  ]);
  return `A = ${a}\nB = ${b}\n${table(head, body)}`;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
