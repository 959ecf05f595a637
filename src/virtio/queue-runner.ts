/**
 * The worker side of the virtqueues: a loop that pops heads from every active queue, hands each chain
 * to a request handler and publishes the used element, then sleeps in poll(2) on the kick eventfds and
 * its own control eventfd. All ring work is done by the AS module on the shared memory; this file only
 * sequences it. The handler is a function of (queue, reader, writer); of FUSE this file knows only the
 * frame virtio-fs puts around every request (in-header, out-header), to answer EIO when serving fails.
 */
import { IN_HEADER_SIZE, OUT_HEADER_SIZE } from '../abi/fuse.js';
import { Errno } from '../errors.js';
import { native } from '../native.js';
import type { Logger } from '../log.js';
import { RateLimitedLog } from '../log.js';
import { Ctl, WorkerState, controlView, qslot } from './control.js';
import { ApertureMapper, GuestChainIo, type GuestReader, type GuestWriter } from './guest-io.js';
import { InFlight } from './inflight.js';
import { VqError, type VqExports } from './wasm.js';

export type ChainHandler = (queue: number, r: GuestReader, w: GuestWriter) => number;

/** Bytes of a chain's readable part copied before the handler looks at it; it may copy more. */
export const DEFAULT_PREFIX = 4096;

interface ActiveQueue {
  q: number;
  kick: number;
  call: number;
}

export interface RunnerStats {
  requests: number;
  badChains: number;
}

/**
 * A virtio-fs request is a FUSE in-header and arguments, its reply a FUSE out-header and results
 * (virtio 1.1 §5.11.6.1): this writes {len 16, error -EIO, the request's unique} into the chain's
 * writable part. 0 if the chain has no room for it or the copy fails (the used element then says
 * nothing was written).
 */
export function writeEioReply(w: GuestWriter, inHeader: Uint8Array | null, log: Pick<Logger, 'error'>): number {
  if (w.capacity < OUT_HEADER_SIZE || w.buf.length < OUT_HEADER_SIZE) return 0;
  try {
    const out = new DataView(w.buf.buffer, w.buf.byteOffset, OUT_HEADER_SIZE);
    const unique = inHeader === null ? 0n : new DataView(inHeader.buffer, inHeader.byteOffset + 8, 8).getBigUint64(0, true);
    out.setUint32(0, OUT_HEADER_SIZE, true);
    out.setInt32(4, -Errno.EIO, true);
    out.setBigUint64(8, unique, true);
    w.commit(OUT_HEADER_SIZE);
    return w.written >= OUT_HEADER_SIZE ? OUT_HEADER_SIZE : 0;
  } catch (e) {
    log.error(`writing an EIO reply failed: ${(e as Error)?.stack ?? e}`);
    return 0;
  }
}

export class QueueRunner {
  private readonly ctl: Int32Array;
  /** The queue table as words, to set a queue's broken flag (assembly/layout.ts Q_BROKEN). */
  private readonly queueWords: Int32Array;
  private readonly io: GuestChainIo;
  private readonly apertures: ApertureMapper;
  private readonly scratch: number;
  private readonly counts: Uint32Array;
  private readonly ctlFd: number;
  private myGen = -1;
  private state: WorkerState = WorkerState.PAUSE;
  private queues: ActiveQueue[] = [];
  private readonly pollFds: Int32Array;
  private readonly revents: Int32Array;
  /** This worker's epoll set: its control eventfd and every active queue's kick fd (exclusive). */
  private epfd = -1;
  private readonly ready: Int32Array;
  private rr = 0;
  private readonly badLog: RateLimitedLog;
  private readonly brokenSeen = new Set<number>();
  readonly stats: RunnerStats = { requests: 0, badChains: 0 };

  constructor(
    private readonly vq: VqExports,
    memory: WebAssembly.Memory,
    private readonly wid: number,
    private readonly handler: ChainHandler,
    private readonly log: Logger,
    private readonly headPrefix = DEFAULT_PREFIX,
    /** this worker's in-flight record (the worker's file system records its pins in the same one) */
    private readonly flight = new InFlight(memory.buffer, vq.layout.CONTROL_BASE, wid),
  ) {
    const L = vq.layout;
    this.ctl = controlView(memory.buffer, L.CONTROL_BASE);
    this.queueWords = new Int32Array(memory.buffer, L.QUEUE_BASE, (L.MAX_QUEUES * L.QUEUE_STRIDE) >>> 2);
    this.scratch = L.SCRATCH_BASE + wid * L.SCRATCH_SIZE;
    this.counts = new Uint32Array(memory.buffer, this.scratch, 4);
    this.apertures = new ApertureMapper(vq, memory.buffer, wid, this.scratch, log);
    this.io = new GuestChainIo(vq, memory.buffer, wid, this.scratch, this.apertures);
    this.ctlFd = Atomics.load(this.ctl, Ctl.CTLFD + wid);
    this.pollFds = new Int32Array(1);
    this.revents = new Int32Array(1);
    this.ready = new Int32Array(L.MAX_QUEUES + 1);
    this.badLog = new RateLimitedLog(log);
  }

  /** Runs until the control plane says STOP. Never throws for anything the guest sends. */
  run(): void {
    for (;;) {
      const gen = Atomics.load(this.ctl, Ctl.GEN);
      if (gen !== this.myGen) this.reload(gen);
      if (this.state === WorkerState.STOP) {
        this.closeEpoll();
        return;
      }
      if (this.state === WorkerState.PAUSE) {
        this.sleep(false);
        continue;
      }
      if (this.pollOnce()) continue;
      // Nothing popped: re-arm notifications, then look once more before sleeping, so a request the
      // driver published between our last pop and the re-arm cannot be missed (virtio 1.1 §2.6.7.2).
      let pending = false;
      for (const a of this.queues) if (this.vq.queueEnableNotify(a.q) === 1) pending = true;
      if (pending) continue;
      this.sleep(true);
    }
  }

  private reload(gen: number): void {
    this.state = Atomics.load(this.ctl, Ctl.STATE) as WorkerState;
    const queues: ActiveQueue[] = [];
    const maxQ = this.vq.layout.MAX_QUEUES;
    for (let q = 0; q < maxQ; q++) {
      if (Atomics.load(this.ctl, qslot(q, Ctl.Q_ACTIVE)) !== 1) continue;
      queues.push({ q, kick: Atomics.load(this.ctl, qslot(q, Ctl.Q_KICKFD)), call: Atomics.load(this.ctl, qslot(q, Ctl.Q_CALLFD)) });
    }
    this.queues = queues;
    // A ring set up again (a device reset, a new frontend) is no longer broken: log its next corruption.
    for (const q of this.brokenSeen) if (this.vq.queueIsBroken(q) === 0) this.brokenSeen.delete(q);
    // The kick fds are watched only to run: a worker (re)started while the control plane changes the
    // queues under a pause may read fds being replaced, and adding a closed one would kill it.
    if (this.state === WorkerState.RUN) this.rebuildEpoll();
    else this.closeEpoll();
    this.myGen = gen;
    // Acknowledge only here, at the top of the loop, with no chain in flight (see control.ts).
    Atomics.store(this.ctl, Ctl.ACK + this.wid, gen);
    Atomics.notify(this.ctl, Ctl.ACK + this.wid);
  }

  /**
   * The kick fds are watched with EPOLLEXCLUSIVE: a kick wakes one idle worker, not all of them. The
   * set is rebuilt whenever the queue set changes (only while paused, so no kick is in flight for it).
   */
  private rebuildEpoll(): void {
    this.closeEpoll();
    const epfd = native.epollCreate();
    if (epfd < 0) throw new Error(`epoll_create1: errno ${-epfd}`);
    this.epfd = epfd;
    this.flight.setEpoll(epfd);
    const add = (fd: number, exclusive: boolean): void => {
      const r = native.epollAdd(this.epfd, fd, exclusive);
      if (r < 0) throw new Error(`epoll_ctl(${fd}): errno ${-r}`);
    };
    add(this.ctlFd, false);
    for (const a of this.queues) if (a.kick >= 0) add(a.kick, true);
  }

  /** Forgets the record first: a death in between leaks the fd rather than closing a reused number. */
  private closeEpoll(): void {
    if (this.epfd < 0) return;
    this.flight.setEpoll(-1);
    native.close(this.epfd);
    this.epfd = -1;
  }

  /** Pops and serves at most one chain, round robin over the queues. True if one was served. */
  private pollOnce(): boolean {
    const n = this.queues.length;
    for (let i = 0; i < n; i++) {
      const a = this.queues[(this.rr + i) % n]!;
      const head = this.vq.queuePop(a.q);
      if (head >= 0) {
        // Ours to answer from here on, even if this thread dies (inflight.ts, orphans.ts).
        this.flight.begin(a.q, head);
        this.rr = (this.rr + i + 1) % n;
        // A kick woke one worker only. If others sleep, ask the driver to kick for the next request
        // (avail_event = last_avail) and hand already-pending requests on with a kick of our own, so a
        // slow request here does not hold up the ones behind it.
        if (Atomics.load(this.ctl, Ctl.IDLE) > 0 && this.vq.queueEnableNotify(a.q) === 1 && a.kick >= 0) {
          native.eventfdWrite(a.kick, 1);
        }
        this.serve(a, head);
        return true;
      }
      if (head === -2 && !this.brokenSeen.has(a.q)) {
        this.brokenSeen.add(a.q);
        this.log.error(`queue ${a.q}: the driver corrupted the avail ring; the queue is stopped until the device is reset`);
      }
    }
    return false;
  }

  /**
   * Serves one popped chain. Every popped chain is answered, whatever throws on the way: a chain whose
   * parse throws is returned unused (as one the parser rejects); a throw while reading the request or
   * in the handler gets an EIO reply when the chain has room for one; a used element that cannot be
   * published stops the queue (docs/internals.md "Worker control"). A thread that dies on the way
   * leaves the chain in its in-flight record: the control plane answers it.
   */
  private serve(a: ActiveQueue, head: number): void {
    let len: number;
    try {
      len = this.answer(a, head);
    } catch (e) {
      this.stats.badChains++;
      this.badLog.error(`queue ${a.q}: parsing the chain at head ${head} failed: ${(e as Error)?.stack ?? e}; returned unused`);
      len = 0;
    }
    this.publish(a, head, len);
  }

  /** Parses the chain and runs the handler; the used length. Throws only if the parser does. */
  private answer(a: ActiveQueue, head: number): number {
    let rc = this.vq.chainParse(a.q, head, this.wid);
    // An indirect table behind an aperture not mapped yet: map it and parse again (the walk is pure).
    for (let i = 0; rc === VqError.NEED_MAP && i < 4 && this.apertures.fault(); i++) rc = this.vq.chainParse(a.q, head, this.wid);
    if (rc < 0) {
      this.stats.badChains++;
      this.badLog.warn(`queue ${a.q}: bad descriptor chain at head ${head} (error ${rc}); returned unused`);
      return 0;
    }
    const [rcount = 0, wcount = 0, rtotal = 0, wtotal = 0] = this.counts;
    const r = this.io.reader;
    const w = this.io.writer;
    this.stats.requests++;
    // The writer first: it only records the parsed list, so an EIO reply can go out whatever fails next.
    w.reset(wcount, wtotal);
    let len: number;
    let loaded = false;
    try {
      r.reset(rcount, rtotal, this.headPrefix);
      loaded = true;
      len = this.handler(a.q, r, w);
    } catch (e) {
      this.badLog.error(`queue ${a.q}: request at head ${head} failed: ${(e as Error)?.stack ?? e}; answered EIO`);
      // The head is this chain's only if the reader loaded it; else the reply's unique is 0.
      len = writeEioReply(w, loaded && r.head.length >= IN_HEADER_SIZE ? r.head : null, this.badLog);
    }
    // The used length must equal what was written: the guest trusts it (virtio_fs.c).
    return Math.min(len, wtotal);
  }

  /** Publishes the used element and notifies the driver; a publish that throws stops the queue. */
  private publish(a: ActiveQueue, head: number, len: number): void {
    let notify: number;
    try {
      this.flight.publishing(a.q);
      notify = this.vq.queuePush(a.q, head, len);
      this.flight.end();
    } catch (e) {
      this.flight.end();
      // The request cannot be answered: stop the queue rather than leave the driver waiting on it
      // silently (the same state as a corrupt avail ring; a device reset clears it).
      this.markBroken(a.q);
      this.log.error(`queue ${a.q}: publishing the reply to head ${head} failed; the queue is stopped until the device is reset: ${(e as Error)?.stack ?? e}`);
      return;
    }
    if (notify === 1 && a.call >= 0) native.eventfdWrite(a.call, 1);
  }

  private markBroken(q: number): void {
    const L = this.vq.layout;
    Atomics.store(this.queueWords, (q * L.QUEUE_STRIDE + L.Q_BROKEN) >>> 2, 1);
    this.brokenSeen.add(q);
  }

  /**
   * Sleeps until the control eventfd (and, if `kicks`, a kick eventfd) fires, then drains what fired.
   * Kick fds are O_NONBLOCK and shared by every worker: another worker may have drained the counter
   * first, so EAGAIN is normal here.
   */
  private sleep(kicks: boolean): void {
    if (!kicks) {
      this.pollFds[0] = this.ctlFd;
      if (native.poll(this.pollFds, 1, -1, this.revents) > 0) native.eventfdRead(this.ctlFd);
      return;
    }
    Atomics.add(this.ctl, Ctl.IDLE, 1);
    const r = native.epollWait(this.epfd, this.ready, -1);
    Atomics.sub(this.ctl, Ctl.IDLE, 1);
    for (let i = 0; i < r; i++) native.eventfdRead(this.ready[i]!);
  }
}
