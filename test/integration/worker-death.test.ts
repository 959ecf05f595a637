/**
 * A worker thread that dies mid-request, against the real daemon process (docs/internals.md "Worker
 * control"). The test-only hook VIRTIOFSD_TS_TEST_HOOKS=worker-die-on-getattr-of:<nodeid>,… (docs/
 * testing.md, "Worker death") ends the worker thread serving a GETATTR of those node ids right after it
 * pinned the inode. With one worker, the guest's GETATTR must get an EIO reply (not wait forever), the
 * death must be logged, the replacement must serve the next requests on the same queue, the pin must be
 * released (FORGET then closes the inode's fd: the daemon's fd count returns to its baseline), and a
 * device reset (a new frontend) right after a death must not hang.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { Errno } from '../../src/errors.js';
import { RequestBuilder, parseReply } from '../../src/frontend/fuse-requests.js';
import { VirtioFsSession } from '../../src/frontend/virtio-fs-session.js';
import { startDaemon } from '../../harness/index.js';
import { fdCount, withTimeout } from '../fuzz/hostile-kit.js';
import { until } from '../helpers/poll.js';

// A fresh inode table hands out slot 2, then 3, in generation 1 (assembly/inodes.ts): the node ids of
// the first two LOOKUPs, checked below.
const HELLO = (1n << 32n) | 2n;
const DIR = (1n << 32n) | 3n;

t.test('a worker that dies in a GETATTR: EIO reply, replacement serves, pin released, reset does not hang', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-death-'));
  const share = path.join(tmp, 'share');
  fs.mkdirSync(share);
  fs.writeFileSync(path.join(share, 'hello.txt'), 'hello\n');
  fs.mkdirSync(path.join(share, 'dir'));
  const sock = path.join(tmp, 'vfsd.sock');
  process.env.VIRTIOFSD_TS_TEST_HOOKS = `worker-die-on-getattr-of:${HELLO},${DIR}`;
  // --sandbox=none: new threads replace the dead ones; inside the sandbox only spares can (below)
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock, extraArgs: ['--log-level=info', '--thread-pool-size=1', '--sandbox=none'] })
    .finally(() => delete process.env.VIRTIOFSD_TS_TEST_HOOKS);
  let s: VirtioFsSession | undefined;
  t.teardown(async () => {
    s?.close();
    const st = await daemon.stop();
    if (st.code !== 0) console.error(daemon.logs().slice(-10000));
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  const rb = new RequestBuilder();
  const open = async () => {
    const ses = VirtioFsSession.open(sock);
    const init = parseReply(await withTimeout(ses.send(1, rb.init(), 4096), 15_000, 'FUSE_INIT'));
    t.equal(init.error, 0, 'FUSE_INIT answered');
    return ses;
  };
  s = await open();
  // Bounded waits; 15 s because a request after a death waits for a new thread, whose start can take
  // seconds on a loaded machine.
  const call = (req: Uint8Array, cap = 4096) => withTimeout(s!.send(1, req, cap), 15_000, `opcode ${req[4]}`);
  /** Deaths logged, once the log (through a pipe, it lags) shows at least `n` of them or 3 s passed. */
  const deaths = async (n: number) => {
    await until(() => (daemon.logs().match(/worker 0 died/g) ?? []).length >= n, 3000);
    return (daemon.logs().match(/worker 0 died/g) ?? []).length;
  };
  const baseline = fdCount(daemon.pid);

  const hello = parseReply(await call(rb.lookup(1n, 'hello.txt')));
  const dir = parseReply(await call(rb.lookup(1n, 'dir')));
  t.same([hello.error, dir.error], [0, 0], 'LOOKUPs served');
  const ids = [hello.view.getBigUint64(0, true), dir.view.getBigUint64(0, true)];
  t.same(ids, [HELLO, DIR], 'the node ids the hook is set for');
  t.equal(fdCount(daemon.pid), baseline + 2, 'two inode fds open');

  // The first death: its request is answered with EIO and the request's unique.
  const req = rb.getattr(HELLO);
  const unique = new DataView(req.buffer, req.byteOffset).getBigUint64(8, true);
  const t0 = Date.now();
  // The control plane answers it as soon as the thread is gone: no new thread needed, so 5 s is ample.
  const g = parseReply(await withTimeout(s.send(1, req, 4096), 5000, 'the dying GETATTR'));
  t.same([g.error, g.unique], [-Errno.EIO, unique], `the dying worker's GETATTR gets EIO with its unique (${Date.now() - t0} ms)`);
  const log = await daemon.waitForLog(/worker 0 died/);
  t.match(log, /worker 0 died: [^\n]*worker exited with code: 70[\s\S]*answered its request \(queue 1, head \d+\) with EIO, released 1 pin; restarting it in \d+ ms/,
    'the death is logged with what was given back');

  // The replacement (the only worker now) serves the next requests on the same queue.
  for (let i = 0; i < 5; i++) t.equal(parseReply(await call(rb.getattr(1n))).error, 0, `GETATTR of the root after the death (${i + 1})`);
  t.equal(parseReply(await call(rb.getattr(HELLO))).error, -Errno.EIO, 'the hook kills the replacement too (a second death)');
  t.equal(await deaths(2), 2, 'two deaths logged');
  t.equal(parseReply(await call(rb.getattr(1n))).error, 0, 'and its replacement serves');

  // The pins were released: FORGET drops the last lookup and the inode's fd is closed; the dead
  // workers' epoll fds were closed too.
  const f = await call(rb.forget(HELLO, 1n), 0);
  t.equal(f.length, 0, 'FORGET: no reply bytes');
  t.ok(await until(() => fdCount(daemon.pid) === baseline + 1, 3000), `fd count back to baseline + 1 (dir): ${fdCount(daemon.pid)} vs ${baseline + 1}`);

  // A death, then at once a new frontend: the device reset pauses the workers while the one worker is
  // dead or restarting, and must complete.
  t.equal(parseReply(await call(rb.getattr(DIR))).error, -Errno.EIO, 'a third death');
  s.close();
  s = undefined;
  const t1 = Date.now();
  s = await open();
  t.equal(parseReply(await withTimeout(s.send(1, rb.getattr(1n), 4096), 15_000, 'GETATTR')).error, 0,
    `a new frontend right after the death is served (${Date.now() - t1} ms)`);
  t.equal(await deaths(3), 3, 'three deaths logged');
  // The reset forgot every inode; dir's fd closes only if its pin was released.
  t.ok(await until(() => fdCount(daemon.pid) === baseline, 3000), `fd count back to baseline: ${fdCount(daemon.pid)} vs ${baseline}`);
  t.equal(daemon.exitCode(), undefined, 'the daemon is running');
});

t.test('inside the sandbox: the spare thread replaces the first dead worker; with none left the daemon exits, no hang', { skip: process.getuid?.() === 0 ? false : 'the sandbox needs root' }, async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-death-sbx-'));
  const share = path.join(tmp, 'share');
  fs.mkdirSync(share);
  fs.writeFileSync(path.join(share, 'hello.txt'), 'hello\n');
  fs.mkdirSync(path.join(share, 'dir'));
  const sock = path.join(tmp, 'vfsd.sock');
  process.env.VIRTIOFSD_TS_TEST_HOOKS = `worker-die-on-getattr-of:${HELLO}`;
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock, extraArgs: ['--log-level=info', '--thread-pool-size=1'] })
    .finally(() => delete process.env.VIRTIOFSD_TS_TEST_HOOKS);
  let s: VirtioFsSession | undefined;
  t.teardown(async () => {
    s?.close();
    await daemon.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  t.match(daemon.logs(), /sandbox: pivot_root/, 'the daemon is confined');
  const rb = new RequestBuilder();
  s = VirtioFsSession.open(sock);
  const call = (req: Uint8Array) => withTimeout(s!.send(1, req, 4096), 15_000, `opcode ${req[4]}`);
  t.equal(parseReply(await call(rb.init())).error, 0, 'FUSE_INIT');
  t.equal(parseReply(await call(rb.lookup(1n, 'hello.txt'))).error, 0, 'LOOKUP');
  t.equal(parseReply(await call(rb.getattr(HELLO))).error, -Errno.EIO, 'the first death: EIO');
  await daemon.waitForLog(/worker 0 died/);
  for (let i = 0; i < 3; i++) t.equal(parseReply(await call(rb.getattr(1n))).error, 0, `the spare serves (${i + 1})`);
  t.match(daemon.logs(), /restarting it in \d+ ms on a spare thread/, 'logged as taken over by the spare');
  t.equal(parseReply(await call(rb.getattr(HELLO))).error, -Errno.EIO, 'the second death: EIO');
  const st = await withTimeout(daemon.exited, 15_000, 'the daemon\'s exit');
  t.equal(st.code, 1, 'no worker left: the daemon exits 1 (through the launcher)');
  t.match(daemon.logs(), /no spare thread is left to replace it/);
  t.match(daemon.logs(), /no worker thread is left: exiting/);
});
