/**
 * The caller's identity with a real guest (one boot): guest users (busybox `su` with an /etc/passwd and
 * /etc/group of the test's) create files and directories in the share, and the host checks who owns
 * them. A user whose gid is 5678 creates files owned 1234:5678 on the host; a user of gid 100 whose
 * supplementary group 5678 alone lets it write a directory (root:5678, mode 0770) creates there (the
 * guest kernel sends that group with FUSE_CREATE_SUPP_GROUP, Linux 6.4 and later; the host denies it
 * otherwise); a set-group-ID directory gives new entries its group and subdirectories its bit; and a
 * user's write to, or truncating open of, a set-user-ID file clears the bit (FUSE_HANDLE_KILLPRIV_V2).
 *
 * The same boot checks --allow-mmap, which needs a newer guest too: two more devices share files with
 * --cache=never (opened for direct I/O); a shared writable mmap of one fails ENODEV without the option
 * and, with it (FUSE_DIRECT_IO_ALLOW_MMAP, Linux 6.6), works and its write reaches the host file.
 *
 * Needs a guest kernel >= 6.6 (the bookworm-backports one, as test/e2e/multiqueue.test.ts does;
 * VIRTIOFSD_TS_SUPP_GROUP_KERNEL picks one), the static guest probe (test/e2e/guest/fsprobe.c) and root
 * (the share holds files of several owners). A missing piece skips, and fails under CI=true.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import {
  GUEST_PRELUDE, findKernelAtLeast, guestSkipReason, kernelInfo, parseVals, runGuest, startDaemon,
} from '../../harness/index.js';
import { checkGuestRun } from './guest-checks.js';
import { buildProbe } from './probe-kit.js';
import { FUSE_DIRECT_IO_ALLOW_MMAP2 } from '../../src/abi/fuse.js';

const kernel = process.env.VIRTIOFSD_TS_SUPP_GROUP_KERNEL
  ? kernelInfo(process.env.VIRTIOFSD_TS_SUPP_GROUP_KERNEL)
  : findKernelAtLeast('6.6');
const probe = guestSkipReason('ours') ? null : buildProbe();
const skip =
  guestSkipReason('ours') ??
  (process.getuid?.() !== 0 ? 'needs root (the share holds files of several owners)' : null) ??
  (typeof probe === 'object' && probe !== null ? probe.skip : null) ??
  (kernel
    ? null
    : 'missing: a guest kernel >= 6.6 for FUSE_CREATE_SUPP_GROUP and FUSE_DIRECT_IO_ALLOW_MMAP (apt-get install -t bookworm-backports linux-image-amd64)');
if (skip && process.env.CI === 'true') t.fail(`the caller-identity guest test cannot run in CI: ${skip}`);

// u1: uid 1234, gid 5678. u2: uid 1234, gid 100, supplementary group 5678 (from /etc/group).
const PASSWD = 'root:x:0:0:root:/:/bin/sh\nu1:x:1234:5678::/:/bin/sh\nu2:x:1234:100::/:/bin/sh\n';
const GROUP = 'root:x:0:\nusers:x:100:\nshared:x:5678:u2\nsetgid:x:4321:\n';

/** Each step: a name, the user, and a shell command run as that user. */
const AS: ReadonlyArray<readonly [string, string, string]> = [
  ['own_file', 'u1', 'echo hi > /mnt/open/f'],
  ['own_dir', 'u1', 'mkdir /mnt/open/d'],
  ['own_fifo', 'u1', 'mkfifo /mnt/open/p'],
  ['own_symlink', 'u1', 'ln -s f /mnt/open/l'],
  ['supp_file', 'u2', 'echo hi > /mnt/grp/f'],
  ['supp_dir', 'u2', 'mkdir /mnt/grp/d'],
  ['supp_fifo', 'u2', 'mkfifo /mnt/grp/p'],
  ['supp_symlink', 'u2', 'ln -s f /mnt/grp/l'],
  ['sgid_file', 'u1', 'echo hi > /mnt/sgid/f'],
  ['sgid_dir', 'u1', 'mkdir /mnt/sgid/d'],
  ['sgid_subdir', 'u1', 'mkdir /mnt/sgid/d/e'],
  ['kill_write', 'u1', 'echo more >> /mnt/suid-w'],
  ['kill_trunc', 'u1', 'echo new > /mnt/suid-t'],
];

const SCRIPT = `${GUEST_PRELUDE}
umask 022
step mount mount -t virtiofs myfs /mnt
val ids_u1 "$(su -s /bin/sh -c id u1)"
val ids_u2 "$(su -s /bin/sh -c id u2)"
${AS.map(([n, u, cmd]) => `step ${n} su -s /bin/sh -c '${cmd}' ${u}`).join('\n')}
val sgid_dir_mode "$(stat -c %a /mnt/sgid/d)"
val suid_w_mode "$(stat -c %a /mnt/suid-w)"
val suid_t_mode "$(stat -c %a /mnt/suid-t)"
step umount umount /mnt
chmod 755 /fsprobe
mkdir -p /mnt/nommap /mnt/mmap
step mount_nommap mount -t virtiofs nommap /mnt/nommap
step mount_mmap mount -t virtiofs mmap /mnt/mmap
val mmap_without "$(/fsprobe --do mmap /mnt/nommap/m.txt 2>&1)"
val mmap_with "$(/fsprobe --do mmap /mnt/mmap/m.txt 2>&1)"
val mmap_with_read "$(cat /mnt/mmap/m.txt)"
step umount_nommap umount /mnt/nommap
step umount_mmap umount /mnt/mmap
finish
`;

const TITLE = 'a guest user\'s files are its own on the host, with its supplementary group and set-group-ID';
t.test(TITLE, { skip: skip ?? false }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-creds-'));
  const share = path.join(dir, 'share');
  const sub = (n: string, uid: number, gid: number, mode: number) => {
    fs.mkdirSync(path.join(share, n), { recursive: true });
    fs.chownSync(path.join(share, n), uid, gid);
    fs.chmodSync(path.join(share, n), mode);
  };
  fs.mkdirSync(share);
  fs.chmodSync(share, 0o755);
  sub('open', 0, 0, 0o777);
  sub('grp', 0, 5678, 0o770);
  sub('sgid', 0, 4321, 0o2777);
  for (const f of ['suid-w', 'suid-t']) {
    fs.writeFileSync(path.join(share, f), 'data\n');
    fs.chmodSync(path.join(share, f), 0o6777);
  }
  const sock = path.join(dir, 'vfsd.sock');
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock });
  // --allow-mmap: a share without it and one with it, both opening files for direct I/O
  const mm: Record<'nommap' | 'mmap', { share: string; sock: string; daemon?: Awaited<ReturnType<typeof startDaemon>> }> = {
    nommap: { share: path.join(dir, 'nommap'), sock: path.join(dir, 'nommap.sock') },
    mmap: { share: path.join(dir, 'mmap'), sock: path.join(dir, 'mmap.sock') },
  };
  t.teardown(async () => {
    await daemon.stop();
    for (const m of Object.values(mm)) await m.daemon?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  for (const [tag, m] of Object.entries(mm)) {
    fs.mkdirSync(m.share);
    fs.writeFileSync(path.join(m.share, 'm.txt'), 'host\n');
    m.daemon = await startDaemon('ours', {
      sharedDir: m.share, socketPath: m.sock, extraArgs: ['--cache=never', ...(tag === 'mmap' ? ['--allow-mmap'] : [])],
    });
  }
  const r = await runGuest({
    socketPath: sock, script: SCRIPT, kernel: kernel!, timeoutSec: 240,
    extraShares: [{ socketPath: mm.nommap.sock, tag: 'nommap' }, { socketPath: mm.mmap.sock, tag: 'mmap' }],
    files: { 'etc/passwd': PASSWD, 'etc/group': GROUP, fsprobe: fs.readFileSync(probe as string) },
  });
  t.comment(`guest kernel ${kernel!.kver}: ${r.durationMs} ms`);
  const steps = ['mount', ...AS.map(([n]) => n), 'umount', 'mount_nommap', 'mount_mmap', 'umount_nommap', 'umount_mmap'];
  if (!checkGuestRun(t, 'caller-identity', r, steps, daemon)) return;
  t.match(daemon.logs(), /FUSE session 7\.\d+, flags 0x[0-9a-f]+, flags2 0x4\b/, 'CREATE_SUPP_GROUP negotiated');
  const vals = parseVals(r.output);
  t.match(vals.get('ids_u2') ?? '', /uid=1234.*gid=100.*groups=.*5678/, 'u2 is in group 5678 in the guest');
  const owner = (p: string) => {
    const s = fs.lstatSync(path.join(share, p));
    return [s.uid, s.gid];
  };
  const mode = (p: string) => fs.lstatSync(path.join(share, p)).mode & 0o7777;
  for (const n of ['f', 'd', 'p', 'l']) t.same(owner(`open/${n}`), [1234, 5678], `open/${n}: 1234:5678 on the host`);
  for (const n of ['f', 'd', 'p', 'l']) {
    t.same(owner(`grp/${n}`), [1234, 100], `grp/${n}: made through the supplementary group, owned 1234:100`);
  }
  t.equal(mode('open/f'), 0o644, 'mode after the guest umask');
  t.equal(mode('open/d'), 0o755);
  t.same(owner('sgid/f'), [1234, 4321], 'sgid/f: the directory\'s group');
  t.same(owner('sgid/d'), [1234, 4321], 'sgid/d: the directory\'s group');
  t.equal(mode('sgid/d'), 0o2755, 'sgid/d: the set-group-ID bit inherited');
  t.same(owner('sgid/d/e'), [1234, 4321], 'sgid/d/e: inherited again');
  t.equal(mode('sgid/d/e'), 0o2755);
  t.equal(vals.get('sgid_dir_mode'), '2755', 'the guest sees the same');
  t.equal(mode('suid-w'), 0o777, 'a user\'s write cleared set-user-ID and set-group-ID');
  t.equal(fs.readFileSync(path.join(share, 'suid-w'), 'utf8'), 'data\nmore\n');
  t.equal(mode('suid-t'), 0o777, 'a user\'s truncating open cleared them');
  t.equal(fs.readFileSync(path.join(share, 'suid-t'), 'utf8'), 'new\n');
  t.equal(vals.get('suid_w_mode'), '777', 'the guest sees the bits gone');

  t.equal(vals.get('mmap_without'), 'E:ENODEV', 'without --allow-mmap: a shared writable mmap of a direct-I/O file fails ENODEV');
  t.equal(fs.readFileSync(path.join(mm.nommap.share, 'm.txt'), 'utf8'), 'host\n', '... and the host file is unchanged');
  const flags2 = (d: { logs(): string }) => Number(/FUSE session 7\.\d+, flags 0x[0-9a-f]+, flags2 (0x[0-9a-f]+)/.exec(d.logs())?.[1] ?? NaN);
  t.equal(flags2(mm.nommap.daemon!) & FUSE_DIRECT_IO_ALLOW_MMAP2, 0, 'without --allow-mmap: FUSE_DIRECT_IO_ALLOW_MMAP not negotiated');
  t.equal(flags2(mm.mmap.daemon!) & FUSE_DIRECT_IO_ALLOW_MMAP2, FUSE_DIRECT_IO_ALLOW_MMAP2, 'with it: negotiated');
  t.equal(vals.get('mmap_with'), 'ok', 'with --allow-mmap: the mapping works');
  t.equal(vals.get('mmap_with_read'), 'Most', 'the guest reads back what it wrote through the mapping');
  t.equal(fs.readFileSync(path.join(mm.mmap.share, 'm.txt'), 'utf8'), 'Most\n', 'the write reached the host file');
});
