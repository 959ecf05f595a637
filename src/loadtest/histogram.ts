/**
 * A latency histogram with bounded relative error (log-linear buckets, like HdrHistogram's): values
 * below 2^SUB_BITS ns are exact; above, each power of two is cut into 2^SUB_BITS buckets, so a
 * percentile is off by at most 1/2^SUB_BITS (0.8 %). Counts live in a Float64Array that may sit on a
 * SharedArrayBuffer, so a driver thread records while the main thread reads p99 for the progress line.
 * Recording allocates nothing.
 */
const SUB_BITS = 7;
const SUB = 1 << SUB_BITS;
/** values up to 2^MAX_EXP ns (≈ 18 minutes); larger ones land in the last bucket */
const MAX_EXP = 40;
export const HISTOGRAM_BUCKETS = SUB + (MAX_EXP - SUB_BITS) * SUB;

export class Histogram {
  readonly counts: Float64Array;
  count = 0;
  maxNs = 0;

  constructor(counts?: Float64Array) {
    this.counts = counts ?? new Float64Array(HISTOGRAM_BUCKETS);
    if (this.counts.length !== HISTOGRAM_BUCKETS) throw new RangeError('histogram of the wrong size');
  }

  static bytes(): number {
    return HISTOGRAM_BUCKETS * 8;
  }

  record(ns: number): void {
    const v = ns < 0 ? 0 : Math.floor(ns);
    this.counts[bucketOf(v)]! += 1;
    this.count++;
    if (v > this.maxNs) this.maxNs = v;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.maxNs = 0;
  }

  add(other: Histogram): void {
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) this.counts[i]! += other.counts[i]!;
    this.count += other.count;
    this.maxNs = Math.max(this.maxNs, other.maxNs);
  }

  /** Total recorded, from the buckets (for a histogram another thread writes). */
  total(): number {
    let n = 0;
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) n += this.counts[i]!;
    return n;
  }

  /** The value at quantile q (0..1), in ns: the upper bound of its bucket (the max for q = 1). */
  quantileNs(q: number): number {
    const total = this.total();
    if (total === 0) return 0;
    if (q >= 1 && this.maxNs > 0) return this.maxNs;
    const rank = Math.max(1, Math.ceil(q * total));
    let seen = 0;
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) {
      seen += this.counts[i]!;
      // the last bucket also holds everything beyond 2^MAX_EXP ns: its bound is the max then
      if (seen >= rank) return this.maxNs > 0 && (i === HISTOGRAM_BUCKETS - 1 || upperOf(i) > this.maxNs) ? this.maxNs : upperOf(i);
    }
    return this.maxNs;
  }

  minNs(): number {
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) if (this.counts[i]! > 0) return lowerOf(i);
    return 0;
  }

  meanNs(): number {
    let n = 0;
    let sum = 0;
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) {
      const c = this.counts[i]!;
      if (c === 0) continue;
      n += c;
      sum += c * ((lowerOf(i) + upperOf(i)) / 2);
    }
    return n === 0 ? 0 : sum / n;
  }

  /** Non-empty buckets as [upper bound in µs, count], ascending (the JSON's latency_histogram). */
  bucketsUs(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) {
      const c = this.counts[i]!;
      if (c > 0) out.push([upperOf(i) / 1000, c]);
    }
    return out;
  }
}

export function bucketOf(v: number): number {
  if (v < SUB) return v;
  // exponent e with 2^e ≤ v < 2^(e+1); values ≥ 2^32 need more than clz32
  const e = v < 0x1_0000_0000 ? 31 - Math.clz32(v) : 32 + (31 - Math.clz32(Math.floor(v / 0x1_0000_0000)));
  if (e >= MAX_EXP) return HISTOGRAM_BUCKETS - 1;
  const shift = e - SUB_BITS;
  const sub = Math.floor(v / 2 ** shift) - SUB; // 0..SUB-1
  return SUB + (e - SUB_BITS) * SUB + sub;
}

function lowerOf(i: number): number {
  if (i < SUB) return i;
  const k = i - SUB;
  const e = SUB_BITS + Math.floor(k / SUB);
  return 2 ** e + (k % SUB) * 2 ** (e - SUB_BITS);
}

/** The largest value of bucket i. */
export function upperOf(i: number): number {
  if (i < SUB) return i;
  const k = i - SUB;
  const e = SUB_BITS + Math.floor(k / SUB);
  return lowerOf(i) + 2 ** (e - SUB_BITS) - 1;
}
