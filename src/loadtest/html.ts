/**
 * `loadtest --html FILE`: the run as one self-contained HTML page (inline CSS, inline SVG charts from
 * svg-charts.ts, no scripts, nothing fetched), for reading results rather than grepping tables:
 * failures first, the summary and compare tables, then per workload its throughput over time and its
 * latency distribution, one line per backend (colour) and --compare round (dash pattern).
 * Every string from the report goes through `esc` (backend labels are user commands).
 */
import type { CompareRow, Report, WorkloadResult } from './report-types.js';
import {
  type Axis,
  DASHES,
  esc,
  fixed,
  lineChart,
  logAxis,
  niceAxis,
  PALETTE,
  type RatioRow,
  ratioBars,
  type Series,
} from './svg-charts.js';

/** Chart element ids (the test finds the charts in the rendered page by them). */
export const chartIds = {
  throughput: (workloadIndex: number) => `chart-throughput-${workloadIndex}`,
  latency: (workloadIndex: number) => `chart-latency-${workloadIndex}`,
  compare: 'chart-compare',
};

const CSS = `
:root{--fg:#0f172a;--muted:#64748b;--line:#e2e8f0}
*{box-sizing:border-box}
body{margin:0;background:#f1f5f9;color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:1360px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:0 0 10px}
h3{font-size:15px;margin:0}
.sub{color:var(--muted);margin:0 0 10px}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:16px 20px;margin:16px 0;box-shadow:0 1px 2px rgba(15,23,42,.05)}
code.cmd{display:block;background:#0f172a;color:#e2e8f0;padding:9px 12px;border-radius:6px;white-space:pre-wrap;word-break:break-all;font:12.5px/1.5 ui-monospace,"DejaVu Sans Mono",monospace}
.facts{display:flex;flex-wrap:wrap;gap:6px 22px;margin:10px 0 0;color:#334155}
.facts b{color:var(--fg)}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:5px 9px;border-bottom:1px solid var(--line);text-align:right;vertical-align:top}
th{font-size:12px;font-weight:600;color:var(--muted);border-bottom:2px solid #cbd5e1}
th.l,td.l{text-align:left}
td.backend{max-width:340px;overflow-wrap:anywhere}
td.nw{white-space:nowrap}
tr.group td{border-top:2px solid #cbd5e1}
tbody tr:nth-child(even) td{background:#f8fafc}
td.err{background:#fee2e2!important;color:#991b1b;font-weight:600}
td.good{background:#dcfce7!important;color:#166534;font-weight:600}
td.bad{background:#fee2e2!important;color:#991b1b;font-weight:600}
td.mixed{background:#fef3c7!important;color:#92400e;font-weight:600}
.spread{font-weight:400;font-size:12px;opacity:.85}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:-1px}
.failures{border:2px solid #f87171;background:#fef2f2}
.failures h2{color:#b91c1c}
.failures li{margin:4px 0}
.workload-head{display:flex;align-items:baseline;gap:14px;flex-wrap:wrap}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:18px;margin-top:8px}
figure{margin:0}
figcaption{font-weight:600;font-size:13px;color:#334155;margin:0 0 4px}
svg.chart{display:block;max-width:100%;height:auto}
svg .tick{font-size:11px;fill:#475569}
svg .axis-title{font-size:12px;fill:#334155;font-weight:600}
svg .empty{font-size:13px;fill:#94a3b8}
svg .bar-label{font-size:12.5px;fill:#0f172a}
svg .bar-value{font-size:12px;fill:#0f172a;font-weight:600}
.legend{display:flex;flex-wrap:wrap;gap:4px 18px;margin:8px 0 0;font-size:12.5px}
.legend span{display:inline-flex;align-items:center;gap:6px;word-break:break-all}
.note{color:var(--muted);font-size:12.5px;margin:6px 0 0}
`;

/** Thousands separated integer; '—' when not finite. */
function int(v: number): string {
  return Number.isFinite(v) ? Math.round(v).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',') : '—';
}
function rate(v: number): string {
  return Number.isFinite(v) && Math.abs(v) < 100 ? fixed(v, 1) : int(v);
}
function us(v: number | null): string {
  if (v === null || !Number.isFinite(v)) return '—';
  return v < 10 ? fixed(v, 2) : v < 1000 ? fixed(v, 1) : int(v);
}
function trim(v: number): string {
  return String(Number.parseFloat(v.toPrecision(6)));
}
function latencyLabel(v: number): string {
  return v >= 1e6 ? `${trim(v / 1e6)} s` : v >= 1000 ? `${trim(v / 1000)} ms` : `${trim(v)} µs`;
}
function si(v: number): string {
  return Math.abs(v) >= 1e6 ? `${trim(v / 1e6)}M` : Math.abs(v) >= 1e3 ? `${trim(v / 1e3)}k` : trim(v);
}
function bytes(b: number): string {
  if (b >= 1 << 20 && b % (1 << 20) === 0) return `${b / (1 << 20)} MiB`;
  if (b >= 1024 && b % 1024 === 0) return `${b / 1024} KiB`;
  return `${b} B`;
}
/** The command line as a shell would take it back. */
function shellLine(argv: string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}
function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}
function seriesLabel(r: WorkloadResult): string {
  return r.round === undefined ? r.backend : `${r.backend} · round ${r.round}`;
}
function plural(k: number, w: string): string {
  return `${k} ${w}${k === 1 ? '' : 's'}`;
}
function config(r: WorkloadResult): string {
  return `bs ${bytes(r.bs)} · depth ${r.depth} · ${plural(r.queues, 'queue')} · ${plural(r.threads, 'thread')}`;
}

export function renderHtml(report: Report): string {
  const backends = unique([
    ...report.results.map((r) => r.backend),
    ...report.compare.flatMap((c) => [c.a, c.b]),
    ...report.failures.map((f) => f.backend),
  ]);
  const colour = (b: string) => PALETTE[Math.max(0, backends.indexOf(b)) % PALETTE.length]!;
  const dash = (r: WorkloadResult) => DASHES[Math.max(0, (r.round ?? 1) - 1) % DASHES.length]!;
  const swatch = (b: string) => `<span class="sw" style="background:${colour(b)}"></span>`;
  const workloads = unique(report.results.map((r) => r.workload));

  const parts: string[] = [];
  parts.push(`<header class="card"><h1>virtiofsd-ts loadtest</h1>`);
  parts.push(`<p class="sub">started ${esc(report.started)}</p><code class="cmd">${esc(shellLine(report.argv))}</code>`);
  parts.push(`<div class="facts"><span>host <b>${esc(plural(report.host.cpus, 'CPU'))}</b></span>`);
  parts.push(`<span>kernel <b>${esc(report.host.kernel)}</b></span><span>node <b>${esc(report.host.node)}</b></span>`);
  const counts = [plural(workloads.length, 'workload'), plural(report.results.length, 'result'), plural(report.failures.length, 'failure')];
  parts.push(`<span>${counts.map((c) => c.replace(/^(\d+)/, '<b>$1</b>')).join(' · ')}</span></div>`);
  parts.push(`<div class="legend">${backends.map((b) => `<span>${swatch(b)}${esc(b)}</span>`).join('')}</div></header>`);

  if (report.failures.length > 0) {
    const items = report.failures.map(
      (f) =>
        `<li><b>${esc(f.workload)}</b> on ${swatch(f.backend)}<b>${esc(f.backend)}</b>${f.round === undefined ? '' : ` (round ${f.round})`}: ${esc(f.reason)}</li>`,
    );
    parts.push(`<section class="card failures" id="failures"><h2>${report.failures.length} workload run${report.failures.length === 1 ? '' : 's'} failed</h2><ul>${items.join('')}</ul></section>`);
  }

  parts.push(summaryTable(report.results, swatch));
  if (report.compare.length > 0) parts.push(compareSection(report.compare, swatch));

  if (workloads.length > 0) {
    parts.push(`<section class="card" id="workloads"><h2>Per workload: throughput over time · latency distribution</h2>`);
    parts.push(
      `<p class="note">One line per backend (colour) and --compare round (dash). Latency: share of operations at or below a latency, on a "nines" scale so p99 and p99.9 get room; dots mark each run's p50, p99 and p99.9.</p></section>`,
    );
    workloads.forEach((w, i) => {
      const rs = report.results.filter((r) => r.workload === w);
      parts.push(workloadCard(w, i, rs, colour, dash));
    });
  }

  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>loadtest ${esc(report.started)}</title><style>${CSS}</style></head>
<body><main>
${parts.join('\n')}
</main></body></html>
`;
}

function summaryTable(results: WorkloadResult[], swatch: (b: string) => string): string {
  const head = [
    'workload',
    'backend',
    'round',
    'config',
    'ops/s',
    'MiB/s',
    'p50 µs',
    'p99 µs',
    'p99.9 µs',
    'max µs',
    'errors',
    'backend CPU µs/op',
    'client CPU µs/op',
  ].map((h, i) => `<th${i < 4 ? ' class="l"' : ''}>${h}</th>`);
  const rows = results.map((r, k) => {
    const errs = Object.entries(r.errors_by_errno)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    const errCell = r.errors > 0 ? `<td class="err" title="${esc(errs)}">${int(r.errors)}${errs ? ` <span class="spread">(${esc(errs)})</span>` : ''}</td>` : '<td>0</td>';
    const group = k > 0 && results[k - 1]!.workload !== r.workload ? ' class="group"' : '';
    return `<tr${group}><td class="l">${esc(r.workload)}</td><td class="l backend">${swatch(r.backend)}${esc(r.backend)}</td><td class="l">${r.round ?? ''}</td><td class="l nw">${esc(config(r))}</td><td>${rate(r.ops_per_s)}</td><td>${rate(r.mib_per_s)}</td><td>${us(r.p50_us)}</td><td>${us(r.p99_us)}</td><td>${us(r.p999_us)}</td><td>${us(r.max_us)}</td>${errCell}<td>${us(r.backend_cpu_us_per_op)}</td><td>${us(r.client_cpu_us_per_op)}</td></tr>`;
  });
  const body = rows.length ? rows.join('') : `<tr><td class="l" colspan="13">no results</td></tr>`;
  return `<section class="card" id="summary"><h2>Results</h2><table><thead><tr>${head.join('')}</tr></thead><tbody>${body}</tbody></table></section>`;
}

function compareSection(rows: CompareRow[], swatch: (b: string) => string): string {
  const head = ['workload', 'A', 'B', 'rounds', 'A ops/s', 'B ops/s', 'B/A ops/s (min–max)', 'A p99 µs', 'B p99 µs', 'A CPU µs/op', 'B CPU µs/op'];
  const body = rows.map((c) => {
    const cls = c.ratio_min > 1 ? 'good' : c.ratio_max < 1 ? 'bad' : c.ratio >= 1 ? 'good mixed' : 'bad mixed';
    const hint = cls.includes('mixed') ? 'the rounds disagree: the spread crosses 1.0' : c.ratio >= 1 ? 'B faster in every round' : 'B slower in every round';
    return `<tr><td class="l">${esc(c.workload)}</td><td class="l backend">${swatch(c.a)}${esc(c.a)}</td><td class="l backend">${swatch(c.b)}${esc(c.b)}</td><td>${c.rounds}</td><td>${rate(c.a_ops_per_s)}</td><td>${rate(c.b_ops_per_s)}</td><td class="${cls}" title="${hint}">${fixed(c.ratio, 3)} <span class="spread">(${fixed(c.ratio_min, 3)}–${fixed(c.ratio_max, 3)})</span></td><td>${us(c.a_p99_us)}</td><td>${us(c.b_p99_us)}</td><td>${us(c.a_backend_cpu_us_per_op)}</td><td>${us(c.b_backend_cpu_us_per_op)}</td></tr>`;
  });
  const pairs = unique(rows.map((c) => `${c.b} / ${c.a}`));
  const title = pairs.length === 1 ? `ops/s ratio ${pairs[0]} (> 1: B faster)` : 'ops/s ratio B / A (> 1: B faster)';
  const bars: RatioRow[] = rows.map((c) => ({
    label: c.workload,
    ratio: c.ratio,
    min: c.ratio_min,
    max: c.ratio_max,
    note: `${c.b} / ${c.a}: ${fixed(c.ratio, 3)} median of ${c.rounds} rounds (${fixed(c.ratio_min, 3)}–${fixed(c.ratio_max, 3)})`,
  }));
  return `<section class="card" id="compare"><h2>Compare: B against A, median over the rounds</h2><table><thead><tr>${head.map((h, i) => `<th${i < 3 ? ' class="l"' : ''}>${h}</th>`).join('')}</tr></thead><tbody>${body.join('')}</tbody></table>
<figure style="margin-top:16px"><figcaption>B/A throughput per workload: bar = median ratio (green: B faster in every round, red: slower in every round, amber: the rounds disagree), whisker = min–max, dashed line = parity</figcaption>${ratioBars(chartIds.compare, 'compare bars', bars, title)}</figure></section>`;
}

function workloadCard(w: string, i: number, rs: WorkloadResult[], colour: (b: string) => string, dash: (r: WorkloadResult) => string): string {
  const legend = rs
    .map((r) => {
      const d = dash(r) ? ` stroke-dasharray="${dash(r)}"` : '';
      return `<span><svg width="30" height="10" aria-hidden="true"><line x1="1" x2="29" y1="5" y2="5" stroke="${colour(r.backend)}" stroke-width="2.5"${d}/></svg>${esc(seriesLabel(r))}</span>`;
    })
    .join('');
  const configs = unique(rs.map(config));
  return `<section class="card workload"><div class="workload-head"><h3>${esc(w)}</h3><span class="sub">${esc(configs.join(' | '))}</span></div>
<div class="charts"><figure><figcaption>Throughput over time</figcaption>${throughputChart(i, rs, colour, dash)}</figure>
<figure><figcaption>Latency distribution (cumulative)</figcaption>${latencyChart(i, rs, colour, dash)}</figure></div>
<div class="legend">${legend}</div></section>`;
}

function throughputChart(i: number, rs: WorkloadResult[], colour: (b: string) => string, dash: (r: WorkloadResult) => string): string {
  const samples = rs.flatMap((r) => r.timeline).filter((s) => Number.isFinite(s.t) && Number.isFinite(s.ops_per_s));
  const x = niceAxis(0, Math.max(0, ...samples.map((s) => s.t)), 8, trim, 'time (s)');
  const y = niceAxis(0, Math.max(0, ...samples.map((s) => s.ops_per_s)) * 1.05, 6, si, 'operations / s');
  const series: Series[] = rs.map((r) => {
    const pts = r.timeline.filter((s) => Number.isFinite(s.t) && Number.isFinite(s.ops_per_s));
    return {
      label: seriesLabel(r),
      color: colour(r.backend),
      dash: dash(r),
      points: pts.map((s): [number, number] => [s.t, s.ops_per_s]),
      // Few samples: mark each one, so a single sample is still visible.
      dots: pts.length <= 3 ? pts.map((s) => ({ x: s.t, y: s.ops_per_s, title: `${seriesLabel(r)}: ${rate(s.ops_per_s)} ops/s at ${trim(s.t)} s` })) : [],
    };
  });
  return lineChart(chartIds.throughput(i), 'throughput over time', x, y, series, 'no timeline samples');
}

/** y of a cumulative share on the "nines" scale: 0 → 0, 0.9 → 1, 0.99 → 2, ... capped at `top`. */
function nines(f: number, top: number): number {
  return f >= 1 ? top : Math.min(top, -Math.log10(1 - Math.max(0, f)));
}

function latencyChart(i: number, rs: WorkloadResult[], colour: (b: string) => string, dash: (r: WorkloadResult) => string): string {
  const hists = rs.map((r) => r.latency_histogram.filter(([ub, c]) => ub > 0 && Number.isFinite(ub) && c > 0 && Number.isFinite(c)));
  const totals = hists.map((h) => h.reduce((a, [, c]) => a + c, 0));
  // The top of the scale: as many nines as the largest run has operations to resolve (p99 .. p99.9999).
  const top = Math.min(6, Math.max(2, Math.ceil(Math.log10(Math.max(1, ...totals)))));
  const lows = hists.flatMap((h) => (h.length ? [lowerBound(h)] : []));
  const highs = hists.flatMap((h) => (h.length ? [h[h.length - 1]![0]] : []));
  const x: Axis = logAxis(Math.min(...lows, Infinity), Math.max(...highs, 0), latencyLabel, 'latency (log scale)');
  const yTicks = [{ v: 0, label: '' }];
  for (let k = 1; k <= top; k++) yTicks.push({ v: k, label: `p${trim(100 - 100 / 10 ** k)}` });
  yTicks.splice(1, 0, { v: nines(0.5, top), label: 'p50' });
  const y: Axis = { min: 0, max: top, ticks: yTicks, title: 'operations ≤ latency' };
  const series: Series[] = rs.map((r, k) => {
    const h = hists[k]!;
    const total = totals[k]!;
    let cum = 0;
    const points: Array<[number, number]> = h.length ? [[Math.log10(lowerBound(h)), 0]] : [];
    for (const [ub, c] of h) {
      cum += c;
      points.push([Math.log10(ub), nines(cum / total, top)]);
    }
    const marks: Array<[string, number, number]> = [
      ['p50', r.p50_us, 0.5],
      ['p99', r.p99_us, 0.99],
      ['p99.9', r.p999_us, 0.999],
    ];
    return {
      label: seriesLabel(r),
      color: colour(r.backend),
      dash: dash(r),
      points,
      dots: h.length
        ? marks.filter(([, v]) => v > 0 && Number.isFinite(v)).map(([name, v, f]) => ({ x: Math.log10(v), y: nines(f, top), title: `${seriesLabel(r)}: ${name} ${us(v)} µs` }))
        : [],
    };
  });
  return lineChart(chartIds.latency(i), 'latency distribution', x, y, series, 'no latency samples');
}

/**
 * The first bucket's lower edge, from the log spacing of the bounds; at most a factor 2 below (empty
 * buckets are left out, so the next bound may be far), half the bound for a single bucket.
 */
function lowerBound(h: Array<[number, number]>): number {
  const b0 = h[0]![0];
  const b1 = h[1]?.[0];
  return b1 !== undefined && b1 > b0 ? b0 / Math.min(2, b1 / b0) : b0 / 2;
}
