/**
 * The soak's judgement, as pure functions over samples (so a test can feed it a synthetic series):
 * parsing the daemon's SIGUSR1 status line, the final table, and the two checks — resident memory
 * must not grow past a bound after the warm-up, and descriptors, inodes and handles must come back to
 * their idle baseline once the workload has stopped and the load tester has disconnected.
 */

/** One observation of the daemon process. */
export interface Sample {
  /** seconds since the soak started */
  t: number;
  /** 'start' (idle, before any load), 'load' (during a slice), 'end' (idle, after the last slice) */
  phase: 'start' | 'load' | 'end';
  /** VmRSS of the daemon, KiB (/proc/PID/status) */
  rssKib: number;
  /** entries of /proc/PID/fd */
  fds: number;
  /** from the status line */
  inodes: number;
  handles: number;
  sessions: number;
}

/** The daemon's status line (src/daemon.ts `status()`), as the soak reads it off its log. */
export interface Status {
  inodes: number;
  handles: number;
  sessions: number;
  rssKib: number;
  fds: number;
}

const STATUS_RE = /status: inodes=(\d+) handles=(\d+) sessions=(\d+) rss_kib=(-?\d+) fds=(-?\d+)/;

/** The last status line in `text`, or undefined. */
export function parseStatus(text: string): Status | undefined {
  let last: Status | undefined;
  for (const line of text.split('\n')) {
    const m = STATUS_RE.exec(line);
    if (m) last = { inodes: +m[1]!, handles: +m[2]!, sessions: +m[3]!, rssKib: +m[4]!, fds: +m[5]! };
  }
  return last;
}

export interface Bounds {
  /** seconds of warm-up: the first sample at or after it is the RSS baseline */
  warmupS: number;
  /** RSS may grow this many KiB over the baseline ... */
  rssGrowthKib: number;
  /** ... or this fraction of it, whichever is larger */
  rssGrowthFraction: number;
}

export const DEFAULT_BOUNDS: Bounds = { warmupS: 60, rssGrowthKib: 64 * 1024, rssGrowthFraction: 0.25 };

export function describeBounds(b: Bounds): string {
  return `RSS after the ${b.warmupS} s warm-up may grow by at most max(${Math.round(b.rssGrowthKib / 1024)} MiB, ` +
    `${Math.round(b.rssGrowthFraction * 100)} %) of its value then; fds, inodes and handles must be back at ` +
    'their start values once the load has stopped';
}

export interface Row {
  figure: string;
  start: number;
  warm: number;
  end: number;
  max: number;
  /** end - start for the counts, max - warm for RSS */
  growth: number;
}

export interface Verdict {
  rows: Row[];
  failures: string[];
}

type Figure = 'rssKib' | 'fds' | 'inodes' | 'handles';
const FIGURES: Array<[Figure, string]> = [['rssKib', 'rss KiB'], ['fds', 'fds'], ['inodes', 'inodes'], ['handles', 'handles']];

/** The table and the failures of a run's samples (in time order, a 'start' first and an 'end' last). */
export function judge(samples: Sample[], b: Bounds = DEFAULT_BOUNDS): Verdict {
  const failures: string[] = [];
  const start = samples.find((s) => s.phase === 'start');
  const end = [...samples].reverse().find((s) => s.phase === 'end');
  if (!start || !end) return { rows: [], failures: ['no start or no end sample: the run did not complete'] };
  // The RSS baseline: the first sample once the warm-up is over (the heap, the JIT and the tables'
  // pages settle in the first minute); a run shorter than the warm-up uses its last sample.
  const warm = samples.find((s) => s.t >= b.warmupS) ?? end;
  const after = samples.filter((s) => s.t >= warm.t);
  const rows = FIGURES.map(([k, figure]) => {
    const max = Math.max(...samples.map((s) => s[k]));
    const growth = k === 'rssKib' ? Math.max(...after.map((s) => s[k])) - warm[k] : end[k] - start[k];
    return { figure, start: start[k], warm: warm[k], end: end[k], max, growth };
  });
  const rss = rows[0]!;
  const allowed = Math.max(b.rssGrowthKib, warm.rssKib * b.rssGrowthFraction);
  if (rss.growth > allowed) {
    failures.push(`RSS grew by ${kib(rss.growth)} after the warm-up (from ${kib(warm.rssKib)}), more than the ${kib(allowed)} allowed`);
  }
  for (const r of rows.slice(1)) {
    if (r.end !== r.start) failures.push(`${r.figure}: ${r.end} once the load stopped, ${r.start} at the start`);
  }
  if (end.sessions !== 0) failures.push(`a session is still connected at the end (${end.sessions})`);
  return { rows, failures };
}

function kib(v: number): string {
  return `${(v / 1024).toFixed(1)} MiB`;
}

/** The final table: figure, start, after warm-up, end, max, growth. */
export function formatTable(rows: Row[]): string {
  const head = ['figure', 'start', 'warm-up', 'end', 'max', 'growth'];
  const cells = rows.map((r) => [r.figure, String(r.start), String(r.warm), String(r.end), String(r.max), (r.growth > 0 ? '+' : '') + String(r.growth)]);
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => c.map((x, i) => (i === 0 ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join('  ');
  return [line(head), ...cells.map(line)].join('\n');
}
