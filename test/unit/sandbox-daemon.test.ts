// The sandbox through real daemon processes (docs/sandbox.md), looked at from the host as an operator
// would: /proc/PID/status of every thread (CapEff, CapBnd, NoNewPrivs), /proc/PID/root, the namespaces;
// then served requests through the project's own frontend, and a clean SIGTERM that removes the socket
// file and nothing else. Needs root (namespaces, pivot_root, chroot): skipped, saying so, without it.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { startDaemon } from '../../harness/index.js';
import { fuseSession } from '../fuzz/hostile-kit.js';
import { CAP, DEFAULT_CAPS, applyModcaps, capMask } from '../../src/sandbox/caps.js';
import { parseArgs } from '../../src/config.js';

const root = process.getuid?.() === 0;
const BIN = path.join(path.dirname(new URL(import.meta.url).pathname), '../../../bin/virtiofsd-ts.js');

/** A thread's CapEff, CapBnd and NoNewPrivs. */
function threads(pid: number): Array<{ tid: string; eff: bigint; bnd: bigint; nnp: string }> {
  return fs.readdirSync(`/proc/${pid}/task`).map((tid) => {
    const s = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    const f = (k: string): string => new RegExp(`^${k}:\\s+(\\S+)`, 'm').exec(s)?.[1] ?? '?';
    return { tid, eff: BigInt(`0x${f('CapEff')}`), bnd: BigInt(`0x${f('CapBnd')}`), nnp: f('NoNewPrivs') };
  });
}

function maskOf(names: readonly string[]): bigint {
  const { lo, hi } = capMask(names);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

function setup(t: Test): { tmp: string; share: string; sock: string } {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-sandbox-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const share = path.join(tmp, 'share');
  fs.mkdirSync(share);
  fs.writeFileSync(path.join(share, 'hello.txt'), 'hello from the host\n');
  // A decoy at the socket's own path as seen from inside the sandbox (the share is the root there): a
  // daemon that removed its socket file by path after the pivot would delete this file of the guest's.
  const sock = path.join(tmp, 'vfsd.sock');
  fs.mkdirSync(path.join(share, path.dirname(sock)), { recursive: true });
  fs.writeFileSync(path.join(share, sock), 'a file of the guest\n');
  return { tmp, share, sock };
}

t.test('--modcaps and --sandbox parse; bad values and what we cannot do are usage errors', async (t) => {
  t.same(parseArgs(['--socket-path=/s', '--shared-dir=/d']).caps, [...DEFAULT_CAPS], 'the default set');
  t.equal(parseArgs(['--socket-path=/s', '--shared-dir=/d']).sandbox, 'namespace', 'namespace by default');
  t.same(applyModcaps('+sys_admin:-mknod'), ['chown', 'dac_override', 'dac_read_search', 'fowner', 'fsetid', 'setgid', 'setuid', 'sys_admin', 'setfcap']);
  t.same(applyModcaps('-CAP_CHOWN,+Cap_Kill'), ['dac_override', 'dac_read_search', 'fowner', 'fsetid', 'kill', 'setgid', 'setuid', 'mknod', 'setfcap']);
  t.equal(parseArgs(['--socket-path=/s', '-o', 'source=/d,sandbox=chroot,modcaps=-mknod']).sandbox, 'chroot');
  t.notOk(parseArgs(['--socket-path=/s', '-o', 'source=/d,modcaps=-mknod']).caps.includes('mknod'));
  t.equal(maskOf(DEFAULT_CAPS), 0x880000dfn, 'the default set as the kernel prints it');
  t.equal(CAP.checkpoint_restore, 40);
  t.same(parseArgs(['--socket-path=/s', '--shared-dir=/d', '--killpriv-v2']).ignored, [], '--killpriv-v2: what we do anyway');
  for (const [bad, msg] of [
    ['--modcaps=+bogus', /unknown capability 'bogus'/],
    ['--modcaps=sys_admin', /starts with \+ \(keep\) or - \(drop\)/],
    ['--modcaps=', /empty/],
    ['--sandbox=jail', /invalid value 'jail'/],
    // what we cannot do is refused, never accepted in silence
    ['--no-killpriv-v2', /killpriv_v2 is always on here/],
  ] as const) {
    const r = spawnSync(process.execPath, [BIN, '--socket-path=/tmp/x.sock', '--shared-dir=/tmp', bad], { encoding: 'utf8' });
    t.equal(r.status, 2, `${bad}: exit 2`);
    t.match(r.stderr, msg, `${bad}: says why`);
  }
});

t.test('a non-root user with --sandbox=none: the daemon warns that it runs unconfined', { skip: root ? false : 'needs root to switch to another user' }, async (t) => {
  // (rootless mode, the default for a non-root user, and chroot refused: test/unit/rootless-daemon.test.ts)
  const { share, tmp } = setup(t);
  fs.chmodSync(tmp, 0o777);
  const asNobody = { uid: 65534, gid: 65534, encoding: 'utf8' as const, timeout: 8000, killSignal: 'SIGTERM' as const };
  const started = spawnSync(process.execPath, [BIN, `--socket-path=${tmp}/n.sock`, `--shared-dir=${share}`, '--sandbox=none', '--rlimit-nofile=1'], asNobody);
  t.match(started.stderr, /running as uid 65534 with no sandbox: the daemon is not confined/, 'the loud warning');
});

t.test('namespace (the default as root): confined, serving, and a clean stop', { skip: root ? false : 'needs root' }, async (t) => {
  const { share, sock } = setup(t);
  // a file system mounted inside the share before the start: still served after the pivot (the share's
  // fd opened before it must name the new root, not the detached old tree where the mount is gone)
  const sub = path.join(share, 'sub');
  fs.mkdirSync(sub);
  t.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'vfsd-sbx', sub]).status, 0, 'a tmpfs inside the share');
  t.teardown(() => spawnSync('umount', ['-l', sub]));
  fs.writeFileSync(path.join(sub, 'inner.txt'), 'on the submount\n');
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock, extraArgs: ['--thread-pool-size=2'] });
  t.teardown(() => daemon.stop());
  t.not(daemon.pid, daemon.spawnedPid, 'the daemon is the launcher\'s child');
  t.match(daemon.logs(), /sandbox: the daemon runs as pid \d+ in new mount, pid, IPC, network namespaces/);
  t.match(daemon.logs(), new RegExp(`starting \\(pid ${daemon.pid}, 1 in its pid namespace`), 'it logs its pid as the host sees it');
  const want = maskOf(DEFAULT_CAPS);
  const ts = threads(daemon.pid);
  t.ok(ts.length >= 8, `${ts.length} threads`);
  t.same(ts.filter((x) => x.eff !== want || x.bnd !== want || x.nnp !== '1'), [], 'every thread: CapEff = CapBnd = the file server set, NoNewPrivs 1');
  for (const ns of ['mnt', 'pid', 'net', 'ipc']) {
    t.not(fs.readlinkSync(`/proc/${daemon.pid}/ns/${ns}`), fs.readlinkSync(`/proc/self/ns/${ns}`), `its own ${ns} namespace`);
  }
  t.same(fs.readdirSync(`/proc/${daemon.pid}/root`).sort(), fs.readdirSync(share).sort(), 'its root is the share');
  t.equal(fs.statSync(`/proc/${daemon.pid}/root`).ino, fs.statSync(share).ino, '(the same directory)');
  // the launcher keeps nothing it does not need, but is not confined: it only waits
  t.equal(threads(daemon.spawnedPid)[0]!.nnp, '0');

  // It serves: lookups, reads, a create, through the vhost-user socket from the host.
  const env = { sock } as Parameters<typeof fuseSession>[0];
  const { s, rb, call } = await fuseSession(env);
  const hello = await call(rb.lookup(1n, 'hello.txt'));
  t.equal(hello.error, 0, 'LOOKUP');
  const node = hello.view.getBigUint64(0, true);
  const open = await call(rb.open(node, 0));
  t.equal(open.error, 0, 'OPEN');
  const read = await call(rb.read(node, open.view.getBigUint64(0, true), 0n, 100), 16 + 100);
  t.equal(Buffer.from(read.data).toString(), 'hello from the host\n', 'READ returns the host file');
  const subDir = await call(rb.lookup(1n, 'sub'));
  t.equal(subDir.error, 0, 'LOOKUP of the submount');
  t.equal((await call(rb.lookup(subDir.view.getBigUint64(0, true), 'inner.txt'))).error, 0, 'a file on the submount is there');
  t.equal((await call(rb.create(subDir.view.getBigUint64(0, true), 'new.txt', 0o101 /* O_WRONLY|O_CREAT */, 0o644))).error, 0, 'CREATE on the submount');
  t.ok(fs.existsSync(path.join(sub, 'new.txt')), 'the new file is on the submount on the host');
  const made = await call(rb.mkdir(1n, 'made-in-sandbox', 0o755));
  t.equal(made.error, 0, 'MKDIR');
  t.ok(fs.statSync(path.join(share, 'made-in-sandbox')).isDirectory(), 'the directory is in the share on the host');
  // a chown the kept set allows, and one a dropped capability would be needed for: mknod of a device
  const dev = await call(rb.mknod(1n, 'nullish', 0o20644, 0x103));
  t.equal(dev.error, 0, 'MKNOD of a character device (cap mknod kept)');
  s.close();

  const st = await daemon.stop();
  t.equal(st.code, 0, 'SIGTERM: exit 0 through the launcher');
  t.notOk(fs.existsSync(sock), 'the socket file is gone');
  t.equal(fs.readFileSync(path.join(share, sock), 'utf8'), 'a file of the guest\n', 'the share file at the socket\'s path is untouched');
});

t.test('--modcaps changes the kept set on every thread; -mknod refuses device nodes', { skip: root ? false : 'needs root' }, async (t) => {
  const { share, sock } = setup(t);
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock, extraArgs: ['--thread-pool-size=2', '--modcaps=-mknod,+sys_admin'] });
  t.teardown(() => daemon.stop());
  const want = maskOf(applyModcaps('-mknod,+sys_admin'));
  t.same(threads(daemon.pid).filter((x) => x.eff !== want || x.bnd !== want), [], 'every thread has the changed set');
  const { s, rb, call } = await fuseSession({ sock } as Parameters<typeof fuseSession>[0]);
  t.equal((await call(rb.mknod(1n, 'dev', 0o20644, 0x103))).error, -1 /* EPERM */, 'MKNOD of a device: EPERM without cap mknod');
  t.equal((await call(rb.mknod(1n, 'fifo', 0o10644, 0))).error, 0, 'a FIFO needs no capability');
  s.close();
  t.equal((await daemon.stop()).code, 0);
});

t.test('chroot: no launcher, the same process confined', { skip: root ? false : 'needs root' }, async (t) => {
  const { share, sock } = setup(t);
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock, extraArgs: ['--thread-pool-size=2', '--sandbox=chroot'] });
  t.teardown(() => daemon.stop());
  t.equal(daemon.pid, daemon.spawnedPid, 'no launcher');
  t.equal(fs.readlinkSync(`/proc/${daemon.pid}/root`), share, 'its root is the share');
  t.equal(fs.readlinkSync(`/proc/${daemon.pid}/ns/mnt`), fs.readlinkSync('/proc/self/ns/mnt'), 'the host\'s mount namespace');
  const want = maskOf(DEFAULT_CAPS);
  t.same(threads(daemon.pid).filter((x) => x.eff !== want || x.bnd !== want || x.nnp !== '1'), [], 'every thread dropped');
  const { s, rb, call } = await fuseSession({ sock } as Parameters<typeof fuseSession>[0]);
  t.equal((await call(rb.lookup(1n, 'hello.txt'))).error, 0, 'it serves');
  s.close();
  t.equal((await daemon.stop()).code, 0);
  t.notOk(fs.existsSync(sock), 'the socket file is gone');
  t.equal(fs.readFileSync(path.join(share, sock), 'utf8'), 'a file of the guest\n', 'the share file at the socket\'s path is untouched');
});

t.test('none: nothing changes', { skip: root ? false : 'needs root' }, async (t) => {
  const { share, sock } = setup(t);
  const daemon = await startDaemon('ours', { sharedDir: share, socketPath: sock, extraArgs: ['--thread-pool-size=2', '--sandbox=none'] });
  t.teardown(() => daemon.stop());
  t.equal(daemon.pid, daemon.spawnedPid);
  t.equal(fs.readlinkSync(`/proc/${daemon.pid}/root`), '/');
  // (no_new_privs comes with the seccomp filter, on by default; the capabilities stay whole)
  t.equal(threads(daemon.pid)[0]!.eff, threads(process.pid)[0]!.eff, 'the capabilities are those it started with');
  t.equal((await daemon.stop()).code, 0);
});
