/**
 * A disconnect whose reset gives up: QEMU is killed while a request is blocked in the host file
 * system (a SIGSTOPped bindfs under the share) for longer than the workers' pause timeout (shortened
 * to 3 s with VIRTIOFSD_TS_PAUSE_TIMEOUT_MS; 120 s by default). The reset after the disconnect cannot
 * pause the workers and changes nothing. Once the host file system runs again, the next guest must get
 * a clean device: be served, and leave the daemon with its idle descriptors when it goes.
 *
 * Then SIGTERM while a request is blocked again: the daemon waits its shutdown grace (10 s) for the
 * request, then exits 1 without it, saying why (process.exit would hang joining the blocked worker).
 *
 * The listener retries the reset until it succeeds (src/vhost/listener.ts resetAfterDisconnect): on the
 * old code it adopted the next frontend on the device that was never reset, so the old guest's memory
 * regions were still in the table (its ADD_MEM_REG refused as overlapping), the old guest's inodes and
 * open files stayed open, and the new guest hung after its mount; and SIGTERM (even a second one) waited
 * for the blocked request.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { parseSteps, startDaemon } from '../../harness/index.js';
import { FAULT_PRELUDE, bindfsSkipReason, fdCount, faultSkip, logLines, signalGuest, sleep, startGuest, timed } from './faults-kit.js';

const skip = faultSkip(t, [bindfsSkipReason]);
const PAUSE_TIMEOUT_MS = 3000;
const blocked = (signal: string): string => `${FAULT_PRELUDE}
step mount mount -t virtiofs myfs /mnt
for i in $(seq 1 20); do echo $i > /mnt/other/f$i; done
exec 7</mnt/other/f1
step slow_readable cat /mnt/slow/file
await_host ${signal}
( cat /mnt/slow/file; echo "@@SLOW_DONE@@" ) &
sleep 2
echo "@@STALLED@@"
sleep 120
`;

const NEXT = `${FAULT_PRELUDE}
step mount mount -t virtiofs myfs /mnt
step count expect_eq "$(ls /mnt/other | wc -l)" 20
step write sh -c 'echo next > /mnt/other/next && [ "$(cat /mnt/other/next)" = next ]'
step slow cat /mnt/slow/file
step umount umount /mnt
finish
`;

t.test('the next guest after a reset that timed out', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-faults-reset-'));
  const share = path.join(dir, 'share');
  const slow = path.join(share, 'slow');
  const slowSrc = path.join(dir, 'slow-src');
  for (const d of [slow, slowSrc, path.join(share, 'ctl'), path.join(share, 'other')]) fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(slowSrc, 'file'), 'slow');
  const bindfs: ChildProcess = spawn('bindfs', ['-f', slowSrc, slow], { stdio: 'ignore' });
  for (let i = 0; i < 100 && !fs.readFileSync('/proc/mounts', 'utf8').includes(` ${slow} fuse`); i++) await sleep(50);
  process.env.VIRTIOFSD_TS_PAUSE_TIMEOUT_MS = String(PAUSE_TIMEOUT_MS);
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: path.join(dir, 'vfsd.sock') });
  delete process.env.VIRTIOFSD_TS_PAUSE_TIMEOUT_MS;
  const guests: Array<ReturnType<typeof startGuest>> = [];
  t.teardown(async () => {
    for (const g of guests) g.kill('teardown');
    await Promise.all(guests.map((g) => g.result));
    if (bindfs.pid) process.kill(bindfs.pid, 'SIGCONT');
    await daemon.stop(5000);
    spawnSync('umount', [slow]);
    bindfs.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const idle = fdCount(daemon.pid);

  const g1 = startGuest(daemon.socketPath, blocked('stopped'), 120);
  guests.push(g1);
  await g1.watch.waitFor(/@@WAITFOR stopped@@/, 90_000);
  process.kill(bindfs.pid!, 'SIGSTOP');
  signalGuest(share, 'stopped');
  await g1.watch.waitFor(/@@STALLED@@/, 30_000);
  g1.kill('SIGKILL to QEMU with a request blocked in the host file system');
  await g1.result;
  await daemon.waitForLog(/reset after disconnect failed/, PAUSE_TIMEOUT_MS + 10_000);
  t.match(daemon.logs(), /reset after disconnect failed/, 'the reset gives up after the pause timeout');
  process.kill(bindfs.pid!, 'SIGCONT');
  await sleep(500);

  // A guest that hangs shows up as a refused memory region in the log: stop it then, not at its timeout.
  const g2 = startGuest(daemon.socketPath, NEXT, 90);
  guests.push(g2);
  const refused = setInterval(() => {
    if (/rejected/.test(daemon.logs())) g2.kill('the daemon refused a message of the next frontend');
  }, 200);
  const r2 = await g2.result;
  clearInterval(refused);
  const diag = { console: r2.output.split('\n').slice(-20).join('\n'), daemon: logLines(daemon.logs(), /WARN|ERROR|connect|reset/) };
  if (r2.rc !== 0) t.comment(`next guest: ${r2.aborted ?? `rc ${r2.rc}`}; daemon: ${diag.daemon.slice(-6).join(' | ')}`);
  t.equal(r2.rc, 0, 'the next guest is served', diag);
  const steps = parseSteps(r2.output);
  t.ok(steps.size >= 5, `the next guest ran its steps (${steps.size})`);
  for (const [n, s] of steps) t.ok(s.ok, `next guest: step ${n}`);
  t.match(daemon.logs(), /reset after disconnect succeeded \(attempt \d+\)/, 'the reset was tried again until it succeeded');
  await daemon.waitForLog(/device reset; waiting for the next frontend/, 10_000);
  await sleep(500);
  t.ok(fdCount(daemon.pid) <= idle + 2, `the daemon's descriptors are back to idle after it (${fdCount(daemon.pid)}, ${idle} before)`);
  t.equal(daemon.exitCode(), undefined, 'the daemon runs on');

  // SIGTERM while a request is blocked: the daemon gives in-flight requests its shutdown grace (10 s),
  // then exits 1 without them, saying why.
  const g3 = startGuest(daemon.socketPath, blocked('stopped-again'), 120);
  guests.push(g3);
  await g3.watch.waitFor(/@@WAITFOR stopped-again@@/, 90_000);
  process.kill(bindfs.pid!, 'SIGSTOP');
  signalGuest(share, 'stopped-again');
  await g3.watch.waitFor(/@@STALLED@@/, 30_000);
  daemon.child.kill('SIGTERM');
  const first = await timed(daemon.exited, 15_000);
  t.not(first, null, 'SIGTERM with a request blocked in the host file system: the daemon exits within 15 s');
  t.equal(daemon.exitCode(), 1, 'exit status 1: requests were left unfinished');
  t.match(daemon.logs(), /in-flight requests did not finish in 10 s/, 'it says why');
  process.kill(bindfs.pid!, 'SIGCONT');
  const late = first === null ? await timed(daemon.exited, 10_000) : null;
  t.comment(`@@FAULT sigterm-blocked ${JSON.stringify({ firstMs: first?.ms ?? null, afterContMs: late?.ms ?? null, exit: daemon.exitCode() })}@@`);
});
