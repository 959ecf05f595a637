// Rootless mode (docs/sandbox.md) through real daemon processes started as an unprivileged user (nobody,
// 65534), looked at from the host as an operator would: the daemon's user namespace and its id maps,
// /proc/PID/status of every thread (CapEff, CapBnd, NoNewPrivs, Seccomp), /proc/PID/root; requests
// served through the project's own frontend, as guest root (files owned by the host user) and as a guest
// user the namespace does not map (EPERM, nothing created); --uid-map/--gid-map through newuidmap and
// newgidmap (the test adds a range for nobody to /etc/subuid and /etc/subgid and puts the files back
// afterwards); the helper missing or refusing; user namespaces switched off (the fall-back and the
// refusal); what is refused as root or as non-root. Needs root (to start daemons as another user):
// skipped, saying so, without it.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { decodeEntryOut } from '../../src/abi/fuse.js';
import { startDaemon } from '../../harness/index.js';
import { fuseSession } from '../fuzz/hostile-kit.js';
import { DEFAULT_CAPS, capMask } from '../../src/sandbox/caps.js';

const root = process.getuid?.() === 0;
const BIN = path.join(path.dirname(new URL(import.meta.url).pathname), '../../../bin/virtiofsd-ts.js');
const NOBODY = 65534;
const EPERM = 1;
const NEED_ROOT = root ? false : 'needs root to start the daemon as another user';
const hasNewuidmap = spawnSync('sh', ['-c', 'command -v newuidmap && command -v newgidmap']).status === 0;
if (root && !hasNewuidmap && process.env.CI === 'true') t.fail('newuidmap/newgidmap missing (Debian package uidmap): the --uid-map test cannot run in CI');

// The daemon runs as nobody: it must be able to read this checkout.
if (root) {
  const r = spawnSync(process.execPath, ['-e', `require('fs').readFileSync(${JSON.stringify(BIN)})`], { uid: NOBODY, gid: NOBODY });
  if (r.status !== 0) t.fail(`${BIN} is not readable by uid ${NOBODY}: every rootless test below would fail to start`);
}

/** Per thread: CapEff, CapBnd, NoNewPrivs, Seccomp. */
function threads(pid: number): Array<{ tid: string; eff: bigint; bnd: bigint; nnp: string; seccomp: string }> {
  return fs.readdirSync(`/proc/${pid}/task`).map((tid) => {
    const s = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    const f = (k: string): string => new RegExp(`^${k}:\\s+(\\S+)`, 'm').exec(s)?.[1] ?? '?';
    return { tid, eff: BigInt(`0x${f('CapEff')}`), bnd: BigInt(`0x${f('CapBnd')}`), nnp: f('NoNewPrivs'), seccomp: f('Seccomp') };
  });
}

function maskOf(names: readonly string[]): bigint {
  const { lo, hi } = capMask(names);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** /proc/PID/FILE with its columns' spacing squeezed: "0 65534 1". */
function procMap(pid: number, file: string): string {
  return fs.readFileSync(`/proc/${pid}/${file}`, 'utf8').trim().split('\n').map((l) => l.trim().split(/\s+/).join(' ')).join('\n');
}

/** The "Uid:" line of /proc/PID/status: real, effective, saved, fs uid as the host sees them. */
function hostUids(pid: number): string {
  return /^Uid:\s+(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]?.trim().split(/\s+/).join(' ') ?? '?';
}

/** A temporary directory (the socket's) and share in it, both owned by `owner`; hello.txt its, root.txt root's. */
function setup(t: Test, owner: number): { tmp: string; share: string; sock: string } {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-rootless-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const share = path.join(tmp, 'share');
  fs.mkdirSync(share);
  fs.writeFileSync(path.join(share, 'hello.txt'), 'hello from the host\n');
  fs.writeFileSync(path.join(share, 'root.txt'), 'a file of root\n');
  fs.chmodSync(tmp, 0o755);
  for (const p of [tmp, share, path.join(share, 'hello.txt')]) fs.chownSync(p, owner, owner);
  return { tmp, share, sock: path.join(tmp, 'vfsd.sock') };
}

/** /etc/subuid and /etc/subgid grant nobody `start..start+count-1`; the files as they were afterwards. */
function grantSubordinateIds(t: Test, start: number, count: number): void {
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const before = fs.existsSync(file) ? fs.readFileSync(file) : undefined;
    t.teardown(() => (before === undefined ? fs.rmSync(file, { force: true }) : fs.writeFileSync(file, before)));
    const text = before?.toString() ?? '';
    fs.writeFileSync(file, `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}nobody:${start}:${count}\n`);
  }
}

t.test('the default as a non-root user: rootless mode, confined, serving, a clean stop', { skip: NEED_ROOT }, async (t) => {
  const { share, sock } = setup(t, NOBODY);
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock, extraArgs: ['--thread-pool-size=2', `--socket-group=${NOBODY}`], uid: NOBODY, gid: NOBODY });
  t.teardown(() => daemon.stop());
  t.not(daemon.pid, daemon.spawnedPid, 'the daemon is the launcher\'s child');
  const sockSt = fs.statSync(sock);
  t.same([sockSt.gid, sockSt.mode & 0o777], [NOBODY, 0o660], '--socket-group: the host group (0 in the namespace), 0660');
  t.match(daemon.logs(), /sandbox: rootless: the daemon runs as pid \d+ in new user, mount, pid, IPC, network namespaces; uid map 0 → 65534, gid map 0 → 65534/);
  t.match(daemon.logs(), /sandbox: in a user namespace \(uid_map 0 65534 1; gid_map 0 65534 1; setgroups deny\)/, 'it says once what unmapped ids mean');
  for (const ns of ['user', 'mnt', 'pid', 'net', 'ipc']) {
    t.not(fs.readlinkSync(`/proc/${daemon.pid}/ns/${ns}`), fs.readlinkSync(`/proc/self/ns/${ns}`), `its own ${ns} namespace`);
  }
  t.equal(procMap(daemon.pid, 'uid_map'), '0 65534 1', 'uid_map: uid 0 inside is nobody outside, nothing else');
  t.equal(procMap(daemon.pid, 'gid_map'), '0 65534 1', 'gid_map');
  t.equal(procMap(daemon.pid, 'setgroups'), 'deny', 'setgroups denied (the map was written without newgidmap)');
  t.equal(hostUids(daemon.pid), '65534 65534 65534 65534', 'to the host it is nobody');
  const want = maskOf(DEFAULT_CAPS);
  const ts = threads(daemon.pid);
  t.ok(ts.length >= 8, `${ts.length} threads`);
  t.same(ts.filter((x) => x.eff !== want || x.bnd !== want || x.nnp !== '1' || x.seccomp !== '2'), [],
    'every thread: CapEff = CapBnd = the file server set (over its own namespace), NoNewPrivs 1, Seccomp 2');
  t.same(fs.readdirSync(`/proc/${daemon.pid}/root`).sort(), fs.readdirSync(share).sort(), 'its root is the share');
  t.equal(fs.statSync(`/proc/${daemon.pid}/root`).ino, fs.statSync(share).ino, '(the same directory)');

  const { s, rb, call } = await fuseSession({ sock } as Parameters<typeof fuseSession>[0]);
  const hello = await call(rb.lookup(1n, 'hello.txt'));
  t.equal(hello.error, 0, 'LOOKUP');
  t.same([decodeEntryOut(hello.view, 0).attr.uid, decodeEntryOut(hello.view, 0).attr.gid], [0, 0], 'a file of the host user is root\'s to the guest');
  const node = hello.view.getBigUint64(0, true);
  const open = await call(rb.open(node, 0));
  t.equal(open.error, 0, 'OPEN');
  const read = await call(rb.read(node, open.view.getBigUint64(0, true), 0n, 100), 16 + 100);
  t.equal(Buffer.from(read.data).toString(), 'hello from the host\n', 'READ returns the host file');
  const other = await call(rb.lookup(1n, 'root.txt'));
  t.equal(other.error, 0, 'LOOKUP of a file of another host user (root)');
  t.same([decodeEntryOut(other.view, 0).attr.uid, decodeEntryOut(other.view, 0).attr.gid], [65534, 65534], 'its owner is unmapped: the overflow id');
  // several of each, so that both workers serve some; guest root's requests work after a refused one
  for (let i = 0; i < 4; i++) {
    rb.uid = 1234;
    rb.gid = 1234;
    t.equal((await call(rb.mkdir(1n, `by-1234-${i}`, 0o755))).error, -EPERM, `MKDIR as guest uid 1234 (unmapped): EPERM (${i})`);
    t.notOk(fs.existsSync(path.join(share, `by-1234-${i}`)), '... and nothing is created');
    rb.uid = 0;
    rb.gid = 0;
    t.equal((await call(rb.mkdir(1n, `by-root-${i}`, 0o755))).error, 0, `MKDIR as guest root (${i})`);
    const st = fs.statSync(path.join(share, `by-root-${i}`));
    t.same([st.uid, st.gid], [NOBODY, NOBODY], '... owned by the unprivileged host user');
  }
  t.equal((await call(rb.mknod(1n, 'dev', 0o20644, 0x103))).error, -EPERM, 'MKNOD of a device: EPERM (CAP_MKNOD counts only in the initial namespace)');
  t.equal((await call(rb.mknod(1n, 'fifo', 0o10644, 0))).error, 0, 'MKNOD of a FIFO works');
  t.equal((await call(rb.create(1n, 'new.txt', 0o101 /* O_WRONLY|O_CREAT */, 0o644))).error, 0, 'CREATE');
  t.equal(fs.statSync(path.join(share, 'new.txt')).uid, NOBODY, '... owned by the host user');
  s.close();
  t.notMatch(daemon.logs(), /internal error|cannot switch this thread back/, 'no internal error on the way');

  const st = await daemon.stop();
  t.equal(st.code, 0, 'SIGTERM: exit 0 through the launcher');
  t.notOk(fs.existsSync(sock), 'the socket file is gone');
});

t.test('--uid-map/--gid-map: a range through newuidmap/newgidmap', { skip: !root ? NEED_ROOT : hasNewuidmap ? false : 'newuidmap/newgidmap missing (Debian package uidmap)' }, async (t) => {
  const BASE = 300000;
  grantSubordinateIds(t, BASE, 65536);
  const { share, sock } = setup(t, BASE);
  fs.chownSync(path.join(share, 'root.txt'), NOBODY, NOBODY);
  fs.chmodSync(share, 0o777); // guest 1234 (host 301234) creates in it
  const daemon = await startDaemon('ours', {
    sharedDir: share,
    socketPath: sock,
    extraArgs: ['--thread-pool-size=2', `--uid-map=:0:${BASE}:65536:`, `--gid-map=/0/${BASE}/65536/`],
    uid: NOBODY,
    gid: NOBODY,
  });
  t.teardown(() => daemon.stop());
  t.match(daemon.logs(), /uid map 0\.\.65535 → 300000\.\.365535, gid map 0\.\.65535 → 300000\.\.365535/);
  t.equal(procMap(daemon.pid, 'uid_map'), `0 ${BASE} 65536`, 'uid_map as asked');
  t.equal(procMap(daemon.pid, 'gid_map'), `0 ${BASE} 65536`, 'gid_map as asked');
  t.equal(procMap(daemon.pid, 'setgroups'), 'allow', 'newgidmap leaves setgroups allowed');
  t.equal(hostUids(daemon.pid), `${BASE} ${BASE} ${BASE} ${BASE}`, 'the daemon switched to namespace uid 0 = host 300000');
  const want = maskOf(DEFAULT_CAPS);
  t.same(threads(daemon.pid).filter((x) => x.eff !== want || x.bnd !== want || x.nnp !== '1' || x.seccomp !== '2'), [], 'every thread confined');
  const { s, rb, call } = await fuseSession({ sock } as Parameters<typeof fuseSession>[0]);
  for (let i = 0; i < 4; i++) {
    rb.uid = 1234;
    rb.gid = 5678;
    t.equal((await call(rb.mkdir(1n, `d${i}`, 0o755))).error, 0, `MKDIR as guest 1234:5678 (${i})`);
    const st = fs.statSync(path.join(share, `d${i}`));
    t.same([st.uid, st.gid], [BASE + 1234, BASE + 5678], '... owned by host 301234:305678');
  }
  rb.uid = 0;
  rb.gid = 0;
  const other = await call(rb.lookup(1n, 'root.txt'));
  t.same([decodeEntryOut(other.view, 0).attr.uid, decodeEntryOut(other.view, 0).attr.gid], [65534, 65534], 'a file of host nobody (outside the range): the overflow id');
  s.close();
  t.equal((await daemon.stop()).code, 0, 'a clean stop');
});

t.test('the helpers missing or refusing: a clear error, exit 1, nothing served', { skip: !root ? NEED_ROOT : hasNewuidmap ? false : 'newuidmap missing' }, async (t) => {
  const { share, sock } = setup(t, NOBODY);
  const run = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
    spawnSync(process.execPath, [BIN, `--socket-path=${sock}`, `--shared-dir=${share}`, ...args], { uid: NOBODY, gid: NOBODY, encoding: 'utf8', timeout: 20_000, env });
  // no /etc/subuid line grants nobody 400000..
  let r = run(['--uid-map=:0:400000:10:']);
  t.equal(r.status, 1, 'newuidmap refuses: exit 1');
  t.match(r.stderr, /sandbox: --uid-map: newuidmap \d+ 0 400000 10 failed \(exit 1\): newuidmap: .*\(does \/etc\/subuid grant this user that range\?\)/);
  t.match(r.stderr, /the launcher did not release the daemon/, 'the child was never let go');
  t.notOk(fs.existsSync(sock), 'no socket: nothing served');
  r = run(['--gid-map=:0:400000:10:'], { ...process.env, PATH: '/nonexistent' });
  t.equal(r.status, 1, 'no newgidmap: exit 1');
  t.match(r.stderr, /sandbox: --gid-map needs newgidmap, which cannot run: newgidmap is not installed \(Debian: the uidmap package\)/);
  t.notOk(fs.existsSync(sock), 'no socket');
});

t.test('what is refused: maps as root, chroot as non-root', { skip: NEED_ROOT }, async (t) => {
  const { share, tmp } = setup(t, NOBODY);
  const args = [BIN, `--socket-path=${tmp}/x.sock`, `--shared-dir=${share}`];
  let r = spawnSync(process.execPath, [...args, '--uid-map=:0:100000:65536:'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 2, '--uid-map as root: exit 2 (as virtiofsd)');
  t.match(r.stderr, /--uid-map: only for a non-root user \(rootless mode, a user namespace\); as root use --translate-uid/);
  r = spawnSync(process.execPath, [...args, '--sandbox=chroot'], { uid: NOBODY, gid: NOBODY, encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 2, '--sandbox=chroot as non-root: exit 2');
  t.match(r.stderr, /--sandbox=chroot: needs root; as a non-root user use --sandbox=namespace/);
  r = spawnSync(process.execPath, [...args, '--socket-group=0'], { uid: NOBODY, gid: NOBODY, encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 2, 'rootless, --socket-group of a group the namespace does not map: exit 2');
  t.match(r.stderr, /--socket-group: group 0 \(host gid 0\) is not mapped into the daemon's user namespace/);
  t.notOk(fs.existsSync(`${tmp}/x.sock`), 'no socket');
});

/**
 * The daemon as nobody in a user namespace of the test's own (ids 0..65534 mapped to themselves) whose
 * user.max_user_namespaces is 0: as on a host with unprivileged user namespaces switched off, without
 * touching the host's setting. Resolves with the exit status and output, once it exits or `until` matches
 * (then it is sent SIGTERM).
 */
function inNoUserns(args: string[], until?: RegExp): Promise<{ code: number | null; out: string }> {
  // (sh execs a new sh once the maps exist: the first one was exec'd unmapped and so lost its
  // capabilities; uid 0 of the namespace gets them back through exec)
  const script = 'read go && exec sh -c \'echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"\' sh "$@"';
  const child: ChildProcess = spawn('unshare', ['--user', 'sh', '-c', script, 'sh', process.execPath, BIN, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    // (not tap's NODE_OPTIONS: its hooks would write to a directory nobody may not)
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS')),
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
    if (until?.test(out)) child.kill('SIGTERM');
  });
  const done = new Promise<{ code: number | null; out: string }>((resolve) => child.on('exit', (code) => resolve({ code, out })));
  const kill = setTimeout(() => child.kill('SIGKILL'), 30_000);
  void done.then(() => clearTimeout(kill));
  // the maps, once unshare has made the namespace (it then execs sh, which waits for the go-ahead)
  const pid = child.pid!;
  const mine = fs.readlinkSync('/proc/self/ns/user');
  const start = Date.now();
  const poll = (): void => {
    try {
      if (fs.readlinkSync(`/proc/${pid}/ns/user`) !== mine) {
        fs.writeFileSync(`/proc/${pid}/uid_map`, '0 0 65535\n');
        fs.writeFileSync(`/proc/${pid}/gid_map`, '0 0 65535\n');
        child.stdin!.end('\n');
        return;
      }
    } catch {
      /* not there yet, or gone */
    }
    if (Date.now() - start < 10_000) setTimeout(poll, 10);
    else child.kill('SIGKILL');
  };
  poll();
  return done;
}

t.test('user namespaces switched off: the default falls back to no sandbox, loudly; asked for, exit 2', { skip: NEED_ROOT }, async (t) => {
  const { share, tmp } = setup(t, NOBODY);
  const args = [`--socket-path=${tmp}/x.sock`, `--shared-dir=${share}`, '--thread-pool-size=1'];
  const fell = await inNoUserns(args, /\] serving /);
  t.match(fell.out, /WARN .*sandbox: this user may not create a user namespace \(clone: ENOSPC;.*\): falling back to --sandbox=none/, 'the cause, and the fall-back');
  t.match(fell.out, /running as uid 65534 with no sandbox: the daemon is not confined/, 'the loud warning');
  t.match(fell.out, /\] serving /, 'it serves, unconfined');
  t.equal(fell.code, 0, 'SIGTERM: exit 0');
  for (const asked of ['--sandbox=namespace', '--uid-map=:0:100000:10:']) {
    const r = await inNoUserns([...args, asked]);
    t.equal(r.code, 2, `${asked}: exit 2`);
    t.match(r.out, new RegExp(`${asked.startsWith('--sandbox') ? asked : '--uid-map'}: rootless mode needs a user namespace: sandbox: this user may not create a user namespace \\(clone: ENOSPC`), `${asked}: says why`);
    t.notMatch(r.out, /serving/, `${asked}: nothing served`);
  }
});
