/**
 * The daemon with --log-format=json, no guest: driven by the load tester (our own vhost-user frontend,
 * src/loadtest/) through a few workloads at 100 and then 1000 operations each, and stopped with SIGTERM.
 * Every stderr line must be one JSON object with time, level, thread and msg; the lines about a
 * connection carry its number ("conn"); and requests log nothing at info or above, so the second run
 * writes as many info+ lines as the first, though it serves ten times the requests.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { repoRoot } from '../../harness/locations.js';

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

t.test('--log-format=json: every line an object, connections numbered, nothing per request above debug', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-logjson-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const share = path.join(tmp, 'share');
  fs.mkdirSync(share);
  const socket = path.join(tmp, 'sock');
  const daemon = spawn(process.execPath, [BIN, `--socket-path=${socket}`, `--shared-dir=${share}`, '--log-format=json'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  daemon.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => daemon.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (daemon.exitCode === null) daemon.kill('SIGKILL');
  });
  const count = (re: RegExp): number => stderr.split('\n').filter((l) => re.test(l)).length;
  t.ok(await until(() => /waiting for a vhost-user frontend/.test(stderr), 15_000), 'the daemon listens', { stderr });

  // One run; then wait for the daemon to finish with its last connection (its reset line).
  const run = async (ops: number): Promise<string> => {
    const from = stderr.length;
    const r = await loadtest(socket, ops);
    t.equal(r.code, 0, `loadtest --ops=${ops} ends with a result for every workload`, { out: r.out });
    const conns = count(/frontend connected/);
    t.ok(await until(() => count(/device reset; waiting for the next frontend/) === conns, 10_000), `--ops=${ops}: every connection reset`);
    return stderr.slice(from);
  };
  const small = await run(100);
  const large = await run(1000);

  daemon.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM: a clean exit');

  const lines = stderr.split('\n');
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
