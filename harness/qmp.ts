/**
 * A small QMP client (QEMU Machine Protocol, QEMU's docs/interop/qmp-spec): tests drive a running guest's
 * machine through it, e.g. hot-plug memory (`object-add` + `device_add`) or stop and continue the VM.
 *
 * The wire format is one JSON object per line. On connect the server sends a greeting (`{"QMP": ...}`);
 * the client must send `qmp_capabilities` before anything else. Every command carries an `id` the server
 * echoes in its `return` or `error` reply; asynchronous `event` objects can arrive between replies and
 * are kept in `events` for waitForEvent. Every wait has a timeout, so a wedged QEMU fails a test instead
 * of hanging it.
 */
import * as net from 'node:net';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** A command the server answered with `error` (class and description as QEMU gave them). */
export class QmpCommandError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command}: ${errorClass}: ${desc}`);
  }
}

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class QmpClient {
  /** Every event received so far, in order. */
  readonly events: QmpEvent[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly eventWaiters = new Set<() => void>();
  private nextId = 1;
  private buf = '';
  private closedWith: Error | null = null;
  private greeting: ((m: Record<string, unknown>) => void) | null = null;

  private constructor(private readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.onData(d));
    sock.on('error', (e) => this.fail(e));
    sock.on('close', () => this.fail(new Error('QMP connection closed')));
  }

  /**
   * Connects to QEMU's `-qmp unix:PATH,server=on,wait=off` socket, retrying while it does not exist yet
   * (QEMU creates it while starting), reads the greeting and enters command mode.
   */
  static async connect(socketPath: string, timeoutMs = 30_000): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    let sock: net.Socket | undefined;
    while (!sock) {
      try {
        sock = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection(socketPath, () => {
            s.off('error', reject);
            resolve(s);
          });
          s.once('error', reject);
        });
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`QMP: cannot connect to ${socketPath}: ${(e as Error).message}`);
        await sleep(100);
      }
    }
    const c = new QmpClient(sock);
    try {
      await c.withTimeout(
        new Promise<unknown>((resolve) => (c.greeting = resolve)),
        Math.max(1000, deadline - Date.now()),
        'the QMP greeting',
      );
      await c.execute('qmp_capabilities', undefined, Math.max(1000, deadline - Date.now()));
    } catch (e) {
      c.close();
      throw e;
    }
    return c;
  }

  /** Runs one command; resolves with its `return` value, rejects with QmpCommandError or on timeout. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`QMP ${command}: no reply in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.sock.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  /**
   * The first event named `name` (and matching `match`) at index `from` or later of `events` (so an
   * event that came before the call is found too); rejects after `timeoutMs`.
   */
  async waitForEvent(name: string, timeoutMs = 30_000, match?: (e: QmpEvent) => boolean, from = 0): Promise<QmpEvent> {
    const find = () => this.events.slice(from).find((e) => e.event === name && (!match || match(e)));
    const found = find();
    if (found) return found;
    let wake: () => void = () => {};
    const p = new Promise<QmpEvent>((resolve, reject) => {
      wake = () => {
        const e = find();
        if (e) resolve(e);
        else if (this.closedWith) reject(this.closedWith);
      };
      this.eventWaiters.add(wake);
    });
    try {
      return await this.withTimeout(p, timeoutMs, `QMP event ${name}`);
    } finally {
      this.eventWaiters.delete(wake);
    }
  }

  close(): void {
    this.sock.destroy();
  }

  private withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    });
    return Promise.race([p, t]).finally(() => clearTimeout(timer));
  }

  private onData(d: string): void {
    this.buf += d;
    for (let i = this.buf.indexOf('\n'); i >= 0; i = this.buf.indexOf('\n')) {
      const line = this.buf.slice(0, i).trim();
      this.buf = this.buf.slice(i + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.fail(new Error(`QMP: not JSON: ${line.slice(0, 200)}`));
      return;
    }
    if ('QMP' in m) {
      this.greeting?.(m);
      this.greeting = null;
    } else if (typeof m.event === 'string') {
      this.events.push(m as unknown as QmpEvent);
      for (const w of this.eventWaiters) w();
    } else if (typeof m.id === 'number') {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      const err = m.error as { class?: string; desc?: string } | undefined;
      if (err) p.reject(new QmpCommandError(p.command, String(err.class), String(err.desc)));
      else p.resolve(m.return);
    }
  }

  private fail(e: Error): void {
    if (this.closedWith) return;
    this.closedWith = e;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error(`QMP ${p.command}: ${e.message}`));
    }
    this.pending.clear();
    for (const w of this.eventWaiters) w();
  }
}
