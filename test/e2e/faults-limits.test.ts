/**
 * Faults from the host's limits, one guest boot against our daemon:
 *
 * - descriptors run out: the daemon's RLIMIT_NOFILE is lowered to 256 (prlimit on the running daemon,
 *   once the guest has mounted) while the guest lists a directory of 3000 files and
 *   opens 2000 of them at once. The guest gets EMFILE/ENFILE (never a hang), its listing is complete
 *   (same names as on the host), and once it closes everything and drops its caches the daemon's
 *   descriptor count is back where it was before;
 * - the shared directory is renamed on the host while the guest works (nothing changes for the guest:
 *   the daemon holds it by descriptor), then removed: the guest gets errors, an already open file still
 *   reads, the daemon serves on and frees the session when the guest goes.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { parseSteps, parseVals, startDaemon } from '../../harness/index.js';
import {
  FAULT_PRELUDE, fdCount, faultSkip, logLines, prlimitSkipReason, signalGuest, startGuest,
} from './faults-kit.js';

const FILES = 3000;
const HOLD = 2000;
const NOFILE = 256;
const name = (i: number): string => `f${String(i).padStart(4, '0')}`;

const SCRIPT = `${FAULT_PRELUDE}
step mount mount -t virtiofs myfs /mnt
ulimit -n 8192
await_host base
# every name, through READDIRPLUS, whose lookups run out of descriptors half way
set -- /mnt/many/*
val glob_count $#
val glob_md5 $(for f in "$@"; do echo "\${f##*/}"; done | md5sum | cut -d' ' -f1)
# hold ${HOLD} files open at once in a subshell for 3 s (the host counts the daemon's descriptors
# meanwhile; the guest cannot wait for a file from the host then: a lookup needs a descriptor too)
: > /tmp/open.err
(
  ok=0; fail=0; fd=10
  for f in "$@"; do
    [ $fd -ge $((10 + ${HOLD})) ] && break
    if eval "command exec $fd<\\"\\$f\\"" 2>>/tmp/open.err; then ok=$((ok+1)); else fail=$((fail+1)); fi
    fd=$((fd+1))
  done
  val open_ok $ok
  val open_fail $fail
  val open_err "$(head -n 1 /tmp/open.err)"
  # list the directory while the daemon has a few descriptors left (closing the first 8 files gives
  # them back): the OPENDIR gets one, READDIRPLUS's lookups take the rest and the others then fail (at
  # the exact limit the OPENDIR itself may fail with EMFILE, which the shell's glob hides)
  exec 10<&- 11<&- 12<&- 13<&- 14<&- 15<&- 16<&- 17<&-
  sleep 1
  set -- /mnt/many/*
  val held_glob_count $#
  echo "@@HOLDING@@"
  sleep 3
)
# stat every file: lookups past the limit fail, and the guest keeps the inodes it got
ls -l /mnt/many > /tmp/lsl 2>/tmp/lsl.err
val lsl_rc $?
val lsl_files $(grep -c '^-' /tmp/lsl)
val lsl_errors $(grep -c 'open files' /tmp/lsl.err)
val lsl_err "$(head -n 1 /tmp/lsl.err)"
echo 3 > /proc/sys/vm/drop_caches
sleep 2
await_host closed
# the shared directory renamed on the host under the guest
exec 7</mnt/work/keep
exec 8</mnt/work/keep
await_host renamed
step after_rename_read expect_eq "$(cat <&7)" "keep me"
step after_rename_write sh -c 'echo written-after-rename > /mnt/work/after-rename'
step after_rename_lookup expect_eq "$(cat /mnt/work/host-after-rename)" "from the host"
echo "@@WAITFOR remove@@"
_w=0; while [ -e /mnt/ctl ] && [ $_w -lt 75 ]; do _w=$((_w+1)); sleep 0.2; done
step removed_seen sh -c '! [ -e /mnt/ctl ]'
step create_fails sh -c 'if echo x > /mnt/work/new; then echo "created in a removed directory"; exit 1; fi'
step stat_root stat -c %n /mnt
val root_entries "$(ls -A /mnt 2>&1 | tr '\\n' ' ')"
step open_fd_reads expect_eq "$(cat <&8)" "keep me"
exec 7<&- 8<&-
step umount umount /mnt
finish
`;

const skip = faultSkip(t, [prlimitSkipReason]);

t.test('descriptor exhaustion and a vanishing shared directory', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-faults-limits-'));
  const share = path.join(dir, 'share');
  const moved = path.join(dir, 'share-moved');
  for (const d of ['ctl', 'many', 'work']) fs.mkdirSync(path.join(share, d), { recursive: true });
  const names: string[] = [];
  for (let i = 0; i < FILES; i++) {
    names.push(name(i));
    fs.writeFileSync(path.join(share, 'many', name(i)), `${i}\n`);
  }
  fs.writeFileSync(path.join(share, 'work', 'keep'), 'keep me\n');
  const sock = path.join(dir, 'vfsd.sock');
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock });
  t.teardown(async () => {
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const idle = fdCount(daemon.pid);
  const lim = spawnSync('prlimit', [`--pid=${daemon.pid}`, `--nofile=${NOFILE}:`], { encoding: 'utf8' });
  t.equal(lim.status, 0, `prlimit lowers the daemon's soft RLIMIT_NOFILE to ${NOFILE} ${lim.stderr}`);

  const g = startGuest(sock, SCRIPT, 240);
  const report: Record<string, unknown> = { idleFds: idle };
  try {
    await g.watch.waitFor(/@@WAITFOR base@@/, 90_000);
    const base = fdCount(daemon.pid);
    report.sessionFds = base;
    signalGuest(share, 'base');

    await g.watch.waitFor(/@@HOLDING@@/, 120_000);
    const held = fdCount(daemon.pid);
    report.heldFds = held;
    t.ok(held <= NOFILE, `the daemon stays within its limit while the guest holds files (${held} fds)`);
    t.equal(daemon.exitCode(), undefined, 'the daemon runs on at the limit');

    await g.watch.waitFor(/@@WAITFOR closed@@/, 60_000);
    const closed = fdCount(daemon.pid);
    report.closedFds = closed;
    t.ok(closed <= base + 4, `after the guest closes everything and forgets its inodes the daemon holds ${closed} fds (${base} after mount)`);
    signalGuest(share, 'closed');

    await g.watch.waitFor(/@@WAITFOR renamed@@/, 30_000);
    fs.renameSync(share, moved);
    fs.writeFileSync(path.join(moved, 'work', 'host-after-rename'), 'from the host');
    signalGuest(moved, 'renamed');

    await g.watch.waitFor(/@@WAITFOR remove@@/, 30_000);
    t.equal(fs.readFileSync(path.join(moved, 'work', 'after-rename'), 'utf8'), 'written-after-rename\n', 'a write after the rename lands in the moved directory');
    // ctl last: the guest takes its disappearance for the end of the removal
    for (const e of fs.readdirSync(moved)) if (e !== 'ctl') fs.rmSync(path.join(moved, e), { recursive: true });
    fs.rmSync(path.join(moved, 'ctl'), { recursive: true });
    fs.rmdirSync(moved);
  } catch (e) {
    t.fail(`the guest did not get through the script: ${(e as Error).message}`);
    g.kill('test failed');
  }
  const r = await g.result;
  const diag = { console: r.output.split('\n').slice(-60).join('\n'), daemonLogs: daemon.logs().split('\n').slice(-30).join('\n') };
  t.notOk(r.timedOut, 'the guest never hung', r.timedOut ? diag : {});
  t.equal(r.rc, 0, 'guest script exit code', r.rc === 0 ? {} : diag);
  for (const [n, s] of parseSteps(r.output)) t.ok(s.ok, `guest step ${n}${s.ok ? '' : `: ${s.detail}`}`, s.ok ? {} : diag);

  const v = parseVals(r.output);
  const md5 = createHash('md5').update(names.map((n) => `${n}\n`).join('')).digest('hex');
  t.equal(v.get('glob_count'), String(FILES), 'the guest lists every file');
  t.equal(v.get('glob_md5'), md5, 'the guest lists the same names as the host');
  t.equal(v.get('held_glob_count'), String(FILES), 'the listing is complete while the daemon runs out of descriptors for its lookups');
  const lsFiles = Number(v.get('lsl_files'));
  const lsErrors = Number(v.get('lsl_errors'));
  t.equal(lsFiles + lsErrors, FILES, `ls -l shows every name, as a file or as its lookup error (${lsFiles} + ${lsErrors})`);
  const ok = Number(v.get('open_ok'));
  const fail = Number(v.get('open_fail'));
  t.equal(ok + fail, HOLD, `the guest tried ${HOLD} opens and each returned (${ok} opened, ${fail} failed)`);
  t.ok(fail > 0, 'opens past the daemon\'s limit fail');
  t.match(v.get('open_err') ?? '', /Too many open files|open files in system|^$/, 'with EMFILE or ENFILE');
  Object.assign(report, {
    globCount: v.get('glob_count'), heldGlobCount: v.get('held_glob_count'), lsErrors, rootEntries: v.get('root_entries'), lsRc: v.get('lsl_rc'), lsFiles: v.get('lsl_files'), lsErr: v.get('lsl_err'),
    openOk: ok, openFail: fail, openErr: v.get('open_err'),
  });

  // The session ends with the guest: the daemon resets and frees it.
  await daemon.waitForLog(/device reset; waiting for the next frontend/, 10_000);
  t.match(daemon.logs(), /device reset; waiting for the next frontend/, 'the daemon frees the session when the guest goes');
  const after = fdCount(daemon.pid);
  report.afterFds = after;
  t.ok(after <= idle + 2, `the daemon's descriptors are back to idle (${after}, ${idle} before the guest)`);
  t.equal(daemon.exitCode(), undefined, 'the daemon runs on');
  t.notMatch(daemon.logs(), /internal error|worker \d+ died/, 'no internal error in the daemon log');
  report.warnings = logLines(daemon.logs(), /WARN|ERROR/).slice(0, 12);
  t.comment(`faults-limits: ${JSON.stringify(report)}`);
});
