// The worker for pool-pause.test.ts: the real queue loop with a handler that echoes the request's first
// byte, and holds a request whose first byte is HOLD until the test opens the gate (a request stuck
// in a slow file system, as pause() meets it). A request whose first byte is DIE pins the inode whose
// node id is at bytes 16..24 (where a FUSE in-header has it) and ends the thread there, without
// unwinding, as a thread the runtime kills would end (pool-worker-death.test.ts); HOLD_DIE is held
// like HOLD first.
import { Piscina } from 'piscina';
import { Logger } from '../../src/log.js';
import { getId } from '../../src/abi/fuse.js';
import type { GuestReader, GuestWriter } from '../../src/virtio/guest-io.js';
import { InFlight, PinRecordingTables } from '../../src/virtio/inflight.js';
import { QueueRunner } from '../../src/virtio/queue-runner.js';
import { loadVirtqueueModule } from '../../src/virtio/wasm.js';

export const HOLD = 0xb1;
export const DIE = 0xde;
/** held like HOLD, then dies like DIE once the gate opens */
export const HOLD_DIE = 0xdf;
/** gate[0]: 1 while held requests wait; gate[1]: how many requests have been held. */
const data = Piscina.workerData as { memory: WebAssembly.Memory; gate: SharedArrayBuffer };
const vq = await loadVirtqueueModule(data.memory);
const gate = new Int32Array(data.gate);

export default function run(task: { wid: number }): void {
  const flight = new InFlight(data.memory.buffer, vq.layout.CONTROL_BASE, task.wid);
  const tables = new PinRecordingTables(vq, flight);
  const handler = (_q: number, r: GuestReader, w: GuestWriter): number => {
    const b = r.head[0] ?? 0;
    if (b === HOLD || b === HOLD_DIE) {
      Atomics.add(gate, 1, 1);
      while (Atomics.load(gate, 0) === 1) Atomics.wait(gate, 0, 1, 1000);
    }
    if ((b === DIE || b === HOLD_DIE) && r.head.length >= 24) {
      const nodeid = getId(new DataView(r.head.buffer, r.head.byteOffset), 16);
      if (tables.inodeAcquire(nodeid) >= 0) process.exit(70);
    }
    w.buf[0] = b;
    w.commit(1);
    return w.written;
  };
  // The whole readable part (up to INBUF_SIZE) is copied: the DIE request's node id is past byte 0.
  new QueueRunner(vq, data.memory, task.wid, handler, new Logger('error', `w${task.wid}`), 64, flight).run();
}
