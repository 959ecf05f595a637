/**
 * host-fuse: FUSE request loops sent straight to a vhost-user-fs backend by our own frontend
 * (src/frontend/), with no guest: what each daemon costs per request, without TCG in the way.
 * Both daemons run in the same invocation, one after the other, order alternating per workload; the
 * table gives ops/s, the daemon's CPU per operation (all its processes and threads, from /proc) and
 * ours/reference ratios.
 *
 *   npm run bench -- host-fuse [--ops=N] [--depth=1,4] [--workloads=getattr,lookup-miss,create,read-4k,write-4k]
 *                              [--only=ours|reference] [--ours-args="--thread-pool-size=2"]
 *
 * The frontend shares the 2-core host with the daemon, so ops/s at depth > 1 are partly the
 * frontend's limit; CPU per operation is the daemon's own and is the figure to compare.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Opcode } from '../src/abi/fuse.js';
import { RequestBuilder, parseReply, type FuseReply } from '../src/frontend/fuse-requests.js';
import { VirtioFsSession } from '../src/frontend/virtio-fs-session.js';
import { REFERENCE_DAEMON, startDaemon, type DaemonKind } from '../test/e2e/harness.js';

const WORKLOADS = ['getattr', 'lookup-miss', 'create', 'read-4k', 'write-4k'] as const;
type Workload = (typeof WORKLOADS)[number];
const O_RDWR = 2;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const FILE_BYTES = 64 << 20;

interface Options {
  ops: number;
  depths: number[];
  workloads: Workload[];
  kinds: DaemonKind[];
  oursArgs: string[];
}

interface Result {
  kind: DaemonKind;
  workload: Workload;
  depth: number;
  opsPerSec: number;
  cpuUsPerOp: number;
  /** latency of one operation as the frontend saw it (all its requests, submit to reply), µs */
  p50Us: number;
  p99Us: number;
}

function parse(argv: string[]): Options {
  const o: Options = { ops: 20000, depths: [1, 4], workloads: [...WORKLOADS], kinds: ['reference', 'ours'], oursArgs: [] };
  for (const a of argv) {
    const [k, v = ''] = a.split(/=(.*)/s, 2) as [string, string?];
    if (k === '--ops') o.ops = Number(v);
    else if (k === '--depth') o.depths = v.split(',').map(Number);
    else if (k === '--workloads') o.workloads = v.split(',') as Workload[];
    else if (k === '--only') o.kinds = [v as DaemonKind];
    else if (k === '--ours-args') o.oursArgs = v.split(/\s+/).filter(Boolean);
    else throw new Error(`host-fuse: unknown option ${a}`);
  }
  if (!Number.isInteger(o.ops) || o.ops < 1) throw new Error('--ops must be a positive integer');
  if (o.depths.some((d) => !Number.isInteger(d) || d < 1 || d > 32)) throw new Error('--depth takes 1..32');
  for (const w of o.workloads) if (!WORKLOADS.includes(w)) throw new Error(`unknown workload ${w} (${WORKLOADS.join(', ')})`);
  for (const k of o.kinds) if (k !== 'ours' && k !== 'reference') throw new Error(`--only=ours|reference, not ${k}`);
  return o;
}

/** CPU seconds used so far by pid, its threads and its child processes (the reference forks). */
function cpuSeconds(pid: number): number {
  const tick = 100; // USER_HZ
  let t = 0;
  const statOf = (p: string): string[] | null => {
    try {
      const s = fs.readFileSync(p, 'utf8');
      return s.slice(s.lastIndexOf(')') + 2).split(' ');
    } catch {
      return null;
    }
  };
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    const f = statOf(`/proc/${pid}/task/${tid}/stat`);
    if (f) t += (Number(f[11]) + Number(f[12])) / tick;
  }
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const f = statOf(`/proc/${p}/stat`);
    if (f && Number(f[1]) === pid) t += cpuSeconds(Number(p));
  }
  return t;
}

function u64le(v: bigint): Uint8Array {
  const a = new Uint8Array(8);
  new DataView(a.buffer).setBigUint64(0, v, true);
  return a;
}

async function runOne(kind: DaemonKind, w: Workload, depth: number, o: Options): Promise<Result> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-hostfuse-'));
  const share = path.join(tmp, 'share');
  fs.mkdirSync(share);
  const data = Buffer.alloc(FILE_BYTES, 0x5a);
  fs.writeFileSync(path.join(share, 'data.bin'), data);
  const sock = path.join(tmp, 'vfsd.sock');
  const d = await startDaemon(kind, {
    sharedDir: share,
    socketPath: sock,
    extraArgs: kind === 'ours' ? o.oursArgs : ['-o', 'cache=auto'],
  });
  let s: VirtioFsSession | undefined;
  try {
    s = VirtioFsSession.open(sock, { queueSize: 128, slotBytes: 16384 });
    const rb = new RequestBuilder();
    const sess = s;
    // reply buffers as a guest sizes them: header + what was asked (the reference fills whatever it is given)
    const call = async (req: Uint8Array, cap = 4096 + 16): Promise<FuseReply> => parseReply(await sess.send(1, req, cap));
    const must = (r: FuseReply, what: string, ...ok: number[]): FuseReply => {
      if (r.error !== 0 && !ok.includes(r.error)) throw new Error(`${kind} ${what}: errno ${-r.error}`);
      return r;
    };
    must(await call(rb.init()), 'INIT');
    fs.mkdirSync(path.join(share, 'd'));
    const dir = must(await call(rb.lookup(1n, 'd')), 'LOOKUP d').view.getBigUint64(0, true);
    const file = must(await call(rb.lookup(1n, 'data.bin')), 'LOOKUP data.bin').view.getBigUint64(0, true);
    const opened = must(await call(rb.open(file, O_RDWR)), 'OPEN');
    const fh = opened.view.getBigUint64(0, true);
    const page = new Uint8Array(4096).fill(0xa5);
    let seed = 12345;
    const randPage = (): bigint => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return BigInt(seed % (FILE_BYTES / 4096)) * 4096n;
    };

    const op = async (i: number): Promise<void> => {
      switch (w) {
        case 'getattr':
          must(await call(rb.getattr(file)), 'GETATTR');
          return;
        case 'lookup-miss':
          must(await call(rb.lookup(dir, `missing-${i}`)), 'LOOKUP', -2);
          return;
        case 'create': {
          // what `: > f` costs a guest: a lookup miss, CREATE, FLUSH, RELEASE, and later a FORGET
          must(await call(rb.lookup(dir, `f${i}`)), 'LOOKUP', -2);
          const c = must(await call(rb.create(dir, `f${i}`, O_RDWR | O_CREAT | O_EXCL, 0o100644)), 'CREATE');
          const node = c.view.getBigUint64(0, true);
          const cfh = c.view.getBigUint64(128, true);
          must(await call(rb.build(Opcode.Flush, node, u64le(cfh), new Uint8Array(16))), 'FLUSH');
          must(await call(rb.release(node, cfh)), 'RELEASE');
          // and the FORGET a guest sends when it drops the inode (on the hiprio queue, no reply): keeps
          // the daemons' inode counts, and so their open descriptors, bounded
          await sess.send(0, rb.forget(node, 1n), 0);
          return;
        }
        case 'read-4k': {
          const r = must(await call(rb.read(file, fh, randPage(), 4096)), 'READ');
          if (r.data.length !== 4096) throw new Error(`${kind} READ: ${r.data.length} bytes`);
          return;
        }
        case 'write-4k': {
          const r = must(await call(rb.write(file, fh, randPage(), page)), 'WRITE');
          if (r.view.getUint32(0, true) !== 4096) throw new Error(`${kind} WRITE: short`);
          return;
        }
      }
    };

    // warm up (JIT, host caches), then measure
    const warm = Math.min(500, o.ops);
    for (let i = 0; i < warm; i++) await op(o.ops + i);
    const cpu0 = cpuSeconds(d.pid);
    const t0 = process.hrtime.bigint();
    let next = 0;
    let done = 0;
    const lat = new Float64Array(o.ops);
    const live = process.stdout.isTTY;
    const ticker = setInterval(() => {
      if (live) process.stdout.write(`\x1b[2K\r  ${kind.padEnd(9)} ${w.padEnd(11)} depth ${depth}: ${done}/${o.ops}`);
    }, 500);
    try {
      await Promise.all(
        Array.from({ length: depth }, async () => {
          for (let i = next++; i < o.ops; i = next++) {
            const t = process.hrtime.bigint();
            await op(i);
            lat[i] = Number(process.hrtime.bigint() - t) / 1000;
            done++;
          }
        }),
      );
    } finally {
      clearInterval(ticker);
    }
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = cpuSeconds(d.pid) - cpu0;
    if (live) process.stdout.write('\x1b[2K\r');
    lat.sort();
    const pct = (q: number): number => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]!;
    return { kind, workload: w, depth, opsPerSec: o.ops / wall, cpuUsPerOp: (cpu / o.ops) * 1e6, p50Us: pct(0.5), p99Us: pct(0.99) };
  } finally {
    s?.close();
    const st = await d.stop(5000);
    if (st.code !== 0 && kind === 'ours') console.error(`ours exited with ${st.code ?? st.signal}:\n${d.logs().slice(-4000)}`);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

export async function main(argv: string[]): Promise<number> {
  const o = parse(argv);
  if (o.kinds.includes('reference') && !fs.existsSync(REFERENCE_DAEMON)) {
    console.error(`host-fuse: ${REFERENCE_DAEMON} is missing (apt-get install qemu-system-x86); use --only=ours`);
    return 2;
  }
  console.log(`host-fuse: ${o.ops} operations per run, workloads ${o.workloads.join(',')}, depths ${o.depths.join(',')}`);
  const results: Result[] = [];
  let flip = false;
  for (const w of o.workloads) {
    for (const depth of o.depths) {
      // alternate who goes first: the host file system's state (caches, inode reuse) favours the later run
      const order = flip ? [...o.kinds].reverse() : o.kinds;
      flip = !flip;
      for (const kind of order) {
        const r = await runOne(kind, w, depth, o);
        results.push(r);
        console.log(`  ${kind.padEnd(9)} ${w.padEnd(11)} depth ${depth}: ${r.opsPerSec.toFixed(0).padStart(7)} ops/s, daemon CPU ${r.cpuUsPerOp.toFixed(1)} µs/op, p50/p99 ${r.p50Us.toFixed(0)}/${r.p99Us.toFixed(0)} µs`);
      }
    }
  }
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
  return 0;
}
