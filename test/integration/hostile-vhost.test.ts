/**
 * A hostile vhost-user frontend against the daemon process: every request code 0..60 with random
 * payloads, flags and fds of every kind, requests out of order, broken framing, rapid reconnects,
 * many fds. The daemon must never exit, must not leak fds, and must serve the next frontend.
 * Replay a fuzz run with HOSTILE_SEED=<seed>.
 */
import fs from 'node:fs';
import t, { type Test } from 'tap';
import { native } from '../../src/native.js';
import { FrontendReq, VHOST_USER_NEED_REPLY_MASK, VHOST_USER_VERSION, encodeHeader, u64Payload, vringStatePayload } from '../../src/vhost/message.js';
import { VhostUserFrontend } from '../../src/frontend/vhost-user-frontend.js';
import { alive, fdCount, prng, seedFromEnv, startHostile, type HostileEnv } from '../fuzz/hostile-kit.js';
import { frontendsGone, until } from '../helpers/poll.js';

let env: HostileEnv;
t.before(async () => {
  env = await startHostile(t);
});

/** fds of every kind; the caller closes them. */
function fdZoo(share: string): { fds: number[]; close(): void } {
  const fds: number[] = [];
  fds.push(native.eventfd(0));
  fds.push(native.memfdCreate('zoo', 1 << 20));
  fds.push(fs.openSync('/dev/null', 'r'));
  fds.push(fs.openSync(share, 'r')); // a directory
  fds.push(fs.openSync(`${share}/hello.txt`, 'r'));
  // a listening unix socket is a socket fd
  fds.push(native.listenUnix(`${share}/../zoo.sock`, 1));
  return { fds, close: () => { for (const fd of fds) if (fd >= 0) native.close(fd); fs.rmSync(`${share}/../zoo.sock`, { force: true }); } };
}

function rawSend(fe: VhostUserFrontend, request: number, flags: number, payload: Uint8Array, fds: number[] | null): boolean {
  const buf = Buffer.concat([encodeHeader(request, flags, payload.length), payload]);
  let off = 0;
  while (off < buf.length) {
    const n = native.sendMsg(fe.fd, buf, off, buf.length - off, off === 0 && fds && fds.length ? Int32Array.from(fds) : null);
    if (n < 0) return false; // the daemon dropped us (EPIPE/ECONNRESET)
    off += n;
  }
  return true;
}

/** Connections made to the daemon so far (each one is logged as adopted or rejected). */
let opened = 0;

function connect(): VhostUserFrontend {
  opened++;
  return VhostUserFrontend.connect(env.sock);
}

/** alive() with its own connection counted. */
function checkAlive(tt: Test, what = ''): Promise<void> {
  opened++;
  return alive(tt, env, what);
}

/** The daemon's fd count once every earlier frontend is gone: the baseline for a leak check. */
async function settledFds(): Promise<number> {
  await frontendsGone(env.daemon.logs, opened);
  return fdCount(env.daemon.pid);
}

/** Every closed connection has been reset by the daemon, and its fds are back to `base`. */
async function fdsBackTo(base: number): Promise<boolean> {
  return (await frontendsGone(env.daemon.logs, opened)) && (await until(() => fdCount(env.daemon.pid) <= base));
}

t.test('every request code 0..60 with random payloads, flags and fds', async (tt) => {
  const seed = seedFromEnv(0x0f00_d5ee);
  const r = prng(seed);
  await checkAlive(tt, 'before');
  const base = await settledFds();
  const zoo = fdZoo(env.share);
  try {
    let fe = connect();
    let reconnects = 0;
    for (let i = 0; i < 1500; i++) {
      const req = r.int(61);
      const size = r.pick([0, 1, 4, 8, 12, 16, 40, 104, 264, 300, r.int(4097)]);
      const payload = r.bytes(size);
      // plausible queue indexes and numbers half the time
      if (size >= 8 && r.next() < 0.5) payload.set(u64Payload(BigInt(r.int(20)) | (r.next() < 0.2 ? 0x100n : 0n)));
      if (req === FrontendReq.SET_MEM_TABLE && size >= 8 && r.next() < 0.5) new DataView(payload.buffer).setUint32(0, r.int(10), true);
      const flags = r.next() < 0.8 ? VHOST_USER_VERSION | (r.next() < 0.5 ? VHOST_USER_NEED_REPLY_MASK : 0) : r.int(256);
      const nfds = r.pick([0, 0, 0, 1, 1, 2, 8]);
      const fds = Array.from({ length: nfds }, () => r.pick(zoo.fds));
      if (req === FrontendReq.RESET_OWNER || req === FrontendReq.RESET_DEVICE) continue; // slow (pauses); covered below
      if (!rawSend(fe, req, flags, payload, fds)) {
        fe.close();
        reconnects++;
        await fdsBackTo(base); // the daemon has dropped the old connection
        fe = connect();
      }
    }
    fe.close();
    tt.pass(`1500 random messages sent (seed ${seed}, ${reconnects} reconnects)`);
  } finally {
    zoo.close();
  }
  await fdsBackTo(base);
  await checkAlive(tt, `after the fuzz (seed ${seed})`);
  // protocol errors are "rejected"; "failed" is an unexpected exception in the daemon
  tt.notMatch(env.daemon.logs(), /vhost-user: \S+ failed:/, `no unexpected exception (seed ${seed})`);
  tt.notMatch(env.daemon.logs(), /reset after disconnect failed|unhandled|uncaught/i, 'no failed reset');
  tt.ok(await fdsBackTo(base), `no fd leaked (${base} → ${fdCount(env.daemon.pid)}, seed ${seed})`);
});

t.test('requests out of order', async (tt) => {
  const base = await settledFds();
  const fe = connect();
  const zoo = fdZoo(env.share);
  const efd = native.eventfd(0);
  try {
    fe.getFeatures();
    fe.setProtocolFeatures(fe.getProtocolFeatures() & (1n << 3n)); // REPLY_ACK, not CONFIGURE_MEM_SLOTS
    const ack = (req: number, payload: Uint8Array, fds: number[] | null = null): bigint => {
      fe.sendMessage(req, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, payload, fds);
      return fe.readReply(req).readBigUInt64LE(0);
    };
    tt.equal(ack(FrontendReq.SET_VRING_KICK, u64Payload(1n), [efd]), 0n, 'SET_VRING_KICK before SET_MEM_TABLE is stored');
    native.eventfdWrite(efd, 1); // a kick on a ring with no memory, no size, no addresses
    // SET_VRING_ENABLE exists only once VHOST_USER_F_PROTOCOL_FEATURES is negotiated (vhost-user spec)
    tt.not(ack(FrontendReq.SET_VRING_ENABLE, vringStatePayload(1, 1)), 0n, 'enable before SET_FEATURES is refused');
    fe.setFeatures(fe.getFeatures() & ((1n << 30n) | (1n << 32n))); // PROTOCOL_FEATURES, VERSION_1
    tt.equal(ack(FrontendReq.SET_VRING_ENABLE, vringStatePayload(1, 1)), 0n, 'enable without memory is stored');
    native.eventfdWrite(efd, 1); // a kick on an enabled ring with no memory: nothing to serve
    tt.not(ack(FrontendReq.SET_VRING_KICK, u64Payload(1n), [zoo.fds[3]!]), 0n, 'a directory as kick fd is refused');
    tt.not(ack(FrontendReq.SET_VRING_CALL, u64Payload(2n), [zoo.fds[2]!]), 0n, '/dev/null as call fd is refused');
    tt.not(ack(FrontendReq.SET_VRING_ERR, u64Payload(2n), [zoo.fds[5]!]), 0n, 'a socket as err fd is refused');
    tt.not(ack(FrontendReq.SET_VRING_KICK, u64Payload(1n), zoo.fds.slice(0, 3)), 0n, 'three fds for a kick are refused');
    const region = (gpa: bigint, size: bigint, ua: bigint, off = 0n): Buffer => {
      const p = Buffer.alloc(40);
      p.writeBigUInt64LE(gpa, 8);
      p.writeBigUInt64LE(size, 16);
      p.writeBigUInt64LE(ua, 24);
      p.writeBigUInt64LE(off, 32);
      return p;
    };
    tt.not(ack(FrontendReq.ADD_MEM_REG, region(0n, 4096n, 0n), [zoo.fds[1]!]), 0n, 'ADD_MEM_REG without CONFIGURE_MEM_SLOTS');
    tt.not(ack(FrontendReq.REM_MEM_REG, region(0n, 4096n, 0n)), 0n, 'REM_MEM_REG without CONFIGURE_MEM_SLOTS');
    // no memory table yet: aligned addresses are stored, and checked against the table when it comes
    tt.equal(ack(FrontendReq.SET_VRING_ADDR, Buffer.alloc(40)), 0n, 'SET_VRING_ADDR of zeros before SET_MEM_TABLE is stored');
    const odd = Buffer.alloc(40);
    odd.writeBigUInt64LE(8n, 8); // descriptor table 8-byte aligned, the spec needs 16
    tt.not(ack(FrontendReq.SET_VRING_ADDR, odd), 0n, 'a misaligned descriptor table is refused');
    for (const [what, fd] of [['directory', zoo.fds[3]!], ['/dev/null', zoo.fds[2]!], ['socket', zoo.fds[5]!], ['eventfd', zoo.fds[0]!]] as const) {
      const p = Buffer.alloc(8 + 32);
      p.writeUInt32LE(1, 0);
      p.writeBigUInt64LE(0n, 8);
      p.writeBigUInt64LE(1n << 20n, 16);
      p.writeBigUInt64LE(0x7f00_0000_0000n, 24);
      tt.not(ack(FrontendReq.SET_MEM_TABLE, p, [fd]), 0n, `a ${what} as guest memory is refused`);
    }
    // a memory table with fewer fds than regions, and more
    const two = Buffer.alloc(8 + 64);
    two.writeUInt32LE(2, 0);
    two.writeBigUInt64LE(4096n, 16);
    two.writeBigUInt64LE(1n << 30n, 40);
    two.writeBigUInt64LE(4096n, 48);
    tt.not(ack(FrontendReq.SET_MEM_TABLE, two, [zoo.fds[1]!]), 0n, 'two regions, one fd');
    tt.not(ack(FrontendReq.SET_MEM_TABLE, two, zoo.fds), 0n, 'two regions, six fds');
    // GET_VRING_BASE of a ring that never ran, then RESET_OWNER, RESET_DEVICE
    tt.equal(fe.getVringBase(3), 0, 'GET_VRING_BASE of an idle ring');
    tt.equal(ack(FrontendReq.RESET_OWNER, Buffer.alloc(0)), 0n, 'RESET_OWNER');
    tt.not(ack(FrontendReq.RESET_DEVICE, Buffer.alloc(0)), 0n, 'RESET_DEVICE without the feature');
  } finally {
    fe.close();
    zoo.close();
    native.close(efd);
  }
  tt.ok(await fdsBackTo(base), `the connection's fds are closed (${base} → ${fdCount(env.daemon.pid)})`);
  await checkAlive(tt);
});

t.test('broken framing: truncated header, payload promised then close, more than 8 fds', async (tt) => {
  const base = await settledFds();
  for (const n of [1, 6, 11]) {
    const fe = connect();
    native.sendMsg(fe.fd, encodeHeader(FrontendReq.GET_FEATURES, 1, 0), 0, n, null);
    fe.close();
    tt.ok(await fdsBackTo(base), `a ${n}-byte header, then close: the connection is dropped`);
  }
  {
    const fe = connect();
    const efd = native.eventfd(0);
    native.sendMsg(fe.fd, encodeHeader(FrontendReq.SET_MEM_TABLE, 1, 264), 0, 12, Int32Array.from([efd, efd]));
    native.sendMsg(fe.fd, Buffer.alloc(100), 0, 100, Int32Array.from([efd]));
    native.close(efd);
    fe.close();
    tt.ok(await fdsBackTo(base), 'a payload promised, then close: the connection and its fds are dropped');
  }
  {
    // 20 fds on one message, and 20 more on its payload
    const fe = connect();
    const fds = Array.from({ length: 20 }, () => native.eventfd(0));
    native.sendMsg(fe.fd, encodeHeader(FrontendReq.SET_VRING_KICK, 1 | VHOST_USER_NEED_REPLY_MASK, 8), 0, 12, Int32Array.from(fds));
    native.sendMsg(fe.fd, u64Payload(1n), 0, 8, Int32Array.from(fds));
    // NEED_REPLY is answered even without REPLY_ACK negotiated (a waiting frontend must not hang)
    tt.equal(fe.readReply(FrontendReq.SET_VRING_KICK).length, 8, 'the ack it asked for');
    tt.ok(fe.get(FrontendReq.GET_QUEUE_NUM).readBigUInt64LE(0) === 16n, 'the connection survives 40 surplus fds');
    for (const fd of fds) native.close(fd);
    fe.close();
    tt.ok(await fdsBackTo(base), '40 surplus fds, then close: all dropped');
  }
  await checkAlive(tt);
  tt.ok(await fdsBackTo(base), `no fd leaked (${base} → ${fdCount(env.daemon.pid)})`);
});

t.test('100 rapid connect/disconnects, some mid-message', async (tt) => {
  const base = await settledFds();
  for (let i = 0; i < 100; i++) {
    const fe = connect();
    if (i % 3 === 1) native.sendMsg(fe.fd, encodeHeader(FrontendReq.GET_FEATURES, 1, 0), 0, 12, null);
    if (i % 3 === 2) native.sendMsg(fe.fd, encodeHeader(FrontendReq.SET_OWNER, 1, 0), 0, 5, null);
    fe.close();
  }
  tt.ok(await fdsBackTo(base), `100 disconnects: every connection dropped (${base} → ${fdCount(env.daemon.pid)})`);
  await checkAlive(tt);
  tt.ok(await fdsBackTo(base), `no fd leaked (${base} → ${fdCount(env.daemon.pid)})`);
});
