/**
 * A ring keeps its position while it is disabled. QEMU stops a vhost-user device (VM stop, migration,
 * shutdown) with SET_VRING_ENABLE 0 on every ring and then GET_VRING_BASE, and starts it again with
 * SET_VRING_BASE of the value it got back: GET_VRING_BASE after a disable must return the next avail
 * index to process, not the base the ring was set up with (which would make the backend serve the
 * ring's old entries again after `cont`).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { VirtioFsSession } from '../../src/frontend/virtio-fs-session.js';
import { RequestBuilder, parseReply } from '../../src/frontend/fuse-requests.js';
import { startDaemon, type DaemonHandle } from '../../harness/index.js';
import { until } from '../helpers/poll.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-vring-'));
const share = path.join(tmp, 'share');
fs.mkdirSync(share);
const sock = path.join(tmp, 'vfsd.sock');

let daemon: DaemonHandle;
t.before(async () => {
  daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock, extraArgs: ['--thread-pool-size=2'] });
});
t.teardown(async () => {
  const s = await daemon?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
  if (s && s.code !== 0) console.error(daemon.logs());
});

t.test('GET_VRING_BASE after SET_VRING_ENABLE 0 returns the position reached', async (tt) => {
  const s = VirtioFsSession.open(sock, { requestQueues: 2, queueSize: 64, slotBytes: 8192, memBytes: 16 << 20 });
  try {
    const rb = new RequestBuilder();
    tt.equal(parseReply(await s.send(1, rb.init(), 4096)).error, 0, 'FUSE_INIT on queue 1');
    const sent = [0, 1 + 7, 5]; // per queue: queue 1 got INIT + 7 GETATTRs, queue 2 five
    for (let i = 0; i < 7; i++) tt.equal(parseReply(await s.send(1, rb.getattr(1n), 256)).error, 0);
    for (let i = 0; i < 5; i++) tt.equal(parseReply(await s.send(2, rb.getattr(1n), 256)).error, 0);

    // QEMU's vhost_dev_stop: disable every ring, then read each one's base.
    for (const q of [0, 1, 2]) s.fe.setVringEnable(q, false);
    for (const q of [0, 1, 2]) tt.equal(s.fe.getVringBase(q), sent[q], `queue ${q}: GET_VRING_BASE is the number of requests served`);
    const logged = /queue 1 stopped \(avail index 8\)/;
    tt.match(await daemon.waitForLog(logged, 2000), logged, 'the daemon logs where queue 1 stopped');
  } finally {
    s.close();
  }
});

t.test('a ring disabled and enabled again continues where it was', async (tt) => {
  const s = VirtioFsSession.open(sock, { requestQueues: 1, queueSize: 64, slotBytes: 8192, memBytes: 16 << 20 });
  try {
    const rb = new RequestBuilder();
    tt.equal(parseReply(await s.send(1, rb.init(), 4096)).error, 0, 'FUSE_INIT');
    for (let i = 0; i < 10; i++) await s.send(1, rb.getattr(1n), 256);
    s.fe.setVringEnable(1, false);
    s.fe.setVringEnable(1, true);
    const r = parseReply(await s.send(1, rb.getattr(1n), 256));
    tt.equal(r.error, 0, 'a request after re-enabling is answered');
    tt.equal(r.unique, rb.unique - 1n, 'with its own reply (no old request served again)');
    s.fe.setVringEnable(1, false);
    tt.equal(s.fe.getVringBase(1), 12, 'the ring did not go back to its old base');
    tt.notMatch(daemon.logs(), /corrupted the avail ring|bad descriptor chain/, 'no ring errors');
  } finally {
    s.close();
  }
});

t.test('a ring restarted with KICK before CALL still interrupts for what it completed', async (tt) => {
  // QEMU restarts a ring with SET_VRING_KICK and only then SET_VRING_CALL, and GET_VRING_BASE closed
  // the old call fd: requests completed in between must not leave the driver waiting forever.
  const s = VirtioFsSession.open(sock, { queueSize: 64, slotBytes: 8192, memBytes: 16 << 20 });
  try {
    const rb = new RequestBuilder();
    tt.equal(parseReply(await s.send(1, rb.init(), 4096)).error, 0, 'FUSE_INIT');
    const priv = s as unknown as { kicks: number[]; calls: number[] };
    const base = s.fe.getVringBase(1); // stops the ring, closes its kick and call fds
    // Requests published while the ring is stopped (their kicks reach no one).
    const pending = Array.from({ length: 10 }, () => s.send(1, rb.getattr(1n), 256));
    s.fe.setVringBase(1, base);
    s.fe.setVringKick(1, priv.kicks[1]!); // the ring runs again and serves the 10, with no call fd
    // wait until all 10 are in the used ring (what this test is about: completions before CALL)
    const used = (): number => s.queues[1]!.usedIdx;
    tt.ok(await until(() => used() === ((base + 10) & 0xffff)), `the 10 are completed before SET_VRING_CALL (used index ${used()})`);
    s.fe.setVringCall(1, priv.calls[1]!);
    let timer: NodeJS.Timeout | undefined;
    const res = await Promise.race([
      Promise.all(pending),
      new Promise<null>((r) => {
        timer = setTimeout(() => r(null), 5000);
      }),
    ]);
    clearTimeout(timer);
    tt.ok(res !== null, 'the driver is interrupted for the completions made before SET_VRING_CALL');
    if (res) tt.ok(res.every((b) => parseReply(b).error === 0), 'all 10 answered');
  } finally {
    s.close();
  }
});
