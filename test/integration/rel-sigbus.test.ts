/**
 * A frontend that truncates guest RAM under the daemon (docs/internals.md, "Guest RAM that shrinks").
 * Guest RAM here is two regions: region 0 (rings, request slots, reply buffers) and region 1, a memfd
 * made without MFD_ALLOW_SEALING, so the daemon cannot stop it from shrinking. After FUSE_INIT and a
 * GETATTR the test truncates a memfd and sends a request whose buffers lie in the lost pages: the daemon
 * must survive its SIGBUS, log the fault, drop that connection and serve the next frontend.
 *
 * This process maps the same memfds: before truncating it replaces its own view of the region with
 * anonymous memory (what it writes there afterwards the daemon never sees), or it would die of the
 * SIGBUS itself.
 */
import fs from 'node:fs';
import t, { type Test } from 'tap';
import { OUT_HEADER_SIZE } from '../../src/abi/fuse.js';
import { decodeOpenOut, parseReply } from '../../src/frontend/fuse-requests.js';
import type { RegionSpec } from '../../src/frontend/guest-ram.js';
import { VirtioFsSession } from '../../src/frontend/virtio-fs-session.js';
import { native } from '../../src/native.js';
import { DATA_LEN, GiB, type MemEnv, MiB, PlacedFuse, startMemDaemon, within } from '../helpers/guest-memory-kit.js';

const REGION = 16n * BigInt(MiB);
/** region 0: rings and slots from its start, placed request and reply buffers from 8 MiB */
const R0: RegionSpec = { guestPhysAddr: 4n * GiB, userspaceAddr: 0x7f00_0000_0000n, size: REGION, arenas: [{ offset: 0n, bytes: Number(REGION) }] };
/** region 1: a memfd that cannot be sealed, as some frontends' are */
const R1: RegionSpec = {
  guestPhysAddr: 8n * GiB,
  userspaceAddr: 0x7f10_0000_0000n,
  size: REGION,
  sealable: false,
  arenas: [{ offset: 0n, bytes: Number(REGION) }],
};
const PLACED = R0.guestPhysAddr + 8n * BigInt(MiB);
/** in region 1, beyond the half that survives the truncation */
const LOST = R1.guestPhysAddr + 12n * BigInt(MiB);

const FAULT_LINE = /guest memory fault[^\n]*truncated/;

function open(env: MemEnv, regions: RegionSpec[] = [R0, R1]): VirtioFsSession {
  return VirtioFsSession.open(env.sock, { queueSize: 64, slotBytes: 65536, memory: { regions } });
}

/** INIT and a GETATTR of the root through request slots (region 0). */
async function initAndGetattr(tt: Test, s: VirtioFsSession, what: string): Promise<void> {
  const f = new PlacedFuse(s, { req: PLACED, reply: PLACED + 0x10000n, data: PLACED + 0x20000n });
  tt.equal((await f.call(f.rb.init())).error, 0, `${what}: FUSE_INIT answered`);
  tt.equal((await f.call(f.rb.getattr(1n))).error, 0, `${what}: GETATTR answered`);
}

/**
 * Truncates region i's memfd to `bytes` after replacing this process's view of it with anonymous
 * memory (so the test's own writes there cannot fault).
 */
function truncate(s: VirtioFsSession, i: number, bytes: number): void {
  const a = s.ram.arena(i, 0);
  const rc = native.unmapFixed(s.ram.bytes.buffer as unknown as SharedArrayBuffer, a.off, a.bytes);
  if (rc !== 0) throw new Error(`dropping the test's own view of region ${i} failed: errno ${-rc}`);
  fs.ftruncateSync(s.ram.region(i).fd, bytes);
}

/** The daemon lives, logged the fault once, dropped the connection, and serves a fresh frontend. */
async function survived(tt: Test, env: MemEnv, what: string): Promise<void> {
  const logs = await env.daemon.waitForLog(/device reset; waiting for the next frontend/, 10_000);
  tt.equal(env.daemon.exitCode(), undefined, `${what}: the daemon is still running`);
  tt.match(logs, FAULT_LINE, `${what}: the fault is logged, naming the truncation`);
  tt.match(logs, /vhost-user frontend disconnected: [^\n]*guest memory/, `${what}: the connection was dropped for it`);
  tt.equal((logs.match(new RegExp(FAULT_LINE, 'g')) ?? []).length, 1, `${what}: one fault line for the episode`);
  const fresh = open(env);
  try {
    await initAndGetattr(tt, fresh, `${what}: a new connection`);
  } finally {
    fresh.close();
  }
  tt.equal(env.daemon.exitCode(), undefined, `${what}: still running at the end`);
}

/** GETATTR whose request lies in the lost half of region 1: the worker's gather (WASM) faults. */
async function headerInLostPages(t: Test, env: MemEnv, what: string): Promise<void> {
  const s = open(env);
  t.teardown(() => s.close());
  await initAndGetattr(t, s, 'before');
  truncate(s, 1, 8 * MiB);
  const f = new PlacedFuse(s, { req: LOST, reply: PLACED + 0x10000n, data: PLACED + 0x20000n });
  void f.call(f.rb.getattr(1n)).catch(() => undefined);
  await survived(t, env, what);
  t.match(env.daemon.logs(), /guest memory fault[^\n]*the file of region gpa=0x200000000 is now 8388608 bytes, the region needs 16777216/, `${what}: the line names the shrunk region file`);
}

t.test('a request header in truncated guest RAM (WASM reads it): the connection is dropped, the daemon lives', async (t) => {
  const env = await startMemDaemon(t, 0x5b05);
  await headerInLostPages(t, env, 'request header');
  t.match(env.daemon.logs(), /guest memory fault[^\n]*at guest-physical 0x200c00[0-9a-f]{3} in the region gpa=0x200000000/, 'and the guest-physical address');
});

t.test('the same through apertures (guest RAM not resident in the window)', async (t) => {
  // The daemon reads the knob at start (docs/testing.md): set for its spawn only.
  const was = process.env.VIRTIOFSD_TS_APERTURES;
  process.env.VIRTIOFSD_TS_APERTURES = 'always';
  let env: MemEnv;
  try {
    env = await startMemDaemon(t, 0x5b08);
  } finally {
    if (was === undefined) delete process.env.VIRTIOFSD_TS_APERTURES;
    else process.env.VIRTIOFSD_TS_APERTURES = was;
  }
  await headerInLostPages(t, env, 'through an aperture');
  t.match(env.daemon.logs(), /guest memory fault[^\n]*in an aperture/, 'the fault is placed in an aperture');
});

t.test('the rings in truncated guest RAM: the next kick', async (t) => {
  const env = await startMemDaemon(t, 0x5b06);
  // rings and slots of both queues in region 1 (unsealable), placed buffers in region 0
  const s = VirtioFsSession.open(env.sock, {
    queueSize: 64,
    slotBytes: 65536,
    memory: { regions: [R1, R0], queues: [0, 1].map((q) => ({ rings: R1.guestPhysAddr + BigInt(q * 2 * MiB), slots: R1.guestPhysAddr + BigInt(q * 2 * MiB + 65536) })) },
  });
  t.teardown(() => s.close());
  await initAndGetattr(t, s, 'before');
  // Regions are numbered in the order given: region 0 of this session is R1.
  truncate(s, 0, 0);
  s.kick(1);
  await survived(t, env, 'rings');
});

t.test('READ data into truncated guest RAM (preadv gets EFAULT): an error reply, the daemon lives', async (t) => {
  const env = await startMemDaemon(t, 0x5b07);
  const s = open(env);
  t.teardown(() => s.close());
  await initAndGetattr(t, s, 'before');
  const f = new PlacedFuse(s, { req: PLACED, reply: PLACED + 0x10000n, data: LOST });
  const e = await f.call(f.rb.lookup(1n, 'data.bin'));
  t.equal(e.error, 0, 'LOOKUP');
  const node = e.view.getBigUint64(0, true);
  const o = await f.call(f.rb.open(node, 0));
  t.equal(o.error, 0, 'OPEN');
  const fh = decodeOpenOut(o.view).fh;
  truncate(s, 1, 8 * MiB);
  // The reply header stays in region 0, the data buffer is in the lost half of region 1.
  const req = f.rb.read(node, fh, 0n, DATA_LEN);
  const r = parseReply(
    await within(s.sendChain(1, req, { out: [{ addr: PLACED, len: req.length }], in: [{ addr: PLACED + 0x10000n, len: OUT_HEADER_SIZE }, { addr: LOST, len: DATA_LEN }] }), 5000, 'READ'),
  );
  t.ok(r.error === -14 || r.error === -5, `READ answered with EFAULT or EIO (got ${r.error})`);
  t.equal(r.len, OUT_HEADER_SIZE, 'and no data');
  t.equal(env.daemon.exitCode(), undefined, 'the daemon is still running');
  // The connection keeps working for buffers in memory that is still there.
  t.equal((await f.call(f.rb.getattr(1n))).error, 0, 'a GETATTR in region 0 afterwards');
});
