// --security-label end to end through a real daemon started the default way (as root: namespace
// sandbox, the 9 capabilities of virtiofsd's default set, --seccomp=kill): the option travels config →
// WorkerInit → each worker's FuseServer and Passthrough. Without CAP_SYS_ADMIN the host refuses
// trusted.* (and security.selinux on a host without SELinux): a clean EPERM, no node left, the daemon
// alive (setxattrat, the call a symlink's or FIFO's label takes, is on the seccomp list). With
// --xattrmap=':map:security.selinux:user.virtiofs.:' a new file and directory keep the guest's label.
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import {
  FOPEN_DIRECT_IO, FUSE_DIRECT_IO_ALLOW_MMAP2, FUSE_SECURITY_CTX2, decodeInitOut, encodeSecctx,
} from '../../src/abi/fuse.js';
import { RequestBuilder, decodeOpenOut, parseReply } from '../../src/frontend/fuse-requests.js';
import { VirtioFsSession } from '../../src/frontend/virtio-fs-session.js';
import { withExt } from '../helpers/fuse-client.js';
import { native } from '../../src/native.js';
import { type HostileEnv, startHostile, withTimeout } from '../fuzz/hostile-kit.js';

const EPERM = 1;
const EPROTO = 71;
const S_IFREG = 0o100000;
const S_IFIFO = 0o010000;
const O_RDWR_CREAT = 0o102;
const enc = new TextEncoder();
const LABEL = 'system_u:object_r:container_file_t:s0';
const root = process.getuid?.() === 0;
const secctx = (name: string) => encodeSecctx(enc.encode(name), enc.encode(LABEL));

async function session(t: Test, env: HostileEnv, flags2: number) {
  const s = VirtioFsSession.open(env.sock);
  t.teardown(() => s.close());
  const rb = new RequestBuilder();
  const call = async (req: Uint8Array) => parseReply(await withTimeout(s.send(1, req, 8192), 5000, `opcode ${req[4]}`));
  const init = await call(rb.init(0xffffffff, flags2));
  return { rb, call, init };
}

/** A host file's or directory's xattr (through an fd), as a string; null when absent. */
function hostXattr(p: string, name: string): string | null {
  const fd = fs.openSync(p, 'r');
  try {
    const buf = new Uint8Array(256);
    const n = native.fgetxattr(fd, enc.encode(name), buf);
    return n < 0 ? null : new TextDecoder().decode(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
}

function creating(rb: RequestBuilder, n: string): Array<[string, string, Uint8Array]> {
  return [
    ['CREATE', `${n}f`, rb.create(1n, `${n}f`, O_RDWR_CREAT, S_IFREG | 0o644)],
    ['MKDIR', `${n}d`, rb.mkdir(1n, `${n}d`, 0o755)],
    ['MKNOD', `${n}p`, rb.mknod(1n, `${n}p`, S_IFIFO | 0o644)],
    ['SYMLINK', `${n}l`, rb.symlink(1n, `${n}l`, 'hello.txt')],
  ];
}

const gone = (env: HostileEnv, name: string) => fs.lstatSync(path.join(env.share, name), { throwIfNoEntry: false }) === undefined;

t.test('without --xattrmap: security.selinux as it is, the host judges; other names refused', { skip: root ? false : 'needs root (the default sandbox)' }, async (t) => {
  const env = await startHostile(t, ['--security-label']);
  t.match(await env.daemon.waitForLog(/xattr=on/), /xattr=on/, '--security-label implies --xattr');
  const { rb, call, init: refused } = await session(t, env, 0);
  t.equal(refused.error, -EPROTO, 'a guest kernel without FUSE_SECURITY_CTX: INIT refused');
  const init = await call(rb.init(0xffffffff, FUSE_SECURITY_CTX2));
  t.equal(init.error, 0, 'INIT offering FUSE_SECURITY_CTX');
  t.equal(decodeInitOut(init.view, 0).flags2 & FUSE_SECURITY_CTX2, FUSE_SECURITY_CTX2, 'negotiated');
  // Whether the confined daemon (no CAP_SYS_ADMIN) may set security.selinux is the host's to say: an
  // SELinux host by its policy (a kernel with SELinux built in but no policy loaded lets the owner), a
  // host without SELinux refuses (EPERM). Either way the answer and the host agree.
  const r = (await call(withExt(rb.mkdir(1n, 'd', 0o755), secctx('security.selinux')))).error;
  t.ok(r === 0 || r === -EPERM, `MKDIR: 0 or EPERM (${r})`);
  if (r === 0) t.equal(hostXattr(path.join(env.share, 'd'), 'security.selinux'), LABEL, 'the host directory has it');
  else t.ok(gone(env, 'd'), 'refused: no directory left');
  for (const [op, name, req] of creating(rb, 'cap-')) {
    t.equal((await call(withExt(req, secctx('security.capability')))).error, -EPERM, `${op} with security.capability: EPERM`);
    t.ok(gone(env, name), `${op}: no node left`);
  }
});

t.test('trusted.* (virtiofsd\'s advice) needs CAP_SYS_ADMIN: the confined daemon answers EPERM, leaves nothing', { skip: root ? false : 'needs root (the default sandbox)' }, async (t) => {
  const env = await startHostile(t, ['--security-label', '--xattrmap=:map:security.selinux:trusted.virtiofs.:']);
  const { rb, call, init } = await session(t, env, FUSE_SECURITY_CTX2);
  t.equal(init.error, 0, 'INIT');
  for (const [op, name, req] of creating(rb, 't-')) {
    t.equal((await call(withExt(req, secctx('security.selinux')))).error, -EPERM, `${op}: EPERM`);
    t.ok(gone(env, name), `${op}: no node left`);
  }
  t.equal((await call(withExt(rb.mkdir(1n, 'plain', 0o755), encodeSecctx(null)))).error, 0,
    'a MKDIR without a context: the daemon is alive (setxattrat is on the seccomp list)');
});

t.test('--xattrmap keeps the guest\'s label under user.virtiofs. on the host', { skip: root ? false : 'needs root (the default sandbox)' }, async (t) => {
  const env = await startHostile(t, ['--security-label', '--xattrmap=:map:security.selinux:user.virtiofs.:']);
  const { rb, call, init } = await session(t, env, FUSE_SECURITY_CTX2);
  t.equal(init.error, 0, 'INIT');
  const block = secctx('security.selinux');
  t.equal((await call(withExt(rb.create(1n, 'f', O_RDWR_CREAT, S_IFREG | 0o644), block))).error, 0, 'CREATE');
  t.equal((await call(withExt(rb.mkdir(1n, 'd', 0o755), block))).error, 0, 'MKDIR');
  for (const n of ['f', 'd']) {
    t.equal(hostXattr(path.join(env.share, n), 'user.virtiofs.security.selinux'), LABEL, `${n}: labelled on the host`);
  }
  // user.* is refused on symlinks by the host kernel: EPERM, the symlink removed (setxattrat was called
  // under --seccomp=kill: the daemon lives on)
  t.equal((await call(withExt(rb.symlink(1n, 'l', 'f'), block))).error, -EPERM, 'SYMLINK: EPERM');
  t.ok(gone(env, 'l'), 'no symlink left');
  t.equal((await call(rb.lookup(1n, 'f'))).error, 0, 'the daemon serves on');
});

t.test('--allow-mmap through the daemon: FUSE_DIRECT_IO_ALLOW_MMAP with cache=never\'s direct-I/O opens', { skip: root ? false : 'needs root (the default sandbox)' }, async (t) => {
  const env = await startHostile(t, ['--allow-mmap', '--cache=never']);
  const { rb, call, init } = await session(t, env, FUSE_DIRECT_IO_ALLOW_MMAP2);
  t.equal(init.error, 0, 'INIT');
  t.equal(decodeInitOut(init.view, 0).flags2, FUSE_DIRECT_IO_ALLOW_MMAP2, 'negotiated (and nothing else of flags2)');
  const file = (await call(rb.lookup(1n, 'hello.txt'))).view.getBigUint64(0, true);
  const open = await call(rb.open(file, 0));
  t.equal(open.error, 0, 'OPEN');
  t.equal(decodeOpenOut(open.view, 0).openFlags & FOPEN_DIRECT_IO, FOPEN_DIRECT_IO, 'the file is opened for direct I/O');
  const again = await call(rb.init(0xffffffff, 0));
  t.equal(decodeInitOut(again.view, 0).flags2, 0, 'a guest kernel before 6.6: not negotiated, the session goes on');
  t.match(await env.daemon.waitForLog(/--allow-mmap: the guest kernel does not offer/), /Linux 6\.6/, 'and the daemon says so');
});
