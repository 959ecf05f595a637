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
import { InFlight, PinRecordingTables, clearRecords } from '../../src/virtio/inflight.js';
import { recoverWorker } from '../../src/virtio/orphans.js';
import { WorkerPool } from '../../src/virtio/pool.js';
import { createSharedMemory, loadVirtqueueModule } from '../../src/virtio/wasm.js';
import { MockDriver, defaultRegion } from '../helpers/mock-driver.js';
import { poolRig } from '../helpers/pool-rig.js';

const DIE = 0xde; // test/helpers/pool-worker.ts
const HOLD_DIE = 0xdf;
const Q = 1;
const here = path.dirname(fileURLToPath(import.meta.url));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const fdCount = (): number => fs.readdirSync('/proc/self/fd').length;

t.test('a worker that dies in a request: its chain answered EIO, its pin released, the pool serves on', async (t) => {
  const { memory, vq, d, attached, kick, call } = await poolRig(Q, { call: true });
  t.equal(attached, 0);
  // The inode table with the root and one more inode, whose fd the table closes once it is forgotten
  // and unpinned.
  const enc = new TextEncoder();
  const pathFd = () => native.openat2(C.AT_FDCWD, enc.encode('/tmp'), C.O_PATH | C.O_CLOEXEC, 0, 0);
  const rootFd = pathFd();
  vq.inodeInit(rootFd, 1n, 1n);
  const victimFd = pathFd();
  const victim = vq.inodeLookup(1, 0, 4242, 0, victimFd);
  t.not(victim, 0, 'an inode to pin');

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
  const sendDie = (unique: bigint, nodeid: number) => {
    const req = new Uint8Array(40);
    const v = new DataView(req.buffer);
    req[0] = DIE;
    v.setBigUint64(8, unique, true);
    v.setBigUint64(16, BigInt(nodeid), true);
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
  // (A new thread: its start can take seconds on a loaded machine.)
  t.same((await used(whilePaused, 15_000))?.bytes[0], 2, 'the replacement serves after resume()');
  t.same((await used(send(3), 5000))?.bytes[0], 3, 'and the next request');

  const fd = vq.inodeForget(victim, 1);
  t.equal(fd, victimFd, 'the inode is no longer pinned: forgetting it hands back its fd to close');
  if (fd >= 0) native.close(fd);
  let fds = fdCount();
  for (const t1 = Date.now(); fds !== fdsBefore - 1 && Date.now() - t1 < 3000; await sleep(20)) fds = fdCount();
  t.equal(fds, fdsBefore - 1, 'no fd left behind: the dead worker\'s epoll fd was closed (only the forgotten inode\'s is gone too)');

  // A second death (the restart delay doubles), then a pause and stop() with the worker dead.
  const victim2 = vq.inodeLookup(1, 0, 4343, 0, pathFd());
  t.same((await used(sendDie(7n, victim2), 5000))?.len, 16, 'a second death is answered too');
  const p2 = await Promise.race([pool.pause().then(() => 'paused'), sleep(5000).then(() => 'still waiting after 5 s')]);
  t.equal(p2, 'paused', 'and a pause after it completes');
  pool.resume();
  t.same((await used(send(4), 15_000))?.bytes[0], 4, 'the second replacement serves');
  const fd2 = vq.inodeForget(victim2, 1);
  t.ok(fd2 >= 0, 'its pin was released too');
  if (fd2 >= 0) native.close(fd2);
  t.equal(logs.filter((l) => /died/.test(l)).length, 2, 'two deaths logged');
});

t.test('stop() while a worker has just died (its restart pending) returns', async (t) => {
  const { memory, vq, d, attached, kick } = await poolRig(Q, { call: false });
  t.equal(attached, 0);
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

t.test('recoverWorker: what a dead worker held, record by record', async (t) => {
  const memory = createSharedMemory();
  const vq = await loadVirtqueueModule(memory);
  const d = new MockDriver(memory.buffer, { region: defaultRegion(vq), queueSize: 16 });
  t.equal(d.attach(vq, Q), 0);
  const ctl = controlView(memory.buffer, vq.layout.CONTROL_BASE);
  Atomics.store(ctl, qslot(Q, Ctl.Q_CALLFD), -1);
  const W = 3;
  clearRecords(memory.buffer, vq.layout.CONTROL_BASE, W + 1);
  const flight = new InFlight(memory.buffer, vq.layout.CONTROL_BASE, W);
  const log = new Logger('off');
  /** Publishes a chain and pops it as worker W would; its head. */
  const popped = (readable: Uint8Array, writable: number) => {
    const c = d.addChain({ readable: [readable], writable: writable > 0 ? [writable] : [] });
    t.equal(vq.queuePop(Q), c.head, 'popped');
    return c;
  };
  const inHeader = (unique: bigint) => {
    const b = new Uint8Array(40);
    new DataView(b.buffer).setBigUint64(8, unique, true);
    return b;
  };

  t.same(recoverWorker(vq, memory, W, log), { pins: 0 }, 'an empty record: nothing to do');

  let c = popped(inHeader(99n), 64);
  flight.begin(Q, c.head);
  let r = recoverWorker(vq, memory, W, log);
  t.same(r.orphan, { q: Q, head: c.head, len: 16 }, 'a chain in service: answered with 16 bytes');
  let used = d.takeUsed();
  t.same(used.map((e) => [e.id, e.len]), [[c.head, 16]], 'one used element');
  const v = new DataView(d.read(c.writable[0]!, 16).buffer);
  t.same([v.getInt32(4, true), v.getBigUint64(8, true)], [-Errno.EIO, 99n], '-EIO with the unique');
  t.same(recoverWorker(vq, memory, W, log), { pins: 0 }, 'the record was cleared: a second call does nothing');
  t.same(d.takeUsed(), [], 'no double answer');

  c = popped(Uint8Array.of(1, 2, 3), 64);
  flight.begin(Q, c.head);
  t.same(recoverWorker(vq, memory, W, log).orphan?.len, 16, 'a request shorter than an in-header: EIO');
  t.equal(new DataView(d.read(c.writable[0]!, 16).buffer).getBigUint64(8, true), 0n, 'with unique 0');
  d.takeUsed();

  c = popped(inHeader(5n), 8);
  flight.begin(Q, c.head);
  t.same(recoverWorker(vq, memory, W, log).orphan?.len, 0, 'no room for an out-header: returned unused');
  t.same(d.takeUsed().map((e) => e.len), [0]);

  c = popped(inHeader(6n), 64);
  flight.begin(Q, c.head);
  flight.publishing(Q);
  t.same(recoverWorker(vq, memory, W, log).orphan, { q: Q, head: c.head, len: -1 }, 'died while publishing: left as is');
  t.same(d.takeUsed(), [], 'nothing published for it');
  vq.queuePush(Q, c.head, 0);
  d.takeUsed();

  // Pins: two inodes pinned (one forgotten meanwhile), released in reverse order; the forgotten
  // one's fd comes back to be closed.
  const enc = new TextEncoder();
  const pathFd = () => native.openat2(C.AT_FDCWD, enc.encode('/tmp'), C.O_PATH | C.O_CLOEXEC, 0, 0);
  const rootFd = pathFd();
  vq.inodeInit(rootFd, 1n, 1n);
  const a = vq.inodeLookup(1, 0, 10, 0, pathFd());
  const b = vq.inodeLookup(1, 0, 11, 0, pathFd());
  const tables = new PinRecordingTables(vq, flight);
  t.ok(tables.inodeAcquire(a) >= 0 && tables.inodeAcquire(b) >= 0, 'pinned');
  t.equal(vq.inodeForget(b, 1), -1, 'a pinned inode is not closed when forgotten');
  const fds = fdCount();
  t.same(recoverWorker(vq, memory, W, log), { pins: 2 }, 'two pins released');
  t.equal(fdCount(), fds - 1, 'the forgotten inode\'s fd was closed');
  const fa = vq.inodeForget(a, 1);
  t.ok(fa >= 0, 'the other is unpinned too');
  native.close(fa);
  native.close(rootFd);

  // A queue the driver broke since: nothing is pushed.
  c = popped(inHeader(7n), 64);
  flight.begin(Q, c.head);
  const L = vq.layout;
  new Int32Array(memory.buffer, L.QUEUE_BASE, (L.MAX_QUEUES * L.QUEUE_STRIDE) >>> 2)[(Q * L.QUEUE_STRIDE + L.Q_BROKEN) >>> 2] = 1;
  r = recoverWorker(vq, memory, W, log);
  t.equal(r.orphan, undefined, 'a broken queue: not answered');
  used = d.takeUsed();
  t.same(used, [], 'nothing published');
});

t.test('a worker that dies while a pause, then stop(), wait for it', async (t) => {
  const { memory, vq, d, attached, kick } = await poolRig(Q, { call: false });
  t.equal(attached, 0);
  const enc = new TextEncoder();
  const rootFd = native.openat2(C.AT_FDCWD, enc.encode('/tmp'), C.O_PATH | C.O_CLOEXEC, 0, 0);
  vq.inodeInit(rootFd, 1n, 1n);
  const gate = new Int32Array(new SharedArrayBuffer(8));
  const pool = new WorkerPool(vq, memory, {
    size: 2,
    filename: path.join(here, '..', 'helpers', 'pool-worker.js'),
    workerData: { gate: gate.buffer },
    log: new Logger('off'),
  });
  t.teardown(() => {
    native.close(kick);
    native.close(rootFd);
  });
  await pool.start();
  const answered = new Map<number, number>();
  const holdDie = () => {
    const req = new Uint8Array(40);
    req[0] = HOLD_DIE;
    new DataView(req.buffer).setBigUint64(16, 1n, true); // the root: always there
    const c = d.addChain({ readable: [req], writable: [16] });
    native.eventfdWrite(kick, 1);
    return c;
  };
  const usedLen = async (head: number, ms: number) => {
    for (const t0 = Date.now(); Date.now() - t0 < ms; await sleep(5)) {
      for (const e of d.takeUsed()) answered.set(e.id, e.len);
      const len = answered.get(head);
      if (len !== undefined) {
        answered.delete(head);
        return len;
      }
    }
    return undefined;
  };
  const held = async (n: number) => {
    for (const t0 = Date.now(); Atomics.load(gate, 1) < n && Date.now() - t0 < 15_000; ) await sleep(10);
    return Atomics.load(gate, 1);
  };
  const open = () => {
    Atomics.store(gate, 0, 0);
    Atomics.notify(gate, 0);
  };

  // A pause meets a worker in its request; the worker dies there: the pause completes (it does not
  // wait for the pause timeout, 120 s by default) and the chain is answered.
  gate[0] = 1;
  let c = holdDie();
  t.equal(await held(1), 1, 'a worker is held in a request');
  let pausedAt = 0;
  const pause = pool.pause().then(() => (pausedAt = Date.now()));
  await sleep(200);
  t.equal(pausedAt, 0, 'the pause waits for it');
  const t0 = Date.now();
  open();
  await Promise.race([pause, sleep(10_000)]);
  t.ok(pausedAt > 0 && pausedAt - t0 < 5000, `the pause completes once the worker is dead (${pausedAt - t0} ms)`);
  t.equal(await usedLen(c.head, 5000), 16, 'its chain is answered');
  pool.resume();

  // stop() meets a worker in its request; the worker dies there: stop() returns and the chain is answered.
  gate[0] = 1;
  c = holdDie();
  t.equal(await held(2), 2, 'a worker is held again');
  const t1 = Date.now();
  let stoppedAt = 0;
  const stop = pool.stop().then(() => (stoppedAt = Date.now()));
  await sleep(200);
  open();
  await Promise.race([stop, sleep(10_000)]);
  t.ok(stoppedAt > 0 && stoppedAt - t1 < 9000, `stop() returns before its 10 s grace (${stoppedAt - t1} ms)`);
  t.equal(await usedLen(c.head, 1000), 16, 'the chain of the worker that died during stop() is answered');
});
