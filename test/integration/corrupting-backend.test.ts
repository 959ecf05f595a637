/**
 * The corrupting backend (test/helpers/corrupting-backend.ts, docs/testing.md "The corrupting
 * backend"): a vhost-user proxy in front of a real backend that damages FUSE replies in guest RAM.
 * Driven by the project's own frontend (VirtioFsSession + RequestBuilder): INIT, LOOKUP, OPEN, READ of
 * a file of known content. --every=0 must be a faithful relay; --flip=data must change exactly one
 * byte of the READ data, --flip=unique the reply's unique, --flip=len the reply's len, and nothing else.
 * A region table sent by ADD_MEM_REG at a high address, with READs through indirect tables and the
 * reply split over two buffers, checks the proxy's translation and --every=2. In front of the
 * reference daemon the data case runs again (skipped where it is not installed; a failure in CI).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { type FuseReply, decodeOpenOut, parseReply, RequestBuilder } from '../../src/frontend/fuse-requests.js';
import type { RegionSpec } from '../../src/frontend/guest-ram.js';
import { VirtioFsSession } from '../../src/frontend/virtio-fs-session.js';
import { native } from '../../src/native.js';
import { VIRTIO_RING_F_INDIRECT_DESC } from '../../src/vhost/message.js';
import { type DaemonHandle, type DaemonKind, REFERENCE_DAEMON, daemonCommand, startDaemon } from '../../harness/index.js';
import { pattern } from '../helpers/guest-memory-kit.js';

const PROXY = fileURLToPath(new URL('../helpers/corrupting-backend.js', import.meta.url));
const FILE_LEN = 12288;
const MiB = 1n << 20n;

interface Proxied {
  sock: string;
  proxy: DaemonHandle;
  content: Uint8Array;
  /** the backend's pid (the proxy's child) */
  upstreamPid: number;
  /** stops the proxy (and so its upstream) and removes the share */
  cleanup(): Promise<void>;
}

/** The proxy with `flags` in front of `upstream` serving a fresh share that holds `f`. */
async function startProxy(upstream: DaemonKind, flags: string[], seed: number): Promise<Proxied> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-corrupt-'));
  const share = path.join(dir, 'share');
  fs.mkdirSync(share);
  const content = pattern(FILE_LEN, seed);
  fs.writeFileSync(path.join(share, 'f'), content);
  const sock = path.join(dir, 'proxy.sock');
  const up = daemonCommand(upstream, { sharedDir: share, socketPath: '{socket}' });
  const args = [`--socket-path=${sock}`, ...flags, '--', up.cmd, ...up.args];
  // Generous: on a loaded 2-core host a node daemon behind a node proxy can take many seconds to start.
  const proxy = await startDaemon('ours', { bin: PROXY, sharedDir: share, socketPath: sock, args, socketTimeoutMs: 60_000 }).catch((e: Error) => {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  });
  const cleanup = async (): Promise<void> => {
    await proxy.stop(3000);
    if (process.env.CORRUPT_TEST_VERBOSE) console.error(proxy.logs());
    fs.rmSync(dir, { recursive: true, force: true });
  };
  // The proxy started its upstream before it listened: its one child.
  const children = fs.readFileSync(`/proc/${proxy.pid}/task/${proxy.pid}/children`, 'utf8').trim().split(/\s+/);
  return { sock, proxy, content, upstreamPid: Number(children[0]), cleanup };
}

/** Proxies (each with its backend) starting at once: more only make each start slower on 2 cores. */
const STARTING_AT_ONCE = 3;
let starting = 0;
const waiting: Array<() => void> = [];

async function limited<T>(fn: () => Promise<T>): Promise<T> {
  if (starting < STARTING_AT_ONCE) starting++;
  else await new Promise<void>((r) => waiting.push(r));
  try {
    return await fn();
  } finally {
    // The slot passes to the next in line, or is freed.
    const next = waiting.shift();
    if (next) next();
    else starting--;
  }
}

/**
 * The cases' proxies and backends start ahead, a few at a time (a daemon takes a second or more to
 * start); the cases run one after the other. A case takes its own with `use`, which stops it at the end.
 */
function launch(upstream: DaemonKind, flags: string[], seed: number): (t: Test) => Promise<Proxied> {
  const p = limited(() => startProxy(upstream, flags, seed));
  p.catch(() => {}); // awaited by its case; not an unhandled rejection meanwhile
  return async (t) => {
    const got = await p;
    t.teardown(got.cleanup);
    return got;
  };
}

const noReference = fs.existsSync(REFERENCE_DAEMON) ? false : `${REFERENCE_DAEMON} is missing (apt-get install qemu-system-x86)`;
const use = {
  faithful: launch('ours', ['--flip=data', '--every=0'], 1),
  data: launch('ours', ['--flip=data'], 2),
  unique: launch('ours', ['--flip=unique', '--every=1'], 3),
  len: launch('ours', ['--flip=len'], 4),
  placed: launch('ours', ['--flip=data', '--every=2'], 5),
  reference: noReference ? undefined : launch('reference', ['--flip=data'], 6),
};

/** p, or a rejection after `ms` (the timer does not outlive the race). */
async function within<T>(p: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** One exchange: the request's unique, the reply bytes (used length) and their decoding. */
interface Exchange {
  unique: bigint;
  raw: Uint8Array;
  r: FuseReply;
}

async function exchange(rb: RequestBuilder, build: () => Uint8Array, send: (req: Uint8Array) => Promise<Uint8Array>, what: string): Promise<Exchange> {
  const unique = rb.unique;
  const raw = await within(send(build()), what);
  return { unique, raw, r: parseReply(raw) };
}

/** INIT, LOOKUP f, OPEN; the node id and file handle. */
async function openF(s: VirtioFsSession, rb: RequestBuilder): Promise<{ node: bigint; fh: bigint; setup: Exchange[] }> {
  const send = (req: Uint8Array): Promise<Uint8Array> => s.send(1, req, 4096);
  const init = await exchange(rb, () => rb.init(), send, 'INIT');
  const lookup = await exchange(rb, () => rb.lookup(1n, 'f'), send, 'LOOKUP');
  const node = lookup.r.view.getBigUint64(0, true);
  const open = await exchange(rb, () => rb.open(node, 0), send, 'OPEN');
  return { node, fh: decodeOpenOut(open.r.view).fh, setup: [init, lookup, open] };
}

/** INIT, LOOKUP, OPEN and a READ of the whole file through the default session. */
async function readF(sock: string): Promise<{ setup: Exchange[]; read: Exchange; s: VirtioFsSession }> {
  const s = VirtioFsSession.open(sock, { memBytes: 8 << 20, queueSize: 16, slotBytes: 64 << 10 });
  const rb = new RequestBuilder();
  const { node, fh, setup } = await openF(s, rb);
  const read = await exchange(rb, () => rb.read(node, fh, 0n, FILE_LEN), (req) => s.send(1, req, 16 + FILE_LEN), 'READ');
  return { setup, read, s };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function diffs(a: Uint8Array, b: Uint8Array): number {
  let n = Math.abs(a.length - b.length);
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) n++;
  return n;
}

/** Header checks of an exchange that must have come through intact. */
function intact(t: Test, e: Exchange, what: string): void {
  t.equal(e.r.error, 0, `${what}: no error`);
  t.equal(e.r.unique, e.unique, `${what}: unique is the request's`);
  t.equal(e.r.len, e.raw.length, `${what}: len is the used length`);
}

/** After the frontend goes, the proxy stops its upstream and exits 0. */
async function closes(t: Test, p: Proxied, s: VirtioFsSession, corrupted: number): Promise<void> {
  s.close();
  const st = await within(p.proxy.exited, 'the proxy\'s exit', 10_000).catch((e: Error) => e.message);
  t.same(st, { code: 0, signal: null }, 'the proxy exits 0 once the frontend disconnects');
  t.notOk(alive(p.upstreamPid), 'and its upstream is gone');
  t.match(p.proxy.logs(), new RegExp(`the frontend closed the connection; \\d+ replies eligible for --flip=\\w+, ${corrupted} corrupted`), `its summary: ${corrupted} corrupted`);
}

t.test('--every=0: a faithful relay', async (t) => {
  const p = await use.faithful(t);
  const { setup, read, s } = await readF(p.sock);
  for (const [k, e] of setup.entries()) intact(t, e, ['INIT', 'LOOKUP', 'OPEN'][k]!);
  intact(t, read, 'READ');
  t.ok(Buffer.from(read.r.data).equals(p.content), 'READ returns the exact file content');
  await closes(t, p, s, 0);
});

t.test('--flip=data: the READ data differs in exactly one byte, the header is intact', async (t) => {
  const p = await use.data(t);
  const { setup, read, s } = await readF(p.sock);
  intact(t, setup[0]!, 'INIT (80 bytes: too short to be hit)');
  intact(t, read, 'READ');
  t.equal(read.r.data.length, FILE_LEN, 'READ: all the data');
  t.equal(diffs(read.r.data, p.content), 1, 'READ: one byte differs from the file');
  t.equal(read.r.data[FILE_LEN / 2]!, p.content[FILE_LEN / 2]! ^ 0xff, 'READ: the middle byte, inverted');
  // LOOKUP's 144 bytes are hit too, READ is the second eligible reply
  await closes(t, p, s, 2);
});

t.test('--flip=unique: the reply unique differs, data and len are intact', async (t) => {
  const p = await use.unique(t);
  const { setup, read, s } = await readF(p.sock);
  for (const e of [...setup, read]) t.not(e.r.unique, e.unique, `unique ${e.unique} came back as ${e.r.unique}`);
  t.equal(read.r.unique, ~read.unique & 0xffff_ffff_ffff_ffffn, 'READ: unique inverted');
  t.equal(read.r.len, read.raw.length, 'READ: len is the used length');
  t.ok(Buffer.from(read.r.data).equals(p.content), 'READ: the data is the file');
  await closes(t, p, s, 4);
});

t.test('--flip=len: the reply len is wrong, unique and data are intact; then the upstream dies', async (t) => {
  const p = await use.len(t);
  const { read, s } = await readF(p.sock);
  t.teardown(() => s.close());
  t.not(read.r.len, read.raw.length, `READ: len ${read.r.len} is not the used length ${read.raw.length}`);
  t.equal(read.r.len, read.raw.length + 4096, 'READ: len + 4096');
  t.equal(read.r.unique, read.unique, 'READ: unique is the request\'s');
  t.ok(Buffer.from(read.r.data).equals(p.content), 'READ: the data is the file');
  t.ok(alive(p.upstreamPid), `upstream pid ${p.upstreamPid} is running`);
  process.kill(p.upstreamPid, 'SIGKILL');
  const st = await within(p.proxy.exited, 'the proxy\'s exit', 10_000).catch((e: Error) => e.message);
  t.same(st, { code: 1, signal: null }, 'the proxy exits 1 when its upstream dies');
  t.match(p.proxy.logs(), /the upstream (exited \(code null, signal SIGKILL\)|closed the connection)/, 'saying why');
  // The proxy has exited: the frontend's socket reads end-of-file (recvmsg returns 0 at once).
  t.equal(native.recvMsg(s.fe.fd, new Uint8Array(1), 0, 1, new Int32Array(1)), 0, 'the frontend finds its connection closed');
});

t.test('ADD_MEM_REG at 6 GiB, indirect chains, a split reply, --every=2', async (t) => {
  const p = await use.placed(t);
  // The data buffer straddles a 2 MiB boundary of the region's file (mmap offset 1 MiB).
  const region: RegionSpec = {
    guestPhysAddr: 6n << 30n,
    userspaceAddr: 0x7e12_3400_0000n,
    size: 1n << 30n,
    mmapOffset: MiB,
    arenas: [{ offset: 0n, bytes: 4 << 20 }, { offset: 510n * MiB, bytes: 4 << 20 }],
  };
  const s = VirtioFsSession.open(p.sock, { queueSize: 64, slotBytes: 64 << 10, memory: { regions: [region], via: 'add-mem-reg' } });
  t.teardown(() => s.close());
  t.ok((s.features & (1n << VIRTIO_RING_F_INDIRECT_DESC)) !== 0n, 'INDIRECT_DESC negotiated');
  const rb = new RequestBuilder();
  const { node, fh } = await openF(s, rb);
  const at = region.guestPhysAddr + 510n * MiB;
  const data = region.guestPhysAddr + 511n * MiB - 4096n;
  const hit: boolean[] = [];
  for (let k = 0; k < 4; k++) {
    const placed = (req: Uint8Array): Promise<Uint8Array> =>
      s.sendChain(1, req, { out: [{ addr: at + 4096n, len: req.length }], in: [{ addr: at + 8192n, len: 16 }, { addr: data, len: FILE_LEN }], indirect: at });
    const e = await exchange(rb, () => rb.read(node, fh, 0n, FILE_LEN), placed, `READ ${k}`);
    t.equal(e.r.unique, e.unique, `READ ${k}: unique intact`);
    t.equal(e.r.len, 16 + FILE_LEN, `READ ${k}: len intact`);
    const n = diffs(e.r.data, p.content);
    t.ok(n <= 1, `READ ${k}: ${n} bytes differ`);
    hit.push(n === 1);
  }
  // Eligible replies: LOOKUP (1), then the READs (2..5): every second one is damaged.
  t.same(hit, [true, false, true, false], 'READs 1 and 3 damaged, 2 and 4 intact');
  s.close();
  await closes(t, p, s, 2);
});

t.test('in front of the reference daemon: --flip=data', { skip: process.env.CI === 'true' ? false : noReference }, async (t) => {
  // In CI the reference is installed: its absence is a failure there, not a skip.
  if (!use.reference) return void t.fail(noReference || 'no reference');
  const p = await use.reference(t);
  const { read, s } = await readF(p.sock);
  intact(t, read, 'READ');
  t.equal(diffs(read.r.data, p.content), 1, 'READ: one byte differs from the file');
  await closes(t, p, s, 2);
});
