/**
 * `virtiofsd-ts loadtest` options. Every bad value is a UsageError naming the option (exit 2).
 */
import { UsageError } from '../errors.js';
import { type BackendSpec, backendFromCommand } from './backend.js';
import { OP_KINDS, type OpKindName, WORKLOADS, type WorkloadName } from './plan.js';

export const USAGE = `usage: virtiofsd-ts loadtest (--backend=CMD | --socket-path=PATH | --compare CMD_A CMD_B) [options]

A vhost-user frontend that drives a vhost-user-fs backend with FUSE workloads, as a guest would, and
reports throughput, latency and CPU per operation. CMD is 'ours', 'reference' or a command line with
{socket} (and {share}) in it, started fresh for every workload run and stopped after it.

backend:
  --backend=CMD            start this backend for each run
  --socket-path=PATH       use a backend already listening there (started by someone else)
  --backend-pid=PID        whose CPU to count with --socket-path (default: the socket's listener)
  --compare CMD_A CMD_B    run every workload on both, alternating which goes first, --rounds times
  --rounds=N               rounds of a --compare (default 3)
  --share=DIR              the directory started backends share (default: a new temporary one)

workload:
  --workloads=LIST         comma-separated, or 'all' (default): ${WORKLOADS.join(', ')}
  --mix=KIND:W,...         what 'mixed' runs (default read-rand:4,write-rand:2,getattr:2,lookup:2)
  --duration=SECONDS       measured time per workload (default 10)
  --ops=N                  measure N operations instead of a duration
  --warmup=SECONDS         unmeasured time first (default: a fifth of the duration, 0.5 to 2 s; 0 with --ops)
  --bs=SIZE                bytes per READ/WRITE, a multiple of 512 up to 1M (default 4k)
  --depth=N                requests in flight per queue (default 16)
  --queues=N               request queues (default 1)
  --threads=N              driver threads, each owning some of the queues (default 1; at most --queues)
  --queue-size=N           descriptors per queue, a power of two (default 128, as QEMU's vhost-user-fs)
  --entries=N              files in the directory of lookup/readdir (default 1000)
  --file-size=SIZE         size of the read and write files (default 64M)
  --no-indirect            do not take indirect descriptors (each request then uses several ring
                           descriptors, its data one buffer)
  --no-event-idx           do not take EVENT_IDX (notifications follow the rings' flags instead)
  --timeout=SECONDS        a backend that leaves a request unanswered this long fails the run (default 10)

output:
  --json=FILE              one JSON object per line: each result, then each compare row ('-': stdout)
  --html=FILE              a report with charts
  --quiet                  no live progress line
  -h, --help               this text

Exit status: 0 every workload produced a result; 1 one did not (wrong replies, a dead backend...); 2 bad options.
`;

export interface LoadtestOptions {
  backends: BackendSpec[];
  compare: boolean;
  rounds: number;
  share?: string;
  workloads: WorkloadName[];
  mix: Array<[OpKindName, number]>;
  durationS: number;
  ops: number;
  warmupS: number;
  bs: number;
  depth: number;
  queues: number;
  threads: number;
  queueSize: number;
  entries: number;
  fileBytes: number;
  timeoutMs: number;
  indirect: boolean;
  eventIdx: boolean;
  json?: string;
  html?: string;
  quiet: boolean;
  help: boolean;
}

/** "4k", "1M", "65536" → bytes. */
export function parseSize(name: string, v: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(v.trim());
  if (!m) throw new UsageError(`--${name} must be a size like 4096, 4k or 1M, not '${v}'`);
  const mult = { '': 1, k: 1024, m: 1 << 20, g: 1 << 30 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * mult;
}

function int(name: string, v: string, min: number, max: number): number {
  const x = /^\d+$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isInteger(x) || x < min || x > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, not '${v}'`);
  return x;
}

function seconds(name: string, v: string, min: number): number {
  const x = Number(v);
  if (v === '' || !Number.isFinite(x) || x < min || x > 86400) throw new UsageError(`--${name} must be a number of seconds ≥ ${min}, not '${v}'`);
  return x;
}

export function parseMix(v: string): Array<[OpKindName, number]> {
  const out: Array<[OpKindName, number]> = [];
  for (const part of v.split(',')) {
    const [k, w] = part.split(':');
    if (!(OP_KINDS as readonly string[]).includes(k ?? '')) throw new UsageError(`--mix: unknown kind '${k}' (one of ${OP_KINDS.join(', ')})`);
    out.push([k as OpKindName, w === undefined ? 1 : int('mix weight', w, 1, 1000)]);
  }
  return out;
}

/** options without a value (--compare takes its two backends as the next arguments) */
const FLAGS = new Set(['quiet', 'compare', 'no-indirect', 'no-event-idx']);
const KNOWN = new Set([
  ...FLAGS, 'backend', 'socket-path', 'backend-pid', 'rounds', 'share', 'workloads', 'workload', 'mix', 'duration', 'ops',
  'warmup', 'bs', 'depth', 'queues', 'threads', 'queue-size', 'entries', 'file-size', 'timeout', 'json', 'html',
]);

export function parseOptions(argv: string[]): LoadtestOptions {
  const o: LoadtestOptions = {
    backends: [], compare: false, rounds: 3, workloads: [...WORKLOADS], mix: parseMix('read-rand:4,write-rand:2,getattr:2,lookup:2'),
    durationS: 10, ops: 0, warmupS: -1, bs: 4096, depth: 16, queues: 1, threads: 1, queueSize: 128, entries: 1000,
    fileBytes: 64 << 20, timeoutMs: 10_000, indirect: true, eventIdx: true, quiet: false, help: false,
  };
  let socket: string | undefined;
  let pid: number | undefined;
  let fileSizeGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') {
      o.help = true;
      continue;
    }
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument '${a}'`);
    const eq = a.indexOf('=');
    const key = eq < 0 ? a.slice(2) : a.slice(2, eq);
    if (!KNOWN.has(key)) throw new UsageError(`unknown option --${key}`);
    const flag = FLAGS.has(key);
    let val = eq < 0 ? undefined : a.slice(eq + 1);
    if (flag && val !== undefined && key !== 'compare') throw new UsageError(`--${key} takes no value`);
    if (val === undefined && !flag) {
      val = argv[++i];
      if (val === undefined) throw new UsageError(`--${key} needs a value`);
    }
    const v = val ?? '';
    switch (key) {
      case 'backend':
        o.backends.push(backendFromCommand(v));
        break;
      case 'socket-path':
        socket = v;
        break;
      case 'backend-pid':
        pid = int(key, v, 1, 2 ** 31);
        break;
      case 'compare': {
        const first = val ?? argv[++i];
        const second = argv[++i];
        if (first === undefined || second === undefined) throw new UsageError('--compare needs two backends: --compare CMD_A CMD_B');
        o.compare = true;
        o.backends.push(backendFromCommand(first), backendFromCommand(second));
        break;
      }
      case 'rounds': o.rounds = int(key, v, 1, 100); break;
      case 'share': o.share = v; break;
      case 'workloads':
      case 'workload': {
        if (v === 'all') {
          o.workloads = [...WORKLOADS];
          break;
        }
        o.workloads = v.split(',').map((w) => {
          if (!(WORKLOADS as readonly string[]).includes(w)) throw new UsageError(`unknown workload '${w}' (one of ${WORKLOADS.join(', ')})`);
          return w as WorkloadName;
        });
        break;
      }
      case 'mix': o.mix = parseMix(v); break;
      case 'duration': o.durationS = seconds(key, v, 0.1); break;
      case 'ops': o.ops = int(key, v, 1, 2 ** 40); break;
      case 'warmup': o.warmupS = seconds(key, v, 0); break;
      case 'bs': o.bs = parseSize(key, v); break;
      case 'depth': o.depth = int(key, v, 1, 4096); break;
      case 'queues': o.queues = int(key, v, 1, 62); break;
      case 'threads': o.threads = int(key, v, 1, 62); break;
      case 'queue-size': o.queueSize = int(key, v, 2, 32768); break;
      case 'entries': o.entries = int(key, v, 1, 1_000_000); break;
      case 'file-size': o.fileBytes = parseSize(key, v); fileSizeGiven = true; break;
      case 'timeout': o.timeoutMs = seconds(key, v, 0.5) * 1000; break;
      case 'json': o.json = v; break;
      case 'html': o.html = v; break;
      case 'quiet': o.quiet = true; break;
      case 'no-indirect': o.indirect = false; break;
      case 'no-event-idx': o.eventIdx = false; break;
      default:
        throw new UsageError(`unknown option --${key}`);
    }
  }
  if (o.help) return o;
  if (socket !== undefined) o.backends.push({ label: socket, socket, ...(pid !== undefined ? { pid } : {}) });
  if (o.backends.length === 0) throw new UsageError('say which backend: --backend=CMD, --socket-path=PATH or --compare CMD_A CMD_B');
  if (o.compare && o.backends.length !== 2) throw new UsageError('--compare takes the two backends; do not add --backend or --socket-path');
  if (o.bs < 512 || o.bs > 1 << 20 || o.bs % 512 !== 0) throw new UsageError(`--bs must be a multiple of 512 from 512 to 1M, not ${o.bs}`);
  if ((o.queueSize & (o.queueSize - 1)) !== 0) throw new UsageError(`--queue-size must be a power of two, not ${o.queueSize}`);
  if (o.depth > o.queueSize) throw new UsageError(`--depth=${o.depth} is more than --queue-size=${o.queueSize}`);
  if (o.threads > o.queues) throw new UsageError(`--threads=${o.threads} is more than --queues=${o.queues}: a queue has one driver thread`);
  // the default size, made a whole number of blocks; a size the user gave is checked as given
  if (!fileSizeGiven) o.fileBytes = Math.ceil(o.fileBytes / o.bs) * o.bs;
  if (o.compare && o.backends[0]!.label === o.backends[1]!.label) {
    // The same backend twice is a fair question (how noisy is this machine?): keep the sides apart.
    o.backends = [{ ...o.backends[0]!, label: `${o.backends[0]!.label} (A)` }, { ...o.backends[1]!, label: `${o.backends[1]!.label} (B)` }];
  }
  if (o.fileBytes < o.bs * 2 || o.fileBytes % o.bs !== 0) throw new UsageError(`--file-size must be a multiple of --bs and at least two blocks`);
  // A JIT-compiled backend needs a moment to warm up; a C one does not mind.
  if (o.warmupS < 0) o.warmupS = o.ops > 0 ? 0 : Math.min(2, Math.max(0.5, o.durationS / 5));
  return o;
}
