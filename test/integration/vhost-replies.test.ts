/**
 * Every vhost-user message a frontend waits on gets an answer: its own reply, a REPLY_ACK status, or the
 * connection closed — never silence (docs/internals.md, "Replies"). Each message is sent well-formed
 * and malformed (short, too long, bad queue index, bad version) on a fresh connection, and the test
 * waits a bounded time for a reply or an EOF. Then SET_VRING_ADDR: rings misaligned, outside every
 * region or straddling a region's end are refused at the message (virtio 1.1 §2.6).
 */
import t, { type Test } from 'tap';
import { Errno } from '../../src/errors.js';
import { native } from '../../src/native.js';
import {
  FrontendReq,
  HEADER_SIZE,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_REPLY_MASK,
  VHOST_USER_VERSION,
  parseHeader,
  u64Payload,
  vringStatePayload,
} from '../../src/vhost/message.js';
import { VhostUserFrontend, memTablePayload } from '../../src/frontend/vhost-user-frontend.js';
import { alive, sleep, startHostile, type HostileEnv } from '../fuzz/hostile-kit.js';

/** Long enough for a reply that needs the workers paused on a loaded machine; a hang is forever. */
const ANSWER_MS = 3000;
const REPLY_ACK = 1n << 3n;

let env: HostileEnv;
t.before(async () => {
  env = await startHostile(t, ['--log-level=debug']);
});

type Answer = { kind: 'reply'; request: number; payload: Buffer } | { kind: 'closed' } | { kind: 'silence' };

/** Reads exactly n bytes, waiting at most until `deadline`. */
function readBounded(fd: number, n: number, deadline: number): Buffer | 'eof' | 'timeout' {
  const b = Buffer.alloc(n);
  const fds = new Int32Array(8).fill(-1);
  const pfd = Int32Array.of(fd);
  const rev = new Int32Array(1);
  let off = 0;
  while (off < n) {
    const left = deadline - Date.now();
    if (left <= 0) return 'timeout';
    const p = native.poll(pfd, 1, left, rev);
    if (p === 0) return 'timeout';
    if (p < 0) continue;
    const r = native.recvMsg(fd, b, off, n - off, fds);
    for (const f of fds) if (f >= 0) native.close(f);
    fds.fill(-1);
    if (r === 0 || (r < 0 && r !== -Errno.EAGAIN && r !== -Errno.EINTR)) return 'eof';
    if (r > 0) off += r;
  }
  return b;
}

/** Waits for the next thing the daemon does on this connection: a reply, a close, or nothing. */
function answer(fe: VhostUserFrontend, ms = ANSWER_MS): Answer {
  const deadline = Date.now() + ms;
  const h = readBounded(fe.fd, HEADER_SIZE, deadline);
  if (h === 'timeout') return { kind: 'silence' };
  if (h === 'eof') return { kind: 'closed' };
  const hdr = parseHeader(h);
  if ((hdr.flags & VHOST_USER_REPLY_MASK) === 0) throw new Error('a message without the reply flag');
  const p = hdr.size === 0 ? Buffer.alloc(0) : readBounded(fe.fd, hdr.size, deadline);
  if (p === 'timeout') return { kind: 'silence' };
  if (p === 'eof') return { kind: 'closed' };
  return { kind: 'reply', request: hdr.request, payload: p };
}

/**
 * A connection the daemon has accepted (not refused as a second one while the last is still being
 * torn down), negotiated with REPLY_ACK when asked.
 */
async function connect(replyAck: boolean): Promise<VhostUserFrontend> {
  for (let i = 0; ; i++) {
    const fe = VhostUserFrontend.connect(env.sock);
    fe.sendMessage(FrontendReq.GET_FEATURES, VHOST_USER_VERSION, new Uint8Array(0));
    const a = answer(fe);
    if (a.kind === 'reply') {
      if (replyAck) fe.setProtocolFeatures(REPLY_ACK);
      return fe;
    }
    fe.close();
    if (i > 50) throw new Error('the daemon does not accept a connection');
    await sleep(50);
  }
}

const NONE = Buffer.alloc(0);
const state = (q: number, n = 0): Buffer => vringStatePayload(q, n);

/**
 * How a message with a reply of its own reports a failure, per the spec: a zero-length payload
 * (GET_CONFIG), a non-zero u64 (the ones whose reply is a status), or — where the reply has no way to
 * say "error" (a feature mask, a ring base, a count, an fd) — the connection closed.
 */
type OnError = 'close' | 'empty' | 'nonzero';
const ON_ERROR = new Map<number, OnError>([
  [FrontendReq.GET_FEATURES, 'close'],
  [FrontendReq.GET_PROTOCOL_FEATURES, 'close'],
  [FrontendReq.GET_QUEUE_NUM, 'close'],
  [FrontendReq.GET_VRING_BASE, 'close'],
  [FrontendReq.GET_MAX_MEM_SLOTS, 'close'],
  [FrontendReq.GET_CONFIG, 'empty'],
  [FrontendReq.CREATE_CRYPTO_SESSION, 'close'],
  [FrontendReq.POSTCOPY_ADVISE, 'close'],
  [FrontendReq.POSTCOPY_END, 'nonzero'],
  [FrontendReq.GET_INFLIGHT_FD, 'close'],
  [FrontendReq.GET_STATUS, 'close'],
  [41, 'nonzero'], // GET_SHARED_OBJECT: a status without an fd
  [42, 'nonzero'], // SET_DEVICE_STATE_FD
  [43, 'nonzero'], // CHECK_DEVICE_STATE
]);

interface Case {
  req: number;
  payload: Buffer;
  what: string;
  flags?: number;
  /** size of the reply this well-formed message gets; otherwise it fails as ON_ERROR says */
  replySize?: number;
}
const OWN_REPLY: Case[] = [
  { req: FrontendReq.GET_FEATURES, payload: NONE, what: 'well-formed', replySize: 8 },
  { req: FrontendReq.GET_FEATURES, payload: Buffer.alloc(8), what: 'too long' },
  { req: FrontendReq.GET_FEATURES, payload: NONE, what: 'version 2', flags: 2 },
  { req: FrontendReq.GET_PROTOCOL_FEATURES, payload: NONE, what: 'well-formed', replySize: 8 },
  { req: FrontendReq.GET_PROTOCOL_FEATURES, payload: Buffer.alloc(3), what: 'too long' },
  { req: FrontendReq.GET_QUEUE_NUM, payload: NONE, what: 'well-formed', replySize: 8 },
  { req: FrontendReq.GET_QUEUE_NUM, payload: Buffer.alloc(16), what: 'too long' },
  { req: FrontendReq.GET_VRING_BASE, payload: state(1), what: 'well-formed', replySize: 8 },
  { req: FrontendReq.GET_VRING_BASE, payload: state(200), what: 'queue index out of range' },
  { req: FrontendReq.GET_VRING_BASE, payload: state(0xffffffff), what: 'queue index 2^32-1' },
  { req: FrontendReq.GET_VRING_BASE, payload: Buffer.alloc(4), what: 'short' },
  { req: FrontendReq.GET_VRING_BASE, payload: NONE, what: 'empty' },
  { req: FrontendReq.GET_VRING_BASE, payload: Buffer.alloc(12), what: 'too long' },
  { req: FrontendReq.GET_VRING_BASE, payload: state(1), what: 'version 0', flags: 0 },
  { req: FrontendReq.GET_MAX_MEM_SLOTS, payload: NONE, what: 'well-formed (answered even unnegotiated)', replySize: 8 },
  { req: FrontendReq.GET_MAX_MEM_SLOTS, payload: Buffer.alloc(8), what: 'too long' },
  { req: FrontendReq.GET_CONFIG, payload: Buffer.alloc(12 + 8), what: 'without CONFIG' },
  { req: FrontendReq.GET_CONFIG, payload: Buffer.alloc(2), what: 'short' },
  { req: FrontendReq.CREATE_CRYPTO_SESSION, payload: Buffer.alloc(64), what: 'not a crypto device' },
  { req: FrontendReq.POSTCOPY_ADVISE, payload: NONE, what: 'no postcopy' },
  { req: FrontendReq.POSTCOPY_END, payload: NONE, what: 'no postcopy' },
  { req: FrontendReq.GET_INFLIGHT_FD, payload: Buffer.alloc(24), what: 'without INFLIGHT_SHMFD' },
  { req: FrontendReq.GET_STATUS, payload: NONE, what: 'without STATUS' },
  { req: 41, payload: Buffer.alloc(16), what: 'GET_SHARED_OBJECT, not offered' },
  { req: 42, payload: Buffer.alloc(8), what: 'SET_DEVICE_STATE_FD, not offered' },
  { req: 43, payload: NONE, what: 'CHECK_DEVICE_STATE, not offered' },
];

/** Checks a failed message's answer against what the spec allows for it. */
function checkFailure(tt: Test, name: string, req: number, a: Answer): void {
  tt.not(a.kind, 'silence', `${name}: answered (${a.kind})`);
  const how = ON_ERROR.get(req);
  if (how === 'close') {
    tt.equal(a.kind, 'closed', `${name}: connection closed (the reply cannot say "error")`);
    return;
  }
  tt.equal(a.kind, 'reply', `${name}: replied`);
  if (a.kind !== 'reply') return;
  tt.equal(a.request, req, `${name}: the reply names the request`);
  if (how === 'empty') {
    tt.equal(a.payload.length, 0, `${name}: zero-length reply (error)`);
  } else {
    // 'nonzero', or a REPLY_ACK status for a message without a reply of its own
    tt.equal(a.payload.length, 8, `${name}: a u64`);
    if (a.payload.length === 8) tt.not(a.payload.readBigUInt64LE(0), 0n, `${name}: non-zero (error)`);
  }
}

async function expectAnswer(tt: Test, c: Case, replyAck: boolean): Promise<void> {
  const fe = await connect(replyAck);
  try {
    fe.sendMessage(c.req, (c.flags ?? VHOST_USER_VERSION) | (replyAck ? VHOST_USER_NEED_REPLY_MASK : 0), c.payload);
    const a = answer(fe);
    const name = `${FrontendReq[c.req] ?? c.req} ${c.what}${replyAck ? ' (NEED_REPLY)' : ''}`;
    if (c.replySize === undefined) {
      checkFailure(tt, name, c.req, a);
    } else {
      tt.equal(a.kind, 'reply', `${name}: replied`);
      if (a.kind === 'reply') tt.equal(a.payload.length, c.replySize, `${name}: reply of ${c.replySize} bytes`);
    }
  } finally {
    fe.close();
  }
}

t.test('messages with a reply of their own: answered or closed, never silence', async (tt) => {
  for (const c of OWN_REPLY) await expectAnswer(tt, c, false);
  for (const c of OWN_REPLY) await expectAnswer(tt, c, true);
  await env.daemon.waitForLog(/GET_VRING_BASE failed and .*; closing the connection/, 2000);
  tt.match(env.daemon.logs(), /GET_VRING_BASE failed and .*; closing the connection/, 'a close is logged with its reason');
  await sleep(150);
  await alive(tt, env, 'after the reply-expecting messages');
});

/** Payloads that are wrong for every request: no request has a 3-byte payload, or a 4000-byte one. */
const BAD_PAYLOADS: Array<[string, Buffer]> = [
  ['a 3-byte payload', Buffer.alloc(3)],
  ['a 4000-byte payload', Buffer.alloc(4000)],
];

t.test('NEED_REPLY with REPLY_ACK: every request code, malformed, gets an ack or a close', async (tt) => {
  for (const req of [0, ...Array.from({ length: 43 }, (_, i) => i + 1), 44, 99, 0xffff]) {
    for (const [what, payload] of BAD_PAYLOADS) {
      const fe = await connect(true);
      try {
        fe.sendMessage(req, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, payload);
        const a = answer(fe);
        checkFailure(tt, `${FrontendReq[req] ?? `request ${req}`} with ${what}`, req, a);
      } finally {
        fe.close();
      }
    }
  }
  await sleep(150);
  await alive(tt, env, 'after every request code');
});

t.test('SET_PROTOCOL_FEATURES with features never offered: refused audibly', async (tt) => {
  // Without NEED_REPLY the frontend cannot hear a refusal and would wait for REPLY_ACK acks forever.
  const fe = await connect(false);
  try {
    fe.sendMessage(FrontendReq.SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, u64Payload(REPLY_ACK | (1n << 1n) /* LOG_SHMFD */));
    tt.equal(answer(fe).kind, 'closed', 'no NEED_REPLY: the connection is closed');
  } finally {
    fe.close();
  }
  const fe2 = await connect(true);
  try {
    tt.not(ack(fe2, FrontendReq.SET_PROTOCOL_FEATURES, u64Payload(REPLY_ACK | (1n << 1n))), 0n, 'with NEED_REPLY (REPLY_ACK on): ack non-zero');
    tt.equal(ack(fe2, FrontendReq.SET_PROTOCOL_FEATURES, u64Payload(REPLY_ACK)), 0n, 'offered features: ack 0');
  } finally {
    fe2.close();
  }
});

t.test('NEED_REPLY without REPLY_ACK negotiated (a frontend reconnecting with its old state) still gets its ack', async (tt) => {
  // QEMU 10 reconnecting to a restarted daemon sends SET_VRING_ENABLE with NEED_REPLY on a connection
  // that negotiated nothing, and waits for the ack with the VM stopped.
  for (const [req, payload, want] of [
    [FrontendReq.SET_VRING_ENABLE, state(0, 0), 'nonzero'],
    [FrontendReq.SET_OWNER, NONE, 'zero'],
  ] as const) {
    const fe = await connect(false);
    try {
      fe.sendMessage(req, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, payload);
      const a = answer(fe);
      tt.equal(a.kind, 'reply', `${FrontendReq[req]}: answered, not left waiting`);
      if (a.kind === 'reply') {
        tt.equal(a.request, req);
        const status = a.payload.length === 8 ? a.payload.readBigUInt64LE(0) : -1n;
        if (want === 'zero') tt.equal(status, 0n, `${FrontendReq[req]}: ack 0`);
        else tt.ok(status > 0n, `${FrontendReq[req]}: a non-zero ack (${status})`);
      }
    } finally {
      fe.close();
    }
  }
  await sleep(150);
  await alive(tt, env, 'after the unnegotiated acks');
});

t.test('request codes outside the spec, without NEED_REPLY: the connection is closed', async (tt) => {
  // The frontend may be waiting for a reply whose shape nobody here knows.
  for (const req of [0, 44, 99]) {
    const fe = await connect(false);
    try {
      fe.sendMessage(req, VHOST_USER_VERSION, Buffer.alloc(8));
      tt.equal(answer(fe).kind, 'closed', `request ${req}: closed`);
    } finally {
      fe.close();
    }
  }
  await sleep(150);
  await alive(tt, env, 'after unknown request codes');
});

const UA = 0x7f00_0000_0000n;
const REGION = 1n << 20n;

function addrPayload(q: number, desc: bigint, avail: bigint, used: bigint): Buffer {
  const p = Buffer.alloc(40);
  p.writeUInt32LE(q, 0);
  p.writeBigUInt64LE(desc, 8);
  p.writeBigUInt64LE(used, 16);
  p.writeBigUInt64LE(avail, 24);
  return p;
}

function ack(fe: VhostUserFrontend, req: number, payload: Buffer, fds: number[] | null = null): bigint | Answer['kind'] {
  fe.sendMessage(req, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, payload, fds);
  const a = answer(fe);
  return a.kind === 'reply' ? a.payload.readBigUInt64LE(0) : a.kind;
}

t.test('SET_VRING_ADDR: rings checked for alignment and against the memory table', async (tt) => {
  const fe = await connect(true);
  const memfd = native.memfdCreate('vring-addr', Number(REGION));
  try {
    // num 256: desc 4096 bytes, avail 518, used 2054
    tt.equal(ack(fe, FrontendReq.SET_VRING_NUM, state(1, 256)), 0n, 'SET_VRING_NUM 256');
    // Before any memory table: alignment is checked, placement is left to the start of the queue.
    tt.equal(ack(fe, FrontendReq.SET_VRING_ADDR, addrPayload(1, 0x10000n, 0x20000n, 0x30000n)), 0n, 'no table yet: aligned rings accepted');
    tt.not(ack(fe, FrontendReq.SET_VRING_ADDR, addrPayload(1, 0x10008n, 0x20000n, 0x30000n)), 0n, 'no table yet: misaligned desc refused');
    const table = memTablePayload([{ guestPhysAddr: 0n, memorySize: REGION, userspaceAddr: UA, mmapOffset: 0n }]);
    tt.equal(ack(fe, FrontendReq.SET_MEM_TABLE, table, [memfd]), 0n, 'SET_MEM_TABLE: one 1 MiB region');
    const set = (desc: bigint, avail: bigint, used: bigint): bigint | string => ack(fe, FrontendReq.SET_VRING_ADDR, addrPayload(1, desc, avail, used));
    const d = UA;
    const av = UA + 0x1000n;
    const u = UA + 0x2000n;
    tt.equal(set(d, av, u), 0n, 'rings inside the region, aligned: 0');
    tt.not(set(d + 8n, av, u), 0n, 'desc not 16-aligned: refused');
    tt.not(set(d, av + 1n, u), 0n, 'avail not 2-aligned: refused');
    tt.not(set(d, av, u + 2n), 0n, 'used not 4-aligned: refused');
    tt.not(set(0x1000n, av, u), 0n, 'desc outside every region: refused');
    tt.not(set(d, UA - 0x1000n, u), 0n, 'avail below the region: refused');
    tt.not(set(d, av, UA + REGION), 0n, 'used just past the region: refused');
    tt.not(set(UA + REGION - 0x800n, av, u), 0n, 'desc (4096 bytes) straddling the region end: refused');
    tt.not(set(d, UA + REGION - 0x100n, u), 0n, 'avail (518 bytes) straddling the region end: refused');
    tt.not(set(d, av, UA + REGION - 0x400n), 0n, 'used (2054 bytes) straddling the region end: refused');
    tt.equal(set(UA + REGION - 0x1000n, UA + REGION - 0x1800n, UA + REGION - 0x2000n), 0n, 'rings ending exactly at the region end: 0');
    tt.not(set(d, av, 0xffff_ffff_ffff_fff0n), 0n, 'used at the top of the address space: refused');
    tt.not(ack(fe, FrontendReq.SET_VRING_ADDR, addrPayload(99, d, av, u)), 0n, 'queue index out of range: refused');
    // the daemon's log reaches our pipe a little after its ack
    await env.daemon.waitForLog(/not inside one memory region/, 2000);
    tt.match(env.daemon.logs(), /SET_VRING_ADDR rejected: .*align/, 'a log line says why (alignment)');
    tt.match(env.daemon.logs(), /SET_VRING_ADDR rejected: .*region/, 'a log line says why (region)');
  } finally {
    native.close(memfd);
    fe.close();
  }
  await sleep(150);
  await alive(tt, env, 'after SET_VRING_ADDR');
});

t.test('SET_VRING_ADDR before SET_VRING_NUM: checked with the smallest queue', async (tt) => {
  const fe = await connect(true);
  const memfd = native.memfdCreate('vring-addr', Number(REGION));
  try {
    const table = memTablePayload([{ guestPhysAddr: 0n, memorySize: REGION, userspaceAddr: UA, mmapOffset: 0n }]);
    tt.equal(ack(fe, FrontendReq.SET_MEM_TABLE, table, [memfd]), 0n, 'SET_MEM_TABLE');
    // size 1: desc 16 bytes, avail 8, used 14 — the last 16 bytes of the region hold any of them
    const end = UA + REGION;
    tt.equal(ack(fe, FrontendReq.SET_VRING_ADDR, addrPayload(2, end - 16n, end - 8n, end - 16n)), 0n, 'rings in the last bytes of the region: 0');
    tt.not(ack(fe, FrontendReq.SET_VRING_ADDR, addrPayload(2, end, end - 8n, end - 16n)), 0n, 'desc at the region end: refused');
    tt.not(ack(fe, FrontendReq.SET_VRING_ADDR, addrPayload(2, end - 16n, end - 6n, end - 16n)), 0n, 'avail (8 bytes) straddling the end: refused');
  } finally {
    native.close(memfd);
    fe.close();
  }
});

t.test('a fresh session works at the end', async (tt) => {
  await sleep(150);
  await alive(tt, env, 'at the end');
});
