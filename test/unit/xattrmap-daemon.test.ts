// The xattr name policy through a real daemon process: --xattr alone applies the default policy,
// --xattrmap and --posix-acl travel config → WorkerInit → every worker (its Passthrough's policy, its
// FuseServer's INIT flags), and a malformed rule stops the daemon with exit 2 before it serves.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { FUSE_POSIX_ACL, FUSE_SETXATTR_EXT, Opcode, decodeInitOut } from '../../src/abi/fuse.js';
import { cstr, u32s } from '../../src/frontend/fuse-requests.js';
import { native } from '../../src/native.js';
import { packageRoot } from '../../src/package-root.js';
import { fuseSession, startHostile } from '../fuzz/hostile-kit.js';

const EPERM = 1;
const ENODATA = 61;
const enc = new TextEncoder();
const dec = new TextDecoder();

function hostGet(p: string, name: string): string | number {
  const fd = fs.openSync(p, 'r');
  try {
    const buf = new Uint8Array(4096);
    const n = native.fgetxattr(fd, enc.encode(name), buf);
    return n < 0 ? n : dec.decode(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
}
function hostSet(p: string, name: string, v: Uint8Array): number {
  const fd = fs.openSync(p, 'r');
  try {
    return native.fsetxattr(fd, enc.encode(name), v, 0);
  } finally {
    fs.closeSync(fd);
  }
}

/** trusted.* (root, a file system with it) where the daemon's share lives? */
function skipReason(dir: string): string | false {
  const p = path.join(dir, 'probe');
  fs.writeFileSync(p, '');
  try {
    const r = hostSet(p, 'trusted.probe', enc.encode('x'));
    return r < 0 ? `no trusted.* xattrs under ${dir} (errno ${-r}; needs root)` : false;
  } finally {
    fs.unlinkSync(p);
  }
}

t.test('--xattr alone: the default policy in every worker', async (t) => {
  const env = await startHostile(t, ['--xattr', '--thread-pool-size=2']);
  const skip = skipReason(env.tmp);
  if (skip) {
    t.plan(0, `skip: ${skip}`);
    return;
  }
  const { s, rb, call } = await fuseSession(env);
  t.teardown(() => s.close());
  const file = (await call(rb.lookup(1n, 'hello.txt'))).view.getBigUint64(0, true);
  const host = path.join(env.share, 'hello.txt');
  t.equal(hostSet(host, 'trusted.host', enc.encode('h')), 0);
  // several requests: whichever worker serves each, the answer is the same
  for (let i = 0; i < 4; i++) {
    t.equal((await call(rb.build(Opcode.Setxattr, file, u32s(1, 0), cstr('trusted.x'), enc.encode('g')))).error, -EPERM, `trusted.x: EPERM (${i})`);
    t.equal((await call(rb.build(Opcode.Getxattr, file, u32s(100, 0), cstr('trusted.host')))).error, -ENODATA, `trusted.host: ENODATA (${i})`);
  }
  t.equal(hostGet(host, 'trusted.x'), -ENODATA, 'nothing reached the host');
  const list = await call(rb.build(Opcode.Listxattr, file, u32s(4096, 0)));
  t.notOk(dec.decode(list.data).split('\0').includes('trusted.host'), 'trusted.host not listed');
});

t.test('--xattrmap: the rules in every worker', async (t) => {
  const env = await startHostile(t, ['--xattrmap=:map:trusted.:user.virtiofs.:', '--thread-pool-size=2']);
  const skip = skipReason(env.tmp);
  if (skip) {
    t.plan(0, `skip: ${skip}`);
    return;
  }
  t.match(await env.daemon.waitForLog(/xattr=on/), /xattr=on/, '--xattrmap turns xattr on');
  const { s, rb, call } = await fuseSession(env);
  t.teardown(() => s.close());
  const file = (await call(rb.lookup(1n, 'hello.txt'))).view.getBigUint64(0, true);
  const host = path.join(env.share, 'hello.txt');
  for (let i = 0; i < 4; i++) {
    const v = enc.encode(`v${i}`);
    t.equal((await call(rb.build(Opcode.Setxattr, file, u32s(v.length, 0), cstr('trusted.foo'), v))).error, 0, `SETXATTR trusted.foo (${i})`);
    t.equal(hostGet(host, 'user.virtiofs.trusted.foo'), `v${i}`, 'stored under user.virtiofs.');
  }
  t.equal(hostGet(host, 'trusted.foo'), -ENODATA);
  const list = await call(rb.build(Opcode.Listxattr, file, u32s(4096, 0)));
  t.ok(dec.decode(list.data).split('\0').includes('trusted.foo'), 'listed as trusted.foo');
});

t.test('--posix-acl: INIT negotiates FUSE_POSIX_ACL and FUSE_SETXATTR_EXT', async (t) => {
  const env = await startHostile(t, ['--posix-acl']);
  const { s, rb, call } = await fuseSession(env);
  t.teardown(() => s.close());
  // a second INIT (a guest reboot) to read the flags: the daemon resets the session and answers again
  const init = await call(rb.init());
  t.equal(init.error, 0);
  const flags = decodeInitOut(init.view, 0).flags;
  t.not(flags & FUSE_POSIX_ACL, 0, 'FUSE_POSIX_ACL');
  t.not(flags & FUSE_SETXATTR_EXT, 0, 'FUSE_SETXATTR_EXT');
  // SETXATTR now carries the 16-byte fuse_setxattr_in
  const file = (await call(rb.lookup(1n, 'hello.txt'))).view.getBigUint64(0, true);
  t.equal((await call(rb.build(Opcode.Setxattr, file, u32s(1, 0, 0, 0), cstr('user.k'), enc.encode('v')))).error, 0,
    'SETXATTR with the extended struct');
  t.equal(hostGet(path.join(env.share, 'hello.txt'), 'user.k'), 'v');
});

t.test('a malformed rule: exit 2 and the rule named', async (t) => {
  const bin = path.join(packageRoot(), 'bin', 'virtiofsd-ts.js');
  const dir = t.testdir({});
  const r = spawnSync(process.execPath, [bin, `--socket-path=${path.join(dir, 's')}`, `--shared-dir=${dir}`, '--xattrmap=:ok:all::: /bad/client'],
    { encoding: 'utf8', timeout: 20000 });
  t.equal(r.status, 2, 'exit 2');
  t.match(r.stderr, /--xattrmap: rule 2 '\/bad\/client': incomplete, no '\/' after its scope/, 'the message names the rule');
});
