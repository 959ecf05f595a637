// --xattr end to end through a real daemon process: the option travels config → WorkerInit → each
// worker's FuseServer, and requests and replies go through guest memory (a value bigger than the
// default head copy, a reply scattered into the writable part). Without the option: ENOSYS.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Opcode, XATTR_SIZE_MAX } from '../../src/abi/fuse.js';
import { cstr, u32s } from '../../src/frontend/fuse-requests.js';
import { native } from '../../src/native.js';
import { fuseSession, startHostile } from '../fuzz/hostile-kit.js';

const ENOSYS = 38;
const ENODATA = 61;
const E2BIG = 7;
const EOPNOTSUPP = 95;
const dec = new TextDecoder();
const enc = new TextEncoder();

/** user.* xattrs where the daemon's share lives (os.tmpdir())? */
function skipReason(dir: string): string | false {
  const p = path.join(dir, 'probe');
  fs.writeFileSync(p, '');
  const fd = fs.openSync(p, 'r');
  try {
    const r = native.fsetxattr(fd, enc.encode('user.probe'), enc.encode('x'), 0);
    return r < 0 ? `no user.* xattrs under ${dir} (errno ${-r})` : false;
  } finally {
    fs.closeSync(fd);
    fs.unlinkSync(p);
  }
}

t.test('with --xattr', async (t) => {
  const env = await startHostile(t, ['--xattr']);
  const skip = skipReason(env.tmp);
  if (skip) {
    t.plan(0, `skip: ${skip}`);
    return;
  }
  t.match(await env.daemon.waitForLog(/xattr=on/), /xattr=on/, 'the startup line says so');
  const { s, rb, call } = await fuseSession(env);
  t.teardown(() => s.close());
  const file = (await call(rb.lookup(1n, 'hello.txt'))).view.getBigUint64(0, true);

  const value = new Uint8Array(3000).map((_, i) => (i * 13) & 0xff);
  const set = await call(rb.build(Opcode.Setxattr, file, u32s(value.length, 0), cstr('user.k'), value));
  t.equal(set.error, 0, 'SETXATTR');
  const hfd = fs.openSync(path.join(env.share, 'hello.txt'), 'r');
  const hbuf = new Uint8Array(4096);
  t.equal(native.fgetxattr(hfd, enc.encode('user.k'), hbuf), value.length, 'the host file has it');
  fs.closeSync(hfd);
  t.same(hbuf.subarray(0, value.length), value);

  const probe = await call(rb.build(Opcode.Getxattr, file, u32s(0, 0), cstr('user.k')));
  t.equal(probe.error, 0);
  t.equal(probe.view.getUint32(0, true), value.length, 'size probe');
  const got = await call(rb.build(Opcode.Getxattr, file, u32s(value.length, 0), cstr('user.k')), 16 + value.length);
  t.equal(got.error, 0);
  t.same(got.data, value, 'GETXATTR through guest memory');
  const list = await call(rb.build(Opcode.Listxattr, file, u32s(4096, 0)));
  t.ok(dec.decode(list.data).split('\0').includes('user.k'), 'LISTXATTR');
  t.equal((await call(rb.build(Opcode.Removexattr, file, cstr('user.k')))).error, 0, 'REMOVEXATTR');
  t.equal((await call(rb.build(Opcode.Getxattr, file, u32s(100, 0), cstr('user.k')))).error, -ENODATA);

  // a request bigger than the default head copy: the worker reads it whole, the server refuses it
  const big = new Uint8Array(XATTR_SIZE_MAX + 1);
  t.equal((await call(rb.build(Opcode.Setxattr, file, u32s(big.length, 0), cstr('user.big'), big))).error, -E2BIG,
    'a 65537-byte value: E2BIG');

  // a symlink pointing outside the share: refused, the target untouched
  fs.symlinkSync(env.canary, path.join(env.share, 'lnk'));
  const lnk = (await call(rb.lookup(1n, 'lnk'))).view.getBigUint64(0, true);
  t.equal((await call(rb.build(Opcode.Setxattr, lnk, u32s(1, 0), cstr('user.x'), enc.encode('x')))).error, -EOPNOTSUPP);
  const cfd = fs.openSync(env.canary, 'r');
  t.equal(native.fgetxattr(cfd, enc.encode('user.x'), null), -ENODATA, 'the canary got nothing');
  fs.closeSync(cfd);
});

t.test('without --xattr: ENOSYS', async (t) => {
  const env = await startHostile(t);
  t.match(await env.daemon.waitForLog(/xattr=off/), /xattr=off/);
  const { s, rb, call } = await fuseSession(env);
  t.teardown(() => s.close());
  t.equal((await call(rb.build(Opcode.Getxattr, 1n, u32s(100, 0), cstr('user.k')))).error, -ENOSYS);
  t.equal((await call(rb.build(Opcode.Setxattr, 1n, u32s(1, 0), cstr('user.k'), enc.encode('x')))).error, -ENOSYS);
  t.equal((await call(rb.build(Opcode.Listxattr, 1n, u32s(0, 0)))).error, -ENOSYS);
  t.equal((await call(rb.build(Opcode.Removexattr, 1n, cstr('user.k')))).error, -ENOSYS);
});
