/**
 * The listener when accept(2) fails with EMFILE: the pending connection stays in the backlog and keeps
 * the listening socket readable, so a listener that only logs and returns is called back at once, for
 * as long as descriptors stay exhausted (a busy loop and a log flood). The daemon runs as a real
 * process; its soft RLIMIT_NOFILE is lowered under it with prlimit(1) to its lowest free descriptor,
 * so the next descriptor it allocates fails, then raised again.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { type DaemonHandle, startDaemon } from '../../harness/index.js';
import { readStat } from '../../harness/proc-cpu.js';
import { RequestBuilder, parseReply } from '../../src/frontend/fuse-requests.js';
import { VirtioFsSession } from '../../src/frontend/virtio-fs-session.js';
import { native } from '../../src/native.js';

function hasPrlimit(): boolean {
  try {
    execFileSync('prlimit', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The lowest descriptor number `pid` does not have open: the one its next open/accept would get. */
function lowestFreeFd(pid: number): number {
  const open = new Set(fs.readdirSync(`/proc/${pid}/fd`).map(Number));
  let n = 0;
  while (open.has(n)) n++;
  return n;
}

function softNofile(pid: number): string {
  const line = fs.readFileSync(`/proc/${pid}/limits`, 'latin1').split('\n').find((l) => l.startsWith('Max open files'));
  const soft = line?.split(/\s+/)[3];
  if (!soft) throw new Error(`no open-files limit in /proc/${pid}/limits`);
  return soft;
}

function setSoftNofile(pid: number, soft: string): void {
  // "N:" changes the soft limit only; the hard one stays, so it can be raised again without privilege
  execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${soft}:`]);
}

function cpuTicks(pid: number): number {
  const st = readStat(`/proc/${pid}/stat`);
  if (!st) throw new Error(`cannot read /proc/${pid}/stat`);
  return st.ticks;
}

const count = (s: string, re: RegExp): number => s.split('\n').filter((l) => re.test(l)).length;

t.test('accept failing with EMFILE: no busy loop, one warning, accepting again afterwards', { skip: hasPrlimit() ? false : 'prlimit(1) (util-linux) is not installed' }, async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-rel-listener-'));
  const share = path.join(tmp, 'share');
  fs.mkdirSync(share);
  const sock = path.join(tmp, 'vfsd.sock');
  let daemon: DaemonHandle | undefined;
  let client = -1;
  t.teardown(async () => {
    if (client >= 0) native.close(client);
    await daemon?.stop(3000);
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock, extraArgs: ['--thread-pool-size=1'] });
  const pid = daemon.pid;
  await daemon.waitForLog(/waiting for a vhost-user frontend/);
  // let start-up settle (workers, timers) before freezing the descriptor table
  await new Promise((r) => setTimeout(r, 300));
  const original = softNofile(pid);
  const logBefore = daemon.logs().length;

  setSoftNofile(pid, String(lowestFreeFd(pid)));
  client = native.connectUnix(sock, true);
  t.ok(client >= 0, 'connected into the backlog');
  // the first failed accept happens right away; then measure two seconds of descriptor exhaustion
  await daemon.waitForLog(/accept failed: EMFILE/, 2000);
  const t0 = cpuTicks(pid);
  await new Promise((r) => setTimeout(r, 2000));
  const ticks = cpuTicks(pid) - t0;
  const during = daemon.logs().slice(logBefore);
  t.ok(/accept failed: EMFILE/.test(during), 'the failure is logged');
  // a spinning loop burns ~200 ticks (USER_HZ 100) in 2 s; a paused one a few
  t.ok(ticks < 40, `CPU while descriptors are exhausted: ${ticks} ticks in 2 s (below 40)`);
  const lines = count(during, /\S/);
  t.ok(lines <= 5, `log lines while descriptors are exhausted: ${lines} (at most 5)`);
  t.equal(daemon.exitCode(), undefined, 'daemon still running');

  setSoftNofile(pid, original);
  await daemon.waitForLog(/vhost-user frontend connected/, 5000);
  t.match(daemon.logs().slice(logBefore), /vhost-user frontend connected/, 'the waiting connection is accepted once descriptors are available');
  t.match(daemon.logs().slice(logBefore), /accepting again after \d+ failed accept/, 'recovery is logged with the failure count');
  native.close(client);
  client = -1;
  await daemon.waitForLog(/waiting for the next frontend/, 5000);

  // and a real frontend gets served
  const s = VirtioFsSession.open(sock);
  try {
    const init = parseReply(await s.send(1, new RequestBuilder().init(), 4096));
    t.equal(init.error, 0, 'a fresh session gets FUSE_INIT answered');
  } finally {
    s.close();
  }
});
