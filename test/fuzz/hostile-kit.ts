/**
 * Shared pieces of the hostile-frontend tests (test/integration/hostile*.test.ts): a daemon with a
 * share and a canary file beside it, liveness checks, fd counting, a seeded PRNG and timeouts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { VirtioFsSession, type SessionOptions } from '../../src/frontend/virtio-fs-session.js';
import { RequestBuilder, parseReply, type FuseReply } from '../../src/frontend/fuse-requests.js';
import { startDaemon, type DaemonHandle } from '../../harness/index.js';

export const CANARY_TEXT = 'CANARY-7f3a9c-outside-the-share-must-never-be-read\n';

export interface HostileEnv {
  tmp: string;
  share: string;
  /** a file beside the share */
  canary: string;
  /** a directory beside the share */
  outsideDir: string;
  sock: string;
  daemon: DaemonHandle;
  canaryMtimeMs: number;
}

export async function startHostile(t: Test, extraArgs: string[] = []): Promise<HostileEnv> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-hostile-'));
  const share = path.join(tmp, 'share');
  fs.mkdirSync(share);
  fs.writeFileSync(path.join(share, 'hello.txt'), 'hello from the host\n');
  fs.mkdirSync(path.join(share, 'dir'));
  fs.writeFileSync(path.join(share, 'dir', 'inner.txt'), 'inner\n');
  const canary = path.join(tmp, 'canary.txt');
  fs.writeFileSync(canary, CANARY_TEXT);
  const past = new Date(Date.now() - 3600_000);
  fs.utimesSync(canary, past, past);
  const outsideDir = path.join(tmp, 'outside');
  fs.mkdirSync(outsideDir);
  fs.writeFileSync(path.join(outsideDir, 'canary2.txt'), CANARY_TEXT);
  const sock = path.join(tmp, 'vfsd.sock');
  const daemon = await startDaemon('ours', {
    sharedDir: share,
    socketPath: sock,
    extraArgs: ['--log-level=info', '--thread-pool-size=2', ...extraArgs],
  });
  t.teardown(async () => {
    const s = await daemon.stop();
    if (s.code !== 0 || /died/.test(daemon.logs())) console.error(daemon.logs().slice(-20000));
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  return { tmp, share, canary, outsideDir, sock, daemon, canaryMtimeMs: fs.statSync(canary).mtimeMs };
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The daemon is running, has not logged a worker death, and serves a fresh session. */
export async function alive(tt: Test, env: HostileEnv, what = ''): Promise<void> {
  tt.equal(env.daemon.exitCode(), undefined, `daemon still running ${what}`);
  tt.notMatch(env.daemon.logs(), /died/, `no worker died ${what}`);
  const s = VirtioFsSession.open(env.sock);
  try {
    const rb = new RequestBuilder();
    const init = parseReply(await withTimeout(s.send(1, rb.init(), 4096), 5000, 'FUSE_INIT'));
    tt.equal(init.error, 0, `a fresh session gets FUSE_INIT answered ${what}`);
    const g = parseReply(await withTimeout(s.send(1, rb.getattr(1n), 4096), 5000, 'GETATTR'));
    tt.equal(g.error, 0, `and a GETATTR of the root ${what}`);
  } finally {
    s.close();
  }
}

/** Nothing beside the share was changed. */
export function canaryIntact(tt: Test, env: HostileEnv): void {
  tt.equal(fs.readFileSync(env.canary, 'utf8'), CANARY_TEXT, 'canary content unchanged');
  tt.equal(fs.statSync(env.canary).mtimeMs, env.canaryMtimeMs, 'canary mtime unchanged');
  tt.same(fs.readdirSync(env.outsideDir), ['canary2.txt'], 'nothing created beside the share');
  tt.same(fs.readdirSync(env.tmp).sort(), ['canary.txt', 'outside', 'share', 'vfsd.sock'], 'nothing created in the parent');
}

const CANARY_BYTES = Buffer.from('CANARY-7f3a9c');
export function leaksCanary(b: Uint8Array): boolean {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).includes(CANARY_BYTES);
}

export function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** The daemon's resident set (kB). */
export function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** mulberry32: a small seeded PRNG, so every fuzz run can be replayed from its seed. */
export function prng(seed: number): { next(): number; int(n: number): number; pick<T>(a: readonly T[]): T; bytes(n: number): Uint8Array } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    next,
    int,
    pick: <T>(arr: readonly T[]): T => arr[int(arr.length)]!,
    bytes: (n: number): Uint8Array => Uint8Array.from({ length: n }, () => int(256)),
  };
}

export function seedFromEnv(fallback: number): number {
  const s = process.env.HOSTILE_SEED;
  return s ? Number(s) : fallback;
}

export type Call = (req: Uint8Array, cap?: number) => Promise<FuseReply>;

export async function fuseSession(env: HostileEnv, opts: SessionOptions = {}): Promise<{ s: VirtioFsSession; rb: RequestBuilder; call: Call; raw: (req: Uint8Array, cap: number) => Promise<Uint8Array> }> {
  const s = VirtioFsSession.open(env.sock, opts);
  const rb = new RequestBuilder();
  const raw = (req: Uint8Array, cap: number): Promise<Uint8Array> => withTimeout(s.send(1, req, cap), 5000, `opcode ${req[4]}`);
  const call: Call = async (req, cap = 8192) => parseReply(await raw(req, cap));
  const init = await call(rb.init());
  if (init.error !== 0) throw new Error(`INIT failed: ${init.error}`);
  return { s, rb, call, raw };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
