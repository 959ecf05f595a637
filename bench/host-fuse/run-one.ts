/**
 * One run: a fresh share and daemon, a frontend session, INIT, 500 warm-up operations, then `ops`
 * operations of one workload with `depth` in flight, timed per operation, with the daemon's CPU
 * sampled over the measured part (harness/proc-cpu.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CpuSampler, daemonCpuSeconds, startDaemon } from '../../harness/index.js';
import { S_IFREG } from '../../src/abi/stat.js';
import { Errno } from '../../src/errors.js';
import { type FuseReply, parseReply, RequestBuilder } from '../../src/frontend/fuse-requests.js';
import { VirtioFsSession } from '../../src/frontend/virtio-fs-session.js';
import { C } from '../../src/native.js';
import type { Options, Subject, Workload } from './options.js';

/** open(2) flags as a Linux guest sends them (the host's values: the benches run guest and host on one architecture). */
const { O_RDWR, O_CREAT, O_EXCL } = C;
const FILE_BYTES = 64 << 20;

/** read-1m: READ of a random 1 MiB-aligned MiB of data.bin. */
const BIG_READ = 1 << 20;

export interface Result {
  kind: Subject;
  workload: Workload;
  depth: number;
  opsPerSec: number;
  cpuUsPerOp: number;
  /** latency of one operation as the frontend saw it (all its requests, submit to reply), µs */
  p50Us: number;
  p99Us: number;
}

export async function runOne(kind: Subject, w: Workload, depth: number, o: Options): Promise<Result> {
  const daemon = kind === 'reference' ? 'reference' : 'ours';
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-hostfuse-'));
  const share = path.join(tmp, 'share');
  fs.mkdirSync(share);
  const data = Buffer.alloc(FILE_BYTES, 0x5a);
  fs.writeFileSync(path.join(share, 'data.bin'), data);
  const sock = path.join(tmp, 'vfsd.sock');
  const d = await startDaemon(daemon, {
    sharedDir: share,
    socketPath: sock,
    extraArgs: daemon === 'ours' ? o.oursArgs : ['-o', 'cache=auto'],
    ...(kind === 'baseline' ? { bin: o.baselineBin! } : {}),
  });
  let s: VirtioFsSession | undefined;
  try {
    // 1 MiB replies need 1 MiB slots: fewer of them (32 still covers --depth=32).
    s = w === 'read-1m'
      ? VirtioFsSession.open(sock, { queueSize: 32, slotBytes: BIG_READ + 16384, memBytes: 96 << 20 })
      : VirtioFsSession.open(sock, { queueSize: 128, slotBytes: 16384 });
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
          must(await call(rb.lookup(dir, `missing-${i}`)), 'LOOKUP', -Errno.ENOENT);
          return;
        case 'create': {
          // what `: > f` costs a guest: a lookup miss, CREATE, FLUSH, RELEASE, and later a FORGET
          must(await call(rb.lookup(dir, `f${i}`)), 'LOOKUP', -Errno.ENOENT);
          const c = must(await call(rb.create(dir, `f${i}`, O_RDWR | O_CREAT | O_EXCL, S_IFREG | 0o644)), 'CREATE');
          const node = c.view.getBigUint64(0, true);
          const cfh = c.view.getBigUint64(128, true);
          must(await call(rb.flush(node, cfh)), 'FLUSH');
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
        case 'read-1m': {
          const at = (randPage() / BigInt(BIG_READ)) * BigInt(BIG_READ);
          const r = must(await call(rb.read(file, fh, at, BIG_READ), BIG_READ + 16), 'READ');
          if (r.data.length !== BIG_READ) throw new Error(`${kind} READ: ${r.data.length} bytes`);
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
    const sampler = new CpuSampler(daemon, d.pid);
    sampler.begin();
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
    const sample = sampler.end();
    const cpu = sample ? daemonCpuSeconds(sample) : Number.NaN;
    if (live) process.stdout.write('\x1b[2K\r');
    lat.sort();
    const pct = (q: number): number => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]!;
    return { kind, workload: w, depth, opsPerSec: o.ops / wall, cpuUsPerOp: (cpu / o.ops) * 1e6, p50Us: pct(0.5), p99Us: pct(0.99) };
  } finally {
    s?.close();
    const st = await d.stop(5000);
    if (st.code !== 0 && daemon === 'ours') console.error(`ours exited with ${st.code ?? st.signal}:\n${d.logs().slice(-4000)}`);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
