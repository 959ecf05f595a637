/**
 * Memory hot-plug while the share is mounted: the guest boots with 2 GiB (`-m 2G,slots=4,maxmem=16G`),
 * the host adds a 3 GiB memfd backend and a pc-dimm over QMP, the guest onlines it, and a 1 GiB file
 * moves through the share in buffers of the new memory; then the DIMM is unplugged again and the share
 * must still work.
 *
 * What the daemon sees: QEMU sends the DIMM as one more region (ADD_MEM_REG with
 * VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS, else a new SET_MEM_TABLE) while the rings are live, and
 * guest RAM grows from 2 GiB to 5 GiB: past what fits a 32-bit window, so the daemon changes how it
 * reaches guest memory mid-run. The unplug removes the region again (REM_MEM_REG).
 *
 * Guest side: Debian's 6.1 kernel has ACPI memory hot-plug built in (CONFIG_ACPI_HOTPLUG_MEMORY=y) but
 * does not online new memory by itself; `memhp_default_state=online_movable` makes the DIMM
 * ZONE_MOVABLE. Page-cache pages are movable allocations and take ZONE_MOVABLE first, so the copy's
 * data pages (what FUSE reads into and writes from) come from the DIMM without filling the old memory
 * first, and the Movable zone's free pages before/after prove it. Movable memory is also what Linux
 * can offline for the unplug (after dropping the page cache).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import {
  ConsoleWatch,
  describeMemory,
  GUEST_MEMORY_FNS,
  GUEST_PRELUDE,
  type GuestMemoryView,
  parseMemoryReport,
  parseVals,
  QmpClient,
  type QmpEvent,
  runGuest,
  startDaemon,
} from '../../harness/index.js';
import { checkGuestRun } from './guest-checks.js';
import { abortOnMemoryRefusal, apertureReport, GIB, gib, guestTestSkip, KIND, MIB, md5, sha256File, stepTimes, writeRandomFile } from './memory-kit.js';

const TAG = 'hpfs';
const BASE_MIB = 2048;
const DIMM_BYTES = 3 * GIB;
const COPY_BYTES = 1 * GIB;
const skip = guestTestSkip(t);

const SCRIPT = `${GUEST_PRELUDE}${GUEST_MEMORY_FNS}
memory_report boot
stamp boot
step mount mount -t virtiofs ${TAG} /mnt
grep -q " /mnt virtiofs " /proc/mounts || { echo "share not mounted"; finish; }
stamp mount
before=$(memtotal_kib)
step write_before sh -c 'echo before-plug > /mnt/before.txt'
# MemTotal grows by the DIMM once the kernel has added and onlined it (up to 60 s).
wait_memtotal() {
  i=0
  while ! [ "$(memtotal_kib)" "$1" "$2" ]; do
    i=$((i+1)); [ $i -gt 600 ] && { echo "MemTotal stayed at $(memtotal_kib) kB"; return 1; }
    sleep 0.1
  done
}
echo "@@WAITFOR plug@@"
step plugged wait_memtotal -ge $((before + ${Math.floor((DIMM_BYTES / 1024) * 0.9)}))
stamp plug
memory_report plugged
cp_big() {
  dd if=/mnt/big.bin of=/mnt/big.copy bs=1M 2>/dev/null || return 1
  expect_eq "$(stat -c %s /mnt/big.copy)" ${COPY_BYTES} size
}
step big_copy cp_big
stamp copy
memory_report copied
# Empty the DIMM's page cache so Linux can offline it for the unplug.
step drop_caches sh -c 'sync && echo 3 > /proc/sys/vm/drop_caches'
echo "@@WAITFOR unplug@@"
step unplugged wait_memtotal -le $((before + 65536))
stamp unplug
memory_report unplugged
io_after() {
  dd if=/dev/urandom of=/mnt/after.bin bs=64k count=64 2>/dev/null || return 1
  sync; echo 3 > /proc/sys/vm/drop_caches
  val after_md5 "$(md5sum /mnt/after.bin | cut -d' ' -f1)"
}
step io_after_unplug io_after
step umount umount /mnt
stamp umount
finish
`;
const STEPS = ['mount', 'write_before', 'plugged', 'big_copy', 'drop_caches', 'unplugged', 'io_after_unplug', 'umount'];

interface HostSide {
  plugError?: string;
  memoryDevices?: Array<{ type: string; data: { addr: number; size: number; id?: string } }>;
  unplugError?: string;
  deleted?: QmpEvent;
}

/** The host's half: plug when the guest asks, unplug when it asks. Errors are kept for the asserts. */
async function driveHotplug(watch: ConsoleWatch, qmpSocket: string): Promise<HostSide> {
  const out: HostSide = {};
  let qmp: QmpClient | undefined;
  try {
    await watch.waitFor(/@@WAITFOR plug@@/, 180_000);
    qmp = await QmpClient.connect(qmpSocket);
    await qmp.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'hp0', size: DIMM_BYTES, share: true });
    await qmp.execute('device_add', { driver: 'pc-dimm', id: 'dimm0', memdev: 'hp0' });
    out.memoryDevices = await qmp.execute('query-memory-devices');
  } catch (e) {
    out.plugError = (e as Error).message;
    qmp?.close();
    return out;
  }
  try {
    await watch.waitFor(/@@WAITFOR unplug@@/, 300_000);
    const from = qmp.events.length;
    await qmp.execute('device_del', { id: 'dimm0' });
    out.deleted = await qmp.waitForEvent('DEVICE_DELETED', 60_000, (e) => e.data?.device === 'dimm0', from);
    await qmp.execute('object-del', { id: 'hp0' });
  } catch (e) {
    out.unplugError = (e as Error).message;
  } finally {
    qmp.close();
  }
  return out;
}

t.test(`memory hot-plug under a mounted share against the ${KIND} daemon`, { skip }, async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `vfsd-hotplug-${KIND}-`));
  const share = path.join(root, 'share');
  const sock = path.join(root, 'vfs.sock');
  const qmpSocket = path.join(root, 'qmp.sock');
  fs.mkdirSync(share);
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  let t0 = Date.now();
  const bigSha = writeRandomFile(path.join(share, 'big.bin'), COPY_BYTES);
  const genMs = Date.now() - t0;

  // debug: our daemon then logs every vhost-user message, REM_MEM_REG included
  const daemon = await startDaemon(KIND, { sharedDir: share, socketPath: sock, extraArgs: KIND === 'ours' ? ['--log-level=debug'] : undefined });
  t.teardown(() => daemon.stop(5000));
  const watch = new ConsoleWatch();
  const refusal = abortOnMemoryRefusal(daemon);
  const run = runGuest({
    signal: refusal.signal,
    socketPath: sock,
    tag: TAG,
    script: SCRIPT,
    memMiB: BASE_MIB,
    memSlots: 4,
    maxMemMiB: 16 * 1024,
    qmpSocket,
    kernelArgs: ['memhp_default_state=online_movable'],
    timeoutSec: 300,
    onLine: (l) => {
      if (process.env.VIRTIOFSD_TS_E2E_VERBOSE) console.error(`[hotplug] ${l}`);
      watch.feed(l);
    },
  }).finally(() => {
    watch.end();
    refusal.stop();
  });
  const host = await driveHotplug(watch, qmpSocket);
  const r = await run;

  t.equal(host.plugError, undefined, 'QMP object-add + device_add of a 3 GiB memfd DIMM');
  const dimm = host.memoryDevices?.find((d) => d.data.id === 'dimm0');
  t.equal(dimm?.data.size, DIMM_BYTES, 'QEMU lists the DIMM', { devices: host.memoryDevices });
  if (!checkGuestRun(t, 'hotplug', r, STEPS, daemon)) return;

  const report = (label: string): GuestMemoryView | null => {
    const v = parseMemoryReport(r.output, label);
    if (v) t.comment(`${label}: ${describeMemory(v)}`);
    return v;
  };
  const boot = report('boot');
  const plugged = report('plugged');
  const copied = report('copied');
  const unplugged = report('unplugged');
  const movable = (v: GuestMemoryView | null) => v?.zones.get('Movable') ?? { present: 0, managed: 0, free: 0 };

  // The guest got the DIMM where QEMU put it, as ZONE_MOVABLE, and used it for the copy.
  const grown = ((plugged?.memTotalKiB ?? 0) - (boot?.memTotalKiB ?? 0)) * 1024;
  t.ok(grown >= DIMM_BYTES * 0.95, `guest MemTotal grew by the DIMM (${gib(grown)})`);
  const dimmRam = dimm && plugged?.ram.find((x) => x.start === BigInt(dimm.data.addr));
  t.equal(dimmRam ? Number(dimmRam.end - dimmRam.start) : 0, DIMM_BYTES, `guest System RAM at the DIMM's address 0x${dimm?.data.addr.toString(16)}`);
  t.ok(dimm && dimm.data.addr >= 4 * GIB, 'the DIMM lies above 4 GiB guest-physical');
  t.equal(movable(plugged).present * 4096, DIMM_BYTES, 'the DIMM was onlined as ZONE_MOVABLE');
  const used = (movable(plugged).free - movable(copied).free) * 4096;
  t.ok(used >= COPY_BYTES * 0.75, `the copy's page cache came from the DIMM (${gib(used)} of ZONE_MOVABLE taken)`);

  // Host side: the copy made in DIMM buffers is the original, and the share outlived the unplug.
  t0 = Date.now();
  t.equal(fs.readFileSync(path.join(share, 'before.txt'), 'utf8'), 'before-plug\n', 'write before the plug seen on the host');
  t.equal(fs.statSync(path.join(share, 'big.copy')).size, COPY_BYTES, 'size of the copy on the host');
  t.equal(sha256File(path.join(share, 'big.copy')), bigSha, `sha256 of the ${gib(COPY_BYTES)} copy made through DIMM buffers`);
  const verifyMs = Date.now() - t0;

  t.equal(host.unplugError, undefined, 'QMP device_del: DEVICE_DELETED, then object-del');
  t.ok(unplugged && unplugged.memTotalKiB <= (boot?.memTotalKiB ?? 0) + 65536, 'guest MemTotal back to the boot size after the unplug');
  t.equal(movable(unplugged).present, 0, 'no ZONE_MOVABLE left');
  t.equal(parseVals(r.output).get('after_md5'), md5(fs.readFileSync(path.join(share, 'after.bin'))), 'I/O after the unplug: host md5 matches the guest');

  if (KIND === 'ours') {
    // The daemon's own account: the region came and went while the share was mounted.
    const logs = await daemon.waitForLog(/REM_MEM_REG/, 5000);
    const totals = [...logs.matchAll(/guest memory: region added, (\d+) MiB mapped/g)].map((m) => Number(m[1]));
    t.ok(Math.max(0, ...totals) * MIB >= BASE_MIB * MIB + DIMM_BYTES, `daemon mapped the DIMM: region added, totals ${totals.join(', ')} MiB`, { logs });
    t.notMatch(logs, /ADD_MEM_REG (rejected|failed)/, 'daemon accepted ADD_MEM_REG');
    t.match(logs, /vhost-user: REM_MEM_REG/, 'daemon got REM_MEM_REG for the unplug');
    t.notMatch(logs, /REM_MEM_REG (rejected|failed)/, 'daemon accepted REM_MEM_REG');
    // 2 GiB + the DIMM no longer fit the window: the daemon switched to apertures, and back after the unplug.
    t.match(logs, /reaching it through apertures/, 'daemon switched to apertures when the DIMM came');
    const back = await daemon.waitForLog(/fits the window again/, 5000);
    t.match(back, /fits the window again/, 'and back to resident after the unplug');
    const ap = await apertureReport(daemon, 5000);
    t.ok(ap !== null && ap.hits > 0, 'I/O went through apertures while the DIMM was there');
    if (ap) t.comment(`apertures while the DIMM was plugged: ${ap.hits} hits, ${ap.misses} misses (${ap.rate}% hits)`);
    t.comment(`daemon memory log:\n${logs.split('\n').filter((l) => /guest memory|MEM_REG|MEM_TABLE|aperture|window/i.test(l)).join('\n')}`);
  }
  t.notMatch(r.stderr, /vhost.*(failed|error)/i, 'QEMU reported no vhost-user error', { stderr: r.stderr });
  t.comment(
    `timings: host file ${(genMs / 1000).toFixed(1)} s, userspace at ${((r.bootMs ?? 0) / 1000).toFixed(1)} s, ` +
      `guest steps: ${stepTimes(r.output, ['boot', 'mount', 'plug', 'copy', 'unplug', 'umount'])}, guest run ${(r.durationMs / 1000).toFixed(1)} s, host verify ${(verifyMs / 1000).toFixed(1)} s`,
  );
});
