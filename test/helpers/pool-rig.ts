/**
 * A worker pool's surroundings for unit tests (test/unit/pool-*.test.ts): shared memory with the AS
 * module, a mock driver attached to request queue `q`, and the queue made active in the control block
 * with a kick eventfd and, if asked, a call eventfd (-1 otherwise).
 */
import { native } from '../../src/native.js';
import { Ctl, controlView, qslot } from '../../src/virtio/control.js';
import { type VqExports, createSharedMemory, loadVirtqueueModule } from '../../src/virtio/wasm.js';
import { MockDriver, defaultRegion } from './mock-driver.js';

export interface PoolRig {
  memory: WebAssembly.Memory;
  vq: VqExports;
  d: MockDriver;
  /** what MockDriver.attach returned (0: attached) */
  attached: number;
  ctl: Int32Array;
  kick: number;
  call: number;
}

export async function poolRig(q: number, opts: { call: boolean }): Promise<PoolRig> {
  const memory = createSharedMemory();
  const vq = await loadVirtqueueModule(memory);
  const d = new MockDriver(memory.buffer, { region: defaultRegion(vq), queueSize: 16 });
  const attached = d.attach(vq, q);
  const ctl = controlView(memory.buffer, vq.layout.CONTROL_BASE);
  const kick = native.eventfd(0);
  const call = opts.call ? native.eventfd(0) : -1;
  Atomics.store(ctl, qslot(q, Ctl.Q_ACTIVE), 1);
  Atomics.store(ctl, qslot(q, Ctl.Q_KICKFD), kick);
  Atomics.store(ctl, qslot(q, Ctl.Q_CALLFD), call);
  return { memory, vq, d, attached, ctl, kick, call };
}
