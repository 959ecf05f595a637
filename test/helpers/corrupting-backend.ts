/**
 * A test double for frontends that must check what a backend replies (the load-test mode): a
 * man-in-the-middle vhost-user proxy that starts any vhost-user-fs backend, forwards every message of
 * one connection both ways with its fds, and damages FUSE replies in guest RAM before the frontend is
 * told about them (docs/testing.md, "The corrupting backend"). The production daemon has no test hook.
 *
 *   node dist/test/helpers/corrupting-backend.js --socket-path=S --flip=data|unique|len [--every=N] \
 *     -- UPSTREAM_CMD...
 *
 * `{socket}` (or `{upstream}`, for use inside a command where `{socket}` is already taken) in
 * UPSTREAM_CMD becomes a socket path of the proxy's own. The upstream is started and listening before S
 * is: once S exists, a frontend may connect. The proxy serves that one connection and exits when the
 * frontend disconnects (stopping the upstream: SIGTERM, then SIGKILL) or when the upstream goes (closing
 * the frontend's connection). --every=0 damages nothing: the proxy is then only a relay.
 *
 * The proxy hands the upstream an eventfd of its own for each queue's call (SET_VRING_CALL); when it
 * fires, proxy-rings.ts inspects the new used elements, and then the frontend's call eventfd is
 * written. A frontend that reads the used ring before its call may see a reply before it is damaged.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type FdWatcher, native } from '../../src/native.js';
import {
  FrontendReq,
  HEADER_SIZE,
  MAX_PAYLOAD_SIZE,
  type Message,
  VHOST_USER_VERSION,
  VHOST_USER_VERSION_MASK,
  VHOST_USER_VRING_IDX_MASK,
  VHOST_USER_VRING_NOFD_MASK,
  parseHeader,
  readMemTable,
  readSingleRegion,
  readU64,
  readVringAddr,
  readVringState,
  reqName,
} from '../../src/vhost/message.js';
import { ProxyMemory } from './proxy-memory.js';
import { FLIPS, type Flip, RingInspector } from './proxy-rings.js';

const USAGE = 'usage: corrupting-backend --socket-path=S --flip=data|unique|len [--every=N] -- UPSTREAM_CMD... (with {socket} or {upstream})';
const EAGAIN = 11;
const STOP_GRACE_MS = 5000;
/** How long the upstream may take to listen (a node daemon on a loaded host can take many seconds). */
const SOCKET_TIMEOUT_MS = 60_000;

interface Options {
  socketPath: string;
  flip: Flip;
  every: number;
  upstream: string[];
}

function log(msg: string): void {
  process.stderr.write(`corrupting-backend: ${msg}\n`);
}

function parseArgs(argv: string[]): Options {
  const dash = argv.indexOf('--');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const upstream = dash < 0 ? [] : argv.slice(dash + 1);
  let socketPath: string | undefined;
  let flip: Flip | undefined;
  let every = 1;
  for (const a of own) {
    const [k, v] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, ''];
    if (k === '--socket-path' && v) socketPath = v;
    else if (k === '--flip' && (FLIPS as readonly string[]).includes(v)) flip = v as Flip;
    else if (k === '--every' && /^\d+$/.test(v)) every = Number(v);
    else throw new Error(`bad argument ${a}`);
  }
  if (!socketPath) throw new Error('--socket-path=S is required');
  if (!flip) throw new Error('--flip=data|unique|len is required');
  if (upstream.length === 0) throw new Error('no upstream command after --');
  if (!upstream.some((a) => a.includes('{socket}') || a.includes('{upstream}'))) throw new Error('the upstream command has no {socket}');
  return { socketPath, flip, every, upstream };
}

/** One end of a vhost-user connection: whole messages in (with the fds that came with them), out. */
class Endpoint {
  private readonly hdr = Buffer.alloc(HEADER_SIZE);
  private got = 0;
  private payload: Buffer | undefined;
  private fds: number[] = [];
  private readonly fdBuf = new Int32Array(16);
  private readonly pollFd: Int32Array;
  private readonly revents = new Int32Array(1);

  constructor(
    readonly fd: number,
    readonly name: string,
  ) {
    this.pollFd = Int32Array.of(fd);
  }

  /** The messages complete now, or 'eof'. Throws on a malformed header or a socket error. */
  pump(): Message[] | 'eof' {
    const out: Message[] = [];
    // Read only up to the end of the current message, so the fds received belong to it.
    while (native.poll(this.pollFd, 1, 0, this.revents) > 0) {
      const into = this.payload ?? this.hdr;
      const at = this.payload ? this.got - HEADER_SIZE : this.got;
      this.fdBuf.fill(-1);
      const r = native.recvMsg(this.fd, into, at, into.length - at, this.fdBuf);
      for (const fd of this.fdBuf) if (fd >= 0) this.fds.push(fd);
      if (r === 0) return 'eof';
      if (r === -EAGAIN) break;
      if (r < 0) throw new Error(`${this.name}: recvmsg: errno ${-r}`);
      this.got += r;
      if (!this.payload && this.got === HEADER_SIZE) {
        const h = parseHeader(this.hdr);
        if ((h.flags & VHOST_USER_VERSION_MASK) !== VHOST_USER_VERSION || h.size > MAX_PAYLOAD_SIZE) {
          throw new Error(`${this.name}: malformed header (${reqName(h.request)}, flags 0x${h.flags.toString(16)}, size ${h.size})`);
        }
        this.payload = Buffer.alloc(h.size);
      }
      if (this.payload && this.got === HEADER_SIZE + this.payload.length) {
        out.push({ ...parseHeader(this.hdr), payload: this.payload, fds: this.fds });
        this.payload = undefined;
        this.got = 0;
        this.fds = [];
      }
    }
    return out;
  }

  /** Sends a message as it came (header and payload) with `fds`; waits out a full socket buffer. */
  send(m: Message, fds: number[]): void {
    const buf = Buffer.alloc(HEADER_SIZE + m.payload.length);
    buf.writeUInt32LE(m.request, 0);
    buf.writeUInt32LE(m.flags, 4);
    buf.writeUInt32LE(m.payload.length, 8);
    m.payload.copy(buf, HEADER_SIZE);
    const fdArr = fds.length > 0 ? Int32Array.from(fds) : null;
    const deadline = Date.now() + 10_000;
    let off = 0;
    while (off < buf.length) {
      const n = native.sendMsg(this.fd, buf, off, buf.length - off, off === 0 ? fdArr : null);
      if (n === -EAGAIN && Date.now() < deadline) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
        continue;
      }
      if (n < 0) throw new Error(`${this.name}: sendmsg: errno ${-n}`);
      off += n;
    }
  }
}

class VhostProxy {
  private readonly mem = new ProxyMemory(log);
  private readonly rings: RingInspector;
  /** per queue: the eventfd the upstream signals, its watcher, and the frontend's call eventfd */
  private readonly ownCall = new Map<number, { fd: number; watch: FdWatcher }>();
  private readonly frontCall = new Map<number, number>();
  private readonly watches: FdWatcher[] = [];
  private front: Endpoint | undefined;
  private up: Endpoint | undefined;
  private stopping = false;

  constructor(
    private readonly o: Options,
    private readonly child: ChildProcess,
    private readonly upstreamSock: string,
    private readonly dir: string,
  ) {
    this.rings = new RingInspector(this.mem, o.flip, o.every, log);
  }

  /** Listens on S and serves the first connection. */
  listen(): void {
    fs.rmSync(this.o.socketPath, { force: true });
    const lfd = native.listenUnix(this.o.socketPath, 1);
    if (lfd < 0) throw new Error(`listen on ${this.o.socketPath}: errno ${-lfd}`);
    const w = native.watchFd(lfd, () => {
      const cfd = native.acceptUnix(lfd);
      if (cfd < 0) return;
      w.stop();
      native.close(lfd);
      this.serve(cfd);
    });
    this.watches.push(w);
  }

  private serve(cfd: number): void {
    const ufd = native.connectUnix(this.upstreamSock);
    if (ufd < 0) {
      native.close(cfd);
      void this.shutdown(1, `connect to the upstream: errno ${-ufd}`);
      return;
    }
    const front = new Endpoint(cfd, 'frontend');
    const up = new Endpoint(ufd, 'upstream');
    this.front = front;
    this.up = up;
    this.watches.push(native.watchFd(cfd, () => this.relay(front, up, true)));
    this.watches.push(native.watchFd(ufd, () => this.relay(up, front, false)));
  }

  private relay(from: Endpoint, to: Endpoint, fromFrontend: boolean): void {
    if (this.stopping) return;
    try {
      const msgs = from.pump();
      if (msgs === 'eof') {
        void this.shutdown(fromFrontend ? 0 : 1, `the ${from.name} closed the connection`);
        return;
      }
      for (const m of msgs) {
        const kept = new Set<number>();
        const fds = fromFrontend ? this.intercept(m, kept) : m.fds;
        to.send(m, fds);
        for (const fd of m.fds) if (!kept.has(fd)) native.close(fd);
      }
    } catch (e) {
      void this.shutdown(1, (e as Error).message);
    }
  }

  /**
   * Notes what the proxy needs from a frontend message and returns the fds to pass on; fds the proxy
   * keeps go into `kept`. A payload that does not decode throws (the connection ends).
   */
  private intercept(m: Message, kept: Set<number>): number[] {
    switch (m.request) {
      case FrontendReq.SET_FEATURES:
        this.rings.features = readU64(m);
        break;
      case FrontendReq.SET_MEM_TABLE:
        this.mem.setTable(readMemTable(m), m.fds);
        for (const fd of m.fds) kept.add(fd);
        break;
      case FrontendReq.ADD_MEM_REG: {
        const r = readSingleRegion(m);
        if (m.fds.length !== 1) throw new Error(`ADD_MEM_REG with ${m.fds.length} fds`);
        this.mem.add(r, m.fds[0]!);
        kept.add(m.fds[0]!);
        break;
      }
      case FrontendReq.REM_MEM_REG:
        this.mem.remove(readSingleRegion(m));
        break;
      case FrontendReq.SET_VRING_NUM: {
        const s = readVringState(m);
        this.rings.setNum(s.index, s.num);
        break;
      }
      case FrontendReq.SET_VRING_ADDR: {
        const a = readVringAddr(m);
        this.rings.setAddr(a.index, a.descUserAddr, a.usedUserAddr);
        break;
      }
      case FrontendReq.SET_VRING_KICK:
        this.rings.sync(Number(readU64(m) & VHOST_USER_VRING_IDX_MASK));
        break;
      case FrontendReq.SET_VRING_CALL:
        return this.swapCall(m, kept);
    }
    return m.fds;
  }

  /** SET_VRING_CALL: the upstream gets the proxy's eventfd for the queue; the frontend's is kept. */
  private swapCall(m: Message, kept: Set<number>): number[] {
    const v = readU64(m);
    const q = Number(v & VHOST_USER_VRING_IDX_MASK);
    const old = this.frontCall.get(q);
    if (old !== undefined) native.close(old);
    this.frontCall.delete(q);
    if ((v & VHOST_USER_VRING_NOFD_MASK) !== 0n || m.fds.length !== 1) return m.fds;
    this.frontCall.set(q, m.fds[0]!);
    kept.add(m.fds[0]!);
    let own = this.ownCall.get(q);
    if (!own) {
      const fd = native.eventfd(0);
      if (fd < 0) throw new Error(`eventfd: errno ${-fd}`);
      own = { fd, watch: native.watchFd(fd, () => this.onCall(q, fd)) };
      this.ownCall.set(q, own);
    }
    return [own.fd];
  }

  private onCall(q: number, fd: number): void {
    native.eventfdRead(fd);
    try {
      this.rings.onCall(q);
    } catch (e) {
      log(`queue ${q}: ${(e as Error).message}`);
    }
    const f = this.frontCall.get(q);
    if (f !== undefined) native.eventfdWrite(f, 1);
  }

  upstreamExited(code: number | null, signal: string | null): void {
    void this.shutdown(1, `the upstream exited (code ${code}, signal ${signal})`);
  }

  /** Ends everything once: connections, the upstream (SIGTERM, then SIGKILL), files; then exits. */
  async shutdown(code: number, why: string): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    log(`${why}; ${this.rings.eligible} replies eligible for --flip=${this.o.flip}, ${this.rings.corrupted} corrupted`);
    for (const w of this.watches) w.stop();
    for (const { fd, watch } of this.ownCall.values()) {
      watch.stop();
      native.close(fd);
    }
    for (const fd of this.frontCall.values()) native.close(fd);
    if (this.front) native.close(this.front.fd);
    if (this.up) native.close(this.up.fd);
    this.mem.close();
    await stopChild(this.child);
    fs.rmSync(this.dir, { recursive: true, force: true });
    fs.rmSync(this.o.socketPath, { force: true });
    process.exit(code);
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await gone;
  clearTimeout(t);
}

/** Resolves once `sock` is a listening socket; rejects if the child exits first or it takes too long. */
async function waitForSocket(sock: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + SOCKET_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the upstream exited (code ${child.exitCode}) before listening`);
    try {
      if (fs.statSync(sock).isSocket()) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`the upstream did not listen on ${sock} within ${SOCKET_TIMEOUT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function main(): Promise<void> {
  let o: Options;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`corrupting-backend: ${(e as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corrupting-backend-'));
  const upstreamSock = path.join(dir, 'upstream.sock');
  const argv = o.upstream.map((a) => a.replaceAll('{socket}', upstreamSock).replaceAll('{upstream}', upstreamSock));
  // The upstream's output goes to our stderr, so whoever reads the proxy's log reads the backend's too.
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 2, 2] });
  const proxy = new VhostProxy(o, child, upstreamSock, dir);
  child.on('error', (e) => void proxy.shutdown(1, `cannot start the upstream: ${e.message}`));
  child.on('exit', (code, signal) => proxy.upstreamExited(code, signal));
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => void proxy.shutdown(0, `${sig}`));
  try {
    await waitForSocket(upstreamSock, child);
    proxy.listen();
  } catch (e) {
    await proxy.shutdown(1, (e as Error).message);
  }
}

void main();
