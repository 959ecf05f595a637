/**
 * A worker thread: instantiates the AS module on the shared memory and runs the queue loop with the
 * FUSE server over the passthrough file system. Started by piscina (src/virtio/pool.ts); the task
 * ({wid}) returns only when the control plane stops the pool.
 */
import { Piscina } from 'piscina';
import type { WorkerData } from './worker-init.js';
import { Logger, directStderr } from './log.js';
import { native } from './native.js';
import { FuseServer } from './fuse/server.js';
import { IN_HEADER_SIZE, Opcode, WRITE_IN_SIZE, peekOpcode } from './abi/fuse.js';
import { Passthrough } from './fs/passthrough.js';
import { sharedBuffer } from './memory/guest-memory.js';
import { Ctl, controlView } from './virtio/control.js';
import { QueueRunner } from './virtio/queue-runner.js';
import type { GuestReader, GuestWriter } from './virtio/guest-io.js';
import { guestTableOf, loadVirtqueueModule } from './virtio/wasm.js';
import { syslogSink } from './syslog.js';

/** WRITE's in-header and write_in: the rest of its readable part is file data, written zero-copy. */
const WRITE_PREFIX = IN_HEADER_SIZE + WRITE_IN_SIZE;

const data = Piscina.workerData as WorkerData;
const memory = data.memory;
const vq = await loadVirtqueueModule(memory);
native.setWindow(sharedBuffer(memory), guestTableOf(vq.layout));

export default function runWorker(task: { wid: number }): void {
  const wid = task.wid;
  const log = new Logger(data.init.logLevel, `w${wid}`, data.init.syslog ? syslogSink() : directStderr);
  const ctl = controlView(memory.buffer, vq.layout.CONTROL_BASE);
  const fs = new Passthrough(vq, data.init.procFdDir, {
    allowDevices: data.init.allowDevices,
    allowDirectIo: data.init.allowDirectIo,
    announceSubmounts: data.init.announceSubmounts,
  });
  const server = new FuseServer(fs, {
    cache: data.init.cache,
    writeback: data.init.writeback,
    readdirplus: data.init.readdirplus,
    xattr: data.init.xattr,
    timeout: data.init.timeout,
    announceSubmounts: data.init.announceSubmounts,
    log,
    session: ctl.subarray(Ctl.SESSION, Ctl.SESSION + Ctl.SESSION_LEN),
  });
  const inbufSize = vq.layout.INBUF_SIZE;
  const handler = (_q: number, r: GuestReader, w: GuestWriter): number => {
    // The head copy: the whole readable part (up to INBUF_SIZE) except for WRITE, whose payload goes
    // from guest pages to the file without passing through the scratch.
    // (A chain shorter than the in-header is the server's to reject.)
    if (r.head.length >= IN_HEADER_SIZE) {
      if (peekOpcode(r.head) === Opcode.Write) {
        if (r.head.length < WRITE_PREFIX) r.extend(WRITE_PREFIX);
      } else if (r.total > r.head.length) {
        r.extend(inbufSize);
      }
    }
    return server.handle(r, w);
  };
  const runner = new QueueRunner(vq, memory, wid, handler, log, IN_HEADER_SIZE);
  log.debug('worker loop started');
  runner.run();
  log.debug(`worker loop stopped after ${runner.stats.requests} requests`);
}
