/**
 * The worker side of the virtqueues: a loop that pops heads from every active queue, hands each chain
 * to a request handler and publishes the used element, then sleeps in poll(2) on the kick eventfds and
 * its own control eventfd. All ring work is done by the AS module on the shared memory; this file only
 * sequences it. It knows nothing of FUSE: the handler is a function of (queue, reader, writer).
 */
import { native } from '../native.js';
import type { Logger } from '../log.js';
import { RateLimitedLog } from '../log.js';
import { Ctl, WorkerState, controlView, qslot } from './control.js';
import { ApertureMapper, GuestChainIo, type GuestReader, type GuestWriter } from './guest-io.js';
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

export class QueueRunner {
  private readonly ctl: Int32Array;
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
  ) {
    const L = vq.layout;
    this.ctl = controlView(memory.buffer, L.CONTROL_BASE);
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
        if (this.epfd >= 0) native.close(this.epfd);
        this.epfd = -1;
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
    this.rebuildEpoll();
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
    if (this.epfd >= 0) native.close(this.epfd);
    this.epfd = native.epollCreate();
    if (this.epfd < 0) throw new Error(`epoll_create1: errno ${-this.epfd}`);
    const add = (fd: number, exclusive: boolean): void => {
      const r = native.epollAdd(this.epfd, fd, exclusive);
      if (r < 0) throw new Error(`epoll_ctl(${fd}): errno ${-r}`);
    };
    add(this.ctlFd, false);
    for (const a of this.queues) if (a.kick >= 0) add(a.kick, true);
  }

  /** Pops and serves at most one chain, round robin over the queues. True if one was served. */
  private pollOnce(): boolean {
    const n = this.queues.length;
    for (let i = 0; i < n; i++) {
      const a = this.queues[(this.rr + i) % n]!;
      const head = this.vq.queuePop(a.q);
      if (head >= 0) {
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

  private serve(a: ActiveQueue, head: number): void {
    let rc = this.vq.chainParse(a.q, head, this.wid);
    // An indirect table behind an aperture not mapped yet: map it and parse again (the walk is pure).
    for (let i = 0; rc === VqError.NEED_MAP && i < 4 && this.apertures.fault(); i++) rc = this.vq.chainParse(a.q, head, this.wid);
    const [rcount = 0, wcount = 0, rtotal = 0, wtotal = 0] = this.counts;
    let len = 0;
    if (rc < 0) {
      this.stats.badChains++;
      this.badLog.warn(`queue ${a.q}: bad descriptor chain at head ${head} (error ${rc}); returned unused`);
    } else {
      const r = this.io.reader;
      const w = this.io.writer;
      r.reset(rcount, rtotal, this.headPrefix);
      w.reset(wcount, wtotal);
      try {
        len = this.handler(a.q, r, w);
      } catch (e) {
        this.log.error(`queue ${a.q}: request handler failed: ${(e as Error).stack ?? e}`);
        len = 0;
      }
      // The used length must equal what was written: the guest trusts it (virtio_fs.c).
      if (len > wtotal) len = wtotal;
      this.stats.requests++;
    }
    if (this.vq.queuePush(a.q, head, len) === 1 && a.call >= 0) native.eventfdWrite(a.call, 1);
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
