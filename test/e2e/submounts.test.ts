/**
 * --announce-submounts with a real guest: a host mount point inside the share (a tmpfs at share/sub)
 * becomes a separate mount in the guest with its own st_dev, so inode numbers of the two host file
 * systems cannot collide there. Run on the reference daemon (-o announce_submounts) as well, which
 * shows the check is sound. Needs root to mount the tmpfs.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import {
  GUEST_PRELUDE, REFERENCE_DAEMON, guestSkipReason, mountSkipReason, parseSteps, parseVals, runGuest, startDaemon, type DaemonKind,
} from '../../harness/index.js';

const skip = guestSkipReason('ours') ?? mountSkipReason();

const SCRIPT = `${GUEST_PRELUDE}
step mount mount -t virtiofs myfs /mnt
val root_dev $(stat -c %d /mnt)
# stat(2) does not trigger an automount on the last component: /mnt/sub/. crosses into it
val sub_dev $(stat -c %d /mnt/sub/.)
val plain_dev $(stat -c %d /mnt/plain)
val sub_mounted $(grep -c " /mnt/sub " /proc/mounts)
step read_in_sub sh -c '[ "$(cat /mnt/sub/host.txt)" = "on the tmpfs" ]'
step write_in_sub sh -c 'echo from-guest > /mnt/sub/guest.txt && sync'
step umount umount /mnt
finish
`;

async function run(t: Test, kind: DaemonKind): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vfsd-submnt-${kind}-`));
  const share = path.join(dir, 'share');
  const sub = path.join(share, 'sub');
  fs.mkdirSync(sub, { recursive: true });
  fs.mkdirSync(path.join(share, 'plain'));
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'vfsd-test', sub], { encoding: 'utf8' });
  if (!t.equal(m.status, 0, `mount a tmpfs at share/sub ${m.stderr ?? ''}`)) {
    fs.rmSync(dir, { recursive: true, force: true });
    return;
  }
  fs.writeFileSync(path.join(sub, 'host.txt'), 'on the tmpfs');
  const sock = path.join(dir, 'vfsd.sock');
  const daemon = await startDaemon(kind, {
    sharedDir: share,
    socketPath: sock,
    extraArgs: kind === 'ours' ? ['--announce-submounts'] : ['-o', 'announce_submounts'],
  });
  t.teardown(async () => {
    await daemon.stop();
    spawnSync('umount', [sub]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const r = await runGuest({ socketPath: sock, script: SCRIPT, timeoutSec: 120 });
  const diag = { console: r.output.split('\n').slice(-30).join('\n'), daemonLogs: daemon.logs().slice(-3000) };
  t.equal(r.rc, 0, `${kind}: guest script exit code`, r.rc === 0 ? {} : diag);
  for (const [name, s] of parseSteps(r.output)) t.ok(s.ok, `${kind}: guest step ${name}${s.ok ? '' : `: ${s.detail}`}`);
  const v = parseVals(r.output);
  t.not(v.get('sub_dev'), v.get('root_dev'), `${kind}: the mount point has its own st_dev in the guest`, diag);
  t.equal(v.get('plain_dev'), v.get('root_dev'), `${kind}: a plain directory shares the root's st_dev`);
  t.equal(v.get('sub_mounted'), '1', `${kind}: the guest lists /mnt/sub as a mount`, diag);
  t.equal(fs.readFileSync(path.join(sub, 'guest.txt'), 'utf8'), 'from-guest\n', `${kind}: the write landed on the host tmpfs`);
}

t.test('announced submounts', { skip: skip ?? false }, async (t) => {
  if (fs.existsSync(REFERENCE_DAEMON)) await t.test('reference daemon', (tt) => run(tt, 'reference'));
  await t.test('our daemon', (tt) => run(tt, 'ours'));
});
