/**
 * --seccomp (native/src/seccomp.cc, src/sandbox/seccomp.ts, docs/seccomp.md). Child processes
 * (test/helpers/seccomp-child.ts) install the filter and then work normally (a worker thread started
 * afterwards, fs and addon reads, a timer), make a call the list leaves out (getpriority, through
 * os.getPriority) in each mode, and list their threads' Seccomp field (TSYNC reached threads started
 * before the install). Then the real daemon with --seccomp=kill serves the load tester's workloads, a
 * metrics scrape, a status line and a syslog sink, and exits 0 on SIGTERM.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { repoRoot } from '../../harness/locations.js';
import { servingChild, startDaemon } from '../../harness/index.js';
import { USAGE, parseArgs } from '../../src/config.js';
import { Errno } from '../../src/errors.js';
import { RequestBuilder, parseReply } from '../../src/frontend/fuse-requests.js';
import { VirtioFsSession } from '../../src/frontend/virtio-fs-session.js';
import { withTimeout } from '../fuzz/hostile-kit.js';
import { get, metricsPort, parseScrape } from '../helpers/metrics-http.js';
import { havePython, startSyslogStandIn } from '../helpers/syslog-standin.js';

const BIN = path.join(repoRoot(), 'bin', 'virtiofsd-ts.js');
const CHILD = path.join(repoRoot(), 'dist', 'test', 'helpers', 'seccomp-child.js');
/** getpriority(2): what the children call outside the list */
const GETPRIORITY: Partial<Record<string, number>> = { x64: 140, arm64: 141 };
const supported = process.platform === 'linux' && GETPRIORITY[process.arch] !== undefined;
const skip = supported ? false : `no seccomp filter for ${process.platform}/${process.arch}`;

interface ChildResult {
  pid: number;
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function child(mode: string, action: string): ChildResult {
  const r = spawnSync(process.execPath, [CHILD, mode, action], { encoding: 'utf8', timeout: 30_000 });
  return { pid: r.pid, status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

t.test('the option: modes, the default, a bad value', async (t) => {
  const base = ['--socket-path=/s', '--shared-dir=/d'];
  t.equal(parseArgs(base).seccomp, 'kill', 'kill by default');
  for (const m of ['kill', 'log', 'trap', 'none']) {
    const c = parseArgs([...base, `--seccomp=${m}`]);
    t.equal(c.seccomp, m, `--seccomp=${m}`);
    t.same(c.ignored, [], 'no longer "accepted without effect"');
  }
  t.equal(parseArgs([...base, '--seccomp', 'log']).seccomp, 'log', 'the value as the next argument');
  t.match(USAGE, /--seccomp=ACTION +kill\|log\|trap\|none/);
  t.notMatch(USAGE, /without effect here:[^\n]*--seccomp/, 'not listed as without effect');
  const r = spawnSync(process.execPath, [BIN, ...base, '--seccomp=bogus'], { encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 2, 'exit code 2');
  t.match(r.stderr, /--seccomp: invalid value 'bogus' \(kill\|log\|trap\|none\)/);
});

t.test('kill: a worker started afterwards, fs and addon reads, a timer all run', { skip }, async (t) => {
  const r = child('kill', 'work');
  t.equal(r.signal, null, `not killed (${r.stderr})`);
  t.equal(r.status, 0);
  t.match(r.stdout, /^work done$/m, 'the worker and the main thread read the same line through fs and the addon');
  t.match(r.stderr, /seccomp filter installed on every thread \(--seccomp=kill\)/);
});

t.test('kill: a call outside the list kills the process with SIGSYS', { skip }, async (t) => {
  const r = child('kill', 'forbidden');
  t.equal(r.signal, 'SIGSYS');
  t.notMatch(r.stdout, /survived/);
});

t.test('log: the call runs, and the kernel logs it when its log is readable', { skip }, async (t) => {
  const r = child('log', 'forbidden');
  t.equal(r.signal, null);
  t.equal(r.status, 0);
  t.match(r.stdout, /^survived$/m);
  const dmesg = spawnSync('dmesg', [], { encoding: 'utf8' });
  if (dmesg.status !== 0) {
    t.comment(`dmesg unreadable here (${dmesg.stderr.trim()}): the type=1326 line is not checked`);
    return;
  }
  // written as the call is made: this child's line, with sig=0 (logged, not killed) and the number
  const line = new RegExp(`type=1326 .* pid=${r.pid} .* sig=0 .*syscall=${GETPRIORITY[process.arch]} `);
  t.match(dmesg.stdout, line, 'an audit type=1326 line with the pid and the call number');
});

t.test('trap: the call number on stderr, then SIGSYS', { skip }, async (t) => {
  const r = child('trap', 'forbidden');
  t.equal(r.signal, 'SIGSYS');
  t.match(r.stderr, new RegExp(`^virtiofsd-ts: seccomp: blocked system call ${GETPRIORITY[process.arch]}$`, 'm'));
  t.notMatch(r.stdout, /survived/);
});

t.test('none: nothing installed, the call runs', async (t) => {
  const r = child('none', 'forbidden');
  t.equal(r.status, 0);
  t.match(r.stdout, /^survived$/m);
  t.notMatch(r.stderr, /seccomp filter installed/);
});

t.test('every thread has the filter, also those started before the install (TSYNC)', { skip }, async (t) => {
  const r = child('kill', 'threads');
  t.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  // main, 4 libuv threadpool threads, V8's platform threads, the inspector's, the worker
  t.ok(lines.length >= 8, `${lines.length} threads listed`);
  t.same(lines.filter((l) => l.split(' ')[1] !== '2'), [], 'Seccomp: 2 (filter mode) on every thread');
});

t.test('a second install is refused with EALREADY, not killed', { skip }, async (t) => {
  const r = child('kill', 'twice');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /cannot install the system call filter: EALREADY/);
});

t.test('the daemon under --seccomp=kill serves every workload, metrics, syslog, and stops on SIGTERM', { skip }, async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-seccomp-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const share = path.join(tmp, 'share');
  fs.mkdirSync(share);
  const socket = path.join(tmp, 'sock');
  const env = { ...process.env };
  const syslogOut = path.join(tmp, 'syslog.out');
  const args = [BIN, `--socket-path=${socket}`, `--shared-dir=${share}`, '--seccomp=kill', '--metrics-address=127.0.0.1:0', '--xattr', '--thread-pool-size=3'];
  if (havePython) {
    const logSock = path.join(tmp, 'log.sock');
    startSyslogStandIn(t, logSock, syslogOut);
    const deadline = Date.now() + 5000;
    while (!fs.existsSync(logSock) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    env.VIRTIOFSD_TS_SYSLOG_SOCKET = logSock;
    args.push('--syslog');
  } else {
    t.comment('python3 missing: no syslog stand-in, the daemon logs to stderr');
  }
  const daemon = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let logs = '';
  daemon.stdout.on('data', (c: Buffer) => (logs += c.toString()));
  daemon.stderr.on('data', (c: Buffer) => (logs += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    daemon.on('exit', (code, signal) => resolve({ code, signal })),
  );
  t.teardown(() => {
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
  });
  const logged = async (re: RegExp, ms = 20_000): Promise<string> => {
    const end = Date.now() + ms;
    const all = (): string => logs + (fs.existsSync(syslogOut) ? fs.readFileSync(syslogOut, 'utf8') : '');
    while (!re.test(all()) && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
    return all();
  };
  t.match(await logged(/seccomp filter installed on every thread/), /seccomp filter installed on every thread \(--seccomp=kill\)/);
  const port = await metricsPort((re) => logged(re));

  // (as root the daemon runs in the namespace sandbox: the serving process is the launcher's child)
  const pid = servingChild(daemon.pid!) ?? daemon.pid!;
  const tasks = fs.readdirSync(`/proc/${pid}/task`);
  const unfiltered = tasks.filter((tid) => !/^Seccomp:\s*2$/m.test(fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8')));
  t.same(unfiltered, [], `all ${tasks.length} threads of the daemon filtered`);

  const workloads = 'mixed,readdir,create-unlink,open-close,getattr,lookup,lookup-miss,read-rand,write-seq';
  const lt = spawnSync(process.execPath, [BIN, 'loadtest', `--socket-path=${socket}`, `--workloads=${workloads}`, '--ops=3000',
    '--entries=50', '--file-size=4M', '--queues=2', '--threads=2', '--quiet'], { encoding: 'utf8', timeout: 180_000 });
  t.equal(lt.status, 0, `the load tester got every reply (${lt.stderr.slice(-400)})`);
  for (const w of workloads.split(',')) t.match(lt.stdout, new RegExp(`^${w} `, 'm'), `${w} ran`);

  const scrape = await get(port, '/metrics');
  t.equal(scrape.status, 200, 'a scrape (prom-client\'s process metrics read /proc)');
  const m = parseScrape(scrape.body);
  t.ok((m.get('virtiofsd_fuse_requests_total{opcode="read"}') ?? 0) > 0, 'it counted the reads');
  t.ok((m.get('process_open_fds') ?? 0) > 0, 'process metrics');
  t.equal((await get(port, '/healthz')).status, 200);

  daemon.kill('SIGUSR1');
  t.match(await logged(/status: inodes=/), /status: inodes=\d+ handles=\d+/, 'the SIGUSR1 status line');
  daemon.kill('SIGTERM');
  const end = await exited;
  t.same(end, { code: 0, signal: null }, 'exit 0 after SIGTERM, not killed by the filter');
  t.match(await logged(/\[main\] stopped/, 5000), /\[main\] stopped/);
});

t.test('under --seccomp=kill a worker that died is replaced by a new thread, which serves', { skip }, async (t) => {
  // The worker-death hook (docs/testing.md, "Worker death") on the first node id a fresh table hands out.
  const HELLO = (1n << 32n) | 2n;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-seccomp-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const share = path.join(tmp, 'share');
  fs.mkdirSync(share);
  fs.writeFileSync(path.join(share, 'hello.txt'), 'hello\n');
  process.env.VIRTIOFSD_TS_TEST_HOOKS = `worker-die-on-getattr-of:${HELLO}`;
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: path.join(tmp, 'sock'), extraArgs: ['--seccomp=kill', '--thread-pool-size=1'] })
    .finally(() => delete process.env.VIRTIOFSD_TS_TEST_HOOKS);
  let s: VirtioFsSession | undefined;
  t.teardown(async () => {
    s?.close();
    await daemon.stop();
  });
  await daemon.waitForLog(/seccomp filter installed/);
  s = VirtioFsSession.open(path.join(tmp, 'sock'));
  const rb = new RequestBuilder();
  const call = (req: Uint8Array) => withTimeout(s!.send(1, req, 4096), 15_000, `opcode ${req[4]}`).then(parseReply);
  t.equal((await call(rb.init())).error, 0, 'FUSE_INIT');
  const hello = await call(rb.lookup(1n, 'hello.txt'));
  t.equal(hello.view.getBigUint64(0, true), HELLO, 'the node id the hook is set for');
  t.equal((await call(rb.getattr(HELLO))).error, -Errno.EIO, 'the dying worker\'s GETATTR gets EIO');
  t.match(await daemon.waitForLog(/worker 0 died/), /worker 0 died/);
  for (let i = 0; i < 3; i++) t.equal((await call(rb.getattr(1n))).error, 0, `the replacement serves (${i + 1})`);
  t.match(daemon.logs(), /restarting it in \d+ ms/);
  s.close();
  s = undefined;
  t.same(await daemon.stop(), { code: 0, signal: null }, 'exit 0 after SIGTERM');
});
