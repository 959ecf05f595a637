/**
 * Fuzz target `vhost`: the vhost-user message handler (src/vhost/handler.ts: the payload decoders of
 * src/vhost/message.ts, fd checks, feature gates, the reply table) applied to a real VirtioFsDevice and
 * GuestMemory in this process; only the worker pool is a stand-in (pausing is immediate, no worker
 * runs a queue). A case is one connection: perhaps a valid set-up first (features, a memfd region,
 * queue 1 configured and enabled), then up to 10 messages, each a well-formed one with random fields,
 * that one damaged (payload cut or grown, flags changed, fds added or dropped), or random bytes, with
 * fds of any kind (eventfd, memfd, a regular file). Then the connection goes away (device reset).
 * Invariants: handle() resolves; a message whose sender waits (one with a reply of its own, or
 * NEED_REPLY) gets exactly one reply with its own request code, or the connection is closed; no
 * message gets two; replies are a u64 (8 bytes) except GET_CONFIG's; after the reset every fd the case
 * made is closed (none leaked, none kept by the device).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { Logger } from '../../src/log.js';
import { sharedBuffer } from '../../src/memory/guest-memory.js';
import { native } from '../../src/native.js';
import { FrontendReqHandler } from '../../src/vhost/handler.js';
import { FrontendReq, type Message, VHOST_USER_NEED_REPLY_MASK } from '../../src/vhost/message.js';
import { replyRule } from '../../src/vhost/replies.js';
import { VirtioFsDevice } from '../../src/virtio/device.js';
import type { WorkerPool } from '../../src/virtio/pool.js';
import { createSharedMemory, guestTableOf, loadVirtqueueModule } from '../../src/virtio/wasm.js';
import { type Counter, type FuzzTarget, openFds } from './runner.js';

const REGION = 2 << 20;
const UA = 0x7f0000000000n;
const ALL_FEATURES = (1n << 32n) | (1n << 28n) | (1n << 29n) | (1n << 30n);
const ALL_PROTOCOL = (1n << 0n) | (1n << 3n) | (1n << 15n) | (1n << 13n);

type FdKind = 'eventfd' | 'memfd' | 'file';
const fdKind = fc.constantFrom<FdKind>('eventfd', 'eventfd', 'memfd', 'file');

const U64 = fc.oneof(
  fc.bigInt({ min: 0n, max: BigInt(REGION) }), fc.bigInt({ min: UA, max: UA + BigInt(REGION) + 64n }),
  fc.constantFrom(0n, 1n, 0x100n, 0x101n, 0x1ffn, 0xffn, BigInt(REGION), 1n << 40n, (1n << 64n) - 1n, ALL_FEATURES, ALL_PROTOCOL),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
);
const U32 = fc.oneof(fc.integer({ min: 0, max: 17 }), fc.constantFrom(64, 128, 256, 32768, 65535, 0xffffffff), fc.nat());

const message = fc.record({
  /** mostly the defined requests; some undefined */
  request: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 43 }) }, fc.constantFrom(0, 44, 99, 0xffff, 0xffffffff)),
  flags: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(1, 1 | 8) }, fc.nat()),
  u: fc.array(U64, { minLength: 5, maxLength: 5 }),
  i: fc.array(U32, { minLength: 2, maxLength: 2 }),
  nregions: fc.integer({ min: 0, max: 9 }),
  fds: fc.option(fc.array(fdKind, { maxLength: 9 }), { freq: 2 }),
  shape: fc.oneof(
    { weight: 6, arbitrary: fc.constant(null) },
    fc.record({ cut: fc.nat(300) }),
    fc.record({ grow: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
    fc.record({ raw: fc.uint8Array({ maxLength: 300 }) }),
  ),
});
type Msg = typeof message extends fc.Arbitrary<infer T> ? T : never;

const kase = fc.record({ setup: fc.boolean(), messages: fc.array(message, { minLength: 1, maxLength: 10 }) });

/** The payload a well-formed message of this request has, from the generated fields. */
function payloadOf(m: Msg): { payload: Buffer; fds: FdKind[] } {
  const [a, b, c, d, e] = m.u as [bigint, bigint, bigint, bigint, bigint];
  const [i, j] = m.i as [number, number];
  const u64 = (...v: bigint[]): Buffer => Buffer.concat(v.map((x) => { const k = Buffer.alloc(8); k.writeBigUInt64LE(x); return k; }));
  const state = (): Buffer => { const k = Buffer.alloc(8); k.writeUInt32LE(i & 0xf, 0); k.writeUInt32LE(j, 4); return k; };
  const region = (gpa: bigint, size: bigint, ua: bigint, off: bigint): Buffer => u64(gpa, size, ua, off);
  switch (m.request) {
    case FrontendReq.SET_FEATURES: case FrontendReq.SET_PROTOCOL_FEATURES: case FrontendReq.SET_LOG_BASE: return { payload: u64(a), fds: [] };
    case FrontendReq.SET_VRING_KICK: case FrontendReq.SET_VRING_CALL: case FrontendReq.SET_VRING_ERR:
      return { payload: u64(a & 0x1ffn), fds: (a & 0x100n) ? [] : ['eventfd'] };
    case FrontendReq.SET_VRING_NUM: case FrontendReq.SET_VRING_BASE: case FrontendReq.GET_VRING_BASE: case FrontendReq.SET_VRING_ENABLE:
      return { payload: state(), fds: [] };
    case FrontendReq.SET_VRING_ADDR: {
      const k = Buffer.alloc(8);
      k.writeUInt32LE(i & 0xf, 0);
      k.writeUInt32LE(j & 1, 4);
      return { payload: Buffer.concat([k, u64(b, c, d, e)]), fds: [] };
    }
    case FrontendReq.SET_MEM_TABLE: {
      const n = m.nregions;
      const h = Buffer.alloc(8);
      h.writeUInt32LE(n, 0);
      const regions = Array.from({ length: n }, (_, r) => region(BigInt(r) * BigInt(REGION) + (r === 0 ? 0n : a & 0xfffn), r === 0 ? BigInt(REGION) : b, UA + BigInt(r) * (1n << 30n), r === 1 ? c : 0n));
      return { payload: Buffer.concat([h, ...regions]), fds: Array.from({ length: n }, () => 'memfd' as const) };
    }
    case FrontendReq.ADD_MEM_REG: case FrontendReq.REM_MEM_REG:
      return { payload: Buffer.concat([u64(0n), region(a, b & 0xffffffffn, c, d & 0xfffffn)]), fds: m.request === FrontendReq.ADD_MEM_REG ? ['memfd'] : [] };
    case FrontendReq.GET_CONFIG: case FrontendReq.SET_CONFIG: {
      const k = Buffer.alloc(12 + (j & 0xff));
      k.writeUInt32LE(i, 0);
      k.writeUInt32LE(j & 0xff, 4);
      return { payload: k, fds: [] };
    }
    default:
      return { payload: Buffer.alloc(0), fds: [] };
  }
}

/** The valid set-up: features, one memfd region, queue 1 of size 64 enabled with kick and call. */
function setupMessages(): Array<{ request: number; payload: Buffer; fds: FdKind[] }> {
  const u64 = (x: bigint): Buffer => { const k = Buffer.alloc(8); k.writeBigUInt64LE(x); return k; };
  const st = (i: number, n: number): Buffer => { const k = Buffer.alloc(8); k.writeUInt32LE(i, 0); k.writeUInt32LE(n, 4); return k; };
  const mt = Buffer.alloc(40);
  mt.writeUInt32LE(1, 0);
  mt.writeBigUInt64LE(0n, 8); mt.writeBigUInt64LE(BigInt(REGION), 16); mt.writeBigUInt64LE(UA, 24); mt.writeBigUInt64LE(0n, 32);
  const addr = Buffer.alloc(40);
  addr.writeUInt32LE(1, 0);
  addr.writeBigUInt64LE(UA, 8); addr.writeBigUInt64LE(UA + 0x2000n, 16); addr.writeBigUInt64LE(UA + 0x1000n, 24);
  return [
    { request: FrontendReq.SET_FEATURES, payload: u64(ALL_FEATURES), fds: [] },
    { request: FrontendReq.SET_PROTOCOL_FEATURES, payload: u64(ALL_PROTOCOL), fds: [] },
    { request: FrontendReq.SET_OWNER, payload: Buffer.alloc(0), fds: [] },
    { request: FrontendReq.SET_MEM_TABLE, payload: mt, fds: ['memfd'] },
    { request: FrontendReq.SET_VRING_NUM, payload: st(1, 64), fds: [] },
    { request: FrontendReq.SET_VRING_ADDR, payload: addr, fds: [] },
    { request: FrontendReq.SET_VRING_BASE, payload: st(1, 0), fds: [] },
    { request: FrontendReq.SET_VRING_KICK, payload: u64(1n), fds: ['eventfd'] },
    { request: FrontendReq.SET_VRING_CALL, payload: u64(1n), fds: ['eventfd'] },
    { request: FrontendReq.SET_VRING_ENABLE, payload: st(1, 1), fds: [] },
  ];
}

export async function vhostTarget(): Promise<FuzzTarget> {
  const memory = createSharedMemory();
  const vq = await loadVirtqueueModule(memory);
  native.setWindow(sharedBuffer(memory), guestTableOf(vq.layout));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-fuzz-vhost-'));
  const plain = path.join(dir, 'plain');
  fs.writeFileSync(plain, Buffer.alloc(REGION));
  const pool = { size: 1, withPaused: async <T>(fn: () => T | Promise<T>): Promise<T> => fn() } as unknown as WorkerPool;
  const log = new Logger('off', 'fuzz');
  const device = new VirtioFsDevice(vq, memory, pool, 16, log);
  const counter: Counter = { cases: 0 };
  const makeFd = (k: FdKind): number => {
    const fd = k === 'eventfd' ? native.eventfd(0) : k === 'memfd' ? native.memfdCreate('fuzz', REGION) : fs.openSync(plain, 'r+');
    if (fd < 0) throw new Error(`cannot make a ${k}: ${fd}`);
    return fd;
  };
  const property = fc.asyncProperty(kase, async ({ setup, messages }) => {
    counter.cases++;
    const before = openFds();
    const sent: Array<{ request: number; len: number }> = [];
    let closed = '';
    const handler = new FrontendReqHandler(device, (request, payload) => sent.push({ request, len: payload.length }), log, (why) => { closed ||= why; });
    const list: Array<{ request: number; flags: number; payload: Buffer; fds: FdKind[] }> = setup ? setupMessages().map((x) => ({ ...x, flags: 1 })) : [];
    for (const m of messages) {
      let { payload, fds } = payloadOf(m);
      const s = m.shape;
      if (s && 'cut' in s) payload = payload.subarray(0, s.cut % (payload.length + 1));
      else if (s && 'grow' in s) payload = Buffer.concat([payload, s.grow]);
      else if (s && 'raw' in s) payload = Buffer.from(s.raw);
      list.push({ request: m.request, flags: m.flags, payload, fds: m.fds ?? fds });
    }
    try {
      for (const [n, x] of list.entries()) {
        if (closed) break;
        const msg: Message = { request: x.request, flags: x.flags, size: x.payload.length, payload: x.payload, fds: x.fds.map(makeFd) };
        const start = sent.length;
        await handler.handle(msg);
        const replies = sent.slice(start);
        const waits = replyRule(x.request).reply !== '' || (x.flags & VHOST_USER_NEED_REPLY_MASK) !== 0;
        const what = `message ${n} (request ${x.request}, flags 0x${x.flags.toString(16)}, ${x.payload.length} bytes, ${x.fds.length} fds)`;
        if (replies.length > 1) throw new Error(`${what}: ${replies.length} replies`);
        if (waits && replies.length === 0 && !closed) throw new Error(`${what}: the sender waits, but got no reply and the connection stays`);
        for (const r of replies) {
          if (r.request !== x.request) throw new Error(`${what}: reply has request ${r.request}`);
          if (x.request !== FrontendReq.GET_CONFIG && r.len !== 8) throw new Error(`${what}: reply of ${r.len} bytes`);
        }
      }
    } finally {
      await handler.disconnect();
    }
    const left = [...openFds()].filter(([fd, what]) => before.get(fd) !== what);
    if (left.length > 0) throw new Error(`fd(s) left open after the reset: ${left.map(([fd, what]) => `${fd} ${what}`).join(', ')}`);
    return true;
  });
  return {
    name: 'vhost',
    property: property as unknown as FuzzTarget['property'],
    counter,
    close: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
