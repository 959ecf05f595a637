/**
 * `loadtest --html`: the page for a synthetic run (two backends, three --compare rounds, four
 * workloads) and for edge cases, checked as text (charts present, labels escaped, no NaN, nothing
 * fetched) and as pixels: rendered by headless Chromium, each chart's plot area must hold the series
 * colours of its backends, and the same page with the series removed must not.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { chartIds, renderHtml } from '../../src/loadtest/html.js';
import type { CompareRow, Report, WorkloadResult } from '../../src/loadtest/report-types.js';
import { BAR_DOWN, BAR_MIXED, BAR_UP, PALETTE } from '../../src/loadtest/svg-charts.js';
import { type Box, chromiumSkipReason, countColour, decodePng, type Image, pageLayout, screenshot } from '../helpers/chromium.js';

const EVIL = `virtiofsd --tag 'a<b>&"c"'`;
const EVIL_ESCAPED = 'a&lt;b&gt;&amp;&quot;c&quot;';
const BACKENDS = ['ours', EVIL];
const ROUNDS = 3;
/** B/A throughput factor per workload and round: B faster, B slower, the rounds disagree, B faster. */
const WORKLOADS: Array<{ name: string; bs: number; ops: number; p50: number; factor: number[] }> = [
  { name: 'getattr', bs: 4096, ops: 52_000, p50: 18, factor: [1.21, 1.3, 1.26] },
  { name: 'read-4k', bs: 4096, ops: 31_000, p50: 45, factor: [0.82, 0.79, 0.86] },
  { name: 'write-128k', bs: 131072, ops: 2_400, p50: 600, factor: [0.97, 1.03, 1.05] },
  { name: 'create-unlink', bs: 0, ops: 8_800, p50: 110, factor: [1.6, 1.45, 1.52] },
];

/** Deterministic noise (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** Quarter-octave bucket bounds from 1 µs to ~1 s, like the load tester's log-spaced histogram. */
const BOUNDS = Array.from({ length: 81 }, (_, k) => Math.round(2 ** (k / 4) * 100) / 100);

function result(w: (typeof WORKLOADS)[number], backend: string, round: number, rnd: () => number): WorkloadResult {
  const speed = backend === 'ours' ? 1 : w.factor[round - 1]!;
  const opsPerS = w.ops * speed;
  // Latencies: log-normal around p50 (slower backend, higher latency), a 0.3% tail 20x out.
  const samples: number[] = [];
  for (let i = 0; i < 20_000; i++) {
    const g = Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
    const tail = rnd() < 0.003 ? 20 : 1;
    samples.push(Math.max(1, (w.p50 / speed) * Math.exp(0.35 * g) * tail));
  }
  samples.sort((a, b) => a - b);
  const pct = (p: number) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))]!;
  const counts = new Map<number, number>();
  for (const s of samples) {
    const ub = BOUNDS.find((b) => b >= s) ?? BOUNDS[BOUNDS.length - 1]!;
    counts.set(ub, (counts.get(ub) ?? 0) + 1);
  }
  const seconds = 10;
  const timeline = Array.from({ length: 10 }, (_, i) => {
    const v = opsPerS * (0.93 + 0.14 * rnd()) * (i === 0 ? 0.8 : 1);
    return { t: i + 1, ops_per_s: v, mib_per_s: (v * w.bs) / 2 ** 20 };
  });
  return {
    kind: 'result',
    workload: w.name,
    backend,
    round,
    depth: 16,
    queues: 1,
    threads: 1,
    bs: w.bs,
    ops: Math.round(opsPerS * seconds),
    requests: Math.round(opsPerS * seconds * (w.name === 'create-unlink' ? 2 : 1)),
    seconds,
    ops_per_s: opsPerS,
    mib_per_s: (opsPerS * w.bs) / 2 ** 20,
    min_us: samples[0]!,
    mean_us: samples.reduce((a, b) => a + b, 0) / samples.length,
    p50_us: pct(0.5),
    p90_us: pct(0.9),
    p99_us: pct(0.99),
    p999_us: pct(0.999),
    max_us: samples[samples.length - 1]!,
    errors: backend === EVIL && w.name === 'create-unlink' && round === 2 ? 3 : 0,
    errors_by_errno: backend === EVIL && w.name === 'create-unlink' && round === 2 ? { ENOSPC: 3 } : {},
    backend_cpu_us_per_op: backend === 'ours' ? 14.2 / speed : null,
    client_cpu_us_per_op: 3.1,
    verified_bytes: w.name.startsWith('read') ? 4096 * 1000 : 0,
    timeline,
    latency_histogram: [...counts.entries()].sort((a, b) => a[0] - b[0]),
    sent: { requests_by_opcode: {}, read_bytes: 0, write_bytes: 0 },
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function syntheticReport(): Report {
  const rnd = prng(7);
  const results: WorkloadResult[] = [];
  for (const w of WORKLOADS) for (let round = 1; round <= ROUNDS; round++) for (const b of BACKENDS) results.push(result(w, b, round, rnd));
  const compare: CompareRow[] = WORKLOADS.map((w) => {
    const of = (b: string) => results.filter((r) => r.workload === w.name && r.backend === b);
    const a = of('ours');
    const b = of(EVIL);
    const ratios = a.map((r, i) => b[i]!.ops_per_s / r.ops_per_s);
    return {
      kind: 'compare',
      workload: w.name,
      a: 'ours',
      b: EVIL,
      rounds: ROUNDS,
      a_ops_per_s: median(a.map((r) => r.ops_per_s)),
      b_ops_per_s: median(b.map((r) => r.ops_per_s)),
      ratio: median(ratios),
      ratio_min: Math.min(...ratios),
      ratio_max: Math.max(...ratios),
      a_p99_us: median(a.map((r) => r.p99_us)),
      b_p99_us: median(b.map((r) => r.p99_us)),
      a_backend_cpu_us_per_op: median(a.map((r) => r.backend_cpu_us_per_op!)),
      b_backend_cpu_us_per_op: null,
    };
  });
  return {
    started: '2026-12-04T03:40:00.000Z',
    argv: ['virtiofsd-ts', 'loadtest', '--compare', `--backend=${EVIL}`, '--rounds=3', '--html', '/tmp/report.html'],
    host: { cpus: 2, kernel: '6.1.0-41-amd64', node: 'v20.20.2' },
    results,
    compare,
    failures: [],
  };
}

/** One result with one timeline sample, a failure with a hostile reason, no compare. */
function edgeReport(): Report {
  const r = result(WORKLOADS[0]!, 'ours', 1, prng(3));
  delete r.round;
  r.timeline = [{ t: 0.5, ops_per_s: r.ops_per_s, mib_per_s: 0 }];
  return {
    started: '2026-12-04T03:41:00.000Z',
    argv: ['virtiofsd-ts', 'loadtest', '--workload=getattr,read-4k'],
    host: { cpus: 1, kernel: '6.1.0', node: 'v20.20.2' },
    results: [r],
    compare: [],
    failures: [{ workload: 'read-4k', backend: 'ours', reason: 'reply <len 12> & "short"' }],
  };
}

/** A run that measured nothing: all zeros, empty histogram, empty timeline. */
function zeroReport(): Report {
  const r = result(WORKLOADS[1]!, 'ours', 1, prng(5));
  for (const k of ['ops', 'requests', 'ops_per_s', 'mib_per_s', 'min_us', 'mean_us', 'p50_us', 'p90_us', 'p99_us', 'p999_us', 'max_us'] as const) r[k] = 0;
  r.timeline = [];
  r.latency_histogram = [];
  const z = { ...r, backend: 'other', timeline: [{ t: 1, ops_per_s: 0, mib_per_s: 0 }] };
  return { ...edgeReport(), results: [r, z], failures: [] };
}

const svgIds = (html: string) => [...html.matchAll(/<svg id="([^"]+)"/g)].map((m) => m[1]);

function checkClean(t: Tap, html: string, what: string): void {
  t.notMatch(html, /NaN|Infinity|undefined/, `${what}: no NaN, Infinity or undefined`);
  t.notMatch(html, /<script|<link|<img|<iframe|url\(|@import|https?:/i, `${what}: nothing fetched, no script`);
  // Every coordinate of every path lies inside its chart.
  const coords = [...html.matchAll(/ d="([^"]*)"/g)].flatMap((m) => m[1]!.match(/-?[\d.]+/g) ?? []).map(Number);
  t.ok(coords.length > 0 && coords.every((v) => v >= 0 && v <= 900), `${what}: ${coords.length} path coordinates inside the charts`);
}
type Tap = Test;

t.test('the page as text: charts, tables, escaping, no NaN', async (t) => {
  const report = syntheticReport();
  const html = renderHtml(report);
  t.match(html, /^<!DOCTYPE html>/);
  const expected = WORKLOADS.flatMap((_, i) => [chartIds.throughput(i), chartIds.latency(i)]).concat(chartIds.compare);
  t.same(svgIds(html).sort(), expected.sort(), 'one chart per workload and kind, and the compare bars');
  checkClean(t, html, 'synthetic');
  t.ok(html.includes(EVIL_ESCAPED), 'the hostile label is escaped');
  t.notOk(html.includes('a<b>') || html.includes('"c"'), 'and never raw');
  t.equal((html.match(/<tr[\s>]/g) ?? []).length, 1 + report.results.length + 1 + report.compare.length, 'a row per result and per compare row');
  for (const w of WORKLOADS) t.ok(html.includes(`<td class="l">${w.name}</td>`), `${w.name} in the tables`);
  const compare = html.slice(html.indexOf('id="compare"'));
  const ratioCell = (w: string) => new RegExp(`<td class="l">${w}</td>(?:<td[^>]*>.*?</td>){5}<td class="([^"]+)"`).exec(compare)?.[1];
  t.equal(ratioCell('getattr'), 'good', 'B faster in every round: green');
  t.equal(ratioCell('read-4k'), 'bad', 'B slower in every round: red');
  t.match(ratioCell('write-128k'), /mixed/, 'rounds on both sides of 1.0: marked mixed');
  t.match(html, /<td class="err"[^>]*>3 <span class="spread">\(ENOSPC 3\)/, 'errors by errno, highlighted');
  t.match(html, />p99\.9</, 'latency axis in nines');
  t.notMatch(html, /id="failures"/, 'no failure box without failures');
});

t.test('edge cases render without NaN', async (t) => {
  const edge = renderHtml(edgeReport());
  checkClean(t, edge, 'one result');
  t.same(svgIds(edge), [chartIds.throughput(0), chartIds.latency(0)], 'two charts, no compare bars');
  t.match(edge, /id="failures"[\s\S]*read-4k[\s\S]*reply &lt;len 12&gt; &amp; &quot;short&quot;/, 'the failure, escaped');
  t.ok(edge.indexOf('id="failures"') < edge.indexOf('id="summary"'), 'failures come before the results');
  t.match(edge, /<circle class="dot"/, 'the single sample is drawn as a dot');

  const zero = renderHtml(zeroReport());
  checkClean(t, zero, 'all zeros');
  t.match(zero, /no latency samples/, 'empty histograms said so');

  const empty = renderHtml({ ...edgeReport(), results: [], failures: [] });
  t.notMatch(empty, /NaN|Infinity|undefined/);
  t.same(svgIds(empty), [], 'no results: no charts');
  t.match(empty, /no results/);
});

const skip = chromiumSkipReason();
if (skip && process.env.CI === 'true') t.fail(`the HTML report cannot be rendered in CI: ${skip}`);

const WIDTH = 1400;
const keep = process.env.LOADTEST_HTML_KEEP;
const dir = keep ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-html-'));
if (keep) fs.mkdirSync(keep, { recursive: true });
t.teardown(() => {
  if (!keep) fs.rmSync(dir, { recursive: true, force: true });
});

/** Renders `html` in Chromium; the decoded screenshot and the plot boxes of the charts. */
function render(t: Tap, html: string, name: string): { img: Image; boxes: Record<string, Box> } {
  const file = path.join(dir, `${name}.html`);
  const png = path.join(dir, `${name}.png`);
  fs.writeFileSync(file, html);
  const layout = pageLayout(file, WIDTH);
  const height = Math.ceil(layout.height);
  screenshot(file, png, WIDTH, height);
  t.ok(fs.existsSync(png), `${name}: screenshot ${png}`);
  const img = decodePng(fs.readFileSync(png));
  t.same([img.width, img.height], [WIDTH, height], `${name}: a valid ${WIDTH}x${height} PNG`);
  return { img, boxes: layout.boxes };
}

/**
 * Series pixels a chart's plot area must hold per backend: three rounds of lines make 600 to 1500;
 * the percentile dots alone (nine per backend) stay under 400, so the lines must be there.
 */
const MIN_PIXELS = 400;

function seriesPixels(img: Image, box: Box, colours: string[]): number[] {
  return colours.map((c) => countColour(img, box, c, 12));
}

t.test('rendered by Chromium: every chart draws its series', { skip: skip ?? false }, async (t) => {
  const html = renderHtml(syntheticReport());
  const { img, boxes } = render(t, html, 'synthetic');
  const backendColours = [PALETTE[0]!, PALETTE[1]!];
  for (const id of Object.keys(boxes)) {
    const box = boxes[id]!;
    t.ok(box.w > 300 && box.h > 100, `${id}: plot area ${Math.round(box.w)}x${Math.round(box.h)} on the page`);
    // The box really is the plot area in the screenshot: mostly its background colour.
    t.ok(countColour(img, box, '#fcfcfd', 2) > 0.4 * box.w * box.h, `${id}: the box lines up with the plot background`);
  }
  WORKLOADS.forEach((w, i) => {
    for (const id of [chartIds.throughput(i), chartIds.latency(i)]) {
      const counts = seriesPixels(img, boxes[id]!, backendColours);
      t.ok(
        counts.every((c) => c >= MIN_PIXELS),
        `${w.name} ${id}: both backends drawn (${counts.join(', ')} px)`,
      );
    }
  });
  const bars = boxes[chartIds.compare]!;
  const up = countColour(img, bars, BAR_UP, 12);
  const down = countColour(img, bars, BAR_DOWN, 12);
  const mixed = countColour(img, bars, BAR_MIXED, 12);
  t.ok(up > 400 && down > 200 && mixed > 50, `compare bars above, below and across 1.0 (${up}, ${down}, ${mixed} px)`);

  // The same page without its lines and bars (the dots stay): every count must fall below the
  // threshold, so the check above can fail and the dots alone do not pass it.
  const bare = html.replace(/<path class="series"[\s\S]*?<\/path>|<rect class="bar"[\s\S]*?<\/rect>/g, '');
  t.ok(bare.length < html.length - 10_000 && bare.includes('class="dot"'), 'lines and bars removed, dots kept');
  const stripped = render(t, bare, 'no-series');
  for (const id of Object.keys(stripped.boxes)) {
    const counts = id === chartIds.compare ? [BAR_UP, BAR_DOWN, BAR_MIXED].map((c) => countColour(stripped.img, stripped.boxes[id]!, c, 12)) : seriesPixels(stripped.img, stripped.boxes[id]!, backendColours);
    t.ok(
      counts.every((c) => c < MIN_PIXELS),
      `${id} without lines or bars: ${counts.join(', ')} px`,
    );
  }
});

t.test('rendered by Chromium: edge cases', { skip: skip ?? false }, async (t) => {
  const { img, boxes } = render(t, renderHtml(edgeReport()), 'edge');
  t.same(Object.keys(boxes).sort(), [chartIds.latency(0), chartIds.throughput(0)].sort());
  const dot = countColour(img, boxes[chartIds.throughput(0)]!, PALETTE[0]!, 12);
  t.ok(dot >= 15, `the single timeline sample is visible (${dot} px)`);
  const cdf = countColour(img, boxes[chartIds.latency(0)]!, PALETTE[0]!, 12);
  t.ok(cdf >= 250, `the latency curve is drawn, not only its three dots (${cdf} px)`);
  const zero = render(t, renderHtml(zeroReport()), 'zero');
  t.equal(Object.keys(zero.boxes).length, 2, 'all-zero run: its two charts render');
});
