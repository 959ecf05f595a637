/**
 * The metrics through a real Prometheus (Debian's `prometheus`), scraping our daemon every second
 * while the load tester drives it (docs/metrics.md):
 * - what Prometheus stored equals, exactly, what the load tester sent over two connections (requests by
 *   opcode, bytes read and written; its result's `sent`) plus a session of this test's own — so the
 *   counts survive a frontend disconnecting and reconnecting;
 * - /metrics answers within 100 ms while the daemon is under load;
 * - every panel query of the committed Grafana dashboard (grafana/dashboards/virtiofsd.json), with its
 *   variables filled in, returns data from Prometheus' HTTP API.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { startDaemon } from '../../harness/index.js';
import { repoRoot, which } from '../../harness/locations.js';
import { RequestBuilder, parseReply } from '../../src/frontend/fuse-requests.js';
import { VirtioFsSession } from '../../src/frontend/virtio-fs-session.js';
import type { WorkloadResult } from '../../src/loadtest/report-types.js';
import { VHOST_USER_VERSION } from '../../src/vhost/message.js';
import { LATENCY_SAMPLE } from '../../src/virtio/queue-runner.js';
import { get, metricsPort } from '../helpers/metrics-http.js';

const BIN = path.join(repoRoot(), 'bin', 'virtiofsd-ts.js');
const DASHBOARD = path.join(repoRoot(), 'grafana', 'dashboards', 'virtiofsd.json');
const ENOENT = 2;

interface PromVector {
  status: string;
  error?: string;
  data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> | [number, string] };
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Every `expr` of every panel (rows' nested panels too) of a dashboard JSON. */
export function dashboardExprs(d: unknown): Array<{ panel: string; expr: string }> {
  const out: Array<{ panel: string; expr: string }> = [];
  const walk = (panels: unknown): void => {
    if (!Array.isArray(panels)) return;
    for (const p of panels as Array<{ title?: string; targets?: Array<{ expr?: string }>; panels?: unknown }>) {
      for (const tg of p.targets ?? []) if (tg.expr) out.push({ panel: p.title ?? '?', expr: tg.expr });
      walk(p.panels);
    }
  };
  walk((d as { panels?: unknown }).panels);
  return out;
}

/** Runs the load tester against the socket (without blocking this event loop); its results. */
async function loadtest(sock: string, args: string[], json: string): Promise<WorkloadResult[]> {
  const child = spawn(process.execPath, [BIN, 'loadtest', `--socket-path=${sock}`, '--quiet', `--json=${json}`, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  clearTimeout(timer);
  if (code !== 0) throw new Error(`loadtest failed (${code}): ${out}`);
  return fs.readFileSync(json, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as WorkloadResult).filter((x) => x.kind === 'result');
}

t.test('Prometheus scrapes the daemon; its figures match the load; every dashboard panel has data', async (t) => {
  const prometheus = which('prometheus');
  if (!prometheus) {
    if (process.env.CI) t.fail('prometheus is not installed (apt-get install prometheus); CI installs it');
    else t.plan(0, 'skip: prometheus is not installed (apt-get install prometheus)');
    return;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-prom-'));
  const share = path.join(tmp, 'share');
  fs.mkdirSync(share);
  const sock = path.join(tmp, 'vfsd.sock');
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock, extraArgs: ['--metrics-address=127.0.0.1:0', '--thread-pool-size=2'] });
  let prom: ChildProcess | null = null;
  t.teardown(async () => {
    prom?.kill('SIGKILL');
    await daemon.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  const port = await metricsPort((re) => daemon.waitForLog(re));
  const instance = `127.0.0.1:${port}`;
  const promPort = await freePort();
  fs.writeFileSync(
    path.join(tmp, 'prometheus.yml'),
    `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: virtiofsd\n    static_configs:\n      - targets: ['${instance}']\n`,
  );
  let promLog = '';
  prom = spawn(prometheus, [
    `--config.file=${path.join(tmp, 'prometheus.yml')}`,
    `--storage.tsdb.path=${path.join(tmp, 'data')}`,
    `--web.listen-address=127.0.0.1:${promPort}`,
    '--log.level=warn',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  prom.stderr!.on('data', (c: Buffer) => (promLog += c.toString()));
  const api = async (q: string): Promise<PromVector> => {
    const r = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`);
    return (await r.json()) as PromVector;
  };
  const ready = async (): Promise<boolean> => {
    try {
      return (await fetch(`http://127.0.0.1:${promPort}/-/ready`)).status === 200;
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 300 && !(await ready()); i++) await new Promise((r) => setTimeout(r, 100));
  t.ok(await ready(), `Prometheus is ready${promLog ? `:\n${promLog}` : ''}`);

  // Load, on two connections in turn; scrapes while the first one runs.
  const scrapes: number[] = [];
  let loading = true;
  const scraper = (async () => {
    await new Promise((r) => setTimeout(r, 1500));
    while (loading && scrapes.length < 30) {
      scrapes.push((await get(port, '/metrics')).ms);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const first = await loadtest(sock, ['--workloads=mixed,readdir', '--duration=3', '--file-size=8M', '--depth=16'], path.join(tmp, 'a.json'))
    .finally(() => {
      loading = false;
    });
  await scraper;
  const second = await loadtest(sock, ['--workloads=create-unlink,lookup-miss', '--duration=1', '--file-size=1M'], path.join(tmp, 'b.json'));
  const results = [...first, ...second];
  t.equal(results.length, 4, 'four workload results');

  // A session of our own: errors by errno, and a vhost-user message the daemon must reject.
  const s = VirtioFsSession.open(sock);
  const rb = new RequestBuilder();
  t.equal(parseReply(await s.send(1, rb.init(), 8192)).error, 0, 'INIT');
  const MISSES = 25;
  let enoent = 0;
  for (let i = 0; i < MISSES; i++) if (parseReply(await s.send(1, rb.unlink(1n, `nothing-${i}`), 8192)).error === -ENOENT) enoent++;
  t.equal(enoent, MISSES, 'unlinks of missing names: ENOENT');
  s.fe.sendMessage(0x7777, VHOST_USER_VERSION, new Uint8Array(0));
  await daemon.waitForLog(/rejected/);
  s.close();

  // What the clients sent, by opcode.
  const sent = new Map<string, number>([['init', 1], ['unlink', MISSES]]);
  let readBytes = 0;
  let writeBytes = 0;
  for (const r of results) {
    for (const [op, n] of Object.entries(r.sent.requests_by_opcode)) sent.set(op, (sent.get(op) ?? 0) + n);
    readBytes += r.sent.read_bytes;
    writeBytes += r.sent.write_bytes;
  }
  t.ok(readBytes > 0 && writeBytes > 0, `the load read ${readBytes} and wrote ${writeBytes} bytes`);

  // Prometheus has everything once its latest sample equals a scrape taken after the load ended.
  const total = [...sent.values()].reduce((a, b) => a + b, 0);
  let stored = -1;
  for (let i = 0; i < 150 && stored !== total; i++) {
    const v = await api(`sum(virtiofsd_fuse_requests_total{instance="${instance}"})`);
    const res = v.data?.result as Array<{ value: [number, string] }> | undefined;
    stored = res?.[0] ? Number(res[0].value[1]) : -1;
    if (stored !== total) await new Promise((r) => setTimeout(r, 200));
  }
  t.equal(stored, total, 'Prometheus holds every request the clients sent');
  const byOp = await api(`virtiofsd_fuse_requests_total{instance="${instance}"}`);
  const promOps = new Map((byOp.data!.result as Array<{ metric: Record<string, string>; value: [number, string] }>).map((x) => [x.metric.opcode!, Number(x.value[1])]));
  t.same(Object.fromEntries([...promOps].sort()), Object.fromEntries([...sent].sort()), 'requests by opcode, exactly as sent');
  const scalar = async (q: string): Promise<number> => {
    const res = (await api(q)).data?.result as Array<{ value: [number, string] }> | undefined;
    return res?.[0] ? Number(res[0].value[1]) : Number.NaN;
  };
  t.equal(await scalar(`virtiofsd_fuse_read_bytes_total{instance="${instance}"}`), readBytes, 'bytes read, exactly');
  t.equal(await scalar(`virtiofsd_fuse_write_bytes_total{instance="${instance}"}`), writeBytes, 'bytes written, exactly');
  t.equal(await scalar(`virtiofsd_fuse_errors_total{instance="${instance}",opcode="unlink",errno="ENOENT"}`), MISSES, 'errors by errno');
  // Latency is observed for the requests a worker finds after idling and 1 in LATENCY_SAMPLE of the rest.
  const reads = promOps.get('read') ?? 0;
  const timed = await scalar(`virtiofsd_fuse_request_duration_seconds_count{instance="${instance}",opcode="read"}`);
  t.ok(timed <= reads && timed >= Math.floor(reads / LATENCY_SAMPLE) - 2 * 16, `READs timed: ${timed} of ${reads}`);
  t.equal(await scalar(`virtiofsd_vhost_user_connections_total{instance="${instance}"}`), results.length + 1, 'a connection per workload run, then ours: one after the other');
  t.equal(await scalar(`virtiofsd_vhost_user_rejected_messages_total{instance="${instance}",request="UNKNOWN"}`), 1, 'the rejected message');

  scrapes.sort((a, b) => a - b);
  t.ok(scrapes.length >= 5, `${scrapes.length} scrapes under load`);
  const median = scrapes[scrapes.length >> 1]!;
  t.ok(median < 100, `a scrape under load answers within 100 ms (median ${median.toFixed(1)} ms, max ${scrapes[scrapes.length - 1]!.toFixed(1)} ms)`);

  // Every panel query of the dashboard, as Grafana would send it, once the counters that first appeared
  // with the session (errors, the rejected message) have two samples for rate() and increase().
  await new Promise((r) => setTimeout(r, 2500));
  const exprs = dashboardExprs(JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')));
  t.ok(exprs.length >= 15, `${exprs.length} panel queries`);
  for (const { panel, expr } of exprs) {
    // Grafana's interpolation: $__rate_interval, and the instance variable as $instance or ${instance}
    const q = expr.replaceAll('$__rate_interval', '1m').replace(/\$\{instance\}|\$instance\b/g, instance);
    const v = await api(q);
    const res = v.data?.result;
    const n = Array.isArray(res) && typeof res[0] !== 'number' ? res.length : res === undefined ? 0 : 1;
    t.ok(v.status === 'success' && n > 0, `${panel}: ${q} → ${v.status === 'success' ? `${n} series` : v.error}`);
  }
});
