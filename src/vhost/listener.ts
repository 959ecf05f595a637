/**
 * The vhost-user socket: listens on --socket-path (or serves an inherited --fd), takes one frontend at
 * a time, and after a disconnect resets the device and waits for the next one (the reference daemon
 * exits instead; a guest reboot or a QEMU restart should not need a new daemon).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { UNIX_PATH_MAX } from '../abi/unix.js';
import { Errno } from '../errors.js';
import { errnoName, native } from '../native.js';
import { SocketFile } from '../socket-file.js';
import type { Logger } from '../log.js';
import type { VirtioFsDevice } from '../virtio/device.js';
import { Connection } from './connection.js';
import { FrontendReqHandler } from './handler.js';
import { VhostUserStats } from './stats.js';

const { EAGAIN, EINTR } = Errno;

/**
 * How long accepting pauses after accept(2) fails (EMFILE or ENFILE when descriptors run
 * out, ENOBUFS or ENOMEM), doubling per failed retry up to the maximum. The pending connection stays
 * in the backlog and keeps the listening socket readable, so retrying at once would spin.
 */
export const ACCEPT_BACKOFF_MIN_MS = 100;
export const ACCEPT_BACKOFF_MAX_MS = 1000;

/** The pause between attempts to reset the device after a disconnect (each attempt waits for the workers). */
const RESET_RETRY_MS = 1000;

export interface ListenerOptions {
  socketPath?: string;
  /** gid allowed to connect (socket mode 0660); otherwise the socket is 0600. */
  socketGid?: number;
  /** An already listening socket (--fd), e.g. from systemd or libvirt. */
  fd?: number;
  log: Logger;
  /** where connections and messages are counted (the metrics read it) */
  stats?: VhostUserStats;
}

export class VhostUserListener {
  private listenFd = -1;
  private socketFile: SocketFile | null = null;
  private watch: { stop(): void } | null = null;
  private conn: Connection | null = null;
  /** the current (or last) connection's logger: the listener's with its number */
  private connLog: Logger;
  private resetting: Promise<void> = Promise.resolve();
  private closing = false;
  private waiting = false;
  /** accept(2) failures of the current episode (0: accepting normally) */
  private acceptFailures = 0;
  private backoffMs = 0;
  private backoffTimer: NodeJS.Timeout | null = null;
  readonly stats: VhostUserStats;

  constructor(private readonly device: VirtioFsDevice, private readonly opts: ListenerOptions) {
    this.stats = opts.stats ?? new VhostUserStats();
    this.connLog = opts.log;
  }

  /** frontends adopted so far */
  get connections(): number {
    return this.stats.connections;
  }

  /** Binds (or adopts) the socket and starts accepting. Throws with a clear message on failure. */
  listen(): void {
    const { log } = this.opts;
    if (this.opts.fd !== undefined) {
      this.listenFd = this.opts.fd;
    } else {
      const socketPath = this.opts.socketPath!;
      // A stale socket file from an earlier run would make bind fail with EADDRINUSE. Only remove a
      // socket, never another kind of file.
      if (listenerAlive(socketPath)) {
        throw new Error(`${socketPath}: another process is listening on it (a second daemon for the same socket?)`);
      }
      if (!removeStaleSocket(socketPath)) throw new Error(`${socketPath} exists and is not a socket`);
      // Whoever can connect is a frontend: it hands us memory and asks for file operations as root.
      // bind(2) creates the socket file under the process umask, which the daemon keeps at 0 (guest
      // modes are used as given): create it 0600, then open it to the group if asked.
      // The file appears between bind(2) and listen(2), and a frontend that connects in that gap is
      // refused (ECONNREFUSED): bind a temporary name beside it and rename it into place once it is
      // listening with its final mode, so whoever watches for the path finds a working socket.
      // (pid and a random part: in the sandbox's pid namespace every daemon is pid 1)
      const tmp = path.join(path.dirname(path.resolve(socketPath)), `.vfsd-${process.pid}-${randomBytes(4).toString('hex')}.sock`);
      const staged = Buffer.byteLength(tmp) <= UNIX_PATH_MAX && removeStaleSocket(tmp);
      const bindPath = staged ? tmp : socketPath;
      const oldMask = process.umask(0o077);
      let fd: number;
      try {
        fd = native.listenUnix(bindPath, 16);
      } finally {
        process.umask(oldMask);
      }
      if (fd < 0) throw new Error(`cannot listen on ${socketPath}: ${errnoName(-fd)}`);
      this.listenFd = fd;
      try {
        if (this.opts.socketGid !== undefined) {
          fs.chownSync(bindPath, process.getuid?.() ?? 0, this.opts.socketGid);
          fs.chmodSync(bindPath, 0o660);
        } else {
          fs.chmodSync(bindPath, 0o600);
        }
        if (staged) fs.renameSync(tmp, socketPath);
        // held by its directory: removed at close even after the sandbox moved the root
        this.socketFile = SocketFile.hold(socketPath);
      } catch (e) {
        native.close(fd);
        this.listenFd = -1;
        if (staged) fs.rmSync(tmp, { force: true });
        throw e;
      }
    }
    this.startWatching();
    log.info(`waiting for a vhost-user frontend on ${this.opts.socketPath ?? `fd ${this.opts.fd}`}`);
  }

  private startWatching(): void {
    this.watch = native.watchFd(this.listenFd, () => this.onAcceptable());
  }

  private onAcceptable(): void {
    for (;;) {
      const fd = native.acceptUnix(this.listenFd);
      if (fd === -EAGAIN) return;
      if (fd === -EINTR) continue;
      if (fd < 0) {
        this.acceptFailed(-fd);
        return;
      }
      if (this.acceptFailures > 0) {
        this.opts.log.info(`accepting again after ${this.acceptFailures} failed accept(2) calls`);
        this.acceptFailures = 0;
        this.backoffMs = 0;
      }
      if ((this.conn !== null && !this.conn.isClosed) || this.waiting || this.closing) {
        // One frontend per device: a second connection would fight over the same rings.
        this.stats.refusedConnections++;
        this.opts.log.warn('rejected a second vhost-user connection while one is active');
        native.close(fd);
        continue;
      }
      // A frontend that reconnects right after a disconnect waits for the reset of the old session.
      this.waiting = true;
      void this.resetting.then(() => {
        this.waiting = false;
        this.adopt(fd);
      });
    }
  }

  /**
   * accept(2) failed (descriptors exhausted, most likely): stop watching the listening socket for a
   * while, then try again. One warning per episode, not one per failure; the count comes with the
   * recovery line.
   */
  private acceptFailed(errno: number): void {
    if (this.acceptFailures++ === 0) {
      const every = `${ACCEPT_BACKOFF_MIN_MS}-${ACCEPT_BACKOFF_MAX_MS} ms`;
      this.opts.log.warn(`accept failed: ${errnoName(errno)}; pausing accepts, retrying every ${every}`);
    }
    this.backoffMs = Math.min(ACCEPT_BACKOFF_MAX_MS, this.backoffMs === 0 ? ACCEPT_BACKOFF_MIN_MS : this.backoffMs * 2);
    this.watch?.stop();
    this.watch = null;
    this.backoffTimer = setTimeout(() => {
      this.backoffTimer = null;
      if (this.closing) return;
      this.startWatching();
    }, this.backoffMs);
  }

  private adopt(fd: number): void {
    if (this.closing) {
      native.close(fd);
      return;
    }
    this.stats.connections++;
    // Every line about this frontend, its messages' included, says which connection it concerns.
    const log = this.opts.log.with({ conn: this.connections });
    this.connLog = log;
    log.info(`vhost-user frontend connected (connection ${this.connections})`);
    let conn: Connection;
    const handler = new FrontendReqHandler(
      this.device,
      (req, payload) => conn.reply(req, payload),
      log,
      (reason) => conn.close(reason),
      this.stats,
    );
    conn = new Connection(fd, {
      onMessage: (m) => {
        void handler.enqueue(m);
      },
      onClose: (reason) => {
        this.stats.disconnects++;
        if (reason) log.warn(`vhost-user frontend disconnected: ${reason}`);
        else log.info('vhost-user frontend disconnected');
        this.resetting = this.resetAfterDisconnect(handler, log).then((done) => {
          if (this.conn === conn) this.conn = null;
          if (done && !this.closing) log.info('device reset; waiting for the next frontend');
        });
      },
    });
    this.conn = conn;
  }

  /**
   * Resets the device after a disconnect, trying again until it succeeds: the next frontend is adopted
   * only on a clean device (an old guest's memory table or rings left in place would be handed to the
   * next one). A reset fails when a worker holds a request past the pause timeout (blocked in the host
   * file system); the old session's requests then still use the device, and the next frontend waits at
   * the socket until they end. False if the daemon is shutting down first.
   */
  private async resetAfterDisconnect(handler: FrontendReqHandler, log: Logger): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        if (attempt === 1) await handler.disconnect();
        else await this.device.reset();
        if (attempt > 1) log.info(`reset after disconnect succeeded (attempt ${attempt})`);
        return true;
      } catch (e) {
        if (attempt === 1) log.error(`reset after disconnect failed: ${(e as Error)?.stack ?? e}`);
        else log.warn(`reset after disconnect failed again (attempt ${attempt}): ${(e as Error)?.message ?? e}`);
        if (this.closing) return false;
        if (attempt === 1) log.warn('the next frontend waits until the device is reset; retrying');
        // a failure that is not a timeout must not spin
        await new Promise((r) => setTimeout(r, RESET_RETRY_MS));
        if (this.closing) return false;
      }
    }
  }

  /**
   * The frontend truncated guest memory under the daemon: an access to a lost page was survived (it read
   * zeros: src/memory/faults.ts), `where` says which memory. Fatal for the connection, as a frontend
   * error that breaks the protocol is: logged once, the connection closed and the device reset (its
   * queues stop, its memory is unmapped), and the next frontend is served as usual.
   */
  memoryFault(where: string): void {
    const log = this.connLog;
    const conn = this.conn;
    if (conn === null || conn.isClosed) {
      // More faults of the episode, from requests that were still running, or from the reset itself.
      log.debug(`guest memory fault after its connection was closed: ${where}`);
      return;
    }
    log.error(`guest memory fault: the frontend truncated guest memory it shares with the daemon (${where}); the access read zeros; closing the connection`);
    conn.close('guest memory was truncated under the daemon');
  }

  /** Stops accepting, drops the frontend, resets the device. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.backoffTimer) clearTimeout(this.backoffTimer);
    this.backoffTimer = null;
    this.watch?.stop();
    this.watch = null;
    this.conn?.close(null);
    await this.resetting;
    if (this.opts.fd === undefined && this.listenFd >= 0) {
      native.close(this.listenFd);
      this.socketFile?.remove();
      this.socketFile = null;
    }
    this.listenFd = -1;
  }

  get connected(): boolean {
    return this.conn !== null && !this.conn.isClosed;
  }
}

/**
 * Is a process listening on the socket file at `p`? A socket file nobody listens on (ECONNREFUSED) is a
 * stale one from an earlier run. The probe connection is closed at once; a daemon on the other end
 * sees a frontend that came and went.
 */
function listenerAlive(p: string): boolean {
  try {
    if (!fs.lstatSync(p).isSocket()) return false;
  } catch {
    return false;
  }
  const fd = native.connectUnix(p, true);
  if (fd >= 0) {
    native.close(fd);
    return true;
  }
  return fd === -EAGAIN; // listening, backlog full
}

/** Removes a socket file left at `p`; false if something other than a socket is there. */
function removeStaleSocket(p: string): boolean {
  try {
    if (!fs.lstatSync(p).isSocket()) return false;
    fs.unlinkSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return true;
}
