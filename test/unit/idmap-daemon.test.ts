// Id translation end to end through the FUSE server and the passthrough file system on the real tables:
// what the host's files are owned by after a guest creates or chowns them, what the guest sees in every
// reply that carries a fuse_attr, and the EPERM of a forbidden caller or new owner. Needs root (it
// creates files as other uids and chowns them).
import t, { type Test } from 'tap';
import { chmodSync, chownSync, lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FATTR_GID, FATTR_UID, Opcode, type EntryOut } from '../../src/abi/fuse.js';
import { Errno as E } from '../../src/errors.js';
import { idMapsOf } from '../../src/fs/idmap.js';
import { FuseServer } from '../../src/fuse/server.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { native } from '../../src/native.js';
import { FuseClient, le } from '../helpers/fuse-client.js';
import { realTables, resetTables } from '../helpers/real-tables.js';

const tables = await realTables();
const S_IFIFO = 0o010000;

/** files are created as other uids and chowned: root only */
const ROOT = { skip: process.getuid?.() !== 0 && 'needs root (creates files as other uids, chowns)' };

/** A shared directory anyone may create in (a caller runs as its own fsuid, without root's override). */
function shared(t: Test, files: Record<string, string> = {}): string {
  const dir = t.testdir(files);
  chmodSync(dir, 0o777);
  return dir;
}

function setup(t: Test, dir: string, uid: string[], gid: string[] = []) {
  const fs = Passthrough.open(dir, resetTables(tables), {});
  const server = new FuseServer(fs, { cache: 'auto', idmap: idMapsOf(uid, gid) });
  const c = new FuseClient(server);
  t.teardown(() => { fs.destroy(); native.close(fs.procFd); });
  // INIT comes from uid 0 (the kernel sends it without a caller): served even when guest 0 is forbidden
  c.uid = 0;
  c.gid = 0;
  t.equal(c.init().error, 0, 'INIT');
  return c;
}

function owner(e: EntryOut): [number, number] {
  return [e.attr.uid, e.attr.gid];
}

t.test('map: files a guest user creates are the mapped host user\'s, and show as the guest\'s', ROOT, async (t) => {
  const dir = shared(t, { 'root.txt': 'r' });
  const c = setup(t, dir, ['map:1234:4321:1'], ['map:2345:5432:1']);
  c.uid = 1234;
  c.gid = 2345;
  const cr = c.create(1n, 'f');
  t.equal(cr.error, 0, 'CREATE');
  const f = c.entry(cr);
  t.same([lstatSync(join(dir, 'f')).uid, lstatSync(join(dir, 'f')).gid], [4321, 5432], 'host owner: the mapped ids');
  t.same(owner(f), [1234, 2345], 'CREATE reply: the guest ids');
  const ga = c.getattr(f.nodeid);
  t.same([ga.attr!.uid, ga.attr!.gid], [1234, 2345], 'GETATTR');
  t.same(owner(c.entry(c.lookup(1n, 'f'))), [1234, 2345], 'LOOKUP');
  const md = c.entry(c.mkdir(1n, 'd'));
  t.same(owner(md), [1234, 2345], 'MKDIR');
  t.equal(lstatSync(join(dir, 'd')).uid, 4321);
  t.same(owner(c.entry(c.mknod(1n, 'p', S_IFIFO | 0o644))), [1234, 2345], 'MKNOD');
  t.equal(lstatSync(join(dir, 'p')).uid, 4321);
  t.same(owner(c.entry(c.symlink(1n, 'l', 'f'))), [1234, 2345], 'SYMLINK');
  t.equal(lstatSync(join(dir, 'l')).uid, 4321);
  t.same(owner(c.entry(c.link(f.nodeid, md.nodeid, 'hard'))), [1234, 2345], 'LINK');
  // ids no rule covers pass unchanged: root's file is root's
  t.same(owner(c.entry(c.lookup(1n, 'root.txt'))), [0, 0], 'an unmapped host id');
  const od = c.opendir(1n);
  const plus = c.readdir(1n, od.fh!, 0n, 8192, true).entries;
  const byName = new Map(plus.map((e) => [new TextDecoder().decode(e.name), e.entry!]));
  t.same(owner(byName.get('f')!), [1234, 2345], 'READDIRPLUS: the created file');
  t.same(owner(byName.get('p')!), [1234, 2345], 'READDIRPLUS: the fifo');
  t.same(owner(byName.get('root.txt')!), [0, 0], 'READDIRPLUS: root\'s file');
});

t.test('SETATTR chown: the new owner guest→host, the reply host→guest', ROOT, async (t) => {
  const dir = shared(t, { x: 'x' });
  const c = setup(t, dir, ['map:1234:4321:1', 'forbid-guest:666:1'], ['map:2345:5432:1']);
  const x = c.entry(c.lookup(1n, 'x'));
  const r = c.setattr(x.nodeid, { valid: FATTR_UID | FATTR_GID, uid: 1234, gid: 2345 });
  t.equal(r.error, 0);
  t.same([r.attr!.uid, r.attr!.gid], [1234, 2345], 'reply: guest ids');
  t.same([lstatSync(join(dir, 'x')).uid, lstatSync(join(dir, 'x')).gid], [4321, 5432], 'host: mapped ids');
  t.equal(c.setattr(x.nodeid, { valid: FATTR_UID, uid: 666 }).error, -E.EPERM, 'a forbidden new owner');
  t.equal(lstatSync(join(dir, 'x')).uid, 4321, 'left unchanged');
  const g = c.setattr(x.nodeid, { valid: FATTR_GID, gid: 77 });
  t.equal(g.attr?.gid, 77, 'an unmapped gid passes unchanged');
  t.equal(lstatSync(join(dir, 'x')).gid, 77);
});

t.test('squash-guest: every guest id in the range creates as one host id', ROOT, async (t) => {
  const dir = shared(t);
  const c = setup(t, dir, ['squash-guest:0:4321:4294967295'], ['squash-guest:0:5432:4294967295']);
  for (const [uid, name] of [[0, 'a'], [7, 'b'], [65535, 'c']] as const) {
    c.uid = uid;
    c.gid = uid;
    const e = c.entry(c.create(1n, name));
    t.same([lstatSync(join(dir, name)).uid, lstatSync(join(dir, name)).gid], [4321, 5432], `guest ${uid} → host 4321`);
    // no host→guest rule: the guest sees the host's ids
    t.same(owner(e), [4321, 5432], `guest ${uid} sees host 4321`);
  }
});

t.test('forbid-guest: a forbidden caller gets EPERM; requests without a caller are still served', ROOT, async (t) => {
  const dir = shared(t, { x: 'x' });
  const c = setup(t, dir, ['forbid-guest:0:1000'], ['forbid-guest:500:1']);
  c.uid = 1000;
  c.gid = 1000;
  const x = c.entry(c.lookup(1n, 'x'));
  const fh = c.open(x.nodeid, 2 /* O_RDWR */).fh!;
  t.ok(fh !== undefined, 'an allowed caller opens');
  c.uid = 999;
  t.equal(c.lookup(1n, 'x').error, -E.EPERM, 'LOOKUP by a forbidden uid');
  t.equal(c.getattr(x.nodeid).error, -E.EPERM, 'GETATTR');
  t.equal(c.create(1n, 'nope').error, -E.EPERM, 'CREATE');
  t.notOk(lstatSync(join(dir, 'nope'), { throwIfNoEntry: false }), 'nothing created');
  c.uid = 1000;
  c.gid = 500;
  t.equal(c.getattr(x.nodeid).error, -E.EPERM, 'a forbidden gid');
  // RELEASE and FORGET come without the caller's credentials (uid and gid 0)
  c.uid = 0;
  c.gid = 0;
  t.equal(c.write(x.nodeid, fh, 0, new Uint8Array([65])).error, 0, 'WRITE from uid 0 (page writeback) is served');
  t.equal(readFileSync(join(dir, 'x'), 'utf8'), 'A', 'written');
  t.equal(c.call(Opcode.Flush, x.nodeid, le([['u64', fh], ['u32', 0], ['u32', 0], ['u64', 0]])).error, 0, 'FLUSH from uid 0');
  t.equal(c.release(x.nodeid, fh).error, 0, 'RELEASE from uid 0 is served');
  t.equal(c.forget(x.nodeid, 1n).ret, 0, 'FORGET: no reply, as always');
  c.uid = 1000;
  c.gid = 1000;
  t.equal(c.lookup(1n, 'x').error, 0, 'an allowed caller still works');
});

t.test('host: and squash-host: change what the guest sees only', ROOT, async (t) => {
  const dir = shared(t, { mine: 'm', a: 'a', b: 'b' });
  chownSync(join(dir, 'mine'), 4321, 4321);
  chownSync(join(dir, 'a'), 4000, 4000);
  chownSync(join(dir, 'b'), 4050, 4099);
  const c = setup(t, dir, ['host:4321:99:1', 'squash-host:4000:7:100', 'host:0:3000:1'], ['squash-host:4000:8:100']);
  t.same(owner(c.entry(c.lookup(1n, 'mine'))), [99, 4321], 'host 4321 shows as guest 99 (gid: no rule)');
  const root = c.getattr(1n);
  t.same([root.attr!.uid, root.attr!.gid], [3000, 0], 'the root-owned share root shows as guest 3000');
  const neg = c.entry(c.lookup(1n, 'missing'));
  t.same([neg.nodeid, neg.attr.uid], [0n, 0], 'a negative entry\'s attr stays zeros');
  const a = c.entry(c.lookup(1n, 'a'));
  t.same(owner(a), [7, 8], 'squashed');
  const ga = c.getattr(a.nodeid);
  t.same([ga.attr!.uid, ga.attr!.gid], [7, 8], 'GETATTR squashed');
  t.same(owner(c.entry(c.lookup(1n, 'b'))), [7, 8], 'the whole range squashed');
  // guest→host is untouched: guest 99 creates as host 99, not 4321
  c.uid = 99;
  c.gid = 99;
  const n = c.entry(c.create(1n, 'new'));
  t.equal(lstatSync(join(dir, 'new')).uid, 99, 'guest 99 creates as host 99');
  t.same(owner(n), [99, 99], 'and sees 99');
  c.uid = 0;
  c.gid = 0;
  const s = c.setattr(a.nodeid, { valid: FATTR_UID, uid: 4321 });
  t.equal(lstatSync(join(dir, 'a')).uid, 4321, 'chown to 4321 is host 4321');
  t.equal(s.attr?.uid, 99, 'shown as 99');
});

t.test('no rules: ids pass unchanged', ROOT, async (t) => {
  const dir = shared(t);
  const c = setup(t, dir, []);
  c.uid = 1234;
  c.gid = 2345;
  const e = c.entry(c.create(1n, 'f'));
  t.same(owner(e), [1234, 2345]);
  t.equal(lstatSync(join(dir, 'f')).uid, 1234);
});
