// A worker thread that dies in a request (docs/internals.md "Worker control"): the chain it held is
// answered with a FUSE EIO reply carrying the request's unique, the inode it had pinned is unpinned,
// its epoll fd is closed, a pause while it is dead completes, and its replacement serves. The pool runs
// real worker threads with the real queue loop (test/helpers/pool-worker.ts) on a mock driver's ring;
// a DIE request ends the thread with process.exit (no unwinding) right after it pinned the inode.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { Errno } from '../../src/errors.js';
import { Logger } from '../../src/log.js';
import { C, native } from '../../src/native.js';
import { Ctl, controlView, qslot } from '../../src/virtio/control.js';
import { WorkerPool } from '../../src/virtio/pool.js';
import { createSharedMemory, loadVirtqueueModule } from '../../src/virtio/wasm.js';
import { MockDriver, defaultRegion } from '../helpers/mock-driver.js';

const DIE = 0xde; // test/helpers/pool-worker.ts
const Q = 1;
const here = path.dirname(fileURLToPath(import.meta.url));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const fdCount = (): number => fs.readdirSync('/proc/self/fd').length;

t.test('a worker that dies in a request: its chain answered EIO, its pin released, the pool serves on', async (t) => {
  const memory = createSharedMemory();
  const vq = await loadVirtqueueModule(memory);
  const d = new MockDriver(memory.buffer, { region: defaultRegion(vq), queueSize: 16 });
  t.equal(d.attach(vq, Q), 0);
  const ctl = controlView(memory.buffer, vq.layout.CONTROL_BASE);
  const kick = native.eventfd(0);
  const call = native.eventfd(0);
  Atomics.store(ctl, qslot(Q, Ctl.Q_ACTIVE), 1);
  Atomics.store(ctl, qslot(Q, Ctl.Q_KICKFD), kick);
  Atomics.store(ctl, qslot(Q, Ctl.Q_CALLFD), call);
  // The inode table with the root and one more inode, whose fd the table closes once it is forgotten
  // and unpinned.
  const enc = new TextEncoder();
  const pathFd = () => native.openat2(C.AT_FDCWD, enc.encode('/tmp'), C.O_PATH | C.O_CLOEXEC, 0, 0);
  const rootFd = pathFd();
  vq.inodeInit(rootFd, 1n, 1n);
  const victimFd = pathFd();
  const victim = vq.inodeLookup(1n, 4242n, victimFd);
  t.not(victim, 0n, 'an inode to pin');

  const logs: string[] = [];
  const pool = new WorkerPool(vq, memory, {
    size: 1,
    filename: path.join(here, '..', 'helpers', 'pool-worker.js'),
    workerData: { gate: new SharedArrayBuffer(8) },
    log: new Logger('info', 'main', (_line, _level, _thread, msg) => void logs.push(msg)),
  });
  t.teardown(async () => {
    await pool.stop();
    native.close(kick);
    native.close(call);
    native.close(rootFd);
  });
  await pool.start();

  const answered = new Map<number, number>();
  const send = (byte: number) => {
    const c = d.addChain({ readable: [Uint8Array.of(byte)], writable: [16] });
    native.eventfdWrite(kick, 1);
    return c;
  };
  /** A 40-byte readable part laid out as a FUSE in-header: unique at 8, node id at 16. */
  const sendDie = (unique: bigint, nodeid: bigint) => {
    const req = new Uint8Array(40);
    const v = new DataView(req.buffer);
    req[0] = DIE;
    v.setBigUint64(8, unique, true);
    v.setBigUint64(16, nodeid, true);
    const c = d.addChain({ readable: [req], writable: [16] });
    native.eventfdWrite(kick, 1);
    return c;
  };
  /** Waits up to `ms` for the chain's used element: its used length and reply bytes, or undefined. */
  const used = async (c: { head: number; writable: bigint[] }, ms: number) => {
    for (const t0 = Date.now(); Date.now() - t0 < ms; await sleep(5)) {
      for (const e of d.takeUsed()) answered.set(e.id, e.len);
      const len = answered.get(c.head);
      if (len !== undefined) {
        answered.delete(c.head);
        return { len, bytes: d.read(c.writable[0]!, 16) };
      }
    }
    return undefined;
  };

  t.same((await used(send(1), 5000))?.bytes[0], 1, 'a request is served');
  const fdsBefore = fdCount();

  const t0 = Date.now();
  const r = await used(sendDie(0x1122_3344_5566_7788n, victim), 5000);
  t.ok(r, `the chain of the dead worker is answered (${Date.now() - t0} ms)`);
  if (r) {
    const v = new DataView(r.bytes.buffer, r.bytes.byteOffset, 16);
    t.equal(r.len, 16, 'used length: the out-header');
    t.same([v.getUint32(0, true), v.getInt32(4, true), v.getBigUint64(8, true)], [16, -Errno.EIO, 0x1122_3344_5566_7788n],
      'a FUSE out-header: len 16, -EIO, the request\'s unique');
  }
  t.match(logs.join('\n'), /worker 0 died: [\s\S]*answered its request \(queue 1, head \d+\) with EIO, released 1 pin; restarting it in \d+ ms/,
    'the death is logged with what was given back');

  // The worker is dead now and its replacement starts only after the restart delay: a pause must not
  // wait for it, and a request sent meanwhile waits for the replacement.
  const paused = await Promise.race([pool.pause().then(() => 'paused'), sleep(5000).then(() => 'still waiting after 5 s')]);
  t.equal(paused, 'paused', 'a pause while the worker is dead completes');
  const whilePaused = send(2);
  t.equal(await used(whilePaused, 300), undefined, 'nothing is served while paused');
  pool.resume();
  t.same((await used(whilePaused, 5000))?.bytes[0], 2, 'the replacement serves after resume()');
  t.same((await used(send(3), 5000))?.bytes[0], 3, 'and the next request');

  const fd = vq.inodeForget(victim, 1n);
  t.equal(fd, victimFd, 'the inode is no longer pinned: forgetting it hands back its fd to close');
  if (fd >= 0) native.close(fd);
  let fds = fdCount();
  for (const t1 = Date.now(); fds !== fdsBefore - 1 && Date.now() - t1 < 3000; await sleep(20)) fds = fdCount();
  t.equal(fds, fdsBefore - 1, 'no fd left behind: the dead worker\'s epoll fd was closed (only the forgotten inode\'s is gone too)');

  // A second death (the restart delay doubles), then a pause and stop() with the worker dead.
  const victim2 = vq.inodeLookup(1n, 4343n, pathFd());
  t.same((await used(sendDie(7n, victim2), 5000))?.len, 16, 'a second death is answered too');
  const p2 = await Promise.race([pool.pause().then(() => 'paused'), sleep(5000).then(() => 'still waiting after 5 s')]);
  t.equal(p2, 'paused', 'and a pause after it completes');
  pool.resume();
  t.same((await used(send(4), 5000))?.bytes[0], 4, 'the second replacement serves');
  const fd2 = vq.inodeForget(victim2, 1n);
  t.ok(fd2 >= 0, 'its pin was released too');
  if (fd2 >= 0) native.close(fd2);
  t.equal(logs.filter((l) => /died/.test(l)).length, 2, 'two deaths logged');
});

t.test('stop() while a worker has just died (its restart pending) returns', async (t) => {
  const memory = createSharedMemory();
  const vq = await loadVirtqueueModule(memory);
  const d = new MockDriver(memory.buffer, { region: defaultRegion(vq), queueSize: 16 });
  t.equal(d.attach(vq, Q), 0);
  const ctl = controlView(memory.buffer, vq.layout.CONTROL_BASE);
  const kick = native.eventfd(0);
  Atomics.store(ctl, qslot(Q, Ctl.Q_ACTIVE), 1);
  Atomics.store(ctl, qslot(Q, Ctl.Q_KICKFD), kick);
  Atomics.store(ctl, qslot(Q, Ctl.Q_CALLFD), -1);
  const enc = new TextEncoder();
  const rootFd = native.openat2(C.AT_FDCWD, enc.encode('/tmp'), C.O_PATH | C.O_CLOEXEC, 0, 0);
  vq.inodeInit(rootFd, 1n, 1n);
  const pool = new WorkerPool(vq, memory, {
    size: 2,
    filename: path.join(here, '..', 'helpers', 'pool-worker.js'),
    workerData: { gate: new SharedArrayBuffer(8) },
    log: new Logger('off'),
  });
  await pool.start();
  const req = new Uint8Array(40);
  req[0] = DIE;
  new DataView(req.buffer).setBigUint64(16, 1n, true); // the root: always there
  const c = d.addChain({ readable: [req], writable: [16] });
  native.eventfdWrite(kick, 1);
  let len: number | undefined;
  for (const t0 = Date.now(); len === undefined && Date.now() - t0 < 5000; await sleep(5)) {
    len = d.takeUsed().find((e) => e.id === c.head)?.len;
  }
  t.equal(len, 16, 'answered');
  const t0 = Date.now();
  const outcome = await Promise.race([pool.stop().then(() => 'stopped'), sleep(8000).then(() => 'still stopping after 8 s')]);
  t.equal(outcome, 'stopped', `stop() returns (${Date.now() - t0} ms)`);
  native.close(kick);
  native.close(rootFd);
});
