// SETATTR of atime/mtime on a symlink sets the link's own times (guest utimensat(AT_SYMLINK_NOFOLLOW),
// `touch -h`), never its target's. Found by the e2e functional probe (utimensat_symlink_nofollow):
// the reference daemon does this; we used to answer EOPNOTSUPP.
import t from 'tap';
import { lstatSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FATTR_ATIME, FATTR_MTIME } from '../../src/abi/fuse.js';
import { FuseServer } from '../../src/fuse/server.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { native } from '../../src/native.js';
import { FuseClient } from '../helpers/fuse-client.js';
import { realTables, resetTables } from '../helpers/real-tables.js';

t.test('setattr times on a symlink changes the link, not the target', async (t) => {
  const dir = t.testdir({});
  writeFileSync(join(dir, 'target'), 'x');
  symlinkSync('target', join(dir, 'lnk'));
  symlinkSync('/etc/passwd', join(dir, 'outside'));
  const fs = Passthrough.open(dir, resetTables(await realTables()));
  t.teardown(() => { fs.destroy(); native.close(fs.procFd); });
  const c = new FuseClient(new FuseServer(fs, { cache: 'auto' }));
  t.equal(c.init().error, 0);
  const targetBefore = statSync(join(dir, 'target'), { bigint: true }).mtimeNs;

  const lnk = c.entry(c.lookup(1n, 'lnk'));
  const r = c.setattr(lnk.nodeid, { valid: FATTR_ATIME | FATTR_MTIME, atime: 1111111111n, mtime: 1222222222n, mtimensec: 2 });
  t.equal(r.error, 0, 'SETATTR times on a symlink succeeds');
  t.equal(r.attr!.mtime, 1222222222n, 'reply carries the link mtime');
  t.equal(r.attr!.mode & 0o170000, 0o120000, 'reply is the link attr');
  const st = lstatSync(join(dir, 'lnk'), { bigint: true });
  t.equal(st.mtimeNs, 1222222222000000002n, 'host link mtime with nanoseconds');
  t.equal(st.atimeNs, 1111111111000000000n, 'host link atime');
  t.equal(statSync(join(dir, 'target'), { bigint: true }).mtimeNs, targetBefore, 'target untouched');

  // a link pointing outside the share: its target is never touched
  const passwdBefore = statSync('/etc/passwd', { bigint: true }).mtimeNs;
  const out = c.entry(c.lookup(1n, 'outside'));
  t.equal(c.setattr(out.nodeid, { valid: FATTR_MTIME, mtime: 5n }).error, 0);
  t.equal(lstatSync(join(dir, 'outside'), { bigint: true }).mtimeNs, 5000000000n, 'link mtime set');
  t.equal(statSync('/etc/passwd', { bigint: true }).mtimeNs, passwdBefore, '/etc/passwd untouched');
});
