/**
 * --readonly with a real guest (one boot for every check): the guest's writes, creates, touch, mkdir,
 * rm, rmdir, mv, chmod, ln -s and ln fail with "Read-only file system"; cat, ls and stat work; on the
 * host the tree is unchanged (names, modes, sizes, mtimes, ctimes, contents). The reference daemon of
 * QEMU 7.2 has no read-only option, so this runs on ours only. A missing package fails under CI=true.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { GUEST_PRELUDE, guestSkipReason, parseVals, runGuest, startDaemon } from '../../harness/index.js';
import { checkGuestRun } from './guest-checks.js';

const skip = guestSkipReason('ours');
if (skip && process.env.CI === 'true') t.fail(`the read-only guest test cannot run in CI: ${skip}`);

/** Each refusal: a name and a command (shell words) that must fail, saying why. */
const REFUSALS: ReadonlyArray<readonly [string, string]> = [
  ['write_existing', `sh -c 'echo x > /mnt/hello.txt'`],
  ['append', `sh -c 'echo x >> /mnt/hello.txt'`],
  ['create', `sh -c 'echo x > /mnt/new.txt'`],
  ['touch_existing', 'touch /mnt/hello.txt'],
  ['touch_new', 'touch /mnt/new2.txt'],
  ['mkdir', 'mkdir /mnt/newdir'],
  ['rm', 'rm -f /mnt/hello.txt'],
  ['rmdir', 'rmdir /mnt/empty'],
  ['mv', 'mv /mnt/hello.txt /mnt/moved.txt'],
  ['mv_into_dir', 'mv /mnt/hello.txt /mnt/dir/'],
  ['chmod', 'chmod 600 /mnt/hello.txt'],
  ['ln_s', 'ln -s hello.txt /mnt/lnk'],
  ['ln', 'ln /mnt/hello.txt /mnt/hard'],
];

const SCRIPT = `${GUEST_PRELUDE}
# name cmd...: the command must fail with "Read-only file system"
refused() {
  _n="$1"; shift
  if _o=$("$@" 2>&1); then
    echo "$_o"; echo "@@STEP $_n FAIL it succeeded@@"; FAILS=$((FAILS+1)); return
  fi
  echo "$_o"
  case "$_o" in
    *"Read-only file system"*) echo "@@STEP $_n ok@@" ;;
    *) echo "@@STEP $_n FAIL another error@@"; FAILS=$((FAILS+1)) ;;
  esac
}
step mount mount -t virtiofs myfs /mnt
${REFUSALS.map(([n, cmd]) => `refused ${n} ${cmd}`).join('\n')}
step cat sh -c '[ "$(cat /mnt/hello.txt)" = "hello from the host" ]'
step cat_inner sh -c '[ "$(cat /mnt/dir/inner.txt)" = "inner" ]'
val ls "$(ls /mnt | tr '\\n' ' ')"
step stat stat /mnt/hello.txt
step sync sync
step umount umount /mnt
finish
`;

/** Everything under `dir` a change would show in (atimes aside: reads may move them). */
function snapshot(dir: string): string[] {
  return ['', ...fs.readdirSync(dir, { recursive: true, encoding: 'utf8' })].sort().map((rel) => {
    const p = path.join(dir, rel);
    const st = fs.lstatSync(p, { bigint: true });
    const body = st.isFile() ? fs.readFileSync(p, 'utf8') : '';
    return `${rel || '.'} mode=${st.mode.toString(8)} nlink=${st.nlink} size=${st.size} mtime=${st.mtimeNs} ctime=${st.ctimeNs} ${JSON.stringify(body)}`;
  });
}

t.test('a --readonly share in a real guest', { skip: skip ?? false }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-readonly-'));
  const share = path.join(dir, 'share');
  fs.mkdirSync(path.join(share, 'dir'), { recursive: true });
  fs.mkdirSync(path.join(share, 'empty'));
  fs.writeFileSync(path.join(share, 'hello.txt'), 'hello from the host\n');
  fs.writeFileSync(path.join(share, 'dir', 'inner.txt'), 'inner\n');
  const before = snapshot(share);
  const sock = path.join(dir, 'vfsd.sock');
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock, extraArgs: ['--readonly'] });
  t.teardown(async () => {
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  t.match(await daemon.waitForLog(/serving [^\n]*readonly/), /serving [^\n]*readonly/, 'the startup line says readonly');
  const r = await runGuest({ socketPath: sock, script: SCRIPT, timeoutSec: 240 });
  const steps = ['mount', ...REFUSALS.map(([n]) => n), 'cat', 'cat_inner', 'stat', 'sync', 'umount'];
  if (!checkGuestRun(t, 'readonly', r, steps, daemon)) return;
  t.equal(parseVals(r.output).get('ls'), 'dir empty hello.txt', 'ls lists the share');
  t.same(snapshot(share), before, 'the host tree is unchanged');
});
