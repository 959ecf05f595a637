/**
 * Guest RAM on hugetlbfs (`memory-backend-file,mem-path=<hugetlbfs>`), as performance-tuned VMs run:
 * the regions QEMU sends are hugetlbfs files, not memfds (they cannot be sealed), and must map into
 * the guest window at 2 MiB-aligned addresses. Needs root to reserve huge pages; the reservation is
 * undone afterwards. Skipped, with the reason, where huge pages cannot be had.
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { GUEST_PRELUDE, guestSkipReason, parseSteps, parseVals, runGuest, startDaemon } from '../../harness/index.js';

const MEM_MIB = 512;
const PAGES = MEM_MIB / 2 + 16;
const NR = '/proc/sys/vm/nr_hugepages';

function freeHugePages(): number {
  const m = /HugePages_Free:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** Reserves PAGES 2 MiB pages and mounts a hugetlbfs; returns the mount point and an undo, or a skip reason. */
function reserve(): { dir: string; undo: () => void } | string {
  if (process.getuid?.() !== 0) return 'needs root to reserve huge pages';
  let before: string;
  try {
    before = fs.readFileSync(NR, 'utf8').trim();
  } catch {
    return `${NR} is not readable`;
  }
  const undoNr = (): void => {
    try {
      fs.writeFileSync(NR, before);
    } catch {
      /* best effort */
    }
  };
  try {
    fs.writeFileSync(NR, String(Number(before) + PAGES));
  } catch (e) {
    return `cannot reserve huge pages (${(e as NodeJS.ErrnoException).code})`;
  }
  if (freeHugePages() < PAGES) {
    undoNr();
    return `the kernel gave fewer than ${PAGES} free huge pages`;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-hugetlbfs-'));
  const m = spawnSync('mount', ['-t', 'hugetlbfs', '-o', 'pagesize=2M', 'none', dir], { encoding: 'utf8' });
  if (m.status !== 0) {
    fs.rmdirSync(dir);
    undoNr();
    return `cannot mount hugetlbfs: ${(m.stderr || m.error?.message || '').trim()}`;
  }
  return {
    dir,
    undo: () => {
      spawnSync('umount', [dir]);
      fs.rmSync(dir, { recursive: true, force: true });
      undoNr();
    },
  };
}

const guestSkip = guestSkipReason('ours');
const hp = guestSkip ? guestSkip : reserve();
if (typeof hp !== 'string') t.teardown(hp.undo);

t.test('guest RAM on hugetlbfs is mapped and served', { skip: typeof hp === 'string' ? hp : false }, async (t) => {
  const { dir: hugeDir } = hp as { dir: string };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-hp-'));
  const share = path.join(dir, 'share');
  fs.mkdirSync(share);
  const hostData = crypto.randomBytes(3 << 20);
  fs.writeFileSync(path.join(share, 'host.bin'), hostData);
  const sock = path.join(dir, 'vfsd.sock');
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock, extraArgs: ['--log-level=info'] });
  t.teardown(async () => {
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const r = await runGuest({
    socketPath: sock,
    memMiB: MEM_MIB,
    memBackend: `memory-backend-file,mem-path=${hugeDir},share=on`,
    timeoutSec: 150,
    script: `${GUEST_PRELUDE}
step mount mount -t virtiofs myfs /mnt
val host_md5 $(md5sum /mnt/host.bin | cut -d' ' -f1)
step write sh -c 'dd if=/dev/urandom of=/tmp/g.bin bs=1M count=48 2>/dev/null && cp /tmp/g.bin /mnt/guest.bin && sync'
val guest_md5 $(md5sum /tmp/g.bin | cut -d' ' -f1)
echo 3 > /proc/sys/vm/drop_caches
val reread_md5 $(md5sum /mnt/guest.bin | cut -d' ' -f1)
step umount umount /mnt
finish
`,
  });
  const diag = { console: r.output.split('\n').slice(-40).join('\n'), qemuStderr: r.stderr, daemonLogs: daemon.logs().slice(-4000) };
  t.equal(r.rc, 0, 'guest script exit code', r.rc === 0 ? {} : diag);
  for (const [name, s] of parseSteps(r.output)) t.ok(s.ok, `guest step ${name}${s.ok ? '' : `: ${s.detail}`}`);
  const vals = parseVals(r.output);
  const md5 = (b: Buffer) => crypto.createHash('md5').update(b).digest('hex');
  t.equal(vals.get('host_md5'), md5(hostData), 'the guest read the host file intact');
  const written = fs.readFileSync(path.join(share, 'guest.bin'));
  t.equal(written.length, 48 << 20, 'size of the guest-written file on the host');
  t.equal(md5(written), vals.get('guest_md5'), 'the host has what the guest wrote');
  t.equal(vals.get('reread_md5'), vals.get('guest_md5'), 'the guest reads it back after dropping its caches');
  t.match(daemon.logs(), /guest memory: region added, 512 MiB mapped/, 'the hugetlbfs region was mapped whole');
  t.notMatch(daemon.logs(), /bad descriptor chain|request handler failed|ERROR/, 'no errors in the daemon log', { daemonLogs: daemon.logs().slice(-4000) });
});
