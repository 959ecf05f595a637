/**
 * Memory hot-plug against the daemon as a process (vhost-user spec: ADD_MEM_REG / REM_MEM_REG with
 * CONFIGURE_MEM_SLOTS): a region added while the share is in use carries requests at once; a removed
 * region is out of reach (a chain pointing into it is refused, nothing is written there, the daemon
 * lives on); and a region removed while a request that uses it is blocked inside the daemon is only
 * unmapped, and the removal acknowledged, after that request has been answered in it.
 * MEM_TEST_DAEMON=reference runs the cases against QEMU 7.2's C virtiofsd.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { OPEN_OUT_SIZE, OUT_HEADER_SIZE } from '../../src/abi/fuse.js';
import type { RegionSpec } from '../../src/frontend/guest-ram.js';
import { RequestBuilder, decodeOpenOut, parseReply } from '../../src/frontend/fuse-requests.js';
import { VirtioFsSession } from '../../src/frontend/virtio-fs-session.js';
import { DAEMON, GiB, MiB, type Places, exercise, holdLease, sleep, startMemDaemon, within } from '../helpers/guest-memory-kit.js';

const M = BigInt(MiB);
const ARENA = 4 * MiB;

// Region 0 holds the rings and request slots, region 1 the buffers of the placed requests.
const R0: RegionSpec = { guestPhysAddr: 4n * GiB, userspaceAddr: 0x7f10_0000_0000n, size: 64n * M, arenas: [{ offset: 0n, bytes: ARENA }] };
const R1: RegionSpec = { guestPhysAddr: 8n * GiB, userspaceAddr: 0x7f10_4000_0000n, size: 256n * M, arenas: [{ offset: 128n * M, bytes: ARENA }] };
const IN_R1: Places = { req: R1.guestPhysAddr + 128n * M, reply: R1.guestPhysAddr + 128n * M + 8192n, data: R1.guestPhysAddr + 130n * M - 8192n };

function open(sock: string): VirtioFsSession {
  return VirtioFsSession.open(sock, {
    queueSize: 64,
    slotBytes: 64 * 1024,
    memory: {
      regions: [R0, R1],
      queues: [
        { rings: R0.guestPhysAddr, slots: R0.guestPhysAddr + 1n * M },
        { rings: R0.guestPhysAddr + 16384n, slots: R0.guestPhysAddr + 2n * M },
      ],
    },
  });
}

t.test('a region added in use carries requests; once removed, a chain into it is refused and the daemon lives on', async (tt) => {
  const env = await startMemDaemon(tt, 11);
  const s = open(env.sock);
  try {
    await exercise(tt, s, env, IN_R1, 'before the hot-plug');
    // A region far from the others, above 64 GiB, of which two arenas 512 MiB apart are used.
    const r2: RegionSpec = {
      guestPhysAddr: 0x20_0000_0000n,
      userspaceAddr: 0x30_0000_0000n,
      size: GiB,
      arenas: [
        { offset: 0n, bytes: ARENA },
        { offset: 512n * M, bytes: ARENA },
      ],
    };
    const i2 = s.addRegion(r2);
    tt.pass('ADD_MEM_REG acknowledged');
    const a = r2.guestPhysAddr;
    const inR2: Places = { req: a, reply: a + 65536n, data: a + 514n * M - 16384n, indirect: a + 3n * M };
    await exercise(tt, s, env, inR2, 'buffers in the added region', false);

    s.removeRegion(i2);
    tt.pass('REM_MEM_REG acknowledged');
    const rb = new RequestBuilder();
    rb.unique = 1000n;
    const getattr = rb.getattr(1n);
    const sent = s.sendChain(1, getattr, { out: [{ addr: IN_R1.req, len: getattr.length }], in: [{ addr: inR2.reply, len: 4096 }] });
    const reply = await within(sent, 2000, 'GETATTR into the removed region').catch(() => null);
    tt.ok(reply === null || reply.length === 0, `a chain into the removed region gets no reply (${reply === null ? 'none' : `${reply.length} bytes`})`);
    tt.ok(s.ram.read(inR2.reply, 4096).every((b) => b === 0), 'nothing was written into the removed region');
    tt.equal(env.daemon.exitCode(), undefined, 'the daemon is still running');
  } finally {
    s.close();
  }
  if (DAEMON === 'ours') {
    const fresh = open(env.sock);
    try {
      await exercise(tt, fresh, env, IN_R1, 'a fresh session afterwards');
    } finally {
      fresh.close();
    }
  }
});

t.test('a hot-plug that outgrows the window switches to apertures, and an unplug switches back', async (tt) => {
  const env = await startMemDaemon(tt, 13);
  const s = open(env.sock);
  try {
    await exercise(tt, s, env, IN_R1, 'resident: before the hot-plug');
    // 6 GiB more: the table no longer fits the ~3.9 GiB window.
    const big: RegionSpec = {
      guestPhysAddr: 0x40_0000_0000n,
      userspaceAddr: 0x50_0000_0000n,
      size: 6n * GiB,
      arenas: [
        { offset: 0n, bytes: ARENA },
        { offset: 5n * GiB, bytes: ARENA },
      ],
    };
    const ib = s.addRegion(big);
    const a = big.guestPhysAddr;
    const inBig: Places = { req: a + 5n * GiB, reply: a + 65536n, data: a + 5n * GiB + 2n * M - 4096n, indirect: a + 3n * M };
    await exercise(tt, s, env, inBig, 'apertures: buffers in the added region', false);
    await exercise(tt, s, env, IN_R1, 'apertures: buffers in a region that was resident', false);
    if (DAEMON === 'ours') {
      tt.match(await env.daemon.waitForLog(/reaching it through apertures/, 2000), /reaching it through apertures/, 'the daemon switched to apertures');
    }
    s.removeRegion(ib);
    await exercise(tt, s, env, IN_R1, 'resident again: after the unplug', false);
    if (DAEMON === 'ours') {
      tt.match(await env.daemon.waitForLog(/fits the window again/, 2000), /fits the window again/, 'and back to resident');
    }
  } finally {
    s.close();
  }
  tt.equal(env.daemon.exitCode(), undefined, 'the daemon is still running');
});

const noPerl = spawnSync('perl', ['-e', '1']).status === 0 ? false : 'perl is needed to hold a file lease (fcntl F_SETLEASE)';
t.test('REM_MEM_REG of the region a blocked request uses waits for that request', { skip: noPerl }, async (tt) => {
  const env = await startMemDaemon(tt, 12);
  const leased = path.join(env.share, 'leased.bin');
  fs.writeFileSync(leased, 'leased\n');
  const s = open(env.sock);
  try {
    await exercise(tt, s, env, IN_R1, 'before');
    const rb = new RequestBuilder();
    rb.unique = 5000n;
    const e = parseReply(await within(s.send(1, rb.lookup(1n, 'leased.bin'), 4096), 5000, 'LOOKUP'));
    tt.equal(e.error, 0, 'LOOKUP leased.bin');
    const node = e.view.getBigUint64(0, true);

    // OPEN of a leased file blocks in the daemon's open(2) until the lease is released; its request and
    // reply buffers are in region 1, which is then removed.
    const lease = await holdLease(tt, leased);
    const dq = s.queues[1]!;
    const used0 = dq.usedIdx;
    const openReq = rb.open(node, 0);
    const opened = s.sendChain(1, openReq, { out: [{ addr: IN_R1.req, len: openReq.length }], in: [{ addr: IN_R1.reply, len: 4096 }] });
    await within(lease.broken, 5000, 'the daemon opening the leased file');
    const ack = s.postRemoveRegion(1);
    await sleep(500);
    tt.notOk(ack.ready(), 'no REM_MEM_REG ack while the request is blocked');
    tt.equal(dq.usedIdx, used0, 'the request is still in flight');

    lease.release();
    const t0 = Date.now();
    while (!ack.ready() && Date.now() - t0 < 5000) await sleep(5);
    tt.ok(ack.ready(), 'the ack arrives once the request is done');
    tt.equal(dq.usedIdx, (used0 + 1) & 0xffff, 'the reply was published before the ack');
    tt.equal(ack.ready() ? ack.status() : -1n, 0n, 'REM_MEM_REG succeeded');

    const r = parseReply(await within(opened, 2000, 'OPEN'));
    tt.equal(r.error, 0, 'OPEN answered');
    tt.equal(r.unique, rb.unique - 1n, 'with its own unique');
    tt.equal(r.len, OUT_HEADER_SIZE + OPEN_OUT_SIZE, 'a whole fuse_open_out');
    tt.same(parseReply(s.ram.read(IN_R1.reply, r.len)), r, "the reply is in the removed region's memory");
    // The handle is real: READ through it, with buffers in region 0 (still mapped).
    const fh = decodeOpenOut(r.view).fh;
    const data = R0.guestPhysAddr + 3n * M;
    const readReq = rb.read(node, fh, 0n, 4096);
    const rd = parseReply(await within(s.sendChain(1, readReq, { out: [{ addr: data, len: readReq.length }], in: [{ addr: data + 4096n, len: OUT_HEADER_SIZE + 4096 }] }), 5000, 'READ'));
    tt.equal(Buffer.from(rd.data).toString(), 'leased\n', 'READ through the handle the blocked OPEN returned');
    tt.equal(env.daemon.exitCode(), undefined, 'the daemon is still running');
  } finally {
    s.close();
  }
});
