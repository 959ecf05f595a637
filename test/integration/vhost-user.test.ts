/**
 * The daemon as a separate process, driven over its vhost-user socket by our own frontend (no VM):
 * protocol handling, the FUSE path through real rings in shared memory, and hostile input. After
 * every attack the daemon must still be alive and serve a fresh session.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { Errno } from '../../src/errors.js';
import { native } from '../../src/native.js';
import { FrontendReq, VHOST_USER_NEED_REPLY_MASK, VHOST_USER_VERSION, u64Payload, vringStatePayload } from '../../src/vhost/message.js';
import { VhostUserFrontend } from '../../src/frontend/vhost-user-frontend.js';
import { VirtioFsSession, type SessionOptions } from '../../src/frontend/virtio-fs-session.js';
import { RequestBuilder, parseReply } from '../../src/frontend/fuse-requests.js';
import { Opcode, decodeEntryOut } from '../../src/abi/fuse.js';
import { S_IFLNK, S_IFMT } from '../../src/abi/stat.js';
import { VIRTQ_DESC_F_NEXT } from '../../src/abi/virtio.js';
import { startDaemon, type DaemonHandle } from '../../harness/index.js';
import { until } from '../helpers/poll.js';


const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-int-'));
const share = path.join(tmp, 'share');
fs.mkdirSync(share);
fs.writeFileSync(path.join(share, 'hello.txt'), 'hello from the host\n');
fs.writeFileSync(path.join(tmp, 'secret.txt'), 'outside the share\n');
fs.symlinkSync('../secret.txt', path.join(share, 'escape'));
fs.symlinkSync('/etc/passwd', path.join(share, 'abs-escape'));
const sock = path.join(tmp, 'vfsd.sock');

let daemon: DaemonHandle;
t.before(async () => {
  daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock, extraArgs: ['--log-level=debug', '--thread-pool-size=2'] });
});
t.teardown(async () => {
  const s = await daemon?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
  if (s && s.code !== 0) console.error(daemon.logs());
});

async function alive(tt: Test): Promise<void> {
  tt.equal(daemon.exitCode(), undefined, 'daemon still running');
  const s = VirtioFsSession.open(sock);
  try {
    const rb = new RequestBuilder();
    const init = parseReply(await s.send(1, rb.init(), 4096));
    tt.equal(init.error, 0, 'a fresh session gets FUSE_INIT answered');
  } finally {
    s.close();
  }
}

async function session(opts: SessionOptions = {}): Promise<{ s: VirtioFsSession; rb: RequestBuilder; call: (req: Uint8Array, cap?: number) => Promise<ReturnType<typeof parseReply>> }> {
  const s = VirtioFsSession.open(sock, opts);
  const rb = new RequestBuilder();
  const call = async (req: Uint8Array, cap = 8192): Promise<ReturnType<typeof parseReply>> => parseReply(await s.send(1, req, cap));
  const init = await call(rb.init());
  if (init.error !== 0) throw new Error(`INIT failed: ${init.error}`);
  return { s, rb, call };
}

t.test('FUSE over real rings: lookup, read, create, write, read back', async (tt) => {
  const { s, rb, call } = await session();
  try {
    const e = await call(rb.lookup(1n, 'hello.txt'));
    tt.equal(e.error, 0, 'lookup hello.txt');
    const nodeid = e.view.getBigUint64(0, true);
    tt.ok(nodeid > 1n, 'a node id');
    tt.equal(e.view.getBigUint64(40 + 8, true), 20n, 'attr.size is the host size');
    const o = await call(rb.open(nodeid, 0));
    tt.equal(o.error, 0, 'open');
    const fh = o.view.getBigUint64(0, true);
    const r = await call(rb.read(nodeid, fh, 0n, 4096), 4096 + 16);
    tt.equal(r.error, 0, 'read');
    tt.equal(Buffer.from(r.data).toString(), 'hello from the host\n', 'read returns the file (preadv into guest pages)');
    tt.equal(r.len, 16 + 20, 'reply length is header + bytes read');
    await call(rb.release(nodeid, fh));

    const c = await call(rb.create(1n, 'new.bin', 0o102 /* O_RDWR|O_CREAT */, 0o100640));
    tt.equal(c.error, 0, 'create');
    const cn = c.view.getBigUint64(0, true);
    const cfh = c.view.getBigUint64(128, true);
    const payload = Buffer.alloc(300_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + 3) & 0xff;
    const w = await call(rb.write(cn, cfh, 0n, payload));
    tt.equal(w.error, 0, 'write');
    tt.equal(w.view.getUint32(0, true), payload.length, 'write_out.size');
    tt.same(fs.readFileSync(path.join(share, 'new.bin')), payload, 'host sees the written bytes');
    tt.equal(fs.statSync(path.join(share, 'new.bin')).mode & 0o777, 0o640, 'mode from the request');
    const rr = await call(rb.read(cn, cfh, 1000n, 200_000), 200_000 + 16);
    tt.same(Buffer.from(rr.data), payload.subarray(1000, 201_000), 'read back at an offset');
    await call(rb.release(cn, cfh));
  } finally {
    s.close();
  }
});

t.test('guest memory cannot be shrunk under the daemon (F_SEAL_SHRINK)', async (tt) => {
  const { s } = await session();
  try {
    tt.throws(() => fs.ftruncateSync(s.memfd, 4096), { code: 'EPERM' }, 'shrinking the memfd is refused after SET_MEM_TABLE');
  } finally {
    s.close();
  }
  await alive(tt);
});

t.test('many requests in flight on one queue', async (tt) => {
  const { s, rb, call } = await session({ queueSize: 256, slotBytes: 16384 });
  try {
    const e = await call(rb.lookup(1n, 'hello.txt'));
    const nodeid = e.view.getBigUint64(0, true);
    const reps = await Promise.all(Array.from({ length: 100 }, () => s.send(1, rb.getattr(nodeid), 256)));
    tt.ok(reps.every((b) => parseReply(b).error === 0), '100 concurrent GETATTRs all answered');
    const uniques = new Set(reps.map((b) => parseReply(b).unique));
    tt.equal(uniques.size, 100, 'each reply carries its own unique');
  } finally {
    s.close();
  }
});

t.test('confinement: names and symlinks never reach outside the share', async (tt) => {
  const { s, rb, call } = await session();
  try {
    tt.equal((await call(rb.lookup(1n, '..'))).error < 0, true, 'lookup .. at the root fails');
    tt.equal((await call(rb.lookup(1n, '../secret.txt'))).error < 0, true, 'a name with a slash is refused');
    const beside = await call(rb.lookup(1n, 'secret.txt'));
    tt.ok(beside.error === -Errno.ENOENT || (beside.error === 0 && beside.view.getBigUint64(0, true) === 0n), 'the file beside the share is not found (ENOENT or a negative entry)');
    for (const link of ['escape', 'abs-escape']) {
      const e = await call(rb.lookup(1n, link));
      tt.equal(e.error, 0, `lookup ${link} returns the link itself`);
      const nodeid = e.view.getBigUint64(0, true);
      const mode = decodeEntryOut(e.view, 0).attr.mode;
      tt.equal(mode & S_IFMT, S_IFLNK, `${link} is a symlink to the guest`);
      const o = await call(rb.open(nodeid, 0));
      tt.ok(o.error < 0, `open ${link} fails (error ${o.error}): never followed on the host`);
    }
    const bad = new Uint8Array([0x61, 0x62]); // no NUL
    tt.ok((await call(rb.build(Opcode.Lookup, 1n, bad))).error < 0, 'a name without its NUL is refused');
    tt.ok((await call(rb.lookup(1n, 'x'.repeat(300)))).error < 0, 'an over-long name is refused');
    tt.ok((await call(rb.getattr(0xdead_0000_0042n))).error < 0, 'a made-up node id is refused');
    tt.ok((await call(rb.read(1n, 0x1234_5678n, 0n, 10))).error < 0, 'a made-up file handle is refused');
    tt.ok((await call(rb.build(9999, 1n))).error === -Errno.ENOSYS, 'an unknown opcode gets ENOSYS');
  } finally {
    s.close();
  }
  await alive(tt);
});

t.test('hostile chains: bad descriptors are returned, the queue keeps working', async (tt) => {
  const { s, rb, call } = await session();
  try {
    const dq = s.queues[1]!;
    // A descriptor pointing far outside guest memory.
    const slot = dq.takeSlot();
    dq.writeDesc(slot * 2, { addr: 0xffff_ffff_0000n, len: 64, flags: 0, next: 0 });
    const done = s.waitUsed(1, slot);
    dq.pushAvail(slot * 2);
    dq.publish();
    s.kick(1);
    const used = await done;
    tt.equal(used.length, 0, 'an unmapped buffer gets a zero-length used element');
    // A descriptor loop: 2i -> 2i+1 -> 2i.
    const slot2 = dq.takeSlot();
    dq.writeDesc(slot2 * 2, { addr: 0x1_0000_0000n + 4096n * 64n, len: 64, flags: VIRTQ_DESC_F_NEXT, next: slot2 * 2 + 1 });
    dq.writeDesc(slot2 * 2 + 1, { addr: 0x1_0000_0000n + 4096n * 65n, len: 64, flags: VIRTQ_DESC_F_NEXT, next: slot2 * 2 });
    const done2 = s.waitUsed(1, slot2);
    dq.pushAvail(slot2 * 2);
    dq.publish();
    s.kick(1);
    tt.equal((await done2).length, 0, 'a descriptor loop is cut off and returned');
    // A FUSE header whose len disagrees with the chain.
    const req = rb.getattr(1n);
    new DataView(req.buffer).setUint32(0, 100_000, true);
    const r = await call(req);
    tt.ok(r.error < 0, `in.len larger than the chain: error ${r.error}`);
    // Still serving.
    tt.equal((await call(rb.getattr(1n))).error, 0, 'a valid request after the attacks is served');
  } finally {
    s.close();
  }
  await alive(tt);
});

t.test('a corrupted avail ring stops that queue only until the next connection', async (tt) => {
  const { s } = await session();
  const dq = s.queues[1]!;
  dq.setAvailIdx(5000); // a jump larger than the queue size
  s.kick(1);
  await new Promise((r) => setTimeout(r, 300));
  s.close();
  await alive(tt);
  tt.match(await daemon.waitForLog(/corrupted the avail ring/), /corrupted the avail ring/, 'logged');
});

t.test('vhost-user protocol errors are rejected, not fatal', async (tt) => {
  const fe = VhostUserFrontend.connect(sock);
  try {
    fe.getFeatures();
    const pf = fe.getProtocolFeatures();
    fe.setProtocolFeatures(pf & (1n << 3n)); // REPLY_ACK
    fe.sendMessage(FrontendReq.SET_VRING_NUM, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, vringStatePayload(1, 1000));
    tt.not(fe.readReply(FrontendReq.SET_VRING_NUM).readBigUInt64LE(0), 0n, 'queue size 1000 (not a power of two) is refused');
    fe.sendMessage(FrontendReq.SET_VRING_NUM, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, vringStatePayload(16, 256));
    tt.not(fe.readReply(FrontendReq.SET_VRING_NUM).readBigUInt64LE(0), 0n, 'queue index out of range is refused');
    fe.sendMessage(FrontendReq.SET_FEATURES, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, Buffer.alloc(3));
    tt.not(fe.readReply(FrontendReq.SET_FEATURES).readBigUInt64LE(0), 0n, 'a short payload is refused');
    fe.sendMessage(77, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, Buffer.alloc(0));
    tt.not(fe.readReply(77).readBigUInt64LE(0), 0n, 'an unknown request is refused');
    const efd = native.eventfd(0);
    fe.sendMessage(FrontendReq.SET_OWNER, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, Buffer.alloc(0), [efd]);
    tt.equal(fe.readReply(FrontendReq.SET_OWNER).readBigUInt64LE(0), 0n, 'an fd on SET_OWNER is dropped, the message applies');
    native.close(efd);
    fe.sendMessage(FrontendReq.SET_MEM_TABLE, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, Buffer.alloc(8));
    tt.not(fe.readReply(FrontendReq.SET_MEM_TABLE).readBigUInt64LE(0), 0n, 'a memory table of 0 regions is refused');
    const q = fe.get(FrontendReq.GET_QUEUE_NUM).readBigUInt64LE(0);
    tt.equal(q, 16n, 'the connection still answers (hiprio + 15 request queues)');
    // A second frontend while this one is connected is turned away.
    const fe2 = VhostUserFrontend.connect(sock);
    tt.throws(() => fe2.get(FrontendReq.GET_FEATURES), 'a second connection is closed');
    fe2.close();
    tt.equal(fe.get(FrontendReq.GET_QUEUE_NUM).readBigUInt64LE(0), 16n, 'the first connection is unaffected');
    // Guest RAM larger than the memfd behind it (touching it would raise SIGBUS) or than the window.
    const memfd = native.memfdCreate('small', 1 << 20);
    const table = (size: bigint): Buffer => {
      const p = Buffer.alloc(40);
      p.writeUInt32LE(1, 0);
      p.writeBigUInt64LE(0n, 8);
      p.writeBigUInt64LE(size, 16);
      p.writeBigUInt64LE(0x7f0000000000n, 24);
      return p;
    };
    fe.sendMessage(FrontendReq.SET_MEM_TABLE, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, table(64n << 20n), [memfd]);
    tt.not(fe.readReply(FrontendReq.SET_MEM_TABLE).readBigUInt64LE(0), 0n, 'a region past the end of its memfd is refused');
    fe.sendMessage(FrontendReq.SET_MEM_TABLE, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, table(8n << 30n), [memfd]);
    tt.not(fe.readReply(FrontendReq.SET_MEM_TABLE).readBigUInt64LE(0), 0n, 'an 8 GiB guest is refused (window is < 4 GiB)');
    fe.sendMessage(FrontendReq.SET_MEM_TABLE, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, table(1n << 20n), [memfd]);
    tt.equal(fe.readReply(FrontendReq.SET_MEM_TABLE).readBigUInt64LE(0), 0n, 'a region inside its memfd is mapped');
    // A kick fd that is not an eventfd (a regular file is always readable: a worker would spin).
    const fileFd = fs.openSync(path.join(share, 'hello.txt'), 'r');
    fe.sendMessage(FrontendReq.SET_VRING_KICK, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, u64Payload(1n), [fileFd]);
    tt.not(fe.readReply(FrontendReq.SET_VRING_KICK).readBigUInt64LE(0), 0n, 'a regular file as kick fd is refused');
    fe.sendMessage(FrontendReq.SET_VRING_CALL, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, u64Payload(1n), [memfd]);
    tt.not(fe.readReply(FrontendReq.SET_VRING_CALL).readBigUInt64LE(0), 0n, 'a memfd as call fd is refused');
    fs.closeSync(fileFd);
    native.close(memfd);
    // Framing we cannot trust: the daemon drops the connection.
    const hdr = Buffer.alloc(12);
    hdr.writeUInt32LE(FrontendReq.SET_FEATURES, 0);
    hdr.writeUInt32LE(1, 4);
    hdr.writeUInt32LE(0x7fffffff, 8);
    fe.sendMessage(FrontendReq.SET_FEATURES, 1, u64Payload(0n).subarray(0, 0));
    native.sendMsg(fe.fd, hdr, 0, 12, null);
    tt.throws(() => fe.get(FrontendReq.GET_FEATURES), 'an oversized message closes the connection');
  } finally {
    fe.close();
  }
  await new Promise((r) => setTimeout(r, 100));
  await alive(tt);
});

t.test('memory table replaced while a session serves: the same memory as two regions', async (tt) => {
  const { s, rb, call } = await session();
  try {
    // the session's layout (src/frontend/virtio-fs-session.ts): one region, GPA 4 GiB, mapped at 0x7f00_0000_0000
    const GPA = 0x1_0000_0000n;
    const USER = 0x7f00_0000_0000n;
    const size = BigInt(s.mem.length);
    // split near the start, so that queue 1's rings and buffers all come through the second region
    const half = 64n * 1024n;
    const e = await call(rb.lookup(1n, 'hello.txt'));
    const nodeid = e.view.getBigUint64(0, true);
    const inflight = Array.from({ length: 50 }, () => s.send(1, rb.getattr(nodeid), 256));
    const from = daemon.logs().length;
    // A different table (two regions, the second at an mmap offset) over the same memfd: the
    // rings and buffers keep their addresses, so the queue must go on serving through the new map.
    s.fe.setMemTable([
      { guestPhysAddr: GPA, memorySize: half, userspaceAddr: USER, mmapOffset: 0n },
      { guestPhysAddr: GPA + half, memorySize: size - half, userspaceAddr: USER + half, mmapOffset: half },
    ], [s.memfd, s.memfd]);
    s.kick(1);
    const res = await Promise.race([
      Promise.all(inflight),
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error('requests in flight not answered in 10 s')), 10000)),
    ]);
    tt.ok(res.every((b) => parseReply(b).error === 0), 'the requests in flight are answered');
    // the log line comes through the daemon's stderr pipe: wait for it
    tt.ok(await until(() => /guest memory: 2 region\(s\)/.test(daemon.logs().slice(from))), 'the daemon mapped the two-region table');
    let served = 0;
    for (let k = 0; k < 4; k++) {
      const after = await Promise.all(Array.from({ length: 50 }, () => call(rb.getattr(nodeid), 256)));
      served += after.filter((r) => r.error === 0).length;
    }
    tt.equal(served, 200, '200 requests after the replacement are served');
    const o = await call(rb.open(nodeid, 0));
    const fh = o.view.getBigUint64(0, true);
    const rd = await call(rb.read(nodeid, fh, 0n, 4096), 8192);
    tt.equal(new TextDecoder().decode(rd.data), 'hello from the host\n', 'file data travels through the new table');
  } finally {
    s.close();
  }
  await alive(tt);
});

t.test('disconnect with requests in flight', async (tt) => {
  const { s, rb, call } = await session();
  const e = await call(rb.lookup(1n, 'hello.txt'));
  const nodeid = e.view.getBigUint64(0, true);
  const resets = (): number => daemon.logs().match(/device reset; waiting for the next frontend/g)?.length ?? 0;
  const before = resets();
  for (let i = 0; i < 50; i++) s.send(1, rb.getattr(nodeid), 256).catch(() => undefined);
  s.close();
  // the disconnect has no reply: wait for the daemon's reset after it
  tt.ok(await until(() => resets() === before + 1), 'the daemon reset the device after the disconnect');
  await alive(tt);
});
