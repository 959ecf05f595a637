// A pause that times out (a worker stays in its request) undoes itself: it rejects, the workers that
// stopped run again, and later pauses and resumes work as before (docs/internals.md "Worker control").
// The pool runs real worker threads with the real queue loop (test/helpers/pool-worker.ts) on a mock driver's ring.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { DeviceError, Errno } from '../../src/errors.js';
import { Logger } from '../../src/log.js';
import { native } from '../../src/native.js';
import { WorkerPool } from '../../src/virtio/pool.js';
import { poolRig } from '../helpers/pool-rig.js';

const HOLD = 0xb1; // test/helpers/pool-worker.ts
const Q = 1;
const here = path.dirname(fileURLToPath(import.meta.url));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

t.test('a pause that times out rejects and leaves the workers running', async (t) => {
  const { memory, vq, d, attached, kick, call } = await poolRig(Q, { call: true });
  t.equal(attached, 0);
  const gate = new Int32Array(new SharedArrayBuffer(8));
  gate[0] = 1;
  // A variable, not a literal: the test also compiles against a pool without the option.
  const opts = {
    size: 2,
    filename: path.join(here, '..', 'helpers', 'pool-worker.js'),
    workerData: { gate: gate.buffer },
    log: new Logger('error'),
    pauseTimeoutMs: 300,
  };
  const pool = new WorkerPool(vq, memory, opts);
  t.teardown(async () => {
    Atomics.store(gate, 0, 0);
    Atomics.notify(gate, 0);
    await pool.stop();
    native.close(kick);
    native.close(call);
  });
  await pool.start();

  const answered = new Map<number, number>();
  const send = (byte: number) => {
    const c = d.addChain({ readable: [Uint8Array.of(byte)], writable: [16] });
    native.eventfdWrite(kick, 1);
    return c;
  };
  /** Waits up to `ms` for the chain's used element; its reply byte, or undefined. */
  const reply = async (c: { head: number; writable: bigint[] }, ms: number) => {
    for (const t0 = Date.now(); Date.now() - t0 < ms; await sleep(10)) {
      for (const e of d.takeUsed()) answered.set(e.id, e.len);
      // Heads are reused: an element counts for the chain that waits for it, once.
      if (answered.delete(c.head)) return d.read(c.writable[0]!, 1)[0];
    }
    return undefined;
  };

  t.equal(await reply(send(1), 5000), 1, 'a request is served');
  const held = send(HOLD);
  for (const t0 = Date.now(); Atomics.load(gate, 1) === 0 && Date.now() - t0 < 5000; ) await sleep(10);
  t.equal(Atomics.load(gate, 1), 1, 'a worker is held in a request');

  const t0 = Date.now();
  const outcome = await Promise.race([
    pool.pause().then(() => 'paused', (e: unknown) => e),
    sleep(5000).then(() => 'still waiting after 5 s'),
  ]);
  t.type(outcome, DeviceError, 'pause() rejects');
  t.equal((outcome as DeviceError).errno, Errno.ETIMEDOUT);
  t.ok(Date.now() - t0 < 3000, 'after the configured timeout, not the default');

  t.equal(await reply(send(2), 5000), 2, 'the other worker runs again and serves');

  Atomics.store(gate, 0, 0);
  Atomics.notify(gate, 0);
  t.equal(await reply(held, 5000), HOLD, 'the held request is answered once released');

  await pool.pause();
  const whilePaused = send(3);
  t.equal(await reply(whilePaused, 300), undefined, 'a later pause holds every worker');
  pool.resume();
  t.equal(await reply(whilePaused, 5000), 3, 'and one resume() runs them again (the failed pause owes none)');
});
