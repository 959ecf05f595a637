// The queue runner's lines about a queue carry it as a context field ("queue": N in JSON, queue=N in the
// text tag), a handler's exception and a failed publish alike. The runner runs on this thread on a mock
// driver's ring; the wrapped queueEnableNotify stops it once the ring is drained (as in
// pool-runner-answers.test.ts).
import t from 'tap';
import { Logger } from '../../src/log.js';
import type { GuestReader, GuestWriter } from '../../src/virtio/guest-io.js';
import { QueueRunner } from '../../src/virtio/queue-runner.js';
import { type VqExports, createSharedMemory, loadVirtqueueModule } from '../../src/virtio/wasm.js';
import { runnerRig, stopWhenDrained } from '../helpers/runner-rig.js';

const memory = createSharedMemory();
const real = await loadVirtqueueModule(memory);
const Q = 1;
const W = 0;

for (const format of ['json', 'text'] as const) {
  t.test(`${format}: a failed request and a failed publish name their queue`, async (t) => {
    const d = runnerRig(t, memory, real, Q, W);

    const pushFails = new Set<number>();
    const vq: VqExports = {
      ...real,
      queuePushQuiet: (q, head, len) => {
        if (pushFails.delete(head)) throw new WebAssembly.RuntimeError('injected: push');
        return real.queuePushQuiet(q, head, len);
      },
      queueEnableNotify: stopWhenDrained(memory, real),
    };
    const lines: string[] = [];
    const log = new Logger('warn', 'w0', (line) => lines.push(line), format);
    const handler = (_q: number, _r: GuestReader, _w: GuestWriter): number => {
      throw new Error('injected: handler bug');
    };
    const runner = new QueueRunner(vq, memory, W, handler, log, 40);
    const header = new Uint8Array(40);
    new DataView(header.buffer).setUint32(0, 40, true);
    d.addChain({ readable: [header], writable: [16] });
    const push = d.addChain({ readable: [header], writable: [16] });
    pushFails.add(push.head);
    runner.run();

    const failed = lines.filter((l) => /request at head \d+ failed/.test(l));
    const stopped = lines.filter((l) => /publishing the reply to head \d+ failed/.test(l));
    t.equal(failed.length, 2, 'both handler failures logged');
    t.equal(stopped.length, 1, 'the failed publish logged');
    for (const l of [...failed, ...stopped]) {
      if (format === 'json') {
        const j = JSON.parse(l) as Record<string, unknown>;
        t.same([j.thread, j.queue, j.level], ['w0', Q, 'error'], 'queue is a JSON key');
      } else t.match(l, new RegExp(`^\\S+ ERROR \\[w0 queue=${Q}\\] queue ${Q}: `), 'queue=N in the tag; the message as before');
    }
  });
}
