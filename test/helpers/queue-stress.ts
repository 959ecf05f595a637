/**
 * Two worker threads serving one split virtqueue (assembly/queue.ts: queuePop, queuePushQuiet,
 * queueNotify, queueEnableNotify, queuePending, all under the queue's lock) while this thread drives it
 * (assembly/driver.ts), for test/unit/driver-ring.test.ts: in its own process, and run as a script under
 * `node --liftoff-only` (`node queue-stress.js N` prints the result as JSON), the baseline compiler's
 * code the daemon runs until a function is hot. Every used element must name a head the driver has
 * outstanding, once, with the length the worker gave it.
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { DriverLoopback } from './driver-loopback.js';

export interface QueueStressResult {
  /** chains the driver made available and reaped */
  n: number;
  reaped: number;
  /** used elements that named no outstanding head, or a wrong length */
  bad: number;
  /** chains each worker served */
  served: number[];
  /** a worker saw the ring broken, or failed */
  errors: string[];
  /** the queue's lock word afterwards (0: free) */
  lock: number;
}

const Q = 3;
const SLOTS = 32;
const SHAPE = 1;

export async function queueStress(n: number): Promise<QueueStressResult> {
  const lb = await DriverLoopback.create(0);
  const { vq, L } = lb;
  lb.setup(Q, { size: 64, eventIdx: true, slots: SLOTS, slotBytes: 4096 });
  lb.writeShape(SHAPE, [{ off: 0, len: 64, write: false }, { off: 2048, len: 64, write: true }]);
  // [0] stop, [1] workers ready: the driver starts once both poll the ring, so that neither can serve
  // every chain before the other thread has even loaded its module (a loaded 2-core host)
  const stop = new Int32Array(new SharedArrayBuffer(8));
  const url = new URL('../../src/virtio/wasm.js', import.meta.url).href;
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    (async () => {
      const { loadVirtqueueModule } = await import(workerData.url);
      const vq = await loadVirtqueueModule(workerData.memory);
      const q = workerData.q;
      let served = 0;
      let error = '';
      Atomics.add(workerData.stop, 1, 1);
      while (Atomics.load(workerData.stop, 0) === 0) {
        const head = vq.queuePop(q);
        if (head === -1) {
          if (vq.queuePending(q) === 0) vq.queueEnableNotify(q);
          continue;
        }
        if (head < 0) { error = 'queuePop: ' + head; break; }
        const rc = vq.queuePushQuiet(q, head, head + 7);
        if (rc !== 0) { error = 'queuePushQuiet: ' + rc; break; }
        if (++served % 8 === 0) vq.queueNotify(q);
      }
      parentPort.postMessage({ served, error });
    })().catch((e) => parentPort.postMessage({ served: 0, error: String(e && e.stack || e) }));
  `;
  const workers = [0, 1].map(() => new Worker(code, { eval: true, workerData: { url, memory: lb.memory, q: Q, stop } }));
  const results = workers.map(
    (w) => new Promise<{ served: number; error: string }>((resolve) => {
      w.once('message', resolve);
      w.once('error', (e) => resolve({ served: 0, error: String(e) }));
    }),
  );
  // The driver: keep every slot's chain outstanding, reap, check each element, make the slot's chain again.
  const outstanding = new Map<number, number>(); // head -> slot
  const free: number[] = Array.from({ length: SLOTS }, (_, i) => i);
  let made = 0;
  let reaped = 0;
  let bad = 0;
  const reapList = L.DRV_REAP + Q * L.DRV_REAP_MAX * 8;
  const deadline = Date.now() + 60_000;
  while (Atomics.load(stop, 1) < workers.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  while (reaped < n && Date.now() < deadline) {
    while (free.length > 0 && made < n) {
      const slot = free.pop()!;
      const head = vq.drvChain(Q, slot, SHAPE);
      if (head < 0) throw new Error(`drvChain: ${head}`);
      outstanding.set(head, slot);
      vq.drvAdd(Q, head);
      made++;
    }
    vq.drvKick(Q);
    const got = vq.drvReap(Q);
    for (let i = 0; i < got; i++) {
      const id = lb.dv.getUint32(reapList + 8 * i, true);
      const len = lb.dv.getUint32(reapList + 8 * i + 4, true);
      const slot = outstanding.get(id);
      if (slot === undefined || len !== id + 7) {
        bad++;
        continue;
      }
      outstanding.delete(id);
      free.push(slot);
      reaped++;
    }
    if (got === 0) await new Promise((r) => setImmediate(r));
  }
  Atomics.store(stop, 0, 1);
  const done = await Promise.all(results);
  await Promise.all(workers.map((w) => w.terminate()));
  return {
    n,
    reaped,
    bad,
    served: done.map((d) => d.served),
    errors: done.map((d) => d.error).filter((e) => e !== ''),
    lock: lb.dv.getUint32(L.QUEUE_BASE + Q * L.QUEUE_STRIDE + L.Q_LOCK, true),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const n = Number(process.argv[2] ?? '100000');
  queueStress(n).then(
    (r) => console.log(JSON.stringify(r)),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
