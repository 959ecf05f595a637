/**
 * The load tester's results as data: what `--json` writes (one object per line), what the table and
 * the HTML report are rendered from. Field names are snake_case because they are the JSON format;
 * latencies are microseconds, throughput per second of the measured interval.
 */

/** One workload run against one backend (one round of a --compare). */
export interface WorkloadResult {
  kind: 'result';
  workload: string;
  /** the backend's label: 'ours', 'reference', the --backend command, or the socket path */
  backend: string;
  /** --compare round (1-based); absent outside --compare */
  round?: number;
  /** requests in flight per queue */
  depth: number;
  /** request queues driven */
  queues: number;
  /** driver threads */
  threads: number;
  /** bytes per READ/WRITE (also reported for workloads that move no data) */
  bs: number;
  /** operations completed in the measured interval (an operation may be several FUSE requests) */
  ops: number;
  /** FUSE requests completed in the measured interval */
  requests: number;
  /** length of the measured interval */
  seconds: number;
  ops_per_s: number;
  mib_per_s: number;
  min_us: number;
  mean_us: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  p999_us: number;
  max_us: number;
  /** operations that ended in an unexpected FUSE error */
  errors: number;
  /** those errors by errno name ('ENOENT': 3) */
  errors_by_errno: Record<string, number>;
  /** backend CPU time (all its threads, from /proc, ns resolution) per operation; null when unknown */
  backend_cpu_us_per_op: number | null;
  /** the load tester's own CPU time per operation */
  client_cpu_us_per_op: number;
  /** bytes whose contents were checked against what was written or the fixture's pattern */
  verified_bytes: number;
  /** throughput over time: one sample per interval of the measured part */
  timeline: TimelineSample[];
  /** the latency histogram: [bucket upper bound in µs, operations], non-empty buckets only, ascending */
  latency_histogram: Array<[number, number]>;
  /** everything the run sent over its connection, setup to teardown (to check a backend's own counts) */
  sent: WireTotals;
}

/** Requests and file data over a whole connection, every phase included. */
export interface WireTotals {
  /** FUSE requests by opcode name as fuse.h spells it, lower case ('getattr': 1000); INIT included */
  requests_by_opcode: Record<string, number>;
  /** file data returned by successful READs */
  read_bytes: number;
  /** file data written by successful WRITEs (fuse_write_out.size) */
  write_bytes: number;
}

export interface TimelineSample {
  /** seconds since the measured interval began (end of this sample) */
  t: number;
  ops_per_s: number;
  mib_per_s: number;
}

/** One workload of a --compare: backend B against backend A over all rounds. */
export interface CompareRow {
  kind: 'compare';
  workload: string;
  a: string;
  b: string;
  rounds: number;
  /** median ops/s over the rounds */
  a_ops_per_s: number;
  b_ops_per_s: number;
  /** median of the per-round ratios B/A, and their spread */
  ratio: number;
  ratio_min: number;
  ratio_max: number;
  /** median p99 latency over the rounds */
  a_p99_us: number;
  b_p99_us: number;
  a_backend_cpu_us_per_op: number | null;
  b_backend_cpu_us_per_op: number | null;
}

/** A whole run: what --html renders. */
export interface Report {
  /** ISO time the run started */
  started: string;
  /** the command line, for the record */
  argv: string[];
  host: { cpus: number; kernel: string; node: string };
  results: WorkloadResult[];
  compare: CompareRow[];
  /** workloads that produced no result, and why (wrong replies, a dead backend...) */
  failures: Array<{ workload: string; backend: string; round?: number; reason: string }>;
}
