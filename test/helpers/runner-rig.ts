/**
 * A queue runner's control words set up by hand, for tests that run a QueueRunner on their own thread
 * against a MockDriver ring: queue `q` active with a fresh kick eventfd and no call fd, worker `w`'s
 * control eventfd, state RUN, a new generation. The eventfds are closed at the test's end.
 */
import type { Test } from 'tap';
import { native } from '../../src/native.js';
import { Ctl, WorkerState, controlView, qslot } from '../../src/virtio/control.js';
import type { VqExports } from '../../src/virtio/wasm.js';
import { MockDriver, defaultRegion } from './mock-driver.js';

export function runnerRig(t: Test, memory: WebAssembly.Memory, real: VqExports, q: number, w: number): MockDriver {
  const d = new MockDriver(memory.buffer, { region: defaultRegion(real), queueSize: 16 });
  t.equal(d.attach(real, q), 0);
  const ctl = controlView(memory.buffer, real.layout.CONTROL_BASE);
  const ctlFd = native.eventfd(0);
  const kick = native.eventfd(0);
  t.teardown(() => {
    native.close(ctlFd);
    native.close(kick);
  });
  Atomics.store(ctl, Ctl.CTLFD + w, ctlFd);
  Atomics.store(ctl, qslot(q, Ctl.Q_ACTIVE), 1);
  Atomics.store(ctl, qslot(q, Ctl.Q_KICKFD), kick);
  Atomics.store(ctl, qslot(q, Ctl.Q_CALLFD), -1);
  Atomics.store(ctl, Ctl.STATE, WorkerState.RUN);
  Atomics.add(ctl, Ctl.GEN, 1);
  return d;
}

/**
 * A queueEnableNotify for the wrapped exports: once the ring is drained (or broken) it tells the runner to
 * stop at its next turn instead of sleeping, so the test's runner.run() returns.
 */
export function stopWhenDrained(memory: WebAssembly.Memory, real: VqExports): VqExports['queueEnableNotify'] {
  const ctl = controlView(memory.buffer, real.layout.CONTROL_BASE);
  return (q) => {
    if (real.queueEnableNotify(q) !== 1) {
      Atomics.store(ctl, Ctl.STATE, WorkerState.STOP);
      Atomics.add(ctl, Ctl.GEN, 1);
    }
    return 1;
  };
}
