// Foundation end-to-end test: a real Linux guest mounts the share through virtio-fs and does the basic
// file operations; every result is checked again on the host side.
//
// VIRTIOFSD_TS_E2E_DAEMON=reference runs it against QEMU's C virtiofsd (one connection per process);
// the default is our daemon (bin/virtiofsd-ts.js).
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  GUEST_PRELUDE,
  guestSkipReason,
  threadsOf,
  parseBlock,
  parseVals,
  runGuest,
  startDaemon,
  type DaemonHandle,
  type DaemonKind,
  type GuestResult,
} from '../../harness/index.js';
import { checkGuestRun } from './guest-checks.js';

const KIND: DaemonKind = process.env.VIRTIOFSD_TS_E2E_DAEMON === 'reference' ? 'reference' : 'ours';
const TAG = 'vfstest';
const skip = guestSkipReason(KIND);

const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const root = fs.mkdtempSync(path.join(os.tmpdir(), `vfsd-e2e-${KIND}-`));
const share = path.join(root, 'share');
const sock = path.join(root, 'vfs.sock');
const daemons: DaemonHandle[] = [];
const timings: string[] = [];

t.teardown(async () => {
  for (const d of daemons) await d.stop(5000);
  fs.rmSync(root, { recursive: true, force: true });
  if (timings.length) console.error(`# e2e ${KIND} boot timings: ${timings.join(', ')}`);
});

async function start(extra?: { args?: string[]; extraArgs?: string[] }, sharedDir = share): Promise<DaemonHandle> {
  const d = await startDaemon(KIND, { sharedDir, socketPath: sock, ...extra });
  daemons.push(d);
  return d;
}

/** Run a guest and emit one tap assertion per expected step, with the console on failure. */
async function boot(
  tt: Test,
  name: string,
  script: string,
  expectSteps: string[],
  onLine?: (l: string) => void,
  timeoutSec = 240,
): Promise<GuestResult> {
  const r = await runGuest({
    socketPath: sock,
    tag: TAG,
    script: GUEST_PRELUDE + script,
    timeoutSec,
    onLine: (l) => {
      if (process.env.VIRTIOFSD_TS_E2E_VERBOSE) console.error(`[${name}] ${l}`);
      onLine?.(l);
    },
  });
  timings.push(`${name} ${(r.durationMs / 1000).toFixed(1)}s (modules loaded ${r.bootMs === null ? "never" : `${(r.bootMs / 1000).toFixed(1)}s`})`);
  tt.comment(`${name}: ${r.durationMs} ms total, modules loaded at ${r.bootMs} ms`);
  checkGuestRun(tt, name, r, expectSteps, daemons.at(-1));
  return r;
}

// Script fragments --------------------------------------------------------------------------

const MOUNT = `
step mount mount -t virtiofs ${TAG} /mnt
grep -q " /mnt virtiofs " /proc/mounts || { echo "share not mounted"; finish; }
`;

const MANY = 300;
const LONG = 'file-with-a-rather-long-name-so-that-readdir-needs-several-buffers';

const SCRIPT1 =
  MOUNT +
  `
list() {
  echo "@@BEGIN list@@"
  cd /mnt/tree && { find . -type d | sed 's/^/d /'; find . -type f | sed 's/^/f /'; } | sort
  echo "@@END list@@"
}
step list list
step read_host_file sh -c 'echo "@@VAL read_md5 $(md5sum /mnt/hostfile.bin | cut -d" " -f1)@@"'
step host_content_before_boot expect_eq "$(cat /mnt/prechange.txt)" "hello from host"
write_big() {
  dd if=/dev/urandom of=/mnt/big bs=1M count=8 conv=fsync 2>/dev/null || return 1
  val write_md5 "$(md5sum /mnt/big | cut -d' ' -f1)"
  expect_eq "$(stat -c %s /mnt/big)" 8388608 size || return 1
  sync; echo 3 > /proc/sys/vm/drop_caches
  val reread_md5 "$(md5sum /mnt/big | cut -d' ' -f1)"
}
step write_big write_big
patch_copy() {
  cp /mnt/hostfile.bin /mnt/copy.bin || return 1
  printf 'PATCHED' | dd of=/mnt/copy.bin bs=1 seek=1000000 conv=notrunc 2>/dev/null || return 1
  val copy_md5 "$(md5sum /mnt/copy.bin | cut -d' ' -f1)"
}
step copy_and_patch patch_copy
step append sh -c 'echo line2 >> /mnt/prechange.txt'
mk() {
  mkdir /mnt/made && mkdir /mnt/gone && mkdir /mnt/gone/sub || return 1
  rmdir /mnt/gone/sub && rmdir /mnt/gone || return 1
  [ -d /mnt/made ] && [ ! -e /mnt/gone ] || return 1
  if rmdir /mnt/tree 2>/dev/null; then echo "rmdir of a non-empty dir succeeded"; return 1; fi
}
step mkdir_rmdir mk
rn() {
  echo renamed > /mnt/r1 && mv /mnt/r1 /mnt/r2 || return 1
  [ ! -e /mnt/r1 ] && expect_eq "$(cat /mnt/r2)" renamed || return 1
  mv /mnt/r2 /mnt/made/r3 && [ ! -e /mnt/r2 ] && expect_eq "$(cat /mnt/made/r3)" renamed || return 1
  echo old > /mnt/ow && echo new > /mnt/ow2 && mv /mnt/ow2 /mnt/ow || return 1
  expect_eq "$(cat /mnt/ow)" new && [ ! -e /mnt/ow2 ]
}
step rename rn
sl() {
  ln -s made/r3 /mnt/sl && [ -L /mnt/sl ] || return 1
  expect_eq "$(readlink /mnt/sl)" made/r3 && expect_eq "$(cat /mnt/sl)" renamed
}
step symlink sl
hl() {
  echo hl > /mnt/h1 && ln /mnt/h1 /mnt/h2 || return 1
  expect_eq "$(stat -c %h /mnt/h1)" 2 nlink && expect_eq "$(stat -c %i /mnt/h1)" "$(stat -c %i /mnt/h2)" ino || return 1
  val hl_ino "$(stat -c %i /mnt/h1)"
}
step hardlink hl
ul() {
  echo x > /mnt/u && rm /mnt/u && [ ! -e /mnt/u ] || return 1
  echo y > /mnt/hu && ln /mnt/hu /mnt/hu2 && rm /mnt/hu && expect_eq "$(stat -c %h /mnt/hu2)" 1 nlink-after-unlink
}
step unlink ul
cm() {
  touch /mnt/m && chmod 640 /mnt/m && expect_eq "$(stat -c %a /mnt/m)" 640 || return 1
  chmod 750 /mnt/made && expect_eq "$(stat -c %a /mnt/made)" 750
}
step chmod cm
tr_() {
  printf abcdef > /mnt/t && truncate -s 3 /mnt/t && expect_eq "$(cat /mnt/t)" abc || return 1
  truncate -s 100000 /mnt/t2 && expect_eq "$(stat -c %s /mnt/t2)" 100000
}
step truncate tr_
step utimes sh -c 'touch -d "2020-01-02 03:04:05" /mnt/m && [ "$(stat -c %Y /mnt/m)" = 1577934245 ]'
st() {
  val stat_file "$(stat -c '%s %a %h %i %u %g %Y' /mnt/tree/a/b/c.txt)"
  val stat_dir "$(stat -c '%a %h %i' /mnt/tree/a)"
}
step stat st
step statfs sh -c '[ "$(stat -f -c %b /mnt)" -gt 0 ] && [ "$(stat -f -c %S /mnt)" -gt 0 ]'
many() {
  mkdir /mnt/many || return 1
  i=0; while [ $i -lt ${MANY} ]; do : > /mnt/many/${LONG}-$i || return 1; i=$((i+1)); done
  expect_eq "$(ls /mnt/many | wc -l)" ${MANY} count || return 1
  i=0; while [ $i -lt 100 ]; do rm /mnt/many/${LONG}-$i || return 1; i=$((i+1)); done
  expect_eq "$(ls /mnt/many | wc -l)" ${MANY - 100} count-after-rm
}
step many_files many
cd /
step umount umount /mnt
finish
`;

const SCRIPT1_STEPS = [
  'mount', 'list', 'read_host_file', 'host_content_before_boot', 'write_big', 'copy_and_patch', 'append',
  'mkdir_rmdir', 'rename', 'symlink', 'hardlink', 'unlink', 'chmod', 'truncate', 'utimes', 'stat', 'statfs',
  'many_files', 'umount',
];

function script2(bigMd5: string): string {
  return (
    MOUNT +
    `
step big_survives sh -c '[ "$(md5sum /mnt/big | cut -d" " -f1)" = "${bigMd5}" ]'
step rename_survives expect_eq "$(cat /mnt/made/r3)" renamed
step hardlink_survives expect_eq "$(stat -c %h /mnt/h2)" 2
step many_survives expect_eq "$(ls /mnt/many | wc -l)" ${MANY - 100}
echo @@IDLE_START@@; sleep 3; echo @@IDLE_END@@
step write_again sh -c 'echo "second boot" > /mnt/boot2.txt'
step umount umount /mnt
finish
`
  );
}
const SCRIPT2_STEPS = ['mount', 'big_survives', 'rename_survives', 'hardlink_survives', 'many_survives', 'write_again', 'umount'];

/** CPU ticks (USER_HZ) of a daemon, all threads. */
function daemonTicks(pid: number): number {
  let n = 0;
  for (const st of threadsOf(pid).values()) n += st.ticks;
  return n;
}

const SCRIPT3 =
  MOUNT +
  `
step read_host_file sh -c 'echo "@@VAL read_md5 $(md5sum /mnt/hostfile.bin | cut -d" " -f1)@@"'
w() {
  dd if=/dev/urandom of=/mnt/w3 bs=64k count=32 2>/dev/null || return 1
  val w3_md5 "$(md5sum /mnt/w3 | cut -d' ' -f1)"
}
step write w
live() {
  expect_eq "$(cat /mnt/mut.txt)" v1 before || return 1
  echo "@@WAITFOR live@@" > /dev/console
  i=0
  while [ ! -e /mnt/live.txt ]; do
    i=$((i+1)); [ $i -gt 600 ] && { echo "timed out waiting for live.txt"; return 1; }
    sleep 0.1
  done
  expect_eq "$(cat /mnt/live.txt)" "created by host" live || return 1
  expect_eq "$(cat /mnt/mut.txt)" "v2 changed by host" mut || return 1
  [ ! -e /mnt/gone-on-host ] || { echo "file removed on host still visible"; return 1; }
}
step host_change_during_run live
step mkdir_rename sh -c 'mkdir /mnt/d3 && echo z > /mnt/d3/a && mv /mnt/d3/a /mnt/d3/b && [ "$(cat /mnt/d3/b)" = z ]'
step umount umount /mnt
finish
`;
const SCRIPT3_STEPS = ['mount', 'read_host_file', 'write', 'host_change_during_run', 'mkdir_rename', 'umount'];

// Host side fixtures -------------------------------------------------------------------------

function prepareShare(dir: string): { hostfile: Buffer; expectedList: string[] } {
  fs.mkdirSync(path.join(dir, 'tree/a/b'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'tree/e'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'tree/a/f'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'tree/a/b/c.txt'), 'c contents\n');
  fs.writeFileSync(path.join(dir, 'tree/a/d.txt'), 'd\n');
  fs.writeFileSync(path.join(dir, 'tree/top.txt'), 'top\n');
  fs.writeFileSync(path.join(dir, 'tree/e/empty'), '');
  const hostfile = randomBytes(1536 * 1024 + 123);
  fs.writeFileSync(path.join(dir, 'hostfile.bin'), hostfile);
  fs.writeFileSync(path.join(dir, 'prechange.txt'), 'hello from host\n');
  const expectedList = [
    'd .', 'd ./a', 'd ./a/b', 'd ./a/f', 'd ./e',
    'f ./a/b/c.txt', 'f ./a/d.txt', 'f ./e/empty', 'f ./top.txt',
  ].sort();
  return { hostfile, expectedList };
}

// The tests ---------------------------------------------------------------------------------

t.test(`virtio-fs foundation against ${KIND} daemon`, { skip: skip ?? false, bail: false }, async (tt) => {
  fs.mkdirSync(share, { recursive: true });
  const { hostfile, expectedList } = prepareShare(share);
  let daemon: DaemonHandle | undefined;
  let bigMd5 = '';

  await tt.test('boot 1: full workload (default options)', async (t1) => {
    daemon = await start(KIND === 'reference' ? { extraArgs: ['-o', 'cache=auto'] } : {});
    const r = await boot(t1, 'boot1', SCRIPT1, SCRIPT1_STEPS);
    if (r.rc === null) return;
    const vals = parseVals(r.output);
    const P = (p: string) => path.join(share, p);

    t1.same(parseBlock(r.output, 'list'), expectedList, 'guest listing of the host tree');
    t1.equal(vals.get('read_md5'), md5(hostfile), 'guest md5 of a host file matches');

    const big = fs.readFileSync(P('big'));
    bigMd5 = md5(big);
    t1.equal(big.length, 8 << 20, 'host sees the 8 MiB guest file size');
    t1.equal(vals.get('write_md5'), bigMd5, 'host md5 of the guest-written file matches the guest');
    t1.equal(vals.get('reread_md5'), bigMd5, 'guest re-read after drop_caches matches');

    const expectedCopy = Buffer.from(hostfile);
    expectedCopy.write('PATCHED', 1000000, 'latin1');
    t1.equal(md5(fs.readFileSync(P('copy.bin'))), md5(expectedCopy), 'host sees the copied + patched file');
    t1.equal(vals.get('copy_md5'), md5(expectedCopy), 'guest md5 of the patched copy');
    t1.equal(fs.readFileSync(P('prechange.txt'), 'utf8'), 'hello from host\nline2\n', 'append seen on host');

    t1.ok(fs.statSync(P('made')).isDirectory(), 'mkdir seen on host');
    t1.notOk(fs.existsSync(P('gone')), 'rmdir seen on host');
    t1.equal(fs.readFileSync(P('made/r3'), 'utf8'), 'renamed\n', 'rename seen on host');
    t1.notOk(fs.existsSync(P('r1')) || fs.existsSync(P('r2')), 'rename sources gone on host');
    t1.equal(fs.readFileSync(P('ow'), 'utf8'), 'new\n', 'rename over an existing file');
    t1.notOk(fs.existsSync(P('ow2')), 'rename-over source gone');

    t1.ok(fs.lstatSync(P('sl')).isSymbolicLink(), 'host sees a symlink');
    t1.equal(fs.readlinkSync(P('sl')), 'made/r3', 'symlink target on host');

    const h1 = fs.statSync(P('h1'));
    const h2 = fs.statSync(P('h2'));
    t1.equal(h1.nlink, 2, 'host nlink of hard link is 2');
    t1.equal(h1.ino, h2.ino, 'hard links share the host inode');
    t1.equal(vals.get('hl_ino'), String(h1.ino), 'guest inode number equals host inode number');

    t1.notOk(fs.existsSync(P('u')), 'unlink seen on host');
    t1.notOk(fs.existsSync(P('hu')), 'unlinked hard link gone on host');
    t1.equal(fs.statSync(P('hu2')).nlink, 1, 'remaining link has nlink 1 on host');

    const m = fs.statSync(P('m'));
    t1.equal(m.mode & 0o7777, 0o640, 'chmod seen on host');
    t1.equal(fs.statSync(P('made')).mode & 0o7777, 0o750, 'directory chmod seen on host');
    t1.equal(Math.floor(m.mtimeMs / 1000), 1577934245, 'utimes seen on host');

    t1.equal(fs.readFileSync(P('t'), 'utf8'), 'abc', 'truncate shrink seen on host');
    const t2 = fs.readFileSync(P('t2'));
    t1.equal(t2.length, 100000, 'truncate grow size on host');
    t1.ok(t2.every((b) => b === 0), 'grown file reads as zeros on host');

    const cs = fs.statSync(P('tree/a/b/c.txt'));
    t1.equal(
      vals.get('stat_file'),
      [cs.size, (cs.mode & 0o7777).toString(8), cs.nlink, cs.ino, cs.uid, cs.gid, Math.floor(cs.mtimeMs / 1000)].join(' '),
      'guest stat (size mode nlink ino uid gid mtime) agrees with host',
    );
    const ds = fs.statSync(P('tree/a'));
    t1.equal(vals.get('stat_dir'), [(ds.mode & 0o7777).toString(8), ds.nlink, ds.ino].join(' '), 'guest dir stat agrees');

    t1.equal(fs.readdirSync(P('many')).length, MANY - 100, 'host sees the surviving many-files entries');
  });

  await tt.test('boot 2: a second guest connection', async (t2) => {
    if (!daemon) {
      t2.fail('no daemon from boot 1 to reconnect to');
      return;
    }
    if (KIND === 'ours') {
      await sleep(500);
      t2.equal(daemon.exitCode(), undefined, 'our daemon survives the guest disconnect', { logs: daemon.logs() });
      t2.ok(fs.existsSync(sock), 'socket still present for the next connection');
    } else {
      // The reference serves one connection and exits; start a new one on the same socket path.
      const st = await Promise.race([daemon.exited, sleep(10000).then(() => null)]);
      t2.ok(st, 'reference daemon exits after its connection closes');
      daemon = await start({ extraArgs: ['-o', 'cache=auto'] });
    }
    // The guest sits idle for 3 s right after a burst of requests (the listing of many/): a daemon that
    // polls its rings before sleeping must stop doing so, not burn a core while nothing comes.
    const idle: { start?: [number, number]; end?: [number, number] } = {};
    const mark = (): [number, number] => [daemonTicks(daemon!.pid), performance.now()];
    const r = await boot(t2, 'boot2', script2(bigMd5 || 'none'), SCRIPT2_STEPS, (line) => {
      if (line.includes('@@IDLE_START@@')) idle.start = mark();
      if (line.includes('@@IDLE_END@@')) idle.end = mark();
    });
    if (r.rc === null) return;
    if (idle.start && idle.end) {
      const cpu = (idle.end[0] - idle.start[0]) / 100;
      const wall = (idle.end[1] - idle.start[1]) / 1000;
      t2.ok(wall > 2 && cpu < 0.05 * wall, `daemon CPU while the guest idles: ${cpu.toFixed(2)} s over ${wall.toFixed(1)} s (< 5%)`);
    } else {
      t2.fail('the idle markers did not come back from the guest');
    }
    t2.equal(fs.readFileSync(path.join(share, 'boot2.txt'), 'utf8'), 'second boot\n', 'second boot write seen on host');
    if (KIND === 'ours') {
      await sleep(300);
      t2.equal(daemon!.exitCode(), undefined, 'daemon still running after the second guest');
      const d = daemon!;
      const st = await d.stop(10000);
      t2.equal(st.signal, null, 'daemon exits on SIGTERM by itself (not killed)', { logs: d.logs() });
      t2.equal(st.code, 0, 'daemon exit code after SIGTERM', { logs: d.logs() });
      t2.notOk(fs.existsSync(sock), 'daemon removed its socket on exit');
    } else {
      const st = await Promise.race([daemon!.exited, sleep(10000).then(() => null)]);
      t2.equal(st?.code, 0, 'reference exits 0 after the guest powers off');
    }
  });

  await tt.test('boot 3: -o source=DIR -o cache=none, host changes during the run', async (t3) => {
    const share3 = path.join(root, 'share3');
    fs.mkdirSync(share3);
    const hostfile3 = randomBytes(700 * 1024);
    fs.writeFileSync(path.join(share3, 'hostfile.bin'), hostfile3);
    fs.writeFileSync(path.join(share3, 'mut.txt'), 'v1\n');
    fs.writeFileSync(path.join(share3, 'gone-on-host'), 'x');
    const d3 =
      KIND === 'ours'
        ? await start({ args: [`--socket-path=${sock}`, '-o', `source=${share3}`, '-o', 'cache=none'] }, share3)
        : await start({ extraArgs: ['-o', 'cache=none'] }, share3);
    let changed = false;
    const r = await boot(t3, 'boot3', SCRIPT3, SCRIPT3_STEPS, (line) => {
      if (!changed && line.includes('@@WAITFOR live@@')) {
        changed = true;
        fs.writeFileSync(path.join(share3, 'mut.txt'), 'v2 changed by host\n');
        fs.unlinkSync(path.join(share3, 'gone-on-host'));
        fs.writeFileSync(path.join(share3, '.live.tmp'), 'created by host\n');
        fs.renameSync(path.join(share3, '.live.tmp'), path.join(share3, 'live.txt'));
      }
    });
    if (r.rc === null) return;
    t3.ok(changed, 'host saw the guest waiting and changed the share');
    const vals = parseVals(r.output);
    t3.equal(vals.get('read_md5'), md5(hostfile3), 'guest md5 of a host file (cache=none)');
    const w3 = fs.readFileSync(path.join(share3, 'w3'));
    t3.equal(w3.length, 2 << 20, 'host size of guest-written file');
    t3.equal(vals.get('w3_md5'), md5(w3), 'host md5 of guest-written file matches');
    t3.equal(fs.readFileSync(path.join(share3, 'd3/b'), 'utf8'), 'z\n', 'mkdir+rename seen on host');
    if (KIND === 'ours') {
      const st = await d3.stop(10000);
      t3.equal(st.code, 0, 'daemon exit code after SIGTERM', { logs: d3.logs() });
    }
  });
});
