// Every chain a worker pops is answered, whatever throws on the way (docs/internals.md "Worker control"):
// a parser that throws returns the chain unused, a failure while reading the request or in the handler
// answers EIO, a used element that cannot be published stops the queue with a log line; the loop goes on
// serving. The failures are injected by wrapping the AS module's exports the runner is given (a trap in
// the parser or a copy), so production code carries no hook for them. The runner runs on this thread:
// the wrapped queueEnableNotify tells it to stop once the ring is drained.
import t from 'tap';
import { Errno } from '../../src/errors.js';
import { Logger } from '../../src/log.js';
import type { GuestReader, GuestWriter } from '../../src/virtio/guest-io.js';
import { QueueRunner } from '../../src/virtio/queue-runner.js';
import { type VqExports, createSharedMemory, loadVirtqueueModule } from '../../src/virtio/wasm.js';
import { runnerRig, stopWhenDrained } from '../helpers/runner-rig.js';

const memory = createSharedMemory();
const real = await loadVirtqueueModule(memory);
const Q = 1;
const W = 0;
const THROWS = 999; // the opcode the test handler throws on

function inHeader(unique: number, opcode = 1): Uint8Array {
  const b = new Uint8Array(40);
  const v = new DataView(b.buffer);
  v.setUint32(0, 40, true);
  v.setUint32(4, opcode, true);
  v.setBigUint64(8, BigInt(unique), true);
  return b;
}

t.test('a throw in parsing, reading, the handler or the publish leaves no popped chain unanswered', async (t) => {
  const d = runnerRig(t, memory, real, Q, W);

  const parseFails = new Set<number>();
  const readFails = new Set<number>();
  const pushFails = new Set<number>();
  let gatherFails = false;
  const trap = (what: string): never => {
    throw new WebAssembly.RuntimeError(`injected: ${what}`);
  };
  // chainNext pops, parses and gathers in one call: a trap is injected after it (the head popped), and a
  // failed read by saying nothing was gathered, so the runner's own gather call (which traps) runs.
  const scratchGot = new Uint32Array(memory.buffer, real.layout.SCRATCH_BASE + W * real.layout.SCRATCH_SIZE + real.layout.SCR_GOT, 1);
  const vq: VqExports = {
    ...real,
    chainNext: (q, w, prefix) => {
      const head = real.chainNext(q, w, prefix);
      if (parseFails.delete(head)) trap('parser');
      gatherFails = readFails.delete(head);
      if (gatherFails) scratchGot[0] = 0;
      return head;
    },
    gather: (...a) => (gatherFails ? trap('gather') : real.gather(...a)),
    queuePushQuiet: (q, head, len) => (pushFails.delete(head) ? trap('push') : real.queuePushQuiet(q, head, len)),
    // Drained (or broken): stop the loop at its next turn instead of sleeping.
    queueEnableNotify: stopWhenDrained(memory, real),
  };
  const lines: string[] = [];
  const log = new Logger('warn', 'w0', (line) => lines.push(line));
  const handler = (_q: number, r: GuestReader, w: GuestWriter): number => {
    const h = new DataView(r.head.buffer, r.head.byteOffset, 40);
    if (h.getUint32(4, true) === THROWS) throw new Error('injected: handler bug');
    const out = new DataView(w.buf.buffer, w.buf.byteOffset, 16);
    out.setUint32(0, 16, true);
    out.setInt32(4, 0, true);
    out.setBigUint64(8, h.getBigUint64(8, true), true);
    w.commit(16);
    return w.written;
  };
  const runner = new QueueRunner(vq, memory, W, handler, log, 40);

  const send = (unique: number, opcode = 1) => d.addChain({ readable: [inHeader(unique, opcode)], writable: [16] });
  const ok1 = send(1);
  const parse = send(2);
  parseFails.add(parse.head);
  const read = send(3);
  readFails.add(read.head);
  const handlerThrows = send(4, THROWS);
  const ok2 = send(5);
  const push = send(6);
  pushFails.add(push.head);
  const after = send(7);

  t.doesNotThrow(() => runner.run(), 'the loop survives every failure');

  const used = new Map(d.takeUsed().map((e) => [e.id, e.len]));
  const reply = (c: { writable: bigint[] }) => {
    const v = new DataView(d.read(c.writable[0]!, 16).buffer);
    return { len: v.getUint32(0, true), error: v.getInt32(4, true), unique: Number(v.getBigUint64(8, true)) };
  };
  t.equal(used.get(ok1.head), 16);
  t.same(reply(ok1), { len: 16, error: 0, unique: 1 });
  t.equal(used.get(parse.head), 0, 'a chain whose parse throws is returned unused');
  t.equal(used.get(read.head), 16, 'a chain whose request cannot be read is answered');
  t.same(reply(read), { len: 16, error: -Errno.EIO, unique: 0 }, '… with EIO (the unique was never read)');
  t.equal(used.get(handlerThrows.head), 16, 'a request whose handler throws is answered');
  t.same(reply(handlerThrows), { len: 16, error: -Errno.EIO, unique: 4 }, '… with EIO and its unique');
  t.equal(used.get(ok2.head), 16, 'requests after the failures are served');
  t.same(reply(ok2), { len: 16, error: 0, unique: 5 });
  t.notOk(used.has(push.head), 'a used element that cannot be published is not');
  t.equal(real.queueIsBroken(Q), 1, '… and the queue is stopped, not left silently waiting');
  t.notOk(used.has(after.head), 'a stopped queue serves nothing more');
  t.equal(used.size, 5);
  t.ok(lines.some((l) => /queue 1: publishing the reply to head \d+ failed; the queue is stopped until the device is reset/.test(l)), 'the stop is logged');
  t.ok(lines.some((l) => /queue 1: parsing the chain at head \d+ failed/.test(l)), 'the parser failure is logged');
  t.equal(runner.stats.badChains, 1);
});
