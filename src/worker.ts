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
import { IN_HEADER_SIZE, OUT_HEADER_SIZE, Opcode, WRITE_IN_SIZE, getId, peekOpcode, peekU32 } from './abi/fuse.js';
import { W, countRequest, workerBlock } from './metrics/counters.js';
import { Passthrough } from './fs/passthrough.js';
import { idMapsOf } from './fs/idmap.js';
import { xattrPolicy } from './fs/xattrmap.js';
import { sharedBuffer } from './memory/guest-memory.js';
import { Ctl, controlView } from './virtio/control.js';
import { QueueRunner } from './virtio/queue-runner.js';
import { InFlight, PinRecordingTables } from './virtio/inflight.js';
import type { GuestReader, GuestWriter } from './virtio/guest-io.js';
import { guestTableOf, loadVirtqueueModule } from './virtio/wasm.js';
import { sealSyslogPath, syslogSink } from './syslog.js';

/** WRITE's in-header and write_in: the rest of its readable part is file data, written zero-copy. */
const WRITE_PREFIX = IN_HEADER_SIZE + WRITE_IN_SIZE;
/**
 * Bytes of every request copied before it is looked at: the whole of the common small ones (a LOOKUP
 * with a 255-byte name is 296), in the same WASM call as the pop and parse; the rest on demand. A
 * WRITE's data past its write_in is copied needlessly, up to this much: less than a second call costs.
 */
const HEAD_PREFIX = 512;

/** Requests served in a few µs without blocking (no disk wait, no lock held by others): QUICK[opcode] = 1. */
const QUICK = new Uint8Array(64);
for (const op of [
  Opcode.Lookup, Opcode.Forget, Opcode.BatchForget, Opcode.Getattr, Opcode.Open, Opcode.Opendir, Opcode.Release,
  Opcode.Releasedir, Opcode.Flush, Opcode.Access, Opcode.Statfs, Opcode.Readlink, Opcode.Getxattr,
  Opcode.Listxattr, Opcode.Lseek, Opcode.Interrupt, Opcode.Init,
]) QUICK[op] = 1;
/** fuse_read_in.size and fuse_write_in.size: after fh and offset (u64 each), in both. */
const RW_SIZE_AT = IN_HEADER_SIZE + 16;
/** READs and WRITEs from this size on take long enough (tens of µs) to be worth a second worker. */
const LARGE_IO = 32 * 1024;

/**
 * Whether a request may take long (docs/internals.md "Worker control"): a large READ or WRITE, or anything
 * that may wait on the disk (create, unlink, fsync, readdir...). `head` holds ≥ IN_HEADER_SIZE bytes;
 * `op` is its opcode.
 */
function slowRequest(head: Uint8Array, op: number): boolean {
  if (op === Opcode.Read || op === Opcode.Write) {
    if (head.length < RW_SIZE_AT + 4) return false;
    return peekU32(head, RW_SIZE_AT) >= LARGE_IO;
  }
  return op >= QUICK.length || QUICK[op] === 0;
}

const data = Piscina.workerData as WorkerData;
const memory = data.memory;
const vq = await loadVirtqueueModule(memory);
native.setWindow(sharedBuffer(memory), guestTableOf(vq.layout));

/**
 * Test-only fault injection (docs/testing.md, "Worker death"), read from the environment once per
 * thread: `VIRTIOFSD_TS_TEST_HOOKS=worker-die-on-getattr-of:<nodeid>[,<nodeid>…]` ends the worker thread
 * serving a GETATTR of one of those node ids right after it pinned the inode, as a thread the runtime
 * kills would end (process.exit in a worker thread ends that thread only, and runs no catch or
 * finally). Nothing a guest sends can turn it on; without the variable none of it is on any path.
 */
const TEST_HOOKS = process.env.VIRTIOFSD_TS_TEST_HOOKS;
const DIE_ON_GETATTR = /^worker-die-on-getattr-of:(\d+(?:,\d+)*)$/.exec(TEST_HOOKS ?? '');

class DyingTables extends PinRecordingTables {
  private armed = false;
  constructor(vq: ConstructorParameters<typeof PinRecordingTables>[0], flight: InFlight, private readonly targets: Set<number>) {
    super(vq, flight);
  }
  /** Before each request: armed for a GETATTR of a target only. */
  arm(head: Uint8Array): void {
    this.armed = head.length >= IN_HEADER_SIZE && peekOpcode(head) === Opcode.Getattr &&
      this.targets.has(getId(new DataView(head.buffer, head.byteOffset), 16));
  }
  override inodeAcquire(nodeid: number): number {
    const fd = super.inodeAcquire(nodeid);
    if (this.armed && this.targets.has(nodeid) && fd >= 0) process.exit(70);
    return fd;
  }
}

// The syslog socket is connected now, while the thread loads: the daemon confines itself (the root
// becomes the shared directory) once every thread is up, and no path reaches /dev/log after that.
const sink = data.init.syslog ? syslogSink(data.init.logFormat) : directStderr;
if (data.init.sandboxed) sealSyslogPath();

/** Runs worker `wid`'s loop until the pool stops it; wid -1 only loads the thread (a spare: src/virtio/pool.ts). */
export default function runWorker(task: { wid: number }): void {
  const wid = task.wid;
  if (wid < 0) return;
  const log = new Logger(data.init.logLevel, `w${wid}`, sink, data.init.logFormat);
  const ctl = controlView(memory.buffer, vq.layout.CONTROL_BASE);
  // The file system's pins are recorded in the worker's in-flight record, so they are released for
  // it if the thread dies mid-request (src/virtio/orphans.ts).
  const flight = new InFlight(memory.buffer, vq.layout.CONTROL_BASE, wid);
  if (TEST_HOOKS !== undefined && DIE_ON_GETATTR === null) log.warn(`VIRTIOFSD_TS_TEST_HOOKS=${TEST_HOOKS} not understood; ignored`);
  const dying = DIE_ON_GETATTR ? new DyingTables(vq, flight, new Set(DIE_ON_GETATTR[1]!.split(',').map(Number))) : null;
  const tables = dying ?? new PinRecordingTables(vq, flight);
  const fs = new Passthrough(tables, data.init.procFdDir, {
    allowDevices: data.init.allowDevices,
    allowDirectIo: data.init.allowDirectIo,
    announceSubmounts: data.init.announceSubmounts,
    xattrPolicy: xattrPolicy(data.init.xattrmap, data.init.posixAcl),
    secctxAsIs: data.init.xattrmap === undefined,
  });
  const server = new FuseServer(fs, {
    cache: data.init.cache,
    writeback: data.init.writeback,
    readdirplus: data.init.readdirplus,
    xattr: data.init.xattr,
    posixAcl: data.init.posixAcl,
    securityLabel: data.init.securityLabel,
    allowMmap: data.init.allowMmap,
    timeout: data.init.timeout,
    readOnly: data.init.readOnly,
    announceSubmounts: data.init.announceSubmounts,
    idmap: idMapsOf(data.init.translateUid, data.init.translateGid),
    log,
    session: ctl.subarray(Ctl.SESSION, Ctl.SESSION + Ctl.SESSION_LEN),
  });
  const inbufSize = vq.layout.INBUF_SIZE;
  const counters = workerBlock(data.init.counters, wid);
  const counting = data.init.counters !== null;
  /** The reply's out-header and the first word after it, in the writer's scratch (fixed per worker). */
  let reply: Int32Array | null = null;
  const handler = (_q: number, r: GuestReader, w: GuestWriter): number => {
    if (dying !== null) dying.arm(r.head);
    // The head copy: the whole readable part (up to INBUF_SIZE) except for WRITE, whose payload goes
    // from guest pages to the file without passing through the scratch.
    // (A chain shorter than the in-header is the server's to reject.)
    let op = 0;
    if (r.head.length >= IN_HEADER_SIZE) {
      op = peekOpcode(r.head);
      if (op === Opcode.Write) {
        if (r.head.length < WRITE_PREFIX) r.extend(WRITE_PREFIX);
      } else if (r.total > r.head.length) {
        r.extend(inbufSize);
      }
      if (slowRequest(r.head, op)) runner.handOn();
    }
    const n = server.handle(r, w);
    if (counting) {
      // The error and, for WRITE, fuse_write_out.size from the reply the server left in w.buf.
      reply ??= new Int32Array(w.buf.buffer, w.buf.byteOffset, (OUT_HEADER_SIZE >>> 2) + 1);
      const error = n >= OUT_HEADER_SIZE ? reply[1]! : 0;
      countRequest(counters, op, runner.elapsed(), error);
      if (error === 0 && n > OUT_HEADER_SIZE) {
        if (op === Opcode.Read) counters[W.READ_BYTES]! += n - OUT_HEADER_SIZE;
        else if (op === Opcode.Write) counters[W.WRITE_BYTES]! += reply[OUT_HEADER_SIZE >>> 2]! >>> 0;
      }
    }
    return n;
  };
  const runner: QueueRunner = new QueueRunner(vq, memory, wid, handler, log, HEAD_PREFIX, flight, counters, counting);
  log.debug('worker loop started');
  runner.run();
  const st = runner.stats;
  log.debug(`worker loop stopped after ${st.requests} requests (${st.sleeps} sleeps, ${st.spinHits} polls that found work, ${st.handOns} hand-ons, ${st.notifies} notifications, ${st.stallTakeovers} stall takeovers)`);
}
