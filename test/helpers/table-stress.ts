/**
 * Two worker threads hammering the shared inode and handle tables (assembly/inodes.ts, handles.ts) on
 * three shared inodes, for test/unit/tables.test.ts: in its own process, and run as a script under
 * `node --liftoff-only` (`node table-stress.js N` prints the result as JSON), so that the wasm runs in
 * the baseline compiler's code, which the daemon runs too until a function is hot.
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { type VqExports, createSharedMemory, loadVirtqueueModule } from '../../src/virtio/wasm.js';

export interface StressResult {
  /** iterations per worker */
  n: number;
  workers: Array<Record<string, number | string>>;
  inodeCount: number;
  handleCount: number;
  /** the lock words afterwards (0: free) */
  inodeLock: number;
  handleLock: number;
}

/** Two workers, n iterations each, on the tables of `vq` (already initialised) in `memory`. */
export async function tableStress(memory: WebAssembly.Memory, vq: VqExports, n: number): Promise<StressResult> {
  const go = new Int32Array(new SharedArrayBuffer(8));
  const url = new URL('../../src/virtio/wasm.js', import.meta.url).href;
  // with 3 shared inodes the workers collide constantly (no lock: hangs or miscounts)
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    (async () => {
      const { loadVirtqueueModule } = await import(workerData.url);
      const vq = await loadVirtqueueModule(workerData.memory);
      const r = { created: 0, freed: 0, errors: 0, handles: 0, sharedFound: 0 };
      // Both hold a lookup of inode 2000 at the same time (a second barrier), so one of them must find
      // the other's entry whatever the scheduler does; the stress loop below may or may not overlap.
      const shared = vq.inodeLookup(9, 0, 2000, 0, 2000);
      r.sharedFound = vq.inodeLastExisted();
      Atomics.add(workerData.go, 1, 1);
      Atomics.notify(workerData.go, 1);
      while (Atomics.load(workerData.go, 1) < 2) Atomics.wait(workerData.go, 1, Atomics.load(workerData.go, 1), 10);
      const sfd = vq.inodeForget(shared, 1);
      if (sfd !== -1 && sfd !== 2000) r.errors++;
      Atomics.add(workerData.go, 0, 1);
      Atomics.notify(workerData.go, 0);
      while (Atomics.load(workerData.go, 0) < 2) Atomics.wait(workerData.go, 0, Atomics.load(workerData.go, 0), 10);
      for (let i = 0; i < workerData.n; i++) {
        const ino = 1000 + ((i * 7 + workerData.w) % 3);
        const id = vq.inodeLookup(9, 0, ino, 0, ino);
        if (id === 0) { r.errors++; continue; }
        if (vq.inodeLastExisted() === 0) r.created++;
        if (vq.inodeAcquire(id) !== ino) r.errors++;
        if (vq.inodeRelease(id) !== -1) r.errors++;
        const fd = vq.inodeForget(id, 1);
        if (fd === ino) r.freed++; else if (fd !== -1) r.errors++;
        const h = vq.handleOpen(ino, 0);
        if (vq.handleAcquire(h) !== ino) r.errors++;
        if (vq.handleClose(h) !== -1) r.errors++;
        if (vq.handleRelease(h) === ino) r.handles++; else r.errors++;
      }
      parentPort.postMessage(r);
    })().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));`;
  const run = (w: number) => new Promise<Record<string, number | string>>((resolve, reject) => {
    const wk = new Worker(code, { eval: true, workerData: { memory, url, go, n, w } });
    wk.once('message', (m) => { resolve(m); void wk.terminate(); });
    wk.once('error', reject);
  });
  const workers = await Promise.all([run(0), run(1)]);
  const L = vq.layout;
  return {
    n, workers, inodeCount: vq.inodeCount(), handleCount: vq.handleCount(),
    inodeLock: Atomics.load(new Int32Array(memory.buffer, L.INODE_BASE, 1), 0),
    handleLock: Atomics.load(new Int32Array(memory.buffer, L.HANDLE_BASE, 1), 0),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const memory = createSharedMemory();
  const vq = await loadVirtqueueModule(memory);
  vq.inodeInit(3, 0x803n, 2n);
  vq.handleInit();
  process.stdout.write(JSON.stringify(await tableStress(memory, vq, Number(process.argv[2] ?? 50_000))));
}
