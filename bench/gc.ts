/**
 * gc: does serving a request allocate? Starts our daemon under `node --trace-gc`, warms it up with the
 * load tester, then drives N more requests of one workload (default 1 000 000 GETATTRs) and counts the
 * garbage collections V8 reports meanwhile, per thread (isolate). A request path that allocates nothing
 * shows (nearly) no collections in the worker threads however many requests it serves; one that
 * allocates ~100 bytes a request shows a scavenge every few tens of thousands of requests.
 * A benchmark, not a test: it prints figures and fails only when a run fails.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startDaemon } from '../harness/daemon.js';
import { main as loadtest } from '../src/loadtest/main.js';
import { UsageError } from '../src/errors.js';
import { positiveInt, splitOption, wantsHelp } from './cli.js';

export const USAGE = `usage: npm run bench -- gc [options]     (see bench/README.md)

  --ops=N           requests measured (default 1000000)
  --warmup=N        requests first, not measured (default 200000)
  --workload=NAME   a load tester workload (default getattr)
  --bs=SIZE         bytes per READ/WRITE (default 4k)
  --depth=N         requests in flight (default 32)
  --ours-args="..." more options for the daemon (e.g. --thread-pool-size=1)`;

interface GcOptions {
  ops: number;
  warmup: number;
  workload: string;
  bs: string;
  depth: number;
  oursArgs: string[];
}

function parse(args: string[]): GcOptions {
  const o: GcOptions = { ops: 1_000_000, warmup: 200_000, workload: 'getattr', bs: '4k', depth: 32, oursArgs: [] };
  for (const a of args) {
    const [k, v] = splitOption(a);
    if (k === '--ops') o.ops = positiveInt('ops', v);
    else if (k === '--warmup') o.warmup = positiveInt('warmup', v);
    else if (k === '--workload' && v !== '') o.workload = v;
    else if (k === '--bs' && v !== '') o.bs = v;
    else if (k === '--depth') o.depth = positiveInt('depth', v);
    else if (k === '--ours-args') o.oursArgs = v.split(/\s+/).filter((x) => x !== '');
    else throw new UsageError(`unknown option ${a}`);
  }
  return o;
}

/** One --trace-gc line: `[pid:0xISOLATE:0x...]  123 ms: Scavenge 4.1 (5.2) -> 3.9 (6.0) MB, ...`. */
const GC_LINE = /^\[\d+:(0x[0-9a-f]+)\]\s+[\d.]+ ms: (Scavenge|Minor Mark-Compact|Mark-Compact|Mark-Sweep)\b[^\n]*?-> ([\d.]+) \(/gm;

interface GcCounts {
  /** per isolate: collections of each kind, and the heap after the last one (MB) */
  byIsolate: Map<string, { kinds: Map<string, number>; heapMb: number }>;
}

function countGcs(log: string): GcCounts {
  const byIsolate: GcCounts['byIsolate'] = new Map();
  for (const m of log.matchAll(GC_LINE)) {
    const iso = m[1]!;
    let e = byIsolate.get(iso);
    if (!e) {
      e = { kinds: new Map(), heapMb: 0 };
      byIsolate.set(iso, e);
    }
    e.kinds.set(m[2]!, (e.kinds.get(m[2]!) ?? 0) + 1);
    e.heapMb = Number(m[3]);
  }
  return { byIsolate };
}

function total(c: GcCounts, iso: string): number {
  let n = 0;
  for (const k of c.byIsolate.get(iso)?.kinds.values() ?? []) n += k;
  return n;
}

export async function main(args: string[]): Promise<number> {
  if (wantsHelp(args)) {
    console.log(USAGE);
    return 0;
  }
  const o = parse(args);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-gc-'));
  const share = path.join(dir, 'share');
  fs.mkdirSync(share);
  const socketPath = path.join(dir, 'vfsd.sock');
  const d = await startDaemon('ours', { sharedDir: share, socketPath, nodeArgs: ['--trace-gc'], extraArgs: o.oursArgs });
  try {
    const run = async (ops: number): Promise<void> => {
      const rc = await loadtest([
        `--socket-path=${socketPath}`, `--workloads=${o.workload}`, `--ops=${ops}`, `--depth=${o.depth}`, `--bs=${o.bs}`,
        `--share=${share}`, '--quiet',
      ]);
      if (rc !== 0) throw new Error(`the load tester failed (exit ${rc}); daemon log:\n${d.logs().slice(-4000)}`);
    };
    console.log(`gc: ${o.warmup} ${o.workload} requests to warm up, then ${o.ops} measured (depth ${o.depth})`);
    await run(o.warmup);
    const before = countGcs(d.logs());
    await run(o.ops);
    const after = countGcs(d.logs());
    console.log('\nisolate         collections during the measured run          per 1M requests  heap after (MB)');
    for (const [iso, e] of after.byIsolate) {
      const n = total(after, iso) - total(before, iso);
      const kinds = [...e.kinds].map(([k, c]) => `${k} ${c - (before.byIsolate.get(iso)?.kinds.get(k) ?? 0)}`).filter((x) => !x.endsWith(' 0'));
      console.log(`${iso.padEnd(16)}${(kinds.join(', ') || 'none').padEnd(45)}${((n * 1e6) / o.ops).toFixed(1).padStart(15)}  ${e.heapMb.toFixed(1).padStart(15)}`);
    }
    console.log('(the isolates are the main thread and the worker threads; the load tester runs in this process, not counted)');
    return 0;
  } finally {
    await d.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
