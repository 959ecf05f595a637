/**
 * Shared setup of the guest-memory integration tests (test/integration/guest-memory-*.test.ts): a
 * fresh daemon per case (ours, or with MEM_TEST_DAEMON=reference QEMU 7.2's C virtiofsd, which serves
 * one connection), a share with known files, FUSE traffic whose every buffer is placed at a chosen
 * guest-physical address, and a host process holding a file lease (a way to keep one request blocked
 * inside the daemon: its open waits until the lease is released).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { type DaemonHandle, type DaemonKind, startDaemon } from '../../harness/index.js';
import { ENTRY_OUT_SIZE, IN_HEADER_SIZE, OUT_HEADER_SIZE, Opcode, WRITE_IN_SIZE } from '../../src/abi/fuse.js';
import { type FuseReply, RequestBuilder, decodeOpenOut, decodeWriteOut, parseReply } from '../../src/frontend/fuse-requests.js';
import type { VirtioFsSession } from '../../src/frontend/virtio-fs-session.js';

export const DAEMON: DaemonKind = process.env.MEM_TEST_DAEMON === 'reference' ? 'reference' : 'ours';
export const GiB = 1n << 30n;
export const MiB = 1 << 20;
/** bytes of each READ and WRITE: several pages, so a data buffer can straddle a 2 MiB boundary */
export const DATA_LEN = 192 * 1024;

export interface MemEnv {
  share: string;
  sock: string;
  daemon: DaemonHandle;
  /** the content of share/data.bin */
  data: Uint8Array;
}

/** A pattern no two cases share (so a stale buffer cannot pass for a fresh reply). */
export function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** Starts a daemon over a fresh share for one case; stopped and removed at the end of `t`. */
export async function startMemDaemon(t: Test, seed: number): Promise<MemEnv> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-mem-'));
  const share = path.join(tmp, 'share');
  fs.mkdirSync(share);
  const data = pattern(DATA_LEN, seed);
  fs.writeFileSync(path.join(share, 'data.bin'), data);
  fs.writeFileSync(path.join(share, 'hello.txt'), 'hello\n');
  fs.mkdirSync(path.join(share, 'sub'));
  const sock = path.join(tmp, 'vfsd.sock');
  const extraArgs = DAEMON === 'ours' ? ['--thread-pool-size=2'] : [];
  const daemon = await startDaemon(DAEMON, { sharedDir: share, socketPath: sock, extraArgs });
  t.teardown(async () => {
    const s = await daemon.stop(3000);
    // MEM_TEST_VERBOSE=1 shows every case's daemon log (e.g. how the reference ended)
    if ((DAEMON === 'ours' && s.code !== 0) || process.env.MEM_TEST_VERBOSE) console.error(`# daemon exit ${JSON.stringify(s)}\n${daemon.logs()}`);
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  return { share, sock, daemon, data };
}

/** Where a case puts each kind of buffer (guest-physical addresses inside mapped arenas). */
export interface Places {
  /** request headers (device-readable), up to 4 KiB */
  req: bigint;
  /** replies (device-writable), up to 8 KiB */
  reply: bigint;
  /** READ data and WRITE payload: DATA_LEN bytes */
  data: bigint;
  /** each chain in an indirect table here (else direct descriptors) */
  indirect?: bigint;
}

const REPLY_CAP = 8192;

/** FUSE requests on request queue 1 with every buffer where `p` says. */
export class PlacedFuse {
  readonly rb = new RequestBuilder();
  constructor(
    readonly s: VirtioFsSession,
    readonly p: Places,
  ) {}

  async call(req: Uint8Array, cap = REPLY_CAP): Promise<FuseReply> {
    const { p } = this;
    return parseReply(await within(this.s.sendChain(1, req, { out: [{ addr: p.req, len: req.length }], in: [{ addr: p.reply, len: cap }], indirect: p.indirect }), 5000, 'request'));
  }

  /** READ of `len` bytes: the reply header in `reply`, the data in `data`. */
  async read(nodeid: bigint, fh: bigint, len: number): Promise<FuseReply> {
    const { p } = this;
    const req = this.rb.read(nodeid, fh, 0n, len);
    const bufs = [{ addr: p.reply, len: OUT_HEADER_SIZE }, { addr: p.data, len }];
    return parseReply(await within(this.s.sendChain(1, req, { out: [{ addr: p.req, len: req.length }], in: bufs, indirect: p.indirect }), 5000, 'READ'));
  }

  /** WRITE: the header and write_in in `req`, the payload in `data`. */
  async write(nodeid: bigint, fh: bigint, payload: Uint8Array): Promise<FuseReply> {
    const { p } = this;
    const req = this.rb.write(nodeid, fh, 0n, payload);
    const head = IN_HEADER_SIZE + WRITE_IN_SIZE;
    const out = [{ addr: p.req, len: head }, { addr: p.data, len: payload.length }];
    return parseReply(await within(this.s.sendChain(1, req, { out, in: [{ addr: p.reply, len: 256 }], indirect: p.indirect }), 5000, 'WRITE'));
  }
}

/** Names in a READDIR reply (struct fuse_dirent: ino, off, namelen, type, name padded to 8). */
export function direntNames(d: Uint8Array): string[] {
  const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
  const names: string[] = [];
  for (let o = 0; o + 24 <= d.length; ) {
    const n = v.getUint32(o + 16, true);
    names.push(Buffer.from(d.subarray(o + 24, o + 24 + n)).toString());
    o += (24 + n + 7) & ~7;
  }
  return names;
}

/**
 * Real FUSE traffic through buffers placed at `p`: INIT, LOOKUP, GETATTR, OPEN + READ (content
 * checked), CREATE + WRITE (checked on the host), OPENDIR + READDIR. `label` prefixes every assertion.
 */
export async function exercise(tt: Test, s: VirtioFsSession, env: MemEnv, p: Places, label: string, init = true): Promise<void> {
  try {
    await traffic(tt, s, env, p, label, init);
  } catch (e) {
    // e.g. a chain returned unused (a zero-length reply) or never answered
    tt.fail(`${label}: ${(e as Error).message}`);
  }
}

async function traffic(tt: Test, s: VirtioFsSession, env: MemEnv, p: Places, label: string, init: boolean): Promise<void> {
  const f = new PlacedFuse(s, p);
  const { rb } = f;
  if (init) tt.equal((await f.call(rb.init())).error, 0, `${label}: INIT`);
  const e = await f.call(rb.lookup(1n, 'data.bin'));
  tt.equal(e.error, 0, `${label}: LOOKUP data.bin`);
  const node = e.view.getBigUint64(0, true);
  const a = await f.call(rb.getattr(node));
  tt.equal(a.error, 0, `${label}: GETATTR`);
  tt.equal(a.error === 0 ? a.view.getBigUint64(16 + 8, true) : -1n, BigInt(DATA_LEN), `${label}: GETATTR size is the host size`);
  const o = await f.call(rb.open(node, 0));
  tt.equal(o.error, 0, `${label}: OPEN`);
  const fh = decodeOpenOut(o.view).fh;
  const r = await f.read(node, fh, DATA_LEN);
  tt.equal(r.error, 0, `${label}: READ`);
  tt.ok(r.len === OUT_HEADER_SIZE + DATA_LEN && Buffer.from(s.ram.read(p.data, DATA_LEN)).equals(env.data), `${label}: READ put the file's bytes in the data buffer`);
  await f.call(rb.release(node, fh));

  const c = await f.call(rb.create(1n, 'written.bin', 0o102 /* O_RDWR|O_CREAT */, 0o100644));
  tt.equal(c.error, 0, `${label}: CREATE`);
  const wnode = c.error === 0 ? c.view.getBigUint64(0, true) : 0n;
  const wfh = c.error === 0 ? decodeOpenOut(c.view, ENTRY_OUT_SIZE).fh : 0n;
  const payload = pattern(DATA_LEN, Number(p.data & 0xffffffffn) ^ 0x5a5a);
  const w = await f.write(wnode, wfh, payload);
  tt.equal(w.error, 0, `${label}: WRITE`);
  tt.equal(w.error === 0 ? decodeWriteOut(w.view) : -1, DATA_LEN, `${label}: WRITE took every byte`);
  await f.call(rb.release(wnode, wfh));
  tt.ok(fs.readFileSync(path.join(env.share, 'written.bin')).equals(payload), `${label}: the host file holds the payload from the data buffer`);
  fs.rmSync(path.join(env.share, 'written.bin'));

  const d = await f.call(rb.open(1n, 0, Opcode.Opendir));
  tt.equal(d.error, 0, `${label}: OPENDIR`);
  const dfh = decodeOpenOut(d.view).fh;
  const rd = await f.call(rb.readdir(1n, dfh, 0n, 4096));
  tt.equal(rd.error, 0, `${label}: READDIR`);
  tt.same(direntNames(rd.data).filter((n) => n !== '.' && n !== '..').sort(), fs.readdirSync(env.share).sort(), `${label}: READDIR lists the share`);
  await f.call(rb.release(1n, dfh, Opcode.Releasedir));
}

/** Resolves with `p`, or rejects after `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    }),
  ]);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A host process holding a write lease (fcntl F_SETLEASE) on a file: any open of it, the daemon's too,
 * blocks until release() (or the kernel's lease-break-time). `broken` resolves when an open hit it.
 */
export interface LeaseHolder {
  broken: Promise<void>;
  release(): void;
  proc: ChildProcess;
}

// F_SETLEASE = 1024, F_WRLCK = 1, F_UNLCK = 2 (fcntl.h). SIGIO tells the holder an open is waiting.
const LEASE_SCRIPT = `$| = 1; $SIG{IO} = sub { print "break\\n" };
open(my $f, '+<', $ARGV[0]) or die "open: $!"; fcntl($f, 1024, 1) or die "F_SETLEASE: $!"; print "leased\\n";
while (1) { my $l = <STDIN>; last if defined $l || !$!{EINTR}; }
fcntl($f, 1024, 2) or die "unlock: $!"; print "released\\n";`;

export async function holdLease(t: Test, file: string): Promise<LeaseHolder> {
  const proc = spawn('perl', ['-e', LEASE_SCRIPT, file], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const seen = (word: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (out.includes(word)) resolve();
      };
      proc.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        check();
      });
      proc.on('exit', () => (out.includes(word) ? resolve() : reject(new Error(`lease holder exited: ${err}`))));
      check();
    });
  proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  t.teardown(() => {
    if (proc.exitCode === null) proc.kill();
  });
  await within(seen('leased'), 5000, 'taking the lease');
  return { broken: seen('break'), release: () => proc.stdin!.end('go\n'), proc };
}
