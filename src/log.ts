/**
 * A small leveled logger. Lines go to stderr (stdout stays free for --print-capabilities and the like),
 * one line each, with a timestamp, the level and the thread ("main" or "w<N>"), so that an operator can
 * follow one request from the control plane into a worker.
 */
import { writeSync } from 'node:fs';

/**
 * A sink that writes straight to fd 2, the default for every thread. Worker threads need it: their
 * process.stderr is forwarded through the worker's event loop, which a queue loop blocked in poll(2)
 * does not run, so lines would arrive late or never. The main thread uses it too: a failed write
 * (EPIPE when the log reader went away, a full non-blocking pipe) drops the line here instead of
 * surfacing as an 'error' event on process.stderr. One short write per line is atomic on a pipe.
 */
export function directStderr(line: string): void {
  const b = Buffer.from(line);
  for (let tries = 0, off = 0; off < b.length && tries < 100; tries++) {
    try {
      off += writeSync(2, b, off);
    } catch (e) {
      // stderr may be a non-blocking pipe (libuv sets O_NONBLOCK on it): retry briefly, then drop
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') return;
    }
  }
}

export const LOG_LEVELS = ['off', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const RANK: Record<LogLevel, number> = { off: 0, error: 1, warn: 2, info: 3, debug: 4, trace: 5 };

export function isLogLevel(s: string): s is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

/**
 * Where log lines go: `line` is the formatted stderr line (timestamp, level, thread, message, newline);
 * sinks that keep their own format (syslog) use the parts.
 */
export type LogSink = (line: string, level: LogLevel, thread: string, msg: string) => void;

export class Logger {
  private rank: number;
  constructor(
    public level: LogLevel = 'info',
    private readonly thread = 'main',
    private readonly sink: LogSink = directStderr,
  ) {
    this.rank = RANK[level];
  }

  setLevel(level: LogLevel): void {
    this.level = level;
    this.rank = RANK[level];
  }

  child(thread: string): Logger {
    return new Logger(this.level, thread, this.sink);
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] <= this.rank && level !== 'off';
  }

  private write(level: LogLevel, msg: string): void {
    if (!this.enabled(level)) return;
    this.sink(`${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} [${this.thread}] ${msg}\n`, level, this.thread, msg);
  }

  error(msg: string): void { this.write('error', msg); }
  warn(msg: string): void { this.write('warn', msg); }
  info(msg: string): void { this.write('info', msg); }
  debug(msg: string): void { this.write('debug', msg); }
  trace(msg: string): void { this.write('trace', msg); }
}

/** Logs at most `burst` lines per `windowMs` for one key, so a hostile guest cannot flood the log. */
export class RateLimitedLog {
  private count = 0;
  private windowStart = 0;
  private suppressed = 0;
  constructor(private readonly log: Logger, private readonly burst = 10, private readonly windowMs = 10_000) {}

  warn(msg: string): void {
    this.emit('warn', msg);
  }

  error(msg: string): void {
    this.emit('error', msg);
  }

  private emit(level: 'warn' | 'error', msg: string): void {
    const now = Date.now();
    if (now - this.windowStart > this.windowMs) {
      if (this.suppressed > 0) this.log[level](`(${this.suppressed} similar messages suppressed)`);
      this.windowStart = now;
      this.count = 0;
      this.suppressed = 0;
    }
    if (this.count++ < this.burst) this.log[level](msg);
    else this.suppressed++;
  }
}
