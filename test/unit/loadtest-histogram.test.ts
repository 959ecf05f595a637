/**
 * The load tester's latency histogram (src/loadtest/histogram.ts) against exact answers: quantiles of
 * random samples from several distributions compared with the sorted array (nearest rank), within the
 * 1/128 relative error its log-linear buckets promise; max exact, min a lower bound; the JSON buckets;
 * merging; the bucket functions over every bucket edge; and that recording allocates nothing.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import t from 'tap';
import { HISTOGRAM_BUCKETS, Histogram, bucketOf, upperOf } from '../../src/loadtest/histogram.js';
import { rng } from '../helpers/driver-loopback.js';

function normal(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

const MS = 1e6;
const S = 1e9;
/** Samples in ns, as the driver threads record them (fractional values are floored by record). */
const DISTRIBUTIONS: Record<string, (r: () => number) => number> = {
  'uniform 0..127 ns (exact buckets)': (r) => Math.floor(r() * 128),
  'uniform 0..5000 ns': (r) => r() * 5000,
  'uniform 1 µs..10 ms': (r) => 1000 + r() * 10 * MS,
  'log-normal around 50 µs': (r) => Math.exp(Math.log(50_000) + 1.2 * normal(r)),
  'bimodal 0.4 ms / 6 ms': (r) => (r() < 0.7 ? 0.4 * MS : 6 * MS) * (1 + 0.05 * normal(r)),
  'up to 10 s': (r) => r() * 10 * S,
  'beyond 2^32 ns, up to 2^39': (r) => 2 ** 32 + r() * (2 ** 39 - 2 ** 32),
  'log-uniform 1 ns..2^39 ns': (r) => Math.exp(r() * Math.log(2 ** 39)),
};

function sample(name: string, n: number, seed: number): number[] {
  const f = DISTRIBUTIONS[name]!;
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.max(0, Math.floor(f(r))));
}

/** Nearest-rank quantile of the sorted values: the one the histogram's bucket holds. */
function exactQuantile(sorted: number[], q: number): number {
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!;
}

function histogramOf(values: number[]): Histogram {
  const h = new Histogram();
  for (const v of values) h.record(v);
  return h;
}

const QS = [0.5, 0.9, 0.99, 0.999];

t.test('quantiles within 1/128 of the exact ones, max exact, min a lower bound', async (t) => {
  let seed = 1;
  for (const name of Object.keys(DISTRIBUTIONS)) {
    for (const n of [1, 2, 7, 1000, 100_000]) {
      const values = sample(name, n, seed++);
      const h = histogramOf(values);
      const sorted = [...values].sort((a, b) => a - b);
      const label = `${name}, n=${n}`;
      t.equal(h.count, n, `${label}: count`);
      t.equal(h.total(), n, `${label}: total() from the buckets`);
      let worst = '';
      for (const q of QS) {
        const exact = exactQuantile(sorted, q);
        const got = h.quantileNs(q);
        // an upper bound of the bucket: never below, at most one bucket width (≤ value/128) above
        if (got < exact || got > exact + exact / 128 + 1) worst += ` q=${q}: ${got} vs exact ${exact};`;
        if (exact < 128 && got !== exact) worst += ` q=${q}: small value ${exact} not exact (${got});`;
      }
      t.equal(worst, '', `${label}: p50/p90/p99/p99.9 within 1/128`);
      const max = sorted[n - 1]!;
      const min = sorted[0]!;
      t.equal(h.maxNs, max, `${label}: maxNs exact`);
      t.equal(h.quantileNs(1), max, `${label}: q=1 is the max`);
      t.ok(h.minNs() <= min && h.minNs() >= min - min / 128, `${label}: minNs ${h.minNs()} ≤ min ${min}, within 1/128`);
      const mean = values.reduce((a, b) => a + b, 0) / n;
      t.ok(Math.abs(h.meanNs() - mean) <= mean / 128 + 1, `${label}: mean ${h.meanNs()} within 1/128 of ${mean}`);
    }
  }
});

t.test('bimodal: p50 in the low mode, p90 and up in the high one', async (t) => {
  const values = Array.from({ length: 10_000 }, (_, i) => (i % 10 < 7 ? 400_000 : 6_000_000));
  const h = histogramOf(values);
  t.ok(h.quantileNs(0.5) >= 400_000 && h.quantileNs(0.5) <= 400_000 * (1 + 1 / 128), `p50 ${h.quantileNs(0.5)}`);
  t.ok(h.quantileNs(0.7) <= 400_000 * (1 + 1 / 128), 'p70 is still the low mode (7000th of 10000)');
  t.equal(h.quantileNs(0.7001), 6_000_000, 'the next rank is the high mode, clamped to the max');
  t.equal(h.quantileNs(0.99), 6_000_000);
});

t.test('record: negative is 0, fractions floored; empty and reset histograms', async (t) => {
  const h = new Histogram();
  t.equal(h.quantileNs(0.5), 0, 'empty: quantile 0');
  t.equal(h.minNs(), 0, 'empty: min 0');
  t.equal(h.meanNs(), 0, 'empty: mean 0');
  t.same(h.bucketsUs(), [], 'empty: no buckets');
  h.record(-5);
  h.record(3.99);
  t.equal(h.count, 2);
  t.equal(h.minNs(), 0, '-5 recorded as 0');
  t.equal(h.maxNs, 3, '3.99 recorded as 3');
  t.same(h.bucketsUs(), [[0, 1], [0.003, 1]]);
  h.reset();
  t.equal(h.count, 0);
  t.equal(h.maxNs, 0);
  t.equal(h.total(), 0, 'reset zeroes the buckets');
  t.same(h.bucketsUs(), []);
});

t.test('bucketsUs: ascending, bucket upper bounds, counts summing to count', async (t) => {
  const values = [...sample('log-uniform 1 ns..2^39 ns', 50_000, 77), ...sample('bimodal 0.4 ms / 6 ms', 5000, 78)];
  const h = histogramOf(values);
  const b = h.bucketsUs();
  let ok = true;
  for (let i = 1; i < b.length; i++) if (!(b[i]![0] > b[i - 1]![0])) ok = false;
  t.ok(ok, `${b.length} buckets strictly ascending`);
  t.equal(b.reduce((a, [, c]) => a + c, 0), values.length, 'counts sum to the count');
  t.ok(b.every(([, c]) => c > 0), 'only non-empty buckets');
  // every value is at most its bucket's upper bound and above the previous listed one
  const sorted = [...values].sort((a, b) => a - b);
  let k = 0;
  let seen = 0;
  let placed = true;
  for (const [upUs, c] of b) {
    for (let j = 0; j < c; j++, k++) {
      const v = sorted[k]!;
      if (v > Math.round(upUs * 1000) || (seen > 0 && v <= Math.round(b[seen - 1]![0] * 1000))) placed = false;
    }
    seen++;
  }
  t.ok(placed, 'the i-th listed bucket holds exactly the next values in sorted order');
});

t.test('add: two histograms merged equal one histogram of both', async (t) => {
  const a = sample('log-normal around 50 µs', 20_000, 5);
  const b = sample('up to 10 s', 3000, 6);
  const ha = histogramOf(a);
  const hb = histogramOf(b);
  const both = histogramOf([...a, ...b]);
  ha.add(hb);
  t.equal(ha.count, both.count);
  t.equal(ha.maxNs, both.maxNs);
  t.same(Array.from(ha.counts), Array.from(both.counts), 'same buckets');
  for (const q of [0, ...QS, 1]) t.equal(ha.quantileNs(q), both.quantileNs(q), `q=${q}`);
  t.equal(ha.minNs(), both.minNs());
  const empty = new Histogram();
  empty.add(ha);
  t.same(Array.from(empty.counts), Array.from(both.counts), 'adding into an empty one copies');
  t.equal(empty.maxNs, both.maxNs);
});

t.test('counts on a SharedArrayBuffer: another view reads what was recorded', async (t) => {
  const sab = new SharedArrayBuffer(Histogram.bytes());
  const writer = new Histogram(new Float64Array(sab));
  const reader = new Histogram(new Float64Array(sab));
  for (const v of sample('bimodal 0.4 ms / 6 ms', 1000, 9)) writer.record(v);
  t.equal(reader.total(), 1000, 'total() counts the shared buckets');
  t.equal(reader.count, 0, 'the reader never recorded itself');
  t.ok(reader.quantileNs(0.99) >= 5 * MS, 'and its quantiles come from them (no max to clamp to)');
  t.throws(() => new Histogram(new Float64Array(10)), RangeError, 'wrong size refused');
});

t.test('bucketOf/upperOf: every bucket edge', async (t) => {
  // The buckets partition [0, 2^40): upperOf(b) is the last value of b, upperOf(b) + 1 the first of b + 1.
  let bad = '';
  for (let b = 0; b < HISTOGRAM_BUCKETS - 1; b++) {
    const up = upperOf(b);
    if (bucketOf(up) !== b) bad += ` bucketOf(upperOf(${b}))=${bucketOf(up)};`;
    if (bucketOf(up + 1) !== b + 1) bad += ` bucketOf(upperOf(${b})+1)=${bucketOf(up + 1)};`;
    if (b > 0 && !(up > upperOf(b - 1))) bad += ` upperOf not increasing at ${b};`;
  }
  t.equal(bad, '', `all ${HISTOGRAM_BUCKETS} buckets`);
  t.equal(upperOf(HISTOGRAM_BUCKETS - 1), 2 ** 40 - 1, 'the last bucket ends at 2^40 - 1');
  t.equal(bucketOf(2 ** 40), HISTOGRAM_BUCKETS - 1, 'larger values land in the last bucket');
  t.equal(bucketOf(2 ** 50), HISTOGRAM_BUCKETS - 1);

  // the property for values: v ≤ upperOf(bucketOf(v)), v > upperOf(bucketOf(v) - 1), width ≤ v/128
  const values: number[] = [];
  for (let v = 0; v <= 5000; v++) values.push(v);
  for (let e = 7; e < 40; e++) for (const d of [-2, -1, 0, 1, 2]) values.push(2 ** e + d);
  const r = rng(42);
  for (let i = 0; i < 20_000; i++) values.push(Math.floor(Math.exp(r() * Math.log(2 ** 40 - 1))));
  bad = '';
  for (const v of values) {
    const b = bucketOf(v);
    const up = upperOf(b);
    const below = b === 0 ? -1 : upperOf(b - 1);
    if (!(b >= 0 && b < HISTOGRAM_BUCKETS && v <= up && v > below)) bad += ` v=${v} b=${b} up=${up} prev=${below};`;
    if (up - v > v / 128) bad += ` v=${v}: bucket too wide (${up});`;
  }
  t.equal(bad, '', `${values.length} values, including both sides of every power of two and of 2^32`);
});

t.test('recording allocates nothing', async (t) => {
  // gc() without --expose-gc on the command line (tap runs the file with plain node): the flag set at
  // run time applies to new contexts.
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const values = new Float64Array(1_000_000);
  const r = rng(3);
  // latencies from 1 ns to 10^10 ns: Smis and heap numbers alike, past 2^31 and 2^32
  for (let i = 0; i < values.length; i++) values[i] = Math.exp(r() * 23);
  /** heap growth (bytes) and collections while `f` runs, after warming it up */
  const measure = (f: () => void): { grew: number; gcs: number } => {
    f();
    f();
    gc();
    gc();
    const p = new v8.GCProfiler();
    const before = v8.getHeapStatistics().used_heap_size;
    p.start();
    f();
    const stats = p.stop();
    return { grew: v8.getHeapStatistics().used_heap_size - before, gcs: stats.statistics.length };
  };
  const h = new Histogram();
  const rec = measure(() => {
    for (let i = 0; i < values.length; i++) h.record(values[i]!);
  });
  t.ok(rec.grew < 256 * 1024, `1e6 records grew the heap by ${rec.grew} bytes`);
  t.equal(rec.gcs, 0, 'and caused no collection');
  // the control: the same loop keeping a small object per value is seen
  const kept: Array<{ v: number }> = [];
  const control = measure(() => {
    kept.length = 0;
    for (let i = 0; i < values.length; i++) kept.push({ v: values[i]! });
  });
  t.ok(control.grew > 8_000_000 || control.gcs > 0, `the measurement sees an allocating loop (${control.grew} bytes, ${control.gcs} GCs)`);
});

t.test('a latency beyond the last bucket: the max is exact at q = 1 and for the last bucket', async (t) => {
  const h = new Histogram();
  h.record(1000);
  h.record(2 ** 41);
  t.equal(h.quantileNs(1), 2 ** 41, 'q = 1 is the max');
  t.equal(h.quantileNs(0.99), 2 ** 41, 'the overflow bucket answers with the max');
  t.ok(Math.abs(h.quantileNs(0.5) - 1000) <= 1000 / 128, 'the median still from its bucket');
});
