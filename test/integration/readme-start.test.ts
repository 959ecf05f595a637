/**
 * The README's first command, run as a supervisor runs it (`sh -c`, then SIGTERM to that process): the
 * daemon must stop with it, not be left running under init. (`npm start` does not pass SIGTERM on to
 * its child, so a command through npm fails this.) `npm ci` is left out: the tree is built already.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { repoRoot } from '../../harness/index.js';

/** The first ```sh block of the README: the set-up-and-run command. */
function startCommand(): string {
  const readme = fs.readFileSync(path.join(repoRoot(), 'README.md'), 'utf8');
  const m = /```sh\n([^\n]+)\n```/.exec(readme);
  if (!m) throw new Error('README has no sh block');
  return m[1]!;
}

/** Processes whose command line mentions `needle` (other than this test). */
function processesWith(needle: string): number[] {
  const pids: number[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(needle)) pids.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

t.test("the README's start command stops with SIGTERM to it", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-readme-'));
  const sock = path.join(dir, 'vfsd.sock');
  const share = path.join(dir, 'share');
  const cmd = startCommand();
  t.match(cmd, /^npm ci && /, 'the README starts with npm ci');
  const run = cmd.replace(/^npm ci && /, '').replaceAll('/tmp/vfsd.sock', sock).replaceAll('/tmp/share', share);
  const sup = spawn('sh', ['-c', run], { cwd: repoRoot(), stdio: 'ignore' });
  t.teardown(() => {
    for (const pid of processesWith(sock)) process.kill(pid, 'SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  for (let i = 0; i < 300 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
  t.ok(fs.existsSync(sock), 'the daemon is listening');
  const exited = new Promise<number | null>((res) => sup.on('exit', (code) => res(code)));
  sup.kill('SIGTERM');
  t.equal(await exited, 0, 'the supervised process exits 0 (the daemon itself)');
  let left = processesWith(sock);
  for (let i = 0; i < 100 && left.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    left = processesWith(sock);
  }
  t.same(left, [], 'no daemon left running');
  t.notOk(fs.existsSync(sock), 'the socket file is removed');
});
