/**
 * The daemon with --log-format=json, no guest: driven by the load tester (our own vhost-user frontend,
 * src/loadtest/) through a few workloads at 100 and then 1000 operations each, and stopped with SIGTERM.
 * Every stderr line must be one JSON object with time, level, thread and msg; the lines about a
 * connection carry its number ("conn"); and requests log nothing at info or above, so the second run
 * writes as many info+ lines as the first, though it serves ten times the requests. With --syslog the
 * datagrams keep syslog's format, the connection in the tag, and what falls back to stderr is JSON.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { repoRoot } from '../../harness/locations.js';
import { havePython, startSyslogStandIn } from '../helpers/syslog-standin.js';

const BIN = path.join(repoRoot(), 'bin', 'virtiofsd-ts.js');
/** normal requests, answered or failed with an ordinary errno (lookup-miss: ENOENT) */
const WORKLOADS = 'getattr,lookup,lookup-miss,open-close,create-unlink,readdir';

interface JsonLine {
  time: string;
  level: string;
  thread: string;
  msg: string;
  conn?: unknown;
  [k: string]: unknown;
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  return cond();
}

function loadtest(socket: string, ops: number): Promise<{ code: number | null; out: string }> {
  const args = [BIN, 'loadtest', `--socket-path=${socket}`, `--workloads=${WORKLOADS}`, `--ops=${ops}`, '--entries=20', '--quiet'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  return new Promise((resolve) => {
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

const INFO_UP = new Set(['error', 'warn', 'info']);
/** a pause (at a disconnect) that waited over 2 s for a worker: a loaded host, not a request */
const SLOW_PAUSE = /waiting for worker \d+ to finish its request/;

interface Daemon {
  pid: number;
  stderr(): string;
  /** SIGTERM, then the exit code */
  stop(): Promise<number | null>;
}

async function startDaemon(t: Test, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ daemon: Daemon; socket: string }> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-logjson-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const share = path.join(tmp, 'share');
  fs.mkdirSync(share);
  const socket = path.join(tmp, 'sock');
  // --sandbox=none: these tests read the pid in syslog tags as the spawned one and cut stderr where the
  // socket appears; under the sandbox the daemon is the launcher's child and confines itself just after
  // (test/unit/sandbox-daemon.test.ts covers that)
  const child = spawn(process.execPath, [BIN, `--socket-path=${socket}`, `--shared-dir=${share}`, '--sandbox=none', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env,
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  t.ok(await until(() => fs.existsSync(socket), 15_000), 'the daemon listens', { stderr });
  const daemon: Daemon = {
    pid: child.pid!,
    stderr: () => stderr,
    stop: () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
  return { daemon, socket };
}

t.test('--log-format=json: every line an object, connections numbered, nothing per request above debug', async (t) => {
  const { daemon, socket } = await startDaemon(t, ['--log-format=json']);
  const count = (re: RegExp): number => daemon.stderr().split('\n').filter((l) => re.test(l)).length;
  t.ok(await until(() => /waiting for a vhost-user frontend/.test(daemon.stderr()), 15_000), 'and says so');

  // One run; then wait for the daemon to finish with its last connection (its reset line).
  const run = async (ops: number): Promise<string> => {
    const from = daemon.stderr().length;
    const r = await loadtest(socket, ops);
    t.equal(r.code, 0, `loadtest --ops=${ops} ends with a result for every workload`, { out: r.out });
    const conns = count(/frontend connected/);
    t.ok(await until(() => count(/device reset; waiting for the next frontend/) === conns, 10_000), `--ops=${ops}: every connection reset`);
    return daemon.stderr().slice(from);
  };
  const small = await run(100);
  const large = await run(1000);

  t.equal(await daemon.stop(), 0, 'SIGTERM: a clean exit');

  const lines = daemon.stderr().split('\n');
  t.equal(lines.pop(), '', 'the output ends with a newline');
  const parsed: JsonLine[] = [];
  for (const l of lines) {
    let o: unknown;
    try {
      o = JSON.parse(l);
    } catch {
      t.fail(`not a JSON line: ${l}`);
      continue;
    }
    const j = o as JsonLine;
    const ok =
      typeof o === 'object' && o !== null && !Array.isArray(o) &&
      typeof j.time === 'string' && !Number.isNaN(Date.parse(j.time)) && /Z$/.test(j.time) &&
      ['error', 'warn', 'info', 'debug', 'trace'].includes(j.level) &&
      /^(main|w\d+)$/.test(j.thread) && typeof j.msg === 'string';
    if (!ok) t.fail(`a line without time, level, thread and msg: ${l}`);
    else parsed.push(j);
  }
  t.equal(parsed.length, lines.length, `all ${lines.length} lines are JSON objects with time, level, thread, msg`);
  t.ok(parsed.some((j) => j.msg === 'stopped'), 'the shutdown is logged too');

  const connLines = parsed.filter((j) => /vhost-user frontend (connected|disconnected)|device reset; waiting/.test(j.msg));
  t.ok(connLines.length >= 6, `${connLines.length} connection lines`);
  t.ok(connLines.every((j) => typeof j.conn === 'number' && j.conn >= 1), 'every connection line carries "conn"');
  const connected = parsed.filter((j) => /frontend connected/.test(j.msg)).map((j) => j.conn);
  t.same(connected, connected.map((_, i) => i + 1), 'connections numbered 1, 2, ... in order');

  // Requests log nothing at info or above: ten times the requests, the same info+ lines.
  const infoUp = (chunk: string): JsonLine[] =>
    chunk
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as JsonLine)
      .filter((j) => INFO_UP.has(j.level) && !SLOW_PAUSE.test(j.msg));
  const a = infoUp(small);
  const b = infoUp(large);
  t.ok(a.length > 0, `the 100-op run logs its connections (${a.length} info+ lines)`);
  const kinds = (xs: JsonLine[]): string[] => xs.map((j) => `${j.level} ${j.msg.replace(/\d+/g, '#')}`).sort();
  const ka = kinds(a);
  const kb = kinds(b);
  t.equal(b.length, a.length, 'the 1000-op run logs as many info+ lines as the 100-op run', {
    only100: ka.filter((k) => !kb.includes(k)),
    only1000: kb.filter((k) => !ka.includes(k)),
  });
  t.same(kb, ka, 'and the same kinds of line');
  // A warning a request triggers is rate limited, so it would not grow with the requests: none at all.
  t.same([...a, ...b].filter((j) => j.level !== 'info').map((j) => j.msg), [], 'normal requests: no warning or error');
});

t.test('--syslog --log-format=json: syslog keeps its format, the stderr fallback is JSON', {
  skip: havePython ? false : 'python3 is needed to play the syslog daemon',
}, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-logsys-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const logSock = path.join(dir, 'log');
  const out = path.join(dir, 'received');
  startSyslogStandIn(t, logSock, out);
  t.ok(await until(() => fs.existsSync(logSock), 5000), 'the syslog stand-in listens');
  const read = (): string => (fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '');

  const a = await startDaemon(t, ['--syslog', '--log-format=json'], { ...process.env, VIRTIOFSD_TS_SYSLOG_SOCKET: logSock });
  t.equal((await loadtest(a.socket, 50)).code, 0, 'a load test run');
  t.equal(await a.daemon.stop(), 0, 'SIGTERM: a clean exit');
  t.ok(await until(() => read().includes('[main] stopped'), 5000), 'the last line reached syslog');
  const got = read();
  const tag = `<30>virtiofsd-ts[${a.daemon.pid}]: `;
  t.match(got, `${tag}[main conn=1] vhost-user frontend connected`, 'syslog format, the connection in the tag');
  t.notMatch(got, /"time":/, 'no JSON in syslog');
  t.equal(a.daemon.stderr(), '', 'nothing on stderr');

  const b = await startDaemon(t, ['--syslog', '--log-format=json'], { ...process.env, VIRTIOFSD_TS_SYSLOG_SOCKET: path.join(dir, 'no-such-socket') });
  t.equal(await b.daemon.stop(), 0, 'without a syslog socket: a clean exit');
  const lines = b.daemon.stderr().trimEnd().split('\n').map((l) => {
    try {
      return JSON.parse(l) as JsonLine;
    } catch {
      return null;
    }
  });
  t.ok(lines.length > 3 && lines.every((j) => j !== null && typeof j.msg === 'string'), 'every line on stderr is JSON', { stderr: b.daemon.stderr() });
  t.ok(lines.some((j) => j?.thread === 'syslog' && j.level === 'warn' && /cannot reach .*no-such-socket/.test(j.msg)), 'the warning about syslog too');
});
