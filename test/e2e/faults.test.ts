/**
 * Faults with a real guest against one of our daemons, three boots on the same socket:
 *
 * 1. a full disk: share/small is an 8 MiB tmpfs; the guest writes past its end and gets ENOSPC, the
 *    files written before are intact, and once the host frees space writes work again. Then QEMU is
 *    SIGKILLed in the middle of a 64 MiB write (1 MiB chunks, each fsync'd and reported with its md5):
 *    the daemon frees the session (log, descriptors back to idle) and every chunk the guest saw
 *    fsync'd is on the host;
 * 2. the next boot is served. share/slow is a bindfs (FUSE) view; the bindfs process is SIGSTOPped,
 *    so a guest read under it blocks in the daemon, while the guest's other requests are served.
 *    QEMU is killed meanwhile: the daemon notices the disconnect, its main thread goes on (it logs
 *    that the reset waits for the blocked request), and once bindfs runs again the request ends, the
 *    device is reset and the next guest, already waiting on the socket, is served;
 * 3. SIGTERM to the daemon during heavy writes: it exits 0 within seconds, and every chunk the guest
 *    saw fsync'd is on the host.
 *
 * A `@@FAULT name {json}@@` comment per fault records what the daemon did (log lines, timings).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { parseSteps, parseVals, startDaemon } from '../../harness/index.js';
import {
  FAULT_PRELUDE, badCheckpoints, bindfsSkipReason, fdCount, faultSkip, logLines, parseCheckpoints,
  signalGuest, sleep, startGuest, timed,
} from './faults-kit.js';

const skip = faultSkip(t);
const noBindfs = skip ? null : bindfsSkipReason();
if (noBindfs && process.env.CI === 'true') t.fail(`the blocking file system check cannot run in CI: ${noBindfs}`);

const md5 = (b: Buffer | string): string => createHash('md5').update(b).digest('hex');
const SLOW_TEXT = 'behind bindfs';

const BOOT1 = `${FAULT_PRELUDE}
step mount mount -t virtiofs myfs /mnt
head -c 2097152 /dev/urandom > /tmp/keep
step keep_written sh -c 'cp /tmp/keep /mnt/small/keep && sync'
val keep_md5 $(md5sum < /tmp/keep | cut -d' ' -f1)
dd if=/dev/zero of=/mnt/small/fill bs=1048576 count=32 conv=fsync 2>/tmp/fill.err
val fill_rc $?
val fill_err "$(grep -m1 -i 'space' /tmp/fill.err)"
step keep_intact_when_full expect_eq "$(md5sum < /mnt/small/keep | cut -d' ' -f1)" "$(md5sum < /tmp/keep | cut -d' ' -f1)"
step elsewhere_when_full sh -c 'echo fine > /mnt/other/while-full && [ "$(cat /mnt/other/while-full)" = fine ]'
await_host freed
# the daemon holds every inode the guest knows by an O_PATH descriptor, so the host's rm frees the
# space only when the guest forgets the file: its next lookup of the name finds it gone
val fill_seen $([ -e /mnt/small/fill ] && echo yes || echo no)
sleep 1
head -c 3145728 /dev/urandom > /tmp/after
step write_after_free dd if=/tmp/after of=/mnt/small/after bs=1048576 conv=fsync
val after_md5 $(md5sum < /tmp/after | cut -d' ' -f1)
bg_writer /mnt/big/bg
ckpt_writes /mnt/big/data 64
echo "@@BIGWRITE done@@"
sleep 120
`;

const boot2 = (firstChunk: string, stall: boolean): string => `${FAULT_PRELUDE}
step mount mount -t virtiofs myfs /mnt
step chunk0_from_last_boot expect_eq "$(dd if=/mnt/big/data bs=1048576 count=1 2>/dev/null | md5sum | cut -d' ' -f1)" "${firstChunk}"
${stall ? `step slow_readable expect_eq "$(cat /mnt/slow/file)" "${SLOW_TEXT}"
await_host stopped
( cat /mnt/slow/file > /tmp/slow.out 2>&1; echo "@@SLOW_DONE rc=$?@@" ) &
sleep 2` : ''}
t0=$(now_ms)
step other_while_stalled sh -c 'echo during > /mnt/other/during && [ "$(cat /mnt/other/during)" = during ] && ls /mnt/other > /dev/null && head -c 1048576 /dev/urandom > /tmp/blob && dd if=/tmp/blob of=/mnt/other/blob bs=65536 conv=fsync 2>/dev/null'
val other_ms $(( $(now_ms) - t0 ))
val blob_md5 $(md5sum < /tmp/blob | cut -d' ' -f1)
echo "@@STALLED@@"
sleep 120
`;

const BOOT3 = `${FAULT_PRELUDE}
step mount mount -t virtiofs myfs /mnt
step served sh -c 'echo third > /mnt/other/third && [ "$(cat /mnt/other/third)" = third ]'
step slow_after_cont sh -c '[ ! -e /mnt/slow/file ] || [ "$(cat /mnt/slow/file)" = "${SLOW_TEXT}" ]'
bg_writer /mnt/big/bg
ckpt_writes /mnt/big/data2 64
echo "@@BIGWRITE done@@"
sleep 120
`;

/** Steps and values printed so far by a running guest. */
const soFar = (lines: string[]) => ({ steps: parseSteps(lines.join('\n')), vals: parseVals(lines.join('\n')) });

t.test('faults with a real guest', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-faults-'));
  const share = path.join(dir, 'share');
  const small = path.join(share, 'small');
  const slow = path.join(share, 'slow');
  const slowSrc = path.join(dir, 'slow-src');
  for (const d of [small, slow, slowSrc, ...['ctl', 'big', 'other'].map((d) => path.join(share, d))]) fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(slowSrc, 'file'), SLOW_TEXT);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'vfsd-faults', small], { encoding: 'utf8' });
  if (!t.equal(m.status, 0, `an 8 MiB tmpfs at share/small ${m.stderr}`)) return;
  let bindfs: ChildProcess | null = null;
  let bindfsStopped = false;
  if (!noBindfs) {
    bindfs = spawn('bindfs', ['-f', slowSrc, slow], { stdio: 'ignore' });
    for (let i = 0; i < 100 && !fs.readFileSync('/proc/mounts', 'utf8').includes(` ${slow} fuse`); i++) await sleep(50);
    t.ok(fs.readFileSync('/proc/mounts', 'utf8').includes(` ${slow} fuse`), 'bindfs is mounted at share/slow');
  }
  const sock = path.join(dir, 'vfsd.sock');
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock });
  const guests: Array<{ kill(r: string): void; result: Promise<unknown> }> = [];
  t.teardown(async () => {
    for (const g of guests) g.kill('teardown');
    await Promise.all(guests.map((g) => g.result));
    if (bindfs?.pid) process.kill(bindfs.pid, 'SIGCONT');
    await daemon.stop(5000);
    if (bindfs) {
      spawnSync('umount', [slow]);
      bindfs.kill('SIGKILL');
    }
    spawnSync('umount', [small]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const idle = fdCount(daemon.pid);
  const logCount = (re: RegExp): number => daemon.logs().split('\n').filter((l) => re.test(l)).length;
  const waitLogCount = async (re: RegExp, n: number, ms: number): Promise<number | null> => {
    const t0 = Date.now();
    while (logCount(re) < n) {
      if (Date.now() - t0 > ms || daemon.exitCode() !== undefined) return null;
      await sleep(20);
    }
    return Date.now() - t0;
  };
  const RESET = /device reset; waiting for the next frontend/;
  const DISCONNECT = /vhost-user frontend disconnected/;

  // ---- boot 1: full disk, then QEMU SIGKILLed in a large write
  const g1 = startGuest(sock, BOOT1, 180);
  guests.push(g1);
  const fullDisk: Record<string, unknown> = {};
  const kill1: Record<string, unknown> = {};
  try {
    await g1.watch.waitFor(/@@WAITFOR freed@@/, 120_000);
    const { steps, vals } = soFar(g1.lines);
    t.not(vals.get('fill_rc'), '0', 'full disk: the write past the end fails in the guest');
    t.match(vals.get('fill_err') ?? '', /No space left on device/, 'full disk: with ENOSPC');
    for (const s of ['keep_written', 'keep_intact_when_full', 'elsewhere_when_full']) t.ok(steps.get(s)?.ok, `full disk: guest step ${s}`);
    t.equal(md5(fs.readFileSync(path.join(small, 'keep'))), vals.get('keep_md5'), 'full disk: the file written before is intact on the host');
    fullDisk.fillErr = vals.get('fill_err');
    fullDisk.freeKiBWhenFull = Math.floor((fs.statfsSync(small).bavail * fs.statfsSync(small).bsize) / 1024);
    fs.rmSync(path.join(small, 'fill'));
    fullDisk.freeKiBAfterHostRm = Math.floor((fs.statfsSync(small).bavail * fs.statfsSync(small).bsize) / 1024);
    signalGuest(share, 'freed');

    await g1.watch.waitFor(/@@CKPT (\d{2,}|[7-9]) /, 120_000);
    const after = soFar(g1.lines);
    t.ok(after.steps.get('write_after_free')?.ok, 'full disk: writing works again once the host frees space', { console: g1.lines.slice(-30).join('\n') });
    t.equal(after.vals.get('fill_seen'), 'no', 'full disk: the guest sees the host\'s rm');
    fullDisk.freeKiBAfterGuestLookup = Math.floor((fs.statfsSync(small).bavail * fs.statfsSync(small).bsize) / 1024);
    t.equal(md5(fs.readFileSync(path.join(small, 'after'))), after.vals.get('after_md5'), 'full disk: and that write is on the host');
  } catch (e) {
    t.fail(`boot 1: ${(e as Error).message}`, { console: g1.lines.slice(-40).join('\n') });
  }
  let tKill = Date.now();
  g1.kill('SIGKILL to QEMU in a large write');
  const r1 = await g1.result;
  const ck1 = parseCheckpoints(r1.output);
  t.ok(ck1.length >= 8, `QEMU killed: the guest had fsync'd ${ck1.length} chunks`);
  t.same(badCheckpoints(path.join(share, 'big', 'data'), ck1), [], 'QEMU killed: every chunk the guest saw fsync\'d is on the host');
  const resetIn = await waitLogCount(RESET, 1, 15_000);
  kill1.resetMs = resetIn === null ? null : Date.now() - tKill;
  t.not(kill1.resetMs, null, 'QEMU killed: the daemon resets the device and waits for the next frontend');
  kill1.fds = { idle, afterReset: fdCount(daemon.pid) };
  t.ok(fdCount(daemon.pid) <= idle + 2, `QEMU killed: the daemon's descriptors are back to idle (${fdCount(daemon.pid)}, ${idle} before)`);
  kill1.log = logLines(daemon.logs(), /disconnected|device reset|WARN|ERROR/).slice(-6);
  kill1.chunks = ck1.length;
  t.comment(`@@FAULT full-disk ${JSON.stringify(fullDisk)}@@`);
  t.comment(`@@FAULT qemu-sigkill ${JSON.stringify(kill1)}@@`);

  // ---- boot 2: the next guest is served; a blocked host file system; QEMU killed meanwhile
  const stall: Record<string, unknown> = {};
  const g2 = startGuest(sock, boot2(ck1[0]?.md5 ?? 'none', bindfs !== null), 180);
  guests.push(g2);
  let g3: ReturnType<typeof startGuest> | null = null;
  try {
    if (bindfs?.pid) {
      await g2.watch.waitFor(/@@WAITFOR stopped@@/, 120_000);
      process.kill(bindfs.pid, 'SIGSTOP');
      bindfsStopped = true;
      signalGuest(share, 'stopped');
    }
    await g2.watch.waitFor(/@@STALLED@@/, 120_000);
    const { steps, vals } = soFar(g2.lines);
    for (const s of ['mount', 'chunk0_from_last_boot', ...(bindfs ? ['slow_readable'] : []), 'other_while_stalled']) {
      t.ok(steps.get(s)?.ok, `next boot${bindfs ? ', bindfs stopped' : ''}: guest step ${s}`);
    }
    t.equal(md5(fs.readFileSync(path.join(share, 'other', 'blob'))), vals.get('blob_md5'), 'a write elsewhere in the share lands meanwhile');
    stall.otherRequestsMs = Number(vals.get('other_ms'));
    if (bindfs) t.notOk(g2.lines.some((l) => l.includes('@@SLOW_DONE')), 'the read under the stopped bindfs is still blocked');
    tKill = Date.now();
    g2.kill('SIGKILL to QEMU with a request blocked in the host file system');
    await g2.result;
    stall.disconnectLoggedMs = await waitLogCount(DISCONNECT, 2, 10_000);
    t.not(stall.disconnectLoggedMs, null, 'the daemon notices the disconnect');
    if (bindfsStopped && bindfs?.pid) {
      const waiting = await waitLogCount(/waiting for worker \d+ to finish its request/, 1, 10_000);
      t.not(waiting, null, 'its main thread goes on: it logs that the reset waits for the blocked request');
      stall.waitingLoggedMs = waiting === null ? null : Date.now() - tKill;
      t.equal(logCount(RESET), 1, 'no reset while the request is blocked');
      // the next guest connects while the request is still blocked
      g3 = startGuest(sock, BOOT3, 180);
      guests.push(g3);
      await sleep(3000);
      stall.connectedWhileStopped = /connection 3\)/.test(daemon.logs());
      const tCont = Date.now();
      process.kill(bindfs.pid, 'SIGCONT');
      bindfsStopped = false;
      const reset = await waitLogCount(RESET, 2, 15_000);
      t.not(reset, null, 'once bindfs runs again the blocked request ends and the device is reset');
      stall.resetAfterContMs = reset === null ? null : Date.now() - tCont;
      stall.stalledForMs = tCont - tKill;
    } else {
      t.not(await waitLogCount(RESET, 2, 15_000), null, 'the daemon resets the device');
    }
    stall.log = logLines(daemon.logs(), /disconnected|device reset|waiting for worker|connection \d|WARN|ERROR/).slice(-8);
  } catch (e) {
    t.fail(`boot 2: ${(e as Error).message}`, { console: g2.lines.slice(-40).join('\n'), daemon: daemon.logs().slice(-3000) });
  }
  if (bindfs) t.comment(`@@FAULT blocked-host-fs ${JSON.stringify(stall)}@@`);
  else t.test('a host file system that blocks (bindfs stopped)', { skip: noBindfs ?? 'bindfs missing' }, async () => {});

  // ---- boot 3: SIGTERM to the daemon during heavy writes
  g3 ??= startGuest(sock, BOOT3, 180);
  if (!guests.includes(g3)) guests.push(g3);
  const term: Record<string, unknown> = {};
  try {
    await g3.watch.waitFor(/@@CKPT ([5-9]|\d{2,}) /, 150_000);
    const { steps } = soFar(g3.lines);
    for (const s of ['mount', 'served', 'slow_after_cont']) t.ok(steps.get(s)?.ok, `the guest after the blocked one: guest step ${s}`);
  } catch (e) {
    t.fail(`boot 3: ${(e as Error).message}`, { console: g3.lines.slice(-40).join('\n'), daemon: daemon.logs().slice(-3000) });
  }
  daemon.child.kill('SIGTERM');
  const exited = await timed(daemon.exited, 10_000);
  t.not(exited, null, 'SIGTERM during heavy writes: the daemon exits within 10 s');
  t.equal(exited?.value.code, 0, 'SIGTERM: exit code 0');
  term.exitMs = exited?.ms ?? null;
  term.exit = exited?.value ?? 'still running';
  t.match(daemon.logs(), /SIGTERM: finishing in-flight requests and shutting down/, 'SIGTERM: logged');
  t.match(daemon.logs(), /INFO +\[main\] stopped/, 'SIGTERM: the daemon says it stopped');
  g3.kill('the daemon is gone');
  const r3 = await g3.result;
  const ck3 = parseCheckpoints(r3.output);
  t.ok(ck3.length >= 6, `SIGTERM: the guest had fsync'd ${ck3.length} chunks`);
  t.same(badCheckpoints(path.join(share, 'big', 'data2'), ck3), [], 'SIGTERM: every chunk the guest saw fsync\'d is on the host');
  term.chunks = ck3.length;
  term.log = logLines(daemon.logs(), /SIGTERM|stopped|disconnected|device reset|WARN|ERROR/).slice(-6);
  t.comment(`@@FAULT sigterm ${JSON.stringify(term)}@@`);
  t.notMatch(daemon.logs(), /internal error|worker \d+ died/, 'no internal error in the daemon log');
});
