/** The daemon binary as an operator runs it: exit codes, messages, signals, --fd. */
import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { native } from '../../src/native.js';
import { VirtioFsSession } from '../../src/frontend/virtio-fs-session.js';
import { RequestBuilder, parseReply } from '../../src/frontend/fuse-requests.js';
import { repoRoot, servingChild } from '../../harness/index.js';
import { havePython, startSyslogStandIn } from '../helpers/syslog-standin.js';

const bin = path.join(repoRoot(), 'bin', 'virtiofsd-ts.js');
const run = (args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 30_000 });

t.test('bad options: a message and exit code 2', async (t) => {
  const r = run(['--socket-path=/tmp/x.sock', '--shared-dir=/nonexistent-dir-for-test']);
  t.equal(r.status, 2);
  t.match(r.stderr, /shared directory \/nonexistent-dir-for-test: ENOENT/);
  const r2 = run(['--socket-path=/tmp/x.sock', '--cache=bogus', '--shared-dir=/tmp']);
  t.equal(r2.status, 2);
  t.match(r2.stderr, /invalid cache mode 'bogus'/);
  t.match(r2.stderr, /--help/);
});

t.test('--help, --version, --print-capabilities', async (t) => {
  const h = run(['--help']);
  t.equal(h.status, 0);
  t.match(h.stdout, /--socket-path=PATH/);
  const v = run(['--version']);
  t.match(v.stdout, /^virtiofsd-ts \d+\.\d+\.\d+/);
  const c = run(['--print-capabilities']);
  t.equal(c.status, 0);
  t.same(JSON.parse(c.stdout), { type: 'fs', features: ['separate-options'] }, 'what libvirt reads: options as --name=value, no migration');
});

t.test('--fd: serves an inherited listening socket; SIGTERM exits 0', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-fd-'));
  const share = path.join(dir, 'share');
  fs.mkdirSync(share);
  fs.writeFileSync(path.join(share, 'f'), 'x');
  const sock = path.join(dir, 's.sock');
  const lfd = native.listenUnix(sock, 4);
  t.ok(lfd >= 0, 'listening');
  const child = spawn(process.execPath, [bin, '--fd=3', `--shared-dir=${share}`], { stdio: ['ignore', 'pipe', 'pipe', lfd] });
  native.close(lfd);
  let log = '';
  child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  for (let i = 0; i < 100 && !/waiting for a vhost-user frontend/.test(log); i++) await new Promise((r) => setTimeout(r, 100));
  const s = VirtioFsSession.open(sock);
  const rb = new RequestBuilder();
  const init = parseReply(await s.send(1, rb.init(), 4096));
  t.equal(init.error, 0, 'FUSE_INIT over the inherited socket');
  const e = parseReply(await s.send(1, rb.lookup(1n, 'f'), 4096));
  t.equal(e.error, 0, 'lookup');
  s.close();
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM: exit code 0');
  t.match(log, /SIGTERM: finishing in-flight requests/);
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('the socket is 0600 by default, 0660 for --socket-group', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-perm-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const [extra, mode] of [[[], 0o600], [['--socket-group=0'], 0o660]] as const) {
    const sock = path.join(dir, 's.sock');
    const child = spawn(process.execPath, [bin, `--socket-path=${sock}`, `--shared-dir=${dir}`, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    for (let i = 0; i < 100 && !/waiting for a vhost-user frontend/.test(log); i++) await new Promise((r) => setTimeout(r, 100));
    const st = fs.statSync(sock);
    t.equal(st.mode & 0o777, mode, `${extra.join(' ') || 'default'}: mode ${mode.toString(8)}`);
    if (extra.length) t.equal(st.gid, 0, 'group set');
    child.kill('SIGTERM');
    t.equal(await exited, 0);
  }
  const r = run([`--socket-path=${path.join(dir, 'x.sock')}`, `--shared-dir=${dir}`, '--socket-group=no-such-group-xyz']);
  t.equal(r.status, 2);
  t.match(r.stderr, /no group 'no-such-group-xyz'/);
});

/** A temporary directory with share/ (holding a file f) and a socket path; removed after the test. */
function fixture(t: Test, prefix: string): { dir: string; share: string; sock: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vfsd-${prefix}-`));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const share = path.join(dir, 'share');
  fs.mkdirSync(share);
  fs.writeFileSync(path.join(share, 'f'), 'x');
  return { dir, share, sock: path.join(dir, 's.sock') };
}

/** The daemon as a child process, killed after the test if it is still running. */
function spawnDaemon(t: Test, args: string[], opts: SpawnOptions = {}): { child: ChildProcess; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [bin, ...args], { stdio: 'ignore', ...opts });
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, exited };
}

async function waitForPath(p: string, ms = 15_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end && !fs.existsSync(p);) await new Promise((r) => setTimeout(r, 50));
}

/** INIT then LOOKUP of f over a fresh session; each must be answered within 10 s. */
async function initAndLookup(t: Test, sock: string, what: string): Promise<void> {
  const s = VirtioFsSession.open(sock);
  try {
    const rb = new RequestBuilder();
    const call = (req: Uint8Array) => Promise.race([
      s.send(1, req, 4096).then(parseReply),
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no reply in 10 s')), 10_000)),
    ]);
    t.equal((await call(rb.init())).error, 0, `${what}: FUSE_INIT answered`);
    t.equal((await call(rb.lookup(1n, 'f'))).error, 0, `${what}: LOOKUP answered`);
  } finally {
    s.close();
  }
}

t.test('the socket path appears only once it accepts connections (no ECONNREFUSED window)', async (t) => {
  const { dir, share, sock } = fixture(t, 'appear');
  for (let round = 0; round < 3; round++) {
    const { child, exited } = spawnDaemon(t, [`--socket-path=${sock}`, `--shared-dir=${share}`]);
    // Poll as fast as the event loop allows and connect the moment the path exists.
    let fd = -1;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && !fs.existsSync(sock)) await new Promise((r) => setImmediate(r));
    fd = native.connectUnix(sock);
    t.ok(fd >= 0, `round ${round}: connect right after the path appeared (${fd < 0 ? `errno ${-fd}` : 'ok'})`);
    if (fd >= 0) native.close(fd);
    t.same(fs.readdirSync(dir).sort(), ['s.sock', 'share'], 'no staging file left beside the socket');
    child.kill('SIGTERM');
    t.equal(await exited, 0);
    t.notOk(fs.existsSync(sock), 'the socket is removed on exit');
  }
});

t.test('a log reader that goes away (EPIPE on stderr) does not stop or spin the daemon', async (t) => {
  const { share, sock } = fixture(t, 'epipe');
  const { child, exited } = spawnDaemon(t, [`--socket-path=${sock}`, `--shared-dir=${share}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Read the first line, then close our end: every later log line meets a broken pipe.
  await new Promise<void>((res) => child.stderr!.once('data', () => res()));
  child.stderr!.destroy();
  child.stdout!.destroy();
  await waitForPath(sock);
  t.ok(fs.existsSync(sock), 'the daemon still got to listening');
  for (let round = 0; round < 2; round++) {
    // connect/disconnect and the ring starts are logged: each write fails with EPIPE
    await initAndLookup(t, sock, `session ${round}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  // a main thread stuck re-logging its own EPIPE would burn a core: sample its CPU while idle
  const ticks = (): number => {
    const f = fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8');
    const v = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return Number(v[11]) + Number(v[12]);
  };
  const before = ticks();
  await new Promise((r) => setTimeout(r, 1000));
  t.ok(ticks() - before < 30, `idle daemon CPU over 1 s: ${ticks() - before} ticks (< 30)`);
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM: exit code 0');
});

t.test('a second daemon on a live socket is refused; a stale socket file is replaced', async (t) => {
  const { share, sock } = fixture(t, 'twice');
  // stale: a socket file nobody listens on any more
  const stale = native.listenUnix(sock, 1);
  t.ok(stale >= 0);
  native.close(stale);
  t.ok(fs.lstatSync(sock).isSocket(), 'a stale socket file is there');
  const { child: first, exited: firstExit } = spawnDaemon(t, [`--socket-path=${sock}`, `--shared-dir=${share}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  first.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  for (let i = 0; i < 150 && !/waiting for a vhost-user frontend/.test(log); i++) await new Promise((r) => setTimeout(r, 100));
  t.match(log, /waiting for a vhost-user frontend/, 'the first daemon replaced the stale socket and listens');

  const second = run([`--socket-path=${sock}`, `--shared-dir=${share}`]);
  t.equal(second.status, 1, 'the second daemon exits 1');
  t.match(second.stderr, /another process is listening on it/, 'and says why');

  await initAndLookup(t, sock, 'the first daemon still serves its socket');
  first.kill('SIGTERM');
  t.equal(await firstExit, 0);
});

t.test('--syslog: lines from the main thread and the workers go to the syslog socket', {
  skip: havePython ? false : 'python3 is needed to play the syslog daemon',
}, async (t) => {
  const { dir, share, sock } = fixture(t, 'syslog');
  const logSock = path.join(dir, 'log');
  const out = path.join(dir, 'received');
  startSyslogStandIn(t, logSock, out);
  await waitForPath(logSock, 5000);

  const runDaemon = async (env: Record<string, string>): Promise<{ pid: number; stderr: string; code: number | null }> => {
    const { child, exited } = spawnDaemon(t, [`--socket-path=${sock}`, `--shared-dir=${share}`, '--syslog'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...env },
    });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    await waitForPath(sock);
    // under the namespace sandbox the daemon is the launcher's child, and its lines carry its pid
    const pid = servingChild(child.pid!) ?? child.pid!;
    await initAndLookup(t, sock, 'a session');
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGTERM');
    const code = await exited;
    return { pid, stderr, code };
  };

  const a = await runDaemon({ VIRTIOFSD_TS_SYSLOG_SOCKET: logSock });
  t.equal(a.code, 0, 'SIGTERM: exit 0');
  // the receiver writes what it got as it gets it: wait (up to 5 s) for the daemon's last line
  const read = (): string => (fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '');
  for (let i = 0; i < 100 && !read().includes('[main] stopped'); i++) await new Promise((r) => setTimeout(r, 50));
  const got = read();
  const tag = `virtiofsd-ts[${a.pid}]: `;
  t.match(got, `<30>${tag}[main] virtiofsd-ts `, 'start-up line, facility daemon, severity info, tagged with the pid');
  t.match(got, `<30>${tag}[main] waiting for a vhost-user frontend`, 'main-thread lines');
  t.match(got, new RegExp(`<30>virtiofsd-ts\\[${a.pid}\\]: \\[w\\d+\\] FUSE session 7\\.`), 'worker-thread lines');
  t.match(got, `<30>${tag}[main] stopped`, 'the last line before exit');
  t.notMatch(a.stderr, /waiting for a vhost-user frontend/, 'nothing on stderr that went to syslog');

  const b = await runDaemon({ VIRTIOFSD_TS_SYSLOG_SOCKET: path.join(dir, 'no-such-socket') });
  t.equal(b.code, 0, 'without a syslog socket the daemon still runs and exits 0');
  t.match(b.stderr, /cannot reach .*no-such-socket .*logging to stderr/, 'says so once on stderr');
  t.match(b.stderr, /waiting for a vhost-user frontend/, 'and logs to stderr instead');
});

t.test('--rlimit-nofile=N sets the open-file limit to N (lowered too, as the reference does); 0 leaves it; too high is an error', async (t) => {
  const soft = (pid: number): number => Number(/Max open files\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1]);
  const mine = soft(process.pid);
  for (const [arg, want] of [['300', 300], ['0', mine]] as const) {
    const { share, sock } = fixture(t, `nofile-${arg}`);
    const { child, exited } = spawnDaemon(t, [`--socket-path=${sock}`, `--shared-dir=${share}`, `--rlimit-nofile=${arg}`]);
    await waitForPath(sock);
    // (under the namespace sandbox the daemon is the launcher's child)
    t.equal(soft(servingChild(child.pid!) ?? child.pid!), want, `--rlimit-nofile=${arg}: the daemon's soft limit is ${want}`);
    await initAndLookup(t, sock, `--rlimit-nofile=${arg}`);
    child.kill('SIGTERM');
    t.equal(await exited, 0, `--rlimit-nofile=${arg}: exits 0`);
  }
  // above fs.nr_open no process may have it: a clear failure at start, not a daemon with another limit
  const { share, sock } = fixture(t, 'nofile-high');
  const r = run([`--socket-path=${sock}`, `--shared-dir=${share}`, `--rlimit-nofile=${1 << 30}`]);
  t.equal(r.status, 1, 'a limit that cannot be set: exit 1');
  t.match(r.stderr, /--rlimit-nofile=1073741824: cannot set the open-file limit: E(PERM|INVAL)/);
});
