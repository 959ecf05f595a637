// --metrics-address end to end through a real daemon process and the project's own frontend (no
// guest): the counts on /metrics match, exactly, the requests this test sent and the bytes it read and
// wrote; histograms agree with the request counts; /healthz and /readyz say what they should; a
// frontend that disconnects and reconnects keeps adding to the same series; `promtool check metrics`
// accepts a scrape; a metrics address already taken fails the start with a clear message.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import t from 'tap';
import { startDaemon } from '../../harness/index.js';
import { fuseSession, startHostile } from '../fuzz/hostile-kit.js';
import { get, metricsPort, parseScrape } from '../helpers/metrics-http.js';
import { LATENCY_SAMPLE } from '../../src/virtio/queue-runner.js';

const ENOENT = 2;

t.test('the counts match the requests sent', async (t) => {
  const env = await startHostile(t, ['--metrics-address=127.0.0.1:0']);
  const port = await metricsPort((re) => env.daemon.waitForLog(re));
  const health0 = await get(port, '/healthz');
  t.equal(health0.status, 200);
  t.match(health0.body, /no frontend connected/);
  t.equal((await get(port, '/readyz')).status, 200);
  t.equal((await get(port, '/nope')).status, 404);
  t.equal((await get(port, '/metrics', 'POST')).status, 405);

  const { s, rb, call } = await fuseSession(env);
  t.match((await get(port, '/healthz')).body, /a frontend is connected/);
  const before = parseScrape((await get(port, '/metrics')).body);
  const v = (m: Map<string, number>, k: string): number => m.get(k) ?? 0;

  const GETATTRS = 300;
  const MISSES = 40;
  const READS = 50;
  const WRITES = 7;
  let unexpected = 0;
  for (let i = 0; i < GETATTRS; i++) if ((await call(rb.getattr(1n))).error !== 0) unexpected++;
  for (let i = 0; i < MISSES; i++) if ((await call(rb.unlink(1n, `missing-${i}`))).error !== -ENOENT) unexpected++;
  t.equal(unexpected, 0, 'GETATTRs succeed, unlinks of missing names get ENOENT');
  const file = (await call(rb.lookup(1n, 'hello.txt'))).view.getBigUint64(0, true);
  const open = await call(rb.open(file, 2 /* O_RDWR */));
  t.equal(open.error, 0);
  const fh = open.view.getBigUint64(0, true);
  const content = fs.readFileSync(`${env.share}/hello.txt`);
  let readBytes = 0;
  for (let i = 0; i < READS; i++) {
    const r = await call(rb.read(file, fh, BigInt(i % 5), 4096), 16 + 4096);
    readBytes += r.data.length;
  }
  t.equal(readBytes, [0, 1, 2, 3, 4].reduce((a, off) => a + (content.length - off) * 10, 0), 'the reads returned what the file holds');
  const payload = new Uint8Array(1000).fill(0x61);
  for (let i = 0; i < WRITES; i++) {
    t.equal((await call(rb.write(file, fh, BigInt(4096 + i * 1000), payload))).error, 0);
  }
  const after = parseScrape((await get(port, '/metrics')).body);
  const d = (k: string): number => v(after, k) - v(before, k);
  t.equal(d('virtiofsd_fuse_requests_total{opcode="getattr"}'), GETATTRS, 'GETATTRs counted exactly');
  t.equal(d('virtiofsd_fuse_errors_total{opcode="unlink",errno="ENOENT"}'), MISSES, 'ENOENT unlinks counted by errno');
  t.equal(d('virtiofsd_fuse_requests_total{opcode="unlink"}'), MISSES);
  t.equal(d('virtiofsd_fuse_requests_total{opcode="lookup"}'), 1);
  t.equal(d('virtiofsd_fuse_requests_total{opcode="read"}'), READS);
  t.equal(d('virtiofsd_fuse_read_bytes_total'), readBytes, 'bytes read, exactly');
  t.equal(d('virtiofsd_fuse_write_bytes_total'), WRITES * payload.length, 'bytes written, exactly');
  t.equal(d('virtiofsd_fuse_errors_total{opcode="getattr",errno="ENOENT"}'), 0);
  const sent = GETATTRS + MISSES + 1 + 1 + READS + WRITES;
  t.equal(d('virtiofsd_queue_requests_total{queue="1"}'), sent, 'every request counted on queue 1');
  let perWorker = 0;
  for (const w of ['0', '1']) perWorker += d(`virtiofsd_worker_requests_total{worker="${w}"}`);
  t.equal(perWorker, sent, 'and by the workers that served them');
  // A histogram's count is the requests timed: every one a worker found after idling and 1 in
  // LATENCY_SAMPLE of those it served back to back (one at a time, most are found after idling); its
  // buckets are cumulative and end at the count.
  const timed = v(after, 'virtiofsd_fuse_request_duration_seconds_count{opcode="getattr"}');
  const getattrs = v(after, 'virtiofsd_fuse_requests_total{opcode="getattr"}');
  t.ok(timed <= getattrs && timed >= getattrs / LATENCY_SAMPLE, `${timed} of ${getattrs} GETATTRs timed`);
  t.equal(v(after, 'virtiofsd_fuse_request_duration_seconds_bucket{opcode="getattr",le="+Inf"}'), timed, 'the +Inf bucket is the count');
  t.ok(v(after, 'virtiofsd_fuse_request_duration_seconds_bucket{opcode="getattr",le="0.000002"}') <= v(after, 'virtiofsd_fuse_request_duration_seconds_bucket{opcode="getattr",le="0.01"}'));
  const sum = v(after, 'virtiofsd_fuse_request_duration_seconds_sum{opcode="getattr"}');
  t.ok(sum > 0 && sum < 10, `GETATTR time sum ${sum} s is plausible`);
  t.equal(v(after, 'virtiofsd_vhost_user_connected'), 1);
  t.equal(v(after, 'virtiofsd_vhost_user_connections_total'), 1);
  t.ok(v(after, 'virtiofsd_vhost_user_messages_total{request="SET_MEM_TABLE"}') >= 1, 'vhost-user messages by request');
  t.equal(v(after, 'virtiofsd_queue_in_flight{queue="1"}'), 0, 'nothing in flight once every reply is in');
  t.ok(v(after, 'virtiofsd_queue_size{queue="1"}') > 0);
  t.ok(v(after, 'virtiofsd_inodes') >= 2, 'the root and hello.txt');
  t.equal(v(after, 'virtiofsd_handles'), 1, 'the open file');
  t.ok(v(after, 'virtiofsd_guest_memory_bytes') > 0);
  t.equal(v(after, 'virtiofsd_workers'), 2);
  t.ok(v(after, 'process_open_fds') > 0 && v(after, 'process_max_fds') >= v(after, 'process_open_fds'), 'fds against their limit');
  t.ok([...after.keys()].some((k) => k.startsWith('virtiofsd_build_info{version=')), 'build info');
  t.ok([...after.keys()].some((k) => k.startsWith('virtiofsd_config_info{cache="auto"')), 'config info');

  // A frontend that goes away and comes back: the same series keep counting.
  s.close();
  await env.daemon.waitForLog(/device reset; waiting for the next frontend/);
  const gone = parseScrape((await get(port, '/metrics')).body);
  t.equal(v(gone, 'virtiofsd_vhost_user_connected'), 0);
  t.equal(v(gone, 'virtiofsd_vhost_user_disconnects_total'), 1);
  t.ok(v(gone, 'virtiofsd_inodes') < v(after, 'virtiofsd_inodes'), 'the guest\'s inodes went with it');
  t.equal(v(gone, 'virtiofsd_handles'), 0, 'and its open files');
  const again = await fuseSession(env);
  for (let i = 0; i < 10; i++) await again.call(again.rb.getattr(1n));
  const later = parseScrape((await get(port, '/metrics')).body);
  t.equal(v(later, 'virtiofsd_fuse_requests_total{opcode="getattr"}') - v(after, 'virtiofsd_fuse_requests_total{opcode="getattr"}'), 10, 'counting goes on after a reconnect');
  t.equal(v(later, 'virtiofsd_vhost_user_connections_total'), 2);
  t.equal(v(later, 'virtiofsd_fuse_requests_total{opcode="init"}'), 2, 'one INIT per connection');
  again.s.close();

  const promtool = spawnSync('promtool', ['--version']);
  if (promtool.error) {
    if (process.env.CI) t.fail('promtool not installed (the prometheus package); CI installs it');
    else t.ok(true, 'promtool check metrics', { skip: 'promtool not installed (Debian package prometheus)' });
  } else {
    const text = (await get(port, '/metrics')).body;
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    t.equal(r.status, 0, `promtool check metrics: ${r.stdout}${r.stderr}`);
  }
});

t.test('an address in use fails the start, with the address in the message', async (t) => {
  const blocker = http.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.teardown(() => blocker.close());
  const port = (blocker.address() as { port: number }).port;
  const dir = fs.mkdtempSync('/tmp/vfsd-metrics-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync(process.execPath, ['bin/virtiofsd-ts.js', `--socket-path=${dir}/s.sock`, `--shared-dir=${dir}`, `--metrics-address=127.0.0.1:${port}`], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  t.not(r.status, 0, 'non-zero exit');
  t.match(r.stderr, new RegExp(`metrics-address=127\\.0\\.0\\.1:${port}: cannot listen: EADDRINUSE`));
  t.notOk(fs.existsSync(`${dir}/s.sock`), 'no vhost-user socket left behind');
});

t.test('unix:PATH serves the same endpoint', async (t) => {
  const dir = fs.mkdtempSync('/tmp/vfsd-metrics-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const d = await startDaemon('ours', { sharedDir: dir, socketPath: `${dir}/s.sock`, extraArgs: [`--metrics-address=unix:${dir}/m.sock`] });
  t.teardown(() => d.stop());
  await d.waitForLog(/metrics: http:\/\/unix:/);
  const out = await get(`${dir}/m.sock`, '/metrics');
  t.equal(out.status, 200);
  t.match(out.body, /^virtiofsd_workers \d+$/m);
  t.equal((fs.statSync(`${dir}/m.sock`).mode & 0o777), 0o660, 'socket mode 0660');
});
