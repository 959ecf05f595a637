/**
 * --security-label with a real guest kernel (one boot, two daemons): the guest kernel negotiates
 * FUSE_SECURITY_CTX and sends its security context block (a request extension from Linux 6.4 and
 * 6.1.y; after the names on 5.17 to 6.3) with every CREATE, MKDIR, MKNOD and SYMLINK; the daemon reads
 * it as the kernel wrote it. The guest boots with SELinux (`security=selinux`, no policy loaded: the
 * kernel still labels new files with its initial contexts), so the block holds a real context.
 *
 * - /mnt/a: `--security-label --xattrmap=':map:security.selinux:user.virtiofs.:'`: a new file and
 *   directory keep the guest's label under user.virtiofs.security.selinux on the host; a symlink and a
 *   FIFO cannot (the host refuses user.* on them): the guest's `ln -s`/`mkfifo` fail and nothing is left.
 * - /mnt/b: a daemon without --security-label beside it: FUSE_SECURITY_CTX is not negotiated, creates
 *   work, no label.
 *
 * Needs root (the default sandbox) and a guest kernel ≥ 5.17 (any Debian 12 one). A missing piece
 * skips, and fails under CI=true.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import {
  GUEST_PRELUDE, findKernelAtLeast, guestSkipReason, parseVals, runGuest, startDaemon,
} from '../../harness/index.js';
import { native } from '../../src/native.js';
import { checkGuestRun } from './guest-checks.js';

const kernel = findKernelAtLeast('5.17');
const skip =
  guestSkipReason('ours') ??
  (process.getuid?.() !== 0 ? 'needs root (the default sandbox)' : null) ??
  (kernel ? null : 'missing: a guest kernel >= 5.17 for FUSE_SECURITY_CTX');
if (skip && process.env.CI === 'true') t.fail(`the security-label guest test cannot run in CI: ${skip}`);

const SCRIPT = `${GUEST_PRELUDE}
mkdir -p /mnt/a /mnt/b
val lsm "$(cat /proc/self/attr/current 2>&1)"
step mount_a mount -t virtiofs labelled /mnt/a
step mount_b mount -t virtiofs plain /mnt/b
for m in a b; do
  step file_$m sh -c "echo hi > /mnt/$m/f"
  step dir_$m mkdir /mnt/$m/d
done
step create_in_dir sh -c 'echo hi > /mnt/a/d/g'
ln -s f /mnt/a/l 2>/tmp/err; val symlink_a "rc=$? $(cat /tmp/err)"
mkfifo /mnt/a/p 2>/tmp/err; val fifo_a "rc=$? $(cat /tmp/err)"
step symlink_b ln -s f /mnt/b/l
step fifo_b mkfifo /mnt/b/p
step umount_a umount /mnt/a
step umount_b umount /mnt/b
finish
`;

/** A host file's or directory's xattr (through an fd); null when absent. */
function hostXattr(p: string, name: string): Uint8Array | null {
  const fd = fs.openSync(p, 'r');
  try {
    const buf = new Uint8Array(4096);
    const n = native.fgetxattr(fd, new TextEncoder().encode(name), buf);
    return n < 0 ? null : buf.slice(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

t.test('a guest kernel\'s security contexts reach the host through --xattrmap', { skip: skip ?? false }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-seclabel-'));
  const shareA = path.join(dir, 'a');
  const shareB = path.join(dir, 'b');
  fs.mkdirSync(shareA);
  fs.mkdirSync(shareB);
  fs.chmodSync(shareA, 0o755);
  fs.chmodSync(shareB, 0o755);
  const sockA = path.join(dir, 'a.sock');
  const sockB = path.join(dir, 'b.sock');
  const a = await startDaemon('ours', {
    sharedDir: shareA, socketPath: sockA,
    extraArgs: ['--security-label', '--xattrmap=:map:security.selinux:user.virtiofs.:'],
  });
  const b = await startDaemon('ours', { sharedDir: shareB, socketPath: sockB });
  t.teardown(async () => {
    await a.stop();
    await b.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const r = await runGuest({
    socketPath: sockA, tag: 'labelled', script: SCRIPT, kernel: kernel!, timeoutSec: 240,
    kernelArgs: ['security=selinux', 'selinux=1'],
    extraQemuArgs: [
      '-chardev', `socket,id=char1,path=${sockB}`,
      '-device', 'vhost-user-fs-pci,chardev=char1,tag=plain,queue-size=1024',
    ],
  });
  t.comment(`guest kernel ${kernel!.kver}: ${r.durationMs} ms`);
  const steps = ['mount_a', 'mount_b', 'file_a', 'dir_a', 'file_b', 'dir_b', 'create_in_dir', 'symlink_b', 'fifo_b',
    'umount_a', 'umount_b'];
  if (!checkGuestRun(t, 'security-label', r, steps, a)) return;
  const vals = parseVals(r.output);
  t.comment(`guest LSM context: ${vals.get('lsm')}; ln -s: ${vals.get('symlink_a')}; mkfifo: ${vals.get('fifo_a')}`);
  const flags2 = (d: typeof a) => {
    const m = /FUSE session 7\.\d+, flags 0x[0-9a-f]+, flags2 0x([0-9a-f]+)/.exec(d.logs());
    return m ? Number.parseInt(m[1]!, 16) : -1;
  };
  t.equal(flags2(a) & 1, 1, 'the labelled share negotiated FUSE_SECURITY_CTX');
  t.equal(flags2(b) & 1, 0, 'the plain one did not');
  const label = hostXattr(path.join(shareA, 'f'), 'user.virtiofs.security.selinux');
  // the context as the guest's SELinux computed it (without a policy: an initial context such as
  // "unlabeled"), with its NUL, as the kernel sends it
  t.ok(label !== null && label.length > 1 && label[label.length - 1] === 0,
    `the new file's label is on the host (${label && JSON.stringify(new TextDecoder().decode(label))})`);
  for (const p of ['d', 'd/g']) {
    t.same(hostXattr(path.join(shareA, p), 'user.virtiofs.security.selinux'), label, `${p}: labelled too`);
  }
  // user.* cannot go on a symlink or FIFO on the host: the guest's call fails, nothing is left
  t.match(vals.get('symlink_a') ?? '', /rc=1 .*Operation not permitted/, 'ln -s fails in the guest: EPERM');
  t.match(vals.get('fifo_a') ?? '', /rc=1 .*Operation not permitted/, 'mkfifo fails in the guest: EPERM');
  for (const n of ['l', 'p']) {
    t.equal(fs.lstatSync(path.join(shareA, n), { throwIfNoEntry: false }), undefined, `${n}: nothing left on the host`);
  }
  for (const n of ['f', 'd', 'l', 'p']) {
    t.ok(fs.lstatSync(path.join(shareB, n), { throwIfNoEntry: false }), `plain/${n} created`);
  }
  t.equal(hostXattr(path.join(shareB, 'f'), 'user.virtiofs.security.selinux'), null, 'plain/f: no label');
});
