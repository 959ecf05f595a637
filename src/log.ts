/**
 * A small leveled logger. Lines go to stderr (stdout stays free for --print-capabilities and the like),
 * one line each, with a timestamp, the level and the thread ("main" or "w<N>"), so that an operator can
 * follow one request from the control plane into a worker. A line is text (the default) or, with
 * --log-format=json, one JSON object (time, level, thread, the context fields, msg) for a collector;
 * a logger made by `with` adds context fields (a connection, a queue) to each of its lines.
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

/** How stderr lines are written (--log-format): `text` for people, `json` (one object per line) for collectors. */
export type LogFormat = 'text' | 'json';

/** Context fields a logger adds to each of its lines (Logger.with): a connection, a queue. */
export type LogFields = Readonly<Record<string, string | number>>;

/**
 * Where log lines go: `line` is the formatted stderr line (text or JSON, ending in a newline); sinks
 * that keep their own format (syslog) use the parts, `tag` being the thread with the context fields
 * as the text format shows them ("main conn=3").
 */
export type LogSink = (line: string, level: LogLevel, tag: string, msg: string) => void;

/** The text format's level column, by level: upper case, padded to one width. */
const TEXT_LEVEL: Record<LogLevel, string> = {
  off: 'OFF  ', error: 'ERROR', warn: 'WARN ', info: 'INFO ', debug: 'DEBUG', trace: 'TRACE',
};

/** Keys a context field may not take: the JSON format's own. */
const RESERVED = new Set(['time', 'level', 'thread', 'msg']);
const FIELD_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** A text value shown as is; others (spaces, quotes, brackets) are quoted so the tag stays parseable. */
const PLAIN_VALUE = /^[^\s"=[\]]+$/;

function checkFields(fields: LogFields): void {
  for (const k of Object.keys(fields)) {
    if (!FIELD_KEY.test(k) || RESERVED.has(k)) throw new Error(`log context field '${k}' is not allowed`);
  }
}

function textValue(v: string | number): string {
  const s = String(v);
  return PLAIN_VALUE.test(s) ? s : JSON.stringify(s);
}

export class Logger {
  private rank: number;
  /** the thread and the context fields, as text lines and the sink's `tag` show them */
  private readonly tag: string;
  /** a JSON line from after the level to the message's value: `,"thread":"w0","conn":3,"msg":` */
  private readonly jsonMid: string;
  constructor(
    public level: LogLevel = 'info',
    private readonly thread = 'main',
    private readonly sink: LogSink = directStderr,
    private readonly format: LogFormat = 'text',
    private readonly fields: LogFields = {},
  ) {
    this.rank = RANK[level];
    checkFields(fields);
    // Everything about a line but its time, level and message is fixed per logger: built once here.
    let tag = thread;
    let mid = `,"thread":${JSON.stringify(thread)}`;
    for (const [k, v] of Object.entries(fields)) {
      tag += ` ${k}=${textValue(v)}`;
      mid += `,${JSON.stringify(k)}:${JSON.stringify(v)}`;
    }
    this.tag = tag;
    this.jsonMid = `${mid},"msg":`;
  }

  setLevel(level: LogLevel): void {
    this.level = level;
    this.rank = RANK[level];
  }

  /** The same logger for another thread (its context fields kept). */
  child(thread: string): Logger {
    return new Logger(this.level, thread, this.sink, this.format, this.fields);
  }

  /**
   * A logger that adds `fields` to each line (beside those it has; a key given again takes the new
   * value): JSON keys in the json format, `key=value` after the thread in the text format
   * (`[main conn=3]`). Keys are identifiers other than time, level, thread and msg. Make one per
   * context (a connection, a queue), not per line.
   */
  with(fields: LogFields): Logger {
    return new Logger(this.level, this.thread, this.sink, this.format, { ...this.fields, ...fields });
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] <= this.rank && level !== 'off';
  }

  private write(level: LogLevel, msg: string): void {
    if (!this.enabled(level)) return;
    const time = new Date().toISOString();
    const line =
      this.format === 'json'
        ? // JSON.stringify escapes newlines: a stack stays one line, one object
          `{"time":"${time}","level":"${level}"${this.jsonMid}${JSON.stringify(msg)}}\n`
        : `${time} ${TEXT_LEVEL[level]} [${this.tag}] ${msg}\n`;
    this.sink(line, level, this.tag, msg);
  }

  error(msg: string): void { this.write('error', msg); }
  warn(msg: string): void { this.write('warn', msg); }
  info(msg: string): void { this.write('info', msg); }
  debug(msg: string): void { this.write('debug', msg); }
  trace(msg: string): void { this.write('trace', msg); }
}

/** Milliseconds from some fixed point; injectable so tests can step time. */
export type Clock = () => number;

interface Window {
  start: number;
  count: number;
  suppressed: number;
}

/**
 * Admits at most `burst` lines per `windowMs` for each key; the lines past that are counted, and the
 * count is handed back with the key's first admitted line of a later window, to be logged as one
 * "suppressed" line before it. A window starts at a key's first line after the previous one ended.
 * At most `maxKeys` keys are tracked (a guest may vary what it sends); past that, keys whose window
 * ended with nothing suppressed are forgotten, and new keys share one overflow window.
 */
export class RateLimiter {
  private readonly windows = new Map<string, Window>();
  /** the window of keys that found the map full */
  private readonly overflow: Window = { start: -Infinity, count: 0, suppressed: 0 };
  constructor(
    readonly burst = 10,
    readonly windowMs = 10_000,
    private readonly now: Clock = Date.now,
    private readonly maxKeys = 64,
  ) {}

  /**
   * A line for `key` is due: -1 drops it; otherwise write it, after a line reporting the returned
   * number of lines suppressed for the key (when not 0).
   */
  admit(key: string): number {
    const now = this.now();
    const w = this.windows.get(key);
    if (w === undefined) {
      if (this.windows.size >= this.maxKeys) this.prune(now);
      if (this.windows.size >= this.maxKeys) return this.pass(this.overflow, now);
      this.windows.set(key, { start: now, count: 1, suppressed: 0 });
      // a key with a window again: hand over what the overflow window suppressed, once it has ended
      const o = this.overflow;
      if (o.suppressed === 0 || now - o.start < this.windowMs) return 0;
      const n = o.suppressed;
      o.suppressed = 0;
      return n;
    }
    return this.pass(w, now);
  }

  private pass(w: Window, now: number): number {
    let carried = 0;
    if (now - w.start >= this.windowMs) {
      carried = w.suppressed;
      w.start = now;
      w.count = 0;
      w.suppressed = 0;
    }
    if (w.count < this.burst) {
      w.count++;
      return carried;
    }
    w.suppressed++;
    return -1;
  }

  private prune(now: number): void {
    for (const [k, w] of this.windows) {
      if (w.suppressed === 0 && now - w.start >= this.windowMs) this.windows.delete(k);
    }
  }
}

function suppressedLine(n: number, windowMs: number): string {
  return `... suppressed ${n} similar message${n === 1 ? '' : 's'} (more than the limit in ${windowMs / 1000} s)`;
}

/**
 * What makes two messages "similar": their first line (a stack's message, not its frames) with the
 * numbers taken out, so that "op 15 unique 7" and "op 15 unique 8" share a window.
 */
export function similarityKey(level: LogLevel, msg: string): string {
  const nl = msg.indexOf('\n');
  const first = nl < 0 ? msg : msg.slice(0, nl);
  return `${level} ${first.replace(/0x[0-9a-f]+|\d+/gi, '#').slice(0, 120)}`;
}

/**
 * A Logger whose lines are rate limited per similarity key (similarityKey), for lines a guest can
 * trigger per request: each kind gets its own window, so a flood of one kind hides no other kind.
 */
export class RateLimitedLogger extends Logger {
  constructor(
    private readonly inner: Logger,
    private readonly limiter: RateLimiter = new RateLimiter(),
  ) {
    super(inner.level);
  }

  override setLevel(level: LogLevel): void {
    super.setLevel(level);
    this.inner.setLevel(level);
  }

  override child(thread: string): Logger {
    return new RateLimitedLogger(this.inner.child(thread), this.limiter);
  }

  /** The inner logger with the fields, behind the same limiter (a flood is one flood whatever its context). */
  override with(fields: LogFields): Logger {
    return new RateLimitedLogger(this.inner.with(fields), this.limiter);
  }

  override enabled(level: LogLevel): boolean {
    return this.inner.enabled(level);
  }

  override error(msg: string): void { this.emit('error', msg); }
  override warn(msg: string): void { this.emit('warn', msg); }
  override info(msg: string): void { this.emit('info', msg); }
  override debug(msg: string): void { this.emit('debug', msg); }
  override trace(msg: string): void { this.emit('trace', msg); }

  private emit(level: Exclude<LogLevel, 'off'>, msg: string): void {
    if (!this.inner.enabled(level)) return;
    const carried = this.limiter.admit(similarityKey(level, msg));
    if (carried < 0) return;
    if (carried > 0) this.inner[level](suppressedLine(carried, this.limiter.windowMs));
    this.inner[level](msg);
  }
}

/**
 * Logs at most `burst` lines per `windowMs`, all messages sharing one window, so a hostile guest
 * cannot flood the log.
 */
export class RateLimitedLog {
  constructor(
    private readonly log: Logger,
    burst = 10,
    windowMs = 10_000,
    now: Clock = Date.now,
    /** the window; one derived with `with` shares its origin's */
    private readonly limiter = new RateLimiter(burst, windowMs, now, 1),
  ) {}

  /** The same, its lines adding `fields` (Logger.with), in the same window. */
  with(fields: LogFields): RateLimitedLog {
    return new RateLimitedLog(this.log.with(fields), this.limiter.burst, this.limiter.windowMs, Date.now, this.limiter);
  }

  warn(msg: string): void {
    this.emit('warn', msg);
  }

  error(msg: string): void {
    this.emit('error', msg);
  }

  private emit(level: 'warn' | 'error', msg: string): void {
    if (!this.log.enabled(level)) return;
    const carried = this.limiter.admit('');
    if (carried < 0) return;
    if (carried > 0) this.log[level](suppressedLine(carried, this.limiter.windowMs));
    this.log[level](msg);
  }
}

/**
 * This process's pid as the host sees it, for log lines and syslog tags: inside the sandbox's pid
 * namespace process.pid is 1, and the launcher hands the daemon its outer pid (src/sandbox/).
 */
export function hostPid(): number {
  const v = Number(process.env.VIRTIOFSD_TS_HOST_PID);
  return process.pid === 1 && Number.isInteger(v) && v > 1 ? v : process.pid;
}
