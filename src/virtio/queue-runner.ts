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
import { Ctl, Flight, WorkerState, controlView, qslot } from './control.js';
import { ApertureMapper, GuestChainIo, type GuestReader, type GuestWriter } from './guest-io.js';
import { InFlight, recordViews } from './inflight.js';
import { Q, QUEUE_AT, QUEUE_SLOTS, QUEUE_STRIDE, W, workerBlock } from '../metrics/counters.js';
import { VqError, type VqExports } from './wasm.js';

/**
 * `performance`, read once: in a worker thread the global is an accessor, and looking it up on every
 * call (a LoadGlobalIC that V8 does not inline) cost about 0.2 µs per request where each is timed.
 */
const clock = performance;

/**
 * With metrics on, a request is timed when its worker found it after idling (at low rates: every
 * request) and one in LATENCY_SAMPLE of those served back to back. Each timing costs a clock read or
 * two (performance.now(), about 50 ns, several times that cache-cold on the request path); timing every
 * request cost GETATTR at depth 32 about 5% more CPU. Requests, errors and bytes are counted for all.
 */
export const LATENCY_SAMPLE = 16;

export type ChainHandler = (queue: number, r: GuestReader, w: GuestWriter) => number;

/** Bytes of a chain's readable part copied before the handler looks at it; it may copy more. */
export const DEFAULT_PREFIX = 4096;

/**
 * Polling before sleeping, adapted as the kernel's halt polling is: a worker that finds its rings empty
 * watches their avail indexes for `spinUs` µs before it re-arms notifications and sleeps. The budget
 * grows (from SPIN_MIN_US, doubling, up to SPIN_MAX_US) each time a sleep ends within SPIN_MAX_US (the
 * next request came soon enough that polling would have caught it, without the driver's kick, the
 * epoll wakeup and the context switch), and halves (to 0 below SPIN_MIN_US) each time polling runs out or
 * a sleep lasts longer. An idle device so costs no CPU: the first long sleep turns polling off.
 */
export const SPIN_MIN_US = 10;
export const SPIN_MAX_US = 100;

/**
 * The stall watch: a sleeping worker wakes every STALL_MS to see whether another worker has held the
 * same request since its last look (blocked in the host file system: a
 * network or FUSE share, a lock). If so it serves the rings itself, so requests behind a blocked one
 * wait at most about 2 × STALL_MS, whatever the request (handOn covers the ones known to be slow).
 */
export const STALL_MS = 20;

interface ActiveQueue {
  q: number;
  /** where this queue's counters start in the worker's block (src/metrics/counters.ts) */
  at: number;
  kick: number;
  call: number;
  /** replies this worker published on the queue since it last decided on notifying the driver */
  unsignalled: number;
  /** the runner's logs with the queue as a context field (queue=N: json keys it; the text keeps "queue N:") */
  log: Logger;
  bad: RateLimitedLog;
}

/**
 * Replies published before the driver is notified, at most (virtio 1.1 §2.6.7: the device may batch
 * used buffers before it notifies). A worker also notifies before it polls or sleeps, before a slow
 * request, and whenever the ring has nothing more for it, so a batch never waits on the driver; it only
 * saves the driver an interrupt (and us an eventfd write) per reply while requests keep coming.
 */
export const NOTIFY_BATCH = 16;

/** The runner's counts, as the debug line at exit and tests read them (the block holds them). */
export interface RunnerStats {
  requests: number;
  badChains: number;
  /** times the worker slept waiting for a kick */
  sleeps: number;
  /** times polling before sleeping found a request */
  spinHits: number;
  /** times a slow request woke an idle worker for the requests behind it */
  handOns: number;
  /** notifications sent to the driver (call eventfd writes) */
  notifies: number;
  /** times the stall watch found another worker stuck in a request and served the rings itself */
  stallTakeovers: number;
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
  private readonly scratchWords: Int32Array;
  private readonly ctlFd: number;
  private myGen = -1;
  private state: WorkerState = WorkerState.PAUSE;
  /** the active queues: this worker's own first (nOwn of them), then the others */
  private queues: ActiveQueue[] = [];
  private nOwn = 0;
  private readonly pollFds: Int32Array;
  private readonly revents: Int32Array;
  /** This worker's epoll set: its control eventfd and every active queue's kick fd (exclusive). */
  private epfd = -1;
  private readonly ready: Int32Array;
  private rr = 0;
  /** The queue of the chain being served (for handOn), null between chains. */
  private current: ActiveQueue | null = null;
  /** This worker's polling budget in µs (0: sleep at once); see SPIN_MIN_US. */
  private spinUs = 0;
  private readonly badLog: RateLimitedLog;
  /** every worker's in-flight record words (QUEUE, SEQ), for the stall watch */
  private readonly records: Int32Array[];
  /** SEQ of each worker at this worker's last look (stall watch) */
  private readonly seenSeq: Int32Array;
  private readonly brokenSeen = new Set<number>();
  /** queue index by kick fd, to count kicks per queue after a wakeup */
  private kickQueue = new Map<number, ActiveQueue>();
  /** clock.now() when the chain being served was taken, if it is timed (see LATENCY_SAMPLE); else -1 */
  private start = -1;
  /** clock.now() when this worker last started being busy, or last added to its busy seconds */
  private busySince = 0;
  /** the worker found nothing since the last chain it served (it polls or sleeps, or is about to) */
  private idled = true;
  /** chains served back to back since the last timed one */
  private untimed = 0;

  constructor(
    private readonly vq: VqExports,
    memory: WebAssembly.Memory,
    private readonly wid: number,
    private readonly handler: ChainHandler,
    private readonly log: Logger,
    private readonly headPrefix = DEFAULT_PREFIX,
    /** this worker's in-flight record (the worker's file system records its pins in the same one) */
    private readonly flight = new InFlight(memory.buffer, vq.layout.CONTROL_BASE, wid),
    /** this worker's counter block (src/metrics/counters.ts); a private one by default */
    readonly counters: Float64Array = workerBlock(null, 0),
    /** time requests and count busy seconds (metrics are served); off, the clock is not read per request */
    private readonly timing = false,
  ) {
    const L = vq.layout;
    this.ctl = controlView(memory.buffer, L.CONTROL_BASE);
    this.queueWords = new Int32Array(memory.buffer, L.QUEUE_BASE, (L.MAX_QUEUES * L.QUEUE_STRIDE) >>> 2);
    this.scratch = L.SCRATCH_BASE + wid * L.SCRATCH_SIZE;
    // The scratch header: counts and totals (chainParse), then chainNext's results (SCR_PARSE...).
    this.counts = new Uint32Array(memory.buffer, this.scratch, 64);
    this.scratchWords = new Int32Array(memory.buffer, this.scratch, 64);
    this.apertures = new ApertureMapper(vq, memory.buffer, wid, this.scratch, log);
    this.io = new GuestChainIo(vq, memory.buffer, wid, this.scratch, this.apertures);
    this.ctlFd = Atomics.load(this.ctl, Ctl.CTLFD + wid);
    this.pollFds = new Int32Array(1);
    this.revents = new Int32Array(1);
    this.ready = new Int32Array(L.MAX_QUEUES + 1);
    this.badLog = new RateLimitedLog(log);
    this.records = Array.from({ length: L.MAX_WORKERS }, (_, w) => recordViews(memory.buffer, L.CONTROL_BASE, w).words);
    this.seenSeq = new Int32Array(L.MAX_WORKERS);
  }

  get stats(): RunnerStats {
    const c = this.counters;
    let notifies = 0;
    for (let q = 0; q < QUEUE_SLOTS; q++) notifies += c[QUEUE_AT + q * QUEUE_STRIDE + Q.NOTIFIES]!;
    return {
      requests: c[W.REQUESTS]!, badChains: c[W.BAD_CHAINS]!, sleeps: c[W.WAKEUPS]!, spinHits: c[W.POLL_HITS]!,
      handOns: c[W.HAND_ONS]!, notifies, stallTakeovers: c[W.STALL_TAKEOVERS]!,
    };
  }

  /**
   * For the handler, once its work is done: seconds since the chain being served was taken off its
   * ring, or -1 when it is not one of the timed ones (LATENCY_SAMPLE), which costs no clock read.
   */
  elapsed(): number {
    return this.start < 0 ? -1 : (clock.now() - this.start) / 1000;
  }

  /**
   * Whether to time the chain being served (only with `timing`): every chain taken after the worker
   * idled (its clock is read then anyway, to count busy time), and one in LATENCY_SAMPLE of those
   * served back to back; at those the busy seconds are brought up to date too.
   */
  private startClock(): void {
    if (this.idled) {
      this.idled = false;
      this.untimed = 0;
      this.start = this.busySince = clock.now();
    } else if (++this.untimed >= LATENCY_SAMPLE) {
      this.untimed = 0;
      const now = clock.now();
      this.counters[W.BUSY_SECONDS]! += (now - this.busySince) / 1000;
      this.start = this.busySince = now;
    } else this.start = -1;
  }

  /** The worker found nothing to do: the time since it was last counted was busy. */
  private stopClock(): void {
    if (this.idled) return;
    this.idled = true;
    if (this.timing) this.counters[W.BUSY_SECONDS]! += (clock.now() - this.busySince) / 1000;
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
      this.notifyAll();
      if (this.spinUs > 0 && this.spin()) continue;
      // Nothing popped: re-arm notifications, then look once more before sleeping, so a request the
      // driver published between our last pop and the re-arm cannot be missed (virtio 1.1 §2.6.7.2).
      let pending = false;
      for (const a of this.queues) if (this.vq.queueEnableNotify(a.q) === 1) pending = true;
      if (pending) continue;
      this.sleep(true);
    }
  }

  /** Decides on notifying for every queue this worker published replies on since its last decision. */
  private notifyAll(): void {
    for (const a of this.queues) if (a.unsignalled > 0) this.notify(a);
  }

  private notify(a: ActiveQueue): void {
    a.unsignalled = 0;
    if (this.vq.queueNotify(a.q) === 1 && a.call >= 0) {
      this.counters[a.at + Q.NOTIFIES]!++;
      native.eventfdWrite(a.call, 1);
    } else this.counters[a.at + Q.SUPPRESSED]!++;
  }

  private reload(gen: number): void {
    // Replies published under the old generation get their notification first (the queue may go away).
    this.notifyAll();
    this.state = Atomics.load(this.ctl, Ctl.STATE) as WorkerState;
    const queues: ActiveQueue[] = [];
    const maxQ = this.vq.layout.MAX_QUEUES;
    for (let q = 0; q < maxQ; q++) {
      if (Atomics.load(this.ctl, qslot(q, Ctl.Q_ACTIVE)) !== 1) continue;
      queues.push({
        q,
        at: QUEUE_AT + Math.min(q, QUEUE_SLOTS - 1) * QUEUE_STRIDE,
        kick: Atomics.load(this.ctl, qslot(q, Ctl.Q_KICKFD)),
        call: Atomics.load(this.ctl, qslot(q, Ctl.Q_CALLFD)),
        unsignalled: 0,
        log: this.log.with({ queue: q }),
        bad: this.badLog.with({ queue: q }),
      });
    }
    // Each worker owns some of the queues (every NWORKERS-th, from its wid on) and looks at those first,
    // at the others only when its own have nothing: with several request queues, workers serve their own
    // in parallel instead of contending for the same ring (and its lock) on every pop.
    const nw = Math.max(1, Atomics.load(this.ctl, Ctl.NWORKERS));
    const own = queues.filter((_, i) => i % nw === this.wid % nw);
    this.queues = [...own, ...queues.filter((_, i) => i % nw !== this.wid % nw)];
    this.nOwn = own.length;
    this.kickQueue = new Map(queues.filter((a) => a.kick >= 0).map((a) => [a.kick, a]));
    this.rr = 0;
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

  /**
   * Pops and serves at most one chain: from this worker's own queues round robin, else from the first
   * of the others that has one. True if one was served.
   */
  private pollOnce(): boolean {
    const n = this.queues.length;
    const own = this.nOwn;
    for (let i = 0; i < n; i++) {
      const a = this.queues[i < own ? (this.rr + i) % own : i]!;
      let head: number;
      let parsed = true;
      try {
        head = this.vq.chainNext(a.q, this.wid, this.headPrefix);
      } catch (e) {
        // A trap after the pop: the head is ours all the same (it is returned unused, below).
        head = this.scratchWords[this.vq.layout.SCR_HEAD >>> 2]!;
        if (head < 0) throw e;
        a.bad.error(`queue ${a.q}: parsing the chain at head ${head} failed: ${(e as Error)?.stack ?? e}; returned unused`);
        parsed = false;
      }
      if (head >= 0) {
        // Ours to answer from here on, even if this thread dies (inflight.ts, orphans.ts).
        this.flight.begin(a.q, head);
        if (i < own) this.rr = (this.rr + i + 1) % own;
        this.current = a;
        if (parsed) this.serve(a, head);
        else {
          this.countBad(a);
          this.publish(a, head, 0);
        }
        this.current = null;
        return true;
      }
      if (head === -2 && !this.brokenSeen.has(a.q)) {
        this.brokenSeen.add(a.q);
        a.log.error(`queue ${a.q}: the driver corrupted the avail ring; the queue is stopped until the device is reset`);
      }
    }
    this.stopClock();
    return false;
  }

  private countBad(a: ActiveQueue): void {
    this.counters[W.BAD_CHAINS]!++;
    this.counters[a.at + Q.BAD_CHAINS]!++;
  }

  /**
   * For the handler, about the chain being served: it will take a while (a large READ or WRITE, a call
   * that may block), so the requests behind it should not wait for it. A kick woke one worker only and
   * the driver does not kick while this one is busy (avail_event is left behind), so: if another worker
   * sleeps and none is polling, ask the driver to kick for the next request (avail_event = last_avail)
   * and hand the already-pending ones on with a kick of our own. Cheap requests never do this: waking a
   * second thread costs more than serving them here (docs/internals.md "Worker control").
   */
  handOn(): void {
    const a = this.current;
    if (a === null) return;
    // The replies already published should not wait for this one.
    if (a.unsignalled > 0) this.notify(a);
    if (a.kick < 0) return;
    if (Atomics.load(this.ctl, Ctl.IDLE) === 0 || Atomics.load(this.ctl, Ctl.SPINNER) !== 0) return;
    if (this.vq.queueEnableNotify(a.q) !== 1) return;
    this.counters[W.HAND_ONS]!++;
    native.eventfdWrite(a.kick, 1);
  }

  /**
   * Polls the rings' avail indexes for up to spinUs µs (see SPIN_MIN_US). True when a request came (or
   * the control plane bumped the generation): go round the loop again. One worker polls at a time: a
   * second would only burn the core the first one, or the driver, needs.
   */
  private spin(): boolean {
    // Not while another worker serves: on a machine with few cores the poller would take the core that
    // worker (or the driver) needs, and that worker will look at the rings again anyway.
    if (Atomics.load(this.ctl, Ctl.IDLE) < Atomics.load(this.ctl, Ctl.NWORKERS) - 1) return false;
    if (Atomics.compareExchange(this.ctl, Ctl.SPINNER, 0, this.wid + 1) !== 0) return false;
    try {
      const deadline = clock.now() + this.spinUs / 1000;
      const qs = this.queues;
      for (let i = 1; ; i++) {
        for (let k = 0; k < qs.length; k++) {
          if (this.vq.queuePending(qs[k]!.q) > 0) {
            this.counters[W.POLL_HITS]!++;
            return true;
          }
        }
        if ((i & 15) === 0) {
          if (Atomics.load(this.ctl, Ctl.GEN) !== this.myGen) return true;
          if (clock.now() >= deadline) break;
        }
      }
    } finally {
      Atomics.store(this.ctl, Ctl.SPINNER, 0);
    }
    this.shrinkSpin();
    return false;
  }

  /** Halves the polling budget (to 0 below SPIN_MIN_US): polling ran out, or a sleep lasted long. */
  private shrinkSpin(): void {
    this.spinUs = this.spinUs >= 2 * SPIN_MIN_US ? this.spinUs >>> 1 : 0;
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
      this.countBad(a);
      a.bad.error(`queue ${a.q}: parsing the chain at head ${head} failed: ${(e as Error)?.stack ?? e}; returned unused`);
      len = 0;
    }
    this.publish(a, head, len);
  }

  /** Runs the handler on the chain chainNext parsed; the used length. Throws only if the parser does. */
  private answer(a: ActiveQueue, head: number): number {
    const L = this.vq.layout;
    let rc = this.scratchWords[L.SCR_PARSE >>> 2]!;
    let got = this.counts[L.SCR_GOT >>> 2]!;
    // An indirect table behind an aperture not mapped yet: map it and parse again (the walk is pure).
    for (let i = 0; rc === VqError.NEED_MAP && i < 4 && this.apertures.fault(); i++) {
      rc = this.vq.chainParse(a.q, head, this.wid);
      got = 0;
    }
    if (rc < 0) {
      this.countBad(a);
      a.bad.warn(`queue ${a.q}: bad descriptor chain at head ${head} (error ${rc}); returned unused`);
      return 0;
    }
    const n = this.counts;
    const rcount = n[0]!;
    const wcount = n[1]!;
    const rtotal = n[2]!;
    const wtotal = n[3]!;
    const r = this.io.reader;
    const w = this.io.writer;
    const c = this.counters;
    c[W.REQUESTS]!++;
    c[a.at + Q.REQUESTS]!++;
    if (this.timing) this.startClock();
    else this.idled = false;
    // The writer first: it only records the parsed list, so an EIO reply can go out whatever fails next.
    w.reset(wcount, wtotal);
    let len: number;
    let loaded = false;
    try {
      r.load(rcount, rtotal, got, this.headPrefix);
      loaded = true;
      len = this.handler(a.q, r, w);
    } catch (e) {
      a.bad.error(`queue ${a.q}: request at head ${head} failed: ${(e as Error)?.stack ?? e}; answered EIO`);
      // The head is this chain's only if the reader loaded it; else the reply's unique is 0.
      len = writeEioReply(w, loaded && r.head.length >= IN_HEADER_SIZE ? r.head : null, a.bad);
    }
    // The used length must equal what was written: the guest trusts it (virtio_fs.c).
    return Math.min(len, wtotal);
  }

  /** Publishes the used element and notifies the driver; a publish that throws stops the queue. */
  private publish(a: ActiveQueue, head: number, len: number): void {
    let rc: number;
    try {
      this.flight.publishing(a.q);
      rc = this.vq.queuePushQuiet(a.q, head, len);
      this.flight.end();
    } catch (e) {
      this.flight.end();
      // The request cannot be answered: stop the queue rather than leave the driver waiting on it
      // silently (the same state as a corrupt avail ring; a device reset clears it).
      this.markBroken(a.q);
      a.log.error(`queue ${a.q}: publishing the reply to head ${head} failed; the queue is stopped until the device is reset: ${(e as Error)?.stack ?? e}`);
      return;
    }
    // A ring found broken meanwhile (queuePop logged it) takes no more elements; nothing to notify.
    if (rc !== 0) return;
    // Notify after a batch, or as soon as fewer requests wait than the driver has not heard about: a
    // driver with few requests in flight would otherwise run dry waiting for replies we hold back.
    if (++a.unsignalled >= NOTIFY_BATCH || this.vq.queuePending(a.q) < a.unsignalled) this.notify(a);
  }

  /** Counts the kicks among the `n` fds a wakeup reported (the control eventfd is not one). */
  private countKicks(n: number): void {
    for (let i = 0; i < n; i++) {
      const a = this.kickQueue.get(this.ready[i]!);
      if (a !== undefined) this.counters[a.at + Q.KICKS]!++;
    }
  }

  private markBroken(q: number): void {
    const L = this.vq.layout;
    Atomics.store(this.queueWords, (q * L.QUEUE_STRIDE + L.Q_BROKEN) >>> 2, 1);
    this.brokenSeen.add(q);
  }

  /**
   * True when another worker holds the same chain as at this worker's last look (STALL_MS ago) and a
   * ring has requests waiting: it is stuck in that request, and they should not wait for it.
   */
  private otherStuck(): boolean {
    const nw = Math.min(Atomics.load(this.ctl, Ctl.NWORKERS), this.records.length);
    let stuck = false;
    for (let w = 0; w < nw; w++) {
      if (w === this.wid) continue;
      const rec = this.records[w]!;
      const seq = Atomics.load(rec, Flight.SEQ);
      if (Atomics.load(rec, Flight.QUEUE) > 0 && seq === this.seenSeq[w]) stuck = true;
      this.seenSeq[w] = seq;
    }
    if (!stuck) return false;
    for (const a of this.queues) if (this.vq.queuePending(a.q) > 0) return true;
    return false;
  }

  /**
   * Sleeps until the control eventfd (and, if `kicks`, a kick eventfd) fires. Paused, it polls the
   * control eventfd alone and drains it. Running, it waits in its epoll set, which is edge-triggered:
   * nothing is read after a wakeup (native epollAdd). How long it slept tunes the polling budget.
   */
  private sleep(kicks: boolean): void {
    if (!kicks) {
      this.pollFds[0] = this.ctlFd;
      if (native.poll(this.pollFds, 1, -1, this.revents) > 0) native.eventfdRead(this.ctlFd);
      return;
    }
    const t0 = clock.now();
    Atomics.add(this.ctl, Ctl.IDLE, 1);
    // With other workers, look every STALL_MS whether one is stuck in a request. (Only while one is
    // awake would not do: a worker woken by a kick after this one fell asleep can block at once, and the
    // driver does not kick again while avail_event is left behind.) An idle daemon so makes 50 short
    // wakeups a second per worker: well under 0.1% of a core.
    const timeout = Atomics.load(this.ctl, Ctl.NWORKERS) > 1 ? STALL_MS : -1;
    for (;;) {
      const n = native.epollWait(this.epfd, this.ready, timeout);
      if (n > 0) {
        this.countKicks(n);
        break;
      }
      if (n < 0) break;
      if (this.otherStuck()) {
        this.counters[W.STALL_TAKEOVERS]!++;
        break;
      }
    }
    this.counters[W.WAKEUPS]!++;
    Atomics.sub(this.ctl, Ctl.IDLE, 1);
    const sleptUs = (clock.now() - t0) * 1000;
    if (sleptUs <= SPIN_MAX_US) this.spinUs = Math.min(SPIN_MAX_US, Math.max(SPIN_MIN_US, this.spinUs * 2));
    else this.shrinkSpin();
  }
}
