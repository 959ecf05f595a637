/**
 * The worker pool, seen from the control plane. piscina starts, sizes and supervises the threads; each
 * worker runs one long-lived task (the queue loop in queue-runner.ts) so no request ever crosses a
 * message port (dispatch through piscina costs ~30 µs a task: docs/internals.md "Architecture"). The control plane steers
 * the loops through the control block (control.ts) and one eventfd per worker.
 */
import { Piscina } from 'piscina';
import { DeviceError, Errno } from '../errors.js';
import { native } from '../native.js';
import type { Logger } from '../log.js';
import { CTL_MAX_WORKERS, Ctl, WorkerState, controlView } from './control.js';
import { clearRecords } from './inflight.js';
import { recoverWorker } from './orphans.js';
import type { VqExports } from './wasm.js';

export interface PoolOptions {
  size: number;
  /** Absolute path of the compiled worker entry (a module whose default export takes {wid}). */
  filename: string;
  workerData: Record<string, unknown>;
  log: Logger;
  /** How long pause() waits for a worker to finish the request it holds (default 120 s). */
  pauseTimeoutMs?: number;
  /**
   * Threads started beyond `size`, idle, to take over from one that dies. Inside the sandbox a new
   * thread cannot load its code (the root is the shared directory): only a thread started before can
   * replace a dead worker (docs/sandbox.md).
   */
  spares?: number;
  /** false inside the sandbox: a dead worker is replaced only by a spare */
  newThreads?: boolean;
  /** called when the last worker has died and none can replace it (the daemon then exits) */
  onNoWorkers?: () => void;
}

export class WorkerPool {
  private readonly ctl: Int32Array;
  private readonly piscina: Piscina;
  private readonly ctlFds: number[] = [];
  private readonly alive: boolean[] = [];
  private readonly tasks: Promise<void>[] = [];
  private readonly restartDelay: number[] = [];
  private stopping = false;
  /** stop() is terminating the threads: one may end anywhere, even inside the module (no recovery) */
  private terminating = false;
  private paused = 0;
  /** spare threads not yet given a worker to replace */
  private sparesLeft: number;

  constructor(
    private readonly vq: VqExports,
    private readonly memory: WebAssembly.Memory,
    private readonly opts: PoolOptions,
  ) {
    if (opts.size < 1 || opts.size > Math.min(CTL_MAX_WORKERS, vq.layout.MAX_WORKERS)) {
      throw new RangeError(`thread pool size must be 1..${Math.min(CTL_MAX_WORKERS, vq.layout.MAX_WORKERS)}`);
    }
    this.sparesLeft = opts.spares ?? 0;
    this.ctl = controlView(memory.buffer, vq.layout.CONTROL_BASE);
    Atomics.store(this.ctl, Ctl.STATE, WorkerState.PAUSE);
    Atomics.store(this.ctl, Ctl.NWORKERS, opts.size);
    clearRecords(memory.buffer, vq.layout.CONTROL_BASE, opts.size);
    for (let w = 0; w < opts.size; w++) {
      const fd = native.eventfd(0);
      if (fd < 0) throw new Error(`eventfd: errno ${-fd}`);
      this.ctlFds.push(fd);
      Atomics.store(this.ctl, Ctl.CTLFD + w, fd);
      Atomics.store(this.ctl, Ctl.ACK + w, -1);
    }
    this.piscina = new Piscina({
      filename: opts.filename,
      minThreads: opts.size + (opts.spares ?? 0),
      maxThreads: opts.size + (opts.spares ?? 0),
      idleTimeout: Number.POSITIVE_INFINITY,
      maxQueue: 0,
      workerData: { memory, ...opts.workerData },
    });
    // A thread piscina starts to replace a dead one fails to load inside the sandbox: say so (once per
    // failure), not as an uncaught error.
    this.piscina.on('error', (e: unknown) => {
      opts.log.warn(`a new worker thread could not start: ${(e as Error)?.message ?? e}${(opts.spares ?? 0) > 0 ? ' (inside the sandbox only the threads started before can serve)' : ''}`);
    });
  }

  get size(): number {
    return this.opts.size;
  }

  /** Starts every worker's loop and waits until each has come up (acked the current generation). */
  async start(): Promise<void> {
    for (let w = 0; w < this.opts.size; w++) this.launch(w);
    // A spare loads its code now, with a task that returns at once (wid -1): the workers hold the
    // other threads, so it lands on the spare.
    const spares: Promise<unknown>[] = [];
    for (let i = 0; i < (this.opts.spares ?? 0); i++) spares.push(this.piscina.run({ wid: -1 }));
    await Promise.all(spares);
    await this.waitAcks(Atomics.load(this.ctl, Ctl.GEN), 30_000, 'start');
    this.bump(WorkerState.RUN);
  }

  private launch(w: number): void {
    this.alive[w] = true;
    const started = Date.now();
    const p = (this.piscina.run({ wid: w }) as Promise<void>).then(
      () => {
        this.alive[w] = false;
      },
      (err: unknown) => {
        // Before alive[w] turns false: until then no pause can complete, so nothing has changed the
        // rings since the worker popped the chain it may hold (src/virtio/orphans.ts).
        const lost = this.recover(w);
        this.alive[w] = false;
        if (this.stopping) return;
        // A request handler never throws; this is a bug or a resource failure. Keep serving, but
        // back off (up to 10 s) if the worker keeps dying at once, so the log is not flooded.
        if (this.opts.newThreads === false) {
          if (this.sparesLeft === 0) {
            const left = this.alive.filter((a) => a).length;
            this.opts.log.error(
              `worker ${w} died: ${(err as Error)?.stack ?? err}; ${lost}no spare thread is left to replace it ` +
                `(inside the sandbox no new thread can load its code); ${left} worker(s) serve on`,
            );
            if (left === 0) this.opts.onNoWorkers?.();
            return;
          }
          this.sparesLeft--;
        }
        const quick = Date.now() - started < 5000;
        this.restartDelay[w] = quick ? Math.min(10_000, (this.restartDelay[w] ?? 50) * 2) : 100;
        this.opts.log.error(`worker ${w} died: ${(err as Error)?.stack ?? err}; ${lost}restarting it in ${this.restartDelay[w]} ms${this.opts.newThreads === false ? ' on a spare thread' : ''}`);
        setTimeout(() => {
          if (!this.stopping) this.launch(w);
        }, this.restartDelay[w]).unref();
      },
    );
    this.tasks[w] = p;
  }

  /** Gives back what dead worker w held; a phrase for the log ('' when it held nothing). */
  private recover(w: number): string {
    if (this.terminating) return '';
    try {
      const r = recoverWorker(this.vq, this.memory, w, this.opts.log);
      const parts: string[] = [];
      if (r.orphan && r.orphan.len < 0) {
        parts.push(`it died publishing the reply to queue ${r.orphan.q} head ${r.orphan.head}, which is left as is`);
      } else if (r.orphan) {
        const how = r.orphan.len > 0 ? 'with EIO' : 'unused (no room for a reply)';
        parts.push(`answered its request (queue ${r.orphan.q}, head ${r.orphan.head}) ${how}`);
      }
      if (r.pins > 0) parts.push(`released ${r.pins} pin${r.pins > 1 ? 's' : ''}`);
      return parts.length > 0 ? `${parts.join(', ')}; ` : '';
    } catch (e) {
      this.opts.log.error(`recovering after worker ${w} failed: ${(e as Error)?.stack ?? e}`);
      return '';
    }
  }

  private bump(state: WorkerState): number {
    Atomics.store(this.ctl, Ctl.STATE, state);
    const gen = Atomics.add(this.ctl, Ctl.GEN, 1) + 1;
    for (const fd of this.ctlFds) native.eventfdWrite(fd, 1);
    return gen;
  }

  private async waitAcks(gen: number, timeoutMs: number, what: string): Promise<void> {
    const t0 = Date.now();
    let warned = false;
    for (;;) {
      let pending = -1;
      for (let w = 0; w < this.opts.size; w++) {
        if (this.alive[w] && Atomics.load(this.ctl, Ctl.ACK + w) !== gen) {
          pending = w;
          break;
        }
      }
      if (pending < 0) return;
      const elapsed = Date.now() - t0;
      if (!warned && elapsed > 2000) {
        warned = true;
        this.opts.log.warn(`${what}: waiting for worker ${pending} to finish its request`);
      }
      if (elapsed > timeoutMs) throw new Error(`${what}: worker ${pending} did not respond in ${timeoutMs} ms`);
      const r = Atomics.waitAsync(this.ctl, Ctl.ACK + pending, Atomics.load(this.ctl, Ctl.ACK + pending), 50);
      if (r.async) await r.value;
    }
  }

  /**
   * Stops every worker at a request boundary and resolves when none holds a chain. Nested calls are
   * counted: the workers run again after the matching number of resume() calls. A pause that times
   * out undoes itself and rejects (DeviceError, ETIMEDOUT): no resume() is owed for it.
   */
  async pause(): Promise<void> {
    this.paused++;
    const gen = this.bump(WorkerState.PAUSE);
    try {
      await this.waitAcks(gen, this.opts.pauseTimeoutMs ?? 120_000, 'pause');
    } catch (e) {
      // A worker is still in its request: the caller must not change what it may be using. Undo this
      // pause (the workers that stopped run again; the busy one sees RUN when it is done) and say so.
      this.resume();
      throw new DeviceError(`${(e as Error).message}; nothing was changed`, Errno.ETIMEDOUT);
    }
  }

  /** Re-reads the control block (queue set, fds) and runs again. */
  resume(): void {
    if (this.paused > 0) this.paused--;
    if (this.paused === 0 && !this.stopping) this.bump(WorkerState.RUN);
  }

  async withPaused<T>(fn: () => T | Promise<T>): Promise<T> {
    await this.pause();
    try {
      return await fn();
    } finally {
      this.resume();
    }
  }

  /** Lets in-flight requests finish, ends every loop and the threads. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.bump(WorkerState.STOP);
    await Promise.race([Promise.allSettled(this.tasks), new Promise((r) => setTimeout(r, 10_000).unref())]);
    // A worker still in its request now is terminated wherever it is, possibly holding a table or
    // queue lock inside the module: recovering for it could block the main thread, and nothing is
    // served after this anyway.
    this.terminating = true;
    await this.piscina.destroy();
    for (const fd of this.ctlFds) native.close(fd);
  }
}
