/**
 * The metrics endpoint (--metrics-address): GET /metrics in the Prometheus text format, /healthz and
 * /readyz, over TCP or a Unix socket, on the main thread's event loop (never on the request path).
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { Registry } from 'prom-client';
import type { MetricsAddress } from './address.js';
import type { Logger } from '../log.js';
import { errnoName, native } from '../native.js';
import { SocketFile } from '../socket-file.js';

/** What /healthz and /readyz report. */
export interface Health {
  /** the daemon serves (false while starting and once stopping) */
  serving(): boolean;
  /** a vhost-user frontend is connected */
  connected(): boolean;
}

export function describeAddress(a: MetricsAddress): string {
  if (a.kind === 'unix') return `unix:${a.path}`;
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host || '*'}:${a.port}`;
}

export class MetricsServer {
  private readonly server: http.Server;
  private socketFile: SocketFile | null = null;

  constructor(
    private readonly addr: MetricsAddress,
    private readonly registry: Registry,
    private readonly health: Health,
    private readonly log: Logger,
  ) {
    this.server = http.createServer((req, res) => {
      void this.route(req, res);
    });
    // A scraper that stalls must not hold a socket for long.
    this.server.requestTimeout = 10_000;
    this.server.headersTimeout = 5_000;
  }

  /** Starts listening; rejects with a message an operator can act on (address in use, no permission). */
  async listen(): Promise<void> {
    const a = this.addr;
    if (a.kind === 'unix') await clearStaleSocket(a.path);
    await new Promise<void>((resolve, reject) => {
      const fail = (e: NodeJS.ErrnoException): void => {
        reject(new Error(`--metrics-address=${describeAddress(a)}: cannot listen: ${e.code ?? e.message}`));
      };
      this.server.once('error', fail);
      const done = (): void => {
        this.server.off('error', fail);
        this.server.on('error', (e) => this.log.warn(`metrics endpoint: ${e.message}`));
        resolve();
      };
      if (a.kind === 'unix') {
        // Bound here, not by libuv: libuv would unlink the path at close, and inside the sandbox that
        // path names a file of the shared directory. The socket file is removed through its directory.
        const fd = native.listenUnix(a.path, 511);
        if (fd < 0) {
          fail(Object.assign(new Error(errnoName(-fd)), { code: errnoName(-fd) }));
          return;
        }
        this.socketFile = SocketFile.hold(a.path);
        this.server.listen({ fd }, done);
      } else {
        this.server.listen({ port: a.port, host: a.host === '' ? undefined : a.host }, done);
      }
    });
    if (a.kind === 'unix') fs.chmodSync(a.path, 0o660);
    this.log.info(`metrics: http://${describeAddress(this.boundAddress())}/metrics (also /healthz, /readyz)`);
  }

  /** The address listened on: for port 0, the port the kernel chose. */
  boundAddress(): MetricsAddress {
    const a = this.server.address();
    if (a !== null && typeof a === 'object') return { kind: 'tcp', host: a.address, port: a.port };
    return this.addr;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.socketFile?.remove();
    this.socketFile = null;
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'only GET and HEAD\n', { allow: 'GET, HEAD' });
      return;
    }
    switch (path) {
      case '/metrics':
        try {
          const body = await this.registry.metrics();
          send(res, 200, body, { 'content-type': this.registry.contentType });
        } catch (e) {
          this.log.error(`metrics: collecting failed: ${(e as Error)?.stack ?? e}`);
          send(res, 500, 'collecting the metrics failed\n');
        }
        return;
      case '/healthz': {
        const serving = this.health.serving();
        const frontend = this.health.connected() ? 'a frontend is connected' : 'no frontend connected';
        send(res, serving ? 200 : 503, `${serving ? 'ok' : 'not serving'}: ${frontend}\n`);
        return;
      }
      case '/readyz':
        if (this.health.serving()) send(res, 200, 'ready\n');
        else send(res, 503, 'not ready\n');
        return;
      default:
        send(res, 404, 'not found: try /metrics, /healthz or /readyz\n');
    }
  }
}

function send(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers });
  res.end(body);
}

/**
 * A Unix socket path left by an earlier run is removed; one another process listens on is refused,
 * and so is anything that is not a socket.
 */
async function clearStaleSocket(p: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`--metrics-address=unix:${p}: exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const s = net.connect(p);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new Error(`--metrics-address=unix:${p}: another process is listening there`);
  fs.rmSync(p, { force: true });
}
