/**
 * Guests with more RAM than fits a 32-bit address space: `-m 16G`, then `-m 64G` where the host allows.
 * Guest RAM is one memfd; on q35 QEMU puts the first 2 GiB below 4 GiB and the rest from 4 GiB up, so
 * the daemon sees regions far beyond 4 GiB of guest-physical (and of file offset in the memfd).
 *
 * Each guest mounts the share and does the everyday file operations (read a host file, write and
 * re-read, create, rename, unlink, readdir, stat), then copies a multi-GiB host file to a new name
 * inside the share with `dd bs=1M` (busybox cp copies 4 KiB at a time: ~4x slower under TCG). The
 * guest page cache of both files, the FUSE request buffers, comes from ZONE_NORMAL, which on x86-64
 * is all above 4 GiB: the guest's zone counters before/after show it. The host compares sha256 of the
 * original and the copy, and checks every other result.
 *
 * 64 GiB: the memfd is sparse; the guest touches about 1.6 % of it for its page structures (measured:
 * QEMU RSS 1.4 GiB after boot). The test runs when MemAvailable covers that plus the workload and a
 * margin, and the 16 GiB boot was not slow; otherwise it is skipped with the figures.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import {
  describeMemory,
  findQemu,
  GUEST_MEMORY_FNS,
  GUEST_PRELUDE,
  hostMeminfoKiB,
  parseBlock,
  parseMemoryReport,
  parseVals,
  ramAbove4GiB,
  RssSampler,
  runGuest,
  startDaemon,
} from '../../harness/index.js';
import { checkGuestRun } from './guest-checks.js';
import { abortOnMemoryRefusal, apertureReport, GIB, gib, guestTestSkip, KIND, MIB, md5, sha256File, stepTimes, writeRandomFile } from './memory-kit.js';

const TAG = 'bigmem';
const skip = guestTestSkip(t);
const root = fs.mkdtempSync(path.join(os.tmpdir(), `vfsd-large-${KIND}-`));
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));

/** The 64 GiB boot is skipped if the 16 GiB one took longer than this to reach userspace. */
const SLOW_BOOT_MS = 60_000;

interface Plan {
  memMiB: number;
  /** the host file the guest copies */
  copyBytes: number;
  /** small files created, renamed, removed */
  files: number;
  timeoutSec: number;
}

function script(p: Plan): string {
  return `${GUEST_PRELUDE}${GUEST_MEMORY_FNS}
memory_report boot
stamp boot
step mount mount -t virtiofs ${TAG} /mnt
grep -q " /mnt virtiofs " /proc/mounts || { echo "share not mounted"; finish; }
stamp mount
rd() { val read_md5 "$(md5sum /mnt/hostfile.bin | cut -d' ' -f1)"; }
step read_host_file rd
wr() {
  dd if=/dev/urandom of=/mnt/written.bin bs=64k count=128 conv=fsync 2>/dev/null || return 1
  sync; echo 3 > /proc/sys/vm/drop_caches
  val written_md5 "$(md5sum /mnt/written.bin | cut -d' ' -f1)"
}
step write_reread wr
tree() {
  mkdir -p /mnt/dir/sub || return 1
  i=0; while [ $i -lt ${p.files} ]; do echo "file $i" > /mnt/dir/f$i || return 1; i=$((i+1)); done
  i=0; while [ $i -lt ${p.files} ]; do
    case $((i % 4)) in 0) rm /mnt/dir/f$i ;; 1) mv /mnt/dir/f$i /mnt/dir/sub/g$i ;; esac || return 1
    i=$((i+1))
  done
  echo "@@BEGIN listing@@"; ls /mnt/dir | sort; ls /mnt/dir/sub | sed 's|^|sub/|' | sort; echo "@@END listing@@"
  val stat_f2 "$(stat -c '%s %i' /mnt/dir/f2)"
}
step tree tree
stamp ops
cp_big() {
  dd if=/mnt/big.bin of=/mnt/big.copy bs=1M 2>/dev/null || return 1
  expect_eq "$(stat -c %s /mnt/big.copy)" ${p.copyBytes} size
}
step big_copy cp_big
stamp copy
memory_report after
step umount umount /mnt
stamp umount
finish
`;
}
const STEPS = ['mount', 'read_host_file', 'write_reread', 'tree', 'big_copy', 'umount'];

/** One guest of `p.memMiB`: workload, host-side checks, timings. Returns ms to userspace, or null. */
async function largeGuest(tt: Test, p: Plan): Promise<number | null> {
  const name = `${p.memMiB / 1024} GiB guest`;
  const dir = fs.mkdtempSync(path.join(root, 'run-'));
  const share = path.join(dir, 'share');
  const sock = path.join(dir, 'vfs.sock');
  fs.mkdirSync(share);
  tt.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

  let t0 = Date.now();
  const hostfile = randomBytes(1536 * 1024 + 123);
  fs.writeFileSync(path.join(share, 'hostfile.bin'), hostfile);
  const bigSha = writeRandomFile(path.join(share, 'big.bin'), p.copyBytes);
  const genMs = Date.now() - t0;

  const daemon = await startDaemon(KIND, { sharedDir: share, socketPath: sock });
  tt.teardown(() => daemon.stop(5000));
  const rss = new RssSampler(() => ({ qemu: findQemu(sock), daemon: daemon.pid })).start();
  const refusal = abortOnMemoryRefusal(daemon);
  const r = await runGuest({
    signal: refusal.signal,
    socketPath: sock,
    tag: TAG,
    memMiB: p.memMiB,
    script: script(p),
    timeoutSec: p.timeoutSec,
    onLine: (l) => {
      if (process.env.VIRTIOFSD_TS_E2E_VERBOSE) console.error(`[${name}] ${l}`);
    },
  });
  rss.stop();
  refusal.stop();
  tt.comment(`${name}: ${rss.summary()}`);
  if (!checkGuestRun(tt, name, r, STEPS, daemon)) return r.bootMs;

  // The guest's view of its memory: all of it there, most of it above 4 GiB.
  const before = parseMemoryReport(r.output, 'boot');
  const after = parseMemoryReport(r.output, 'after');
  const memBytes = p.memMiB * MIB;
  if (before) tt.comment(`${name} at boot: ${describeMemory(before)}`);
  if (after) tt.comment(`${name} after the copy: ${describeMemory(after)}`);
  tt.ok(before && before.memTotalKiB * 1024 > memBytes * 0.95, `${name}: guest MemTotal is at least 95 % of -m`, { before });
  tt.ok(before && ramAbove4GiB(before) >= memBytes - 3 * GIB, `${name}: guest RAM reaches beyond 4 GiB by at least ${gib(memBytes - 3 * GIB)}`);
  tt.ok(
    before && Number(before.blockSize) * before.blocksOnline >= memBytes * 0.9,
    `${name}: memory blocks online cover the RAM`,
  );
  const normalUsed = (before?.zones.get('Normal')?.free ?? 0) - (after?.zones.get('Normal')?.free ?? 0);
  // The guest caches the source file it read (the copy's pages may be dropped again): 3/4 of it is plenty
  // of evidence and leaves room for other allocations.
  tt.ok(
    normalUsed * 4096 >= p.copyBytes * 0.75,
    `${name}: the copy's page cache came from ZONE_NORMAL, above 4 GiB (${gib(normalUsed * 4096)} taken)`,
  );

  // Host side: every result.
  t0 = Date.now();
  const vals = parseVals(r.output);
  const P = (f: string) => path.join(share, f);
  tt.equal(vals.get('read_md5'), md5(hostfile), `${name}: guest md5 of a host file`);
  tt.equal(vals.get('written_md5'), md5(fs.readFileSync(P('written.bin'))), `${name}: host md5 of a guest-written file matches the guest's re-read`);
  const top: string[] = [];
  const sub: string[] = [];
  for (let i = 0; i < p.files; i++) {
    if (i % 4 === 1) sub.push(`g${i}`);
    else if (i % 4 !== 0) top.push(`f${i}`);
  }
  top.sort();
  sub.sort();
  tt.same(fs.readdirSync(P('dir')).filter((f) => f !== 'sub').sort(), top, `${name}: files created and removed, as seen on the host`);
  tt.same(fs.readdirSync(P('dir/sub')).sort(), sub, `${name}: files renamed into a subdirectory, as seen on the host`);
  tt.same(parseBlock(r.output, 'listing'), [...[...top, 'sub'].sort(), ...sub.map((f) => `sub/${f}`)], `${name}: guest readdir agrees`);
  const contentOk = [...top, ...sub.map((f) => `sub/${f}`)].every(
    (f) => fs.readFileSync(P(`dir/${f}`), 'utf8') === `file ${f.replace(/^\D+/, '')}\n`,
  );
  tt.ok(contentOk, `${name}: file contents on the host`);
  const st = fs.statSync(P('dir/f2'));
  tt.equal(vals.get('stat_f2'), `${st.size} ${st.ino}`, `${name}: guest stat (size, inode) agrees with the host`);
  tt.equal(fs.statSync(P('big.copy')).size, p.copyBytes, `${name}: size of the guest's copy on the host`);
  tt.equal(sha256File(P('big.copy')), bigSha, `${name}: sha256 of the guest's ${gib(p.copyBytes)} copy equals the original's`);
  const verifyMs = Date.now() - t0;
  if (KIND === 'ours') {
    // Guest RAM beyond the window is reached through apertures: the daemon reports how they did.
    const ap = await apertureReport(daemon);
    tt.ok(ap !== null && ap.misses > 0, `${name}: the daemon served the guest through apertures`, { logs: daemon.logs().slice(-2000) });
    if (ap) tt.comment(`${name}: apertures ${ap.hits} hits, ${ap.misses} misses (${ap.rate}% hits)`);
  }

  tt.comment(
    `${name} timings: host file ${(genMs / 1000).toFixed(1)} s, userspace at ${((r.bootMs ?? 0) / 1000).toFixed(1)} s, ` +
      `guest steps: ${stepTimes(r.output, ['boot', 'mount', 'ops', 'copy', 'umount'])}, guest run ${(r.durationMs / 1000).toFixed(1)} s, ` +
      `host verify ${(verifyMs / 1000).toFixed(1)} s`,
  );
  return r.bootMs;
}

t.test(`guests with large memory against the ${KIND} daemon`, { skip }, async (t) => {
  let boot16: number | null = null;
  await t.test('16 GiB guest', async (tt) => {
    boot16 = await largeGuest(tt, { memMiB: 16 * 1024, copyBytes: 2 * GIB, files: 200, timeoutSec: 300 });
  });

  // 64 GiB: only where the host has the memory and the emulation is fast enough.
  const plan64: Plan = { memMiB: 64 * 1024, copyBytes: 512 * MIB, files: 60, timeoutSec: 240 };
  const needBytes = plan64.memMiB * MIB * 0.025 + 2 * plan64.copyBytes + 2 * GIB;
  const availBytes = (hostMeminfoKiB('MemAvailable') ?? 0) * 1024;
  const why64 =
    availBytes < needBytes
      ? `host MemAvailable ${gib(availBytes)} < ${gib(needBytes)} (guest page structures ~1.6 % of 64 GiB, the copy in the guest page cache, 2 GiB margin)`
      : boot16 !== null && boot16 > SLOW_BOOT_MS
        ? `the 16 GiB guest took ${(boot16 / 1000).toFixed(0)} s to reach userspace (> ${SLOW_BOOT_MS / 1000} s): too slow here for 64 GiB`
        : false;
  await t.test('64 GiB guest', { skip: why64 }, async (tt) => {
    await largeGuest(tt, plan64);
  });
});
