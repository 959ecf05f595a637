// ACCESS through the FUSE server and the passthrough on the real tables: the host kernel's own answer
// for the caller (faccessat2 AT_EACCESS as the caller's fsuid/fsgid and the groups the request
// carried): classes decided as the kernel decides them, POSIX ACLs, root's rules, immutable files, and a
// permission held through a supplementary group counting only when the request carries that group.
// Needs root (callers of other uids; ACLs, chattr).
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { encodeExtGroups } from '../../src/abi/fuse.js';
import { Errno as E } from '../../src/errors.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { FuseServer } from '../../src/fuse/server.js';
import { native } from '../../src/native.js';
import { FuseClient, withExt } from '../helpers/fuse-client.js';
import { realTables, resetTables } from '../helpers/real-tables.js';

const tables = await realTables();
const ROOT = { skip: process.getuid?.() !== 0 && 'needs root (callers of other uids, ACLs, chattr)' };
const R = 4;
const W = 2;
const X = 1;

function setup(t: Test, dir: string) {
  const fs = Passthrough.open(dir, resetTables(tables), {});
  const c = new FuseClient(new FuseServer(fs, { cache: 'auto' }));
  t.teardown(() => { fs.destroy(); native.close(fs.procFd); });
  t.equal(c.init().error, 0, 'INIT');
  return c;
}

function file(dir: string, name: string, mode: number, uid: number, gid: number): string {
  const p = join(dir, name);
  writeFileSync(p, 'x');
  chownSync(p, uid, gid);
  chmodSync(p, mode);
  return p;
}

t.test('ACCESS: the host\'s answer for the caller', ROOT, async (t) => {
  const dir = t.testdir({});
  file(dir, 'g', 0o640, 0, 5678);
  file(dir, 'own', 0o070, 1234, 100);
  const aclFile = file(dir, 'acl', 0o600, 0, 0);
  file(dir, 'noexec', 0o644, 0, 0);
  file(dir, 'none', 0o000, 0, 0);
  const d = join(dir, 'd');
  mkdirSync(d);
  chmodSync(d, 0o000);
  const haveAcl = spawnSync('setfacl', ['-m', 'u:1234:r', aclFile]).status === 0;
  const c = setup(t, dir);
  const node = (n: string) => c.entry(c.lookup(1n, n)).nodeid;
  const ask = (n: string, mask: number, uid: number, gid: number, groups?: number[]) => {
    const req = c.rb.access(node(n), mask, { uid, gid });
    return c.raw(groups === undefined ? req : withExt(req, encodeExtGroups(groups))).error;
  };

  t.equal(ask('g', R, 1234, 100), -E.EACCES, 'other class: no read');
  t.equal(ask('g', R, 1234, 5678), 0, 'group class by the primary gid: read');
  t.equal(ask('g', W, 1234, 5678), -E.EACCES, 'group class: no write');
  t.equal(ask('g', R, 1234, 100, [5678]), 0, 'group class by a supplementary group the request carries: read');
  t.equal(ask('g', R, 1234, 100, [9]), -E.EACCES, 'another supplementary group: no read');
  t.equal(ask('g', 0, 1234, 100), 0, 'F_OK');
  t.equal(ask('own', R, 1234, 100), -E.EACCES, 'the owner class decides for the owner (0070: nothing), as the kernel does');
  t.equal(ask('own', R, 4321, 100), 0, 'another user of the group: read');
  if (haveAcl) {
    t.equal(ask('acl', R, 1234, 100), 0, 'a POSIX ACL entry for the caller: read (mode 0600 alone says no)');
    t.equal(ask('acl', W, 1234, 100), -E.EACCES, 'the ACL entry gives no write');
  } else {
    t.comment('setfacl failed here: no ACL case');
  }
  t.equal(ask('noexec', X, 0, 0), -E.EACCES, 'root: no execute without any x bit');
  t.equal(ask('none', R | W, 0, 0), 0, 'root: read and write whatever the mode');
  t.equal(ask('d', R | W | X, 0, 0), 0, 'root: a mode 0 directory');
  t.equal(ask('d', X, 1234, 100), -E.EACCES, 'a user: no search in a mode 0 directory');
  // the next request without the group is answered without it
  t.equal(ask('g', R, 1234, 100), -E.EACCES, 'the group is the request\'s only');
});

t.test('ACCESS: an immutable file is not writable, even for root (EPERM)', ROOT, async (t) => {
  // not a t.testdir: its removal would meet the immutable file before this test's teardown clears it
  const dir = mkdtempSync(join(tmpdir(), 'vfsd-access-'));
  const p = file(dir, 'i', 0o666, 0, 0);
  t.teardown(() => {
    spawnSync('chattr', ['-i', p]);
    rmSync(dir, { recursive: true, force: true });
  });
  if (spawnSync('chattr', ['+i', p]).status !== 0) {
    t.plan(0, 'skip: chattr +i not supported here');
    return;
  }
  const c = setup(t, dir);
  const n = c.entry(c.lookup(1n, 'i')).nodeid;
  t.equal(c.raw(c.rb.access(n, W, { uid: 0, gid: 0 })).error, -E.EPERM, 'W_OK: EPERM');
  t.equal(c.raw(c.rb.access(n, R, { uid: 1234, gid: 1234 })).error, 0, 'R_OK: fine');
});
