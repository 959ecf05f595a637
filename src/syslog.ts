/**
 * --syslog: log lines as datagrams to the local syslog socket (/dev/log), the way virtiofsd's
 * --syslog does, facility daemon, tagged `virtiofsd-ts[pid]`. Each thread opens its own socket.
 * When the socket cannot be reached (no syslog daemon, journald restarting) lines go to stderr
 * instead, and the sink tries the socket again at most once a second. Syslog lines keep syslog's own
 * format whatever --log-format says (`[thread key=value] message`: the context fields in the tag);
 * the lines that fall back to stderr follow --log-format.
 */
import { directStderr, hostPid, type LogFormat, type LogLevel, Logger, type LogSink } from './log.js';
import { native } from './native.js';

/** The socket; VIRTIOFSD_TS_SYSLOG_SOCKET overrides it (tests). */
export function syslogPath(): string {
  return process.env.VIRTIOFSD_TS_SYSLOG_SOCKET || '/dev/log';
}

const LOG_DAEMON = 3 << 3;
const SEVERITY: Record<LogLevel, number> = { off: 7, error: 3, warn: 4, info: 6, debug: 7, trace: 7 };
/** Longer messages are cut: a datagram of a few KiB reaches every syslog daemon whole. */
const MAX_MSG = 4000;

/** Set once the daemon is confined: its root is then the shared directory, where the syslog path would
 * name a file of the guest's. A connection made before stays; one lost is not made again (stderr then). */
let sealed = false;

export function sealSyslogPath(): void {
  sealed = true;
}

export function syslogSink(format: LogFormat = 'text', path = syslogPath()): LogSink {
  const pid = hostPid();
  let fd = -1;
  let nextTry = 0;
  let warned = false;
  const open = (): boolean => {
    const now = Date.now();
    if (now < nextTry || sealed) return false;
    const r = native.connectUnix(path, true, true);
    if (r >= 0) {
      fd = r;
      return true;
    }
    nextTry = now + 1000;
    if (!warned) {
      warned = true;
      new Logger('warn', 'syslog', directStderr, format).warn(`cannot reach ${path} (errno ${-r}): logging to stderr until it can`);
    }
    return false;
  };
  // connected at once: the daemon may confine itself before its first line (see sealSyslogPath)
  open();
  return (line, level, tag, msg) => {
    if (fd < 0 && !open()) {
      directStderr(line);
      return;
    }
    const text = `<${LOG_DAEMON | SEVERITY[level]}>virtiofsd-ts[${pid}]: [${tag}] ${msg.length > MAX_MSG ? `${msg.slice(0, MAX_MSG)}…` : msg}`;
    const b = Buffer.from(text);
    const n = native.sendMsg(fd, b, 0, b.length, null);
    if (n < 0) {
      // the daemon went away (ECONNREFUSED, ENOTCONN) or its queue is full (EAGAIN): this line goes to
      // stderr, and the socket is opened anew for the next one
      native.close(fd);
      fd = -1;
      directStderr(line);
    }
  };
}
