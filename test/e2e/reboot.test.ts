/**
 * A guest that reboots inside the same QEMU: the vhost-user connection stays up while QEMU stops the
 * rings (GET_VRING_BASE), the guest driver sets them up again and sends FUSE_INIT on a live session,
 * with inodes and open files of the old kernel still in our tables. The new kernel must get a clean
 * session and see what the old one wrote.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { GUEST_PRELUDE, guestSkipReason, parseSteps, runGuest, startDaemon } from '../../harness/index.js';

const skip = guestSkipReason('ours');

t.test('guest reboot within one QEMU keeps serving', { skip: skip ?? false }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-reboot-'));
  const share = path.join(dir, 'share');
  fs.mkdirSync(share);
  const sock = path.join(dir, 'vfsd.sock');
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock, extraArgs: ['--log-level=debug'] });
  t.teardown(async () => {
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const script = `${GUEST_PRELUDE}
mount -t virtiofs myfs /mnt || { echo "@@STEP mount FAIL@@"; exit 1; }
if [ -f /mnt/phase1.done ]; then
  echo "@@PHASE 2@@"
  step phase1_data_survives sh -c 'md5sum /mnt/phase1.bin | cut -d" " -f1 > /tmp/m; [ "$(cat /tmp/m)" = "$(cat /mnt/phase1.md5)" ]'
  step open_files_dir_gone_ok ls /mnt/d
  step write_after_reboot sh -c 'echo after > /mnt/phase2.txt'
  step rm_phase1 rm /mnt/phase1.done
  umount /mnt
  finish
fi
echo "@@PHASE 1@@"
mkdir -p /mnt/d
dd if=/dev/urandom of=/mnt/phase1.bin bs=64k count=16 2>/dev/null
md5sum /mnt/phase1.bin | cut -d" " -f1 > /mnt/phase1.md5
# hold files open and many inodes looked up across the reboot
for i in $(seq 1 50); do echo $i > /mnt/d/f$i; done
exec 3</mnt/phase1.bin
exec 4>>/mnt/d/f1
touch /mnt/phase1.done
sync
echo "@@REBOOTING@@"
reboot -f
sleep 30
`;
  let phases = 0;
  const r = await runGuest({
    socketPath: sock,
    script,
    timeoutSec: 150,
    allowReboot: true,
    onLine: (l) => {
      if (/@@PHASE \d@@/.test(l)) phases++;
    },
  });
  t.equal(phases, 2, 'the guest ran twice (booted again after the reboot)');
  t.equal(r.rc, 0, 'phase 2 script exit code');
  const steps = parseSteps(r.output);
  for (const [name, s] of steps) t.ok(s.ok, `guest step ${name}${s.ok ? '' : `: ${s.detail}`}`);
  t.ok(steps.size >= 4, 'phase 2 steps ran');
  t.equal(fs.readFileSync(path.join(share, 'phase2.txt'), 'utf8'), 'after\n', 'host sees the write made after the reboot');
  const md5 = crypto.createHash('md5').update(fs.readFileSync(path.join(share, 'phase1.bin'))).digest('hex');
  t.equal(md5, fs.readFileSync(path.join(share, 'phase1.md5'), 'utf8').trim(), 'phase 1 data intact on the host');
  t.equal(daemon.exitCode(), undefined, 'daemon still running');
  if (r.rc !== 0) t.comment(`${r.output.slice(-3000)}\n--- daemon ---\n${daemon.logs().slice(-3000)}`);
});
