// The caller's identity through the FUSE server and the passthrough on the real tables: who owns what
// a guest user creates, the supplementary group of FUSE_CREATE_SUPP_GROUP's request extension (checked
// at the boundary, id-mapped), set-group-ID directories, the *_KILL_SUIDGID flags of
// FUSE_HANDLE_KILLPRIV_V2, and the INIT negotiation of both. Needs root (creates files as other users).
import t, { type Test } from 'tap';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  FATTR_GID, FATTR_KILL_SUIDGID, FATTR_SIZE, FATTR_UID, FUSE_CREATE_SUPP_GROUP2, FUSE_HANDLE_KILLPRIV_V2,
  FUSE_INIT_EXT, FUSE_OPEN_KILL_SUIDGID, FUSE_WRITE_KILL_SUIDGID, IN_HEADER_SIZE, Opcode, decodeInitOut,
  encodeExtGroups,
} from '../../src/abi/fuse.js';
import { Errno as E } from '../../src/errors.js';
import { idMapsOf } from '../../src/fs/idmap.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { FuseServer } from '../../src/fuse/server.js';
import { native } from '../../src/native.js';
import { FuseClient, withExt } from '../helpers/fuse-client.js';
import { realTables, resetTables } from '../helpers/real-tables.js';

const tables = await realTables();
const ROOT = { skip: process.getuid?.() !== 0 && 'needs root (creates files as other users)' };
const S_IFREG = 0o100000;
const S_IFIFO = 0o010000;
const O_RDWR = 2;
const O_CREAT = 0o100;
const O_TRUNC = 0o1000;
// The daemon runs with umask 0 (src/daemon.ts): modes arrive with the guest's umask applied.
process.umask(0);

function setup(t: Test, dir: string, uidRules: string[] = [], gidRules: string[] = []) {
  const fs = Passthrough.open(dir, resetTables(tables), {});
  const idmap = uidRules.length + gidRules.length > 0 ? idMapsOf(uidRules, gidRules) : null;
  const server = new FuseServer(fs, { cache: 'auto', idmap });
  const c = new FuseClient(server);
  t.teardown(() => { fs.destroy(); native.close(fs.procFd); });
  c.uid = 0;
  c.gid = 0;
  t.equal(c.init().error, 0, 'INIT');
  return c;
}

const owner = (p: string): [number, number] => {
  const s = lstatSync(p);
  return [s.uid, s.gid];
};
const mode = (p: string): number => lstatSync(p).mode & 0o7777;

t.test('INIT: CREATE_SUPP_GROUP (flags2) only offered with INIT_EXT; HANDLE_KILLPRIV_V2 when offered', async (t) => {
  const dir = t.testdir({});
  const fs = Passthrough.open(dir, resetTables(tables), {});
  t.teardown(() => { fs.destroy(); native.close(fs.procFd); });
  const c = new FuseClient(new FuseServer(fs, {}));
  const init = (flags: number, flags2: number) => {
    const r = c.raw(c.rb.init(flags, flags2));
    t.equal(r.error, 0);
    return decodeInitOut(r.view, 0);
  };
  let o = init(0xffffffff, FUSE_CREATE_SUPP_GROUP2 | 1 /* SECURITY_CTX */ | 2 /* HAS_INODE_DAX */);
  t.equal(o.flags2, FUSE_CREATE_SUPP_GROUP2, 'offered: taken, and nothing else of flags2');
  t.ok((o.flags & FUSE_HANDLE_KILLPRIV_V2) !== 0, 'HANDLE_KILLPRIV_V2 taken');
  o = init(0xffffffff, 0);
  t.equal(o.flags2, 0, 'not offered: not taken');
  o = init((0xffffffff & ~FUSE_INIT_EXT) >>> 0, FUSE_CREATE_SUPP_GROUP2);
  t.equal(o.flags2, 0, 'without FUSE_INIT_EXT flags2 does not count');
  o = init((0xffffffff & ~FUSE_HANDLE_KILLPRIV_V2) >>> 0, 0);
  t.equal(o.flags & FUSE_HANDLE_KILLPRIV_V2, 0, 'HANDLE_KILLPRIV_V2 not offered: not taken');
});

t.test('every creating request makes its entry as the caller', ROOT, async (t) => {
  const dir = t.testdir({});
  chmodSync(dir, 0o777);
  const c = setup(t, dir);
  c.uid = 1234;
  c.gid = 5678;
  t.equal(c.create(1n, 'f', O_RDWR | O_CREAT, S_IFREG | 0o640).error, 0, 'CREATE');
  t.equal(c.mkdir(1n, 'd', 0o750).error, 0, 'MKDIR');
  t.equal(c.mknod(1n, 'p', S_IFIFO | 0o604).error, 0, 'MKNOD');
  t.equal(c.symlink(1n, 'l', 'f').error, 0, 'SYMLINK');
  for (const n of ['f', 'd', 'p', 'l']) t.same(owner(join(dir, n)), [1234, 5678], `${n}: owned by 1234:5678`);
  t.equal(mode(join(dir, 'f')), 0o640, 'CREATE mode as sent');
  t.equal(mode(join(dir, 'd')), 0o750, 'MKDIR mode as sent');
  t.equal(mode(join(dir, 'p')), 0o604, 'MKNOD mode as sent');
  const main = readFileSync('/proc/thread-self/status', 'utf8');
  t.match(main, /^Uid:\s+0\s+0\s+0\s+0$/m, 'the thread is root again');
  t.match(main, /^Gid:\s+0\s+0\s+0\s+0$/m);
  t.match(main, /^Groups:\s*$/m, 'with no supplementary groups');
});

t.test('a directory writable only through a supplementary group: the extension\'s group passes', ROOT, async (t) => {
  const dir = t.testdir({ g: {} });
  const g = join(dir, 'g');
  chownSync(g, 0, 5678);
  chmodSync(g, 0o770);
  const c = setup(t, dir);
  const gid = c.entry(c.lookup(1n, 'g')).nodeid;
  c.uid = 1234;
  c.gid = 100;
  const ext = encodeExtGroups([5678]);
  const reqs = (n: string): Array<[string, Uint8Array]> => [
    ['CREATE', c.rb.create(gid, `${n}f`, O_RDWR | O_CREAT, S_IFREG | 0o644)],
    ['MKDIR', c.rb.mkdir(gid, `${n}d`, 0o755)],
    ['MKNOD', c.rb.mknod(gid, `${n}p`, S_IFIFO | 0o644)],
    ['SYMLINK', c.rb.symlink(gid, `${n}l`, 'x')],
  ];
  for (const [op, req] of reqs('without-')) {
    t.equal(c.raw(req).error, -E.EACCES, `${op} without the group: EACCES`);
  }
  for (const [op, req] of reqs('with-')) {
    t.equal(c.raw(withExt(req, ext)).error, 0, `${op} with group 5678 in the extension`);
  }
  for (const s of ['f', 'd', 'p', 'l']) {
    t.notOk(existsSync(join(g, `without-${s}`)), `without-${s} not created`);
    t.same(owner(join(g, `with-${s}`)), [1234, 100], `with-${s}: the caller's uid and gid (not the group's)`);
  }
  // The group is the request's only: the next request without it is refused again.
  t.equal(c.raw(c.rb.mkdir(gid, 'again', 0o755)).error, -E.EACCES, 'the next request without it: EACCES');
  // An extension with other records (a security context's header, type 1) around the groups record.
  const secctx = new Uint8Array(16);
  new DataView(secctx.buffer).setUint32(0, 16, true);
  new DataView(secctx.buffer).setUint32(4, 1, true);
  const both = new Uint8Array(secctx.length + ext.length);
  both.set(secctx);
  both.set(ext, secctx.length);
  t.equal(c.raw(withExt(c.rb.mkdir(gid, 'after-secctx', 0o755), both)).error, 0, 'a groups record after another kind');
});

t.test('the extension\'s groups are translated guest→host; one without a host id is dropped', ROOT, async (t) => {
  const dir = t.testdir({ g: {} });
  const g = join(dir, 'g');
  chownSync(g, 0, 5678);
  chmodSync(g, 0o770);
  const c = setup(t, dir, [], ['map:9999:5678:1', 'forbid-guest:5678:1']);
  const gid = c.entry(c.lookup(1n, 'g')).nodeid;
  c.uid = 1234;
  c.gid = 100;
  t.equal(c.raw(withExt(c.rb.mkdir(gid, 'mapped', 0o755), encodeExtGroups([9999]))).error, 0,
    'guest group 9999 is host 5678');
  t.equal(c.raw(withExt(c.rb.mkdir(gid, 'forbidden', 0o755), encodeExtGroups([5678]))).error, -E.EACCES,
    'guest group 5678 has no host id: dropped, EACCES');
  t.ok(existsSync(join(g, 'mapped')));
  t.notOk(existsSync(join(g, 'forbidden')));
});

t.test('malformed extensions: EINVAL, nothing created', ROOT, async (t) => {
  const dir = t.testdir({ g: {} });
  const g = join(dir, 'g');
  chownSync(g, 0, 5678);
  chmodSync(g, 0o770);
  const c = setup(t, dir);
  const gid = c.entry(c.lookup(1n, 'g')).nodeid;
  c.uid = 1234;
  c.gid = 100;
  /** `bytes` long (a multiple of 8): a header claiming `size` and `type`, then nr_groups and gids */
  const rec = (bytes: number, size: number, type: number, nr?: number, ...gids: number[]) => {
    const b = new Uint8Array(bytes);
    const v = new DataView(b.buffer);
    v.setUint32(0, size, true);
    v.setUint32(4, type, true);
    if (nr !== undefined) v.setUint32(8, nr, true);
    gids.forEach((x, i) => { v.setUint32(12 + 4 * i, x, true); });
    return b;
  };
  const good = encodeExtGroups([5678]);
  const cases: Array<[string, Uint8Array, number?]> = [
    ['a record longer than the extensions', rec(16, 24, 32, 1, 5678)],
    ['a record size not a multiple of 8', rec(16, 12, 32, 1, 5678)],
    ['a record size below its header', rec(16, 4, 32, 0)],
    ['a record size of 0', rec(16, 0, 0)],
    ['nr_groups beyond its record', rec(16, 16, 32, 2, 5678)],
    ['nr_groups beyond what the daemon takes', rec(16, 16, 32, 1000, 5678)],
    ['a groups record without nr_groups', rec(8, 8, 32)],
    ['two groups records', new Uint8Array([...good, ...good])],
    ['a groups record, then 8 bytes of nothing', new Uint8Array([...good, 0, 0, 0, 0, 0, 0, 0, 0])],
    ['total_extlen past the request', good, 100],
    ['total_extlen covering the arguments too', good, 6],
  ];
  let i = 0;
  for (const [what, ext, extlen] of cases) {
    const name = `bad${i++}`;
    const req = withExt(c.rb.mkdir(gid, name, 0o755), ext, extlen === undefined ? {} : { extlen });
    t.equal(c.raw(req).error, -E.EINVAL, what);
    t.notOk(existsSync(join(g, name)), `${what}: nothing created`);
  }
  // The handler sees the request without its extensions: a MKDIR with no name does not take the
  // record's bytes (16, 0, ...: the one-byte name "\x10") as its name.
  const noName = withExt(c.rb.request(Opcode.Mkdir, gid, new Uint8Array(8)), good);
  t.equal(c.raw(noName).error, -E.EINVAL, 'a MKDIR without its name: EINVAL');
  t.notOk(existsSync(join(g, '\x10')), 'the extension was not read as the name');
  // a valid one still works afterwards
  t.equal(c.raw(withExt(c.rb.mkdir(gid, 'ok', 0o755), good)).error, 0, 'a well-formed extension');
  // an extension the head copy does not hold (the request's bytes beyond what the reader has)
  const req = withExt(c.rb.mkdir(gid, 'cut', 0o755), good);
  new DataView(req.buffer).setUint32(0, req.length + 8, true);
  t.equal(c.raw(req).error, -E.EINVAL, 'len beyond the request');
  t.notOk(existsSync(join(g, 'cut')));
});

t.test('a set-group-ID directory: new entries take its group, subdirectories its bit too', ROOT, async (t) => {
  const dir = t.testdir({ s: {} });
  const s = join(dir, 's');
  chownSync(s, 0, 4321);
  chmodSync(s, 0o2777);
  const c = setup(t, dir);
  const sid = c.entry(c.lookup(1n, 's')).nodeid;
  c.uid = 1234;
  c.gid = 5678;
  t.equal(c.create(sid, 'f', O_RDWR | O_CREAT, S_IFREG | 0o664).error, 0, 'CREATE');
  t.equal(c.mkdir(sid, 'sub', 0o775).error, 0, 'MKDIR');
  t.equal(c.mknod(sid, 'p', S_IFIFO | 0o660).error, 0, 'MKNOD');
  t.same(owner(join(s, 'f')), [1234, 4321], 'file: the caller\'s uid, the directory\'s group');
  t.equal(mode(join(s, 'f')), 0o664, 'file mode as sent');
  t.same(owner(join(s, 'sub')), [1234, 4321], 'subdirectory: the directory\'s group');
  t.equal(mode(join(s, 'sub')), 0o2775, 'subdirectory: the set-group-ID bit inherited, the rest as sent');
  t.same(owner(join(s, 'p')), [1234, 4321], 'fifo: the directory\'s group');
  // A file asking for set-group-ID in a group its creator is not in loses that bit (the host kernel's
  // rule for a caller without CAP_FSETID); its other bits stay.
  t.equal(c.create(sid, 'g', O_RDWR | O_CREAT, S_IFREG | 0o2775).error, 0);
  t.equal(mode(join(s, 'g')), 0o775, 'set-group-ID of a group the caller is not in: dropped by the host');
  // Deeper: the subdirectory passes both on again.
  const sub = c.entry(c.lookup(sid, 'sub')).nodeid;
  t.equal(c.mkdir(sub, 'deeper', 0o700).error, 0);
  t.same(owner(join(s, 'sub', 'deeper')), [1234, 4321]);
  t.equal(mode(join(s, 'sub', 'deeper')), 0o2700);
});

/** A root-owned file with `m`, its node id and an O_RDWR handle. */
function suidFile(t: Test, c: FuseClient, dir: string, name: string, m: number) {
  writeFileSync(join(dir, name), 'data');
  chmodSync(join(dir, name), m);
  const uid = c.uid;
  const gid = c.gid;
  c.uid = 0;
  c.gid = 0;
  const node = c.entry(c.lookup(1n, name)).nodeid;
  const fh = c.open(node, O_RDWR).fh!;
  c.uid = uid;
  c.gid = gid;
  t.ok(fh !== undefined, `${name} opened`);
  return { node, fh };
}

/** WRITE with fuse_write_in.write_flags set */
function write(c: FuseClient, node: bigint, fh: bigint, flags: number) {
  const req = c.rb.write(node, fh, 0n, new TextEncoder().encode('x'));
  new DataView(req.buffer).setUint32(IN_HEADER_SIZE + 20, flags, true);
  return c.raw(req);
}

t.test('WRITE with FUSE_WRITE_KILL_SUIDGID clears set-user-ID and group-executable set-group-ID', ROOT, async (t) => {
  const dir = t.testdir({});
  const c = setup(t, dir);
  c.uid = 1234;
  c.gid = 5678;
  const a = suidFile(t, c, dir, 'a', 0o6777);
  t.equal(write(c, a.node, a.fh, FUSE_WRITE_KILL_SUIDGID).error, 0);
  t.equal(mode(join(dir, 'a')), 0o777, 'both bits gone (group-executable)');
  const b = suidFile(t, c, dir, 'b', 0o6747);
  t.equal(write(c, b.node, b.fh, FUSE_WRITE_KILL_SUIDGID).error, 0);
  t.equal(mode(join(dir, 'b')), 0o2747, 'set-group-ID without group execute stays');
  const n = suidFile(t, c, dir, 'n', 0o6777);
  t.equal(write(c, n.node, n.fh, 0).error, 0);
  t.equal(mode(join(dir, 'n')), 0o6777, 'without the flag: kept (the daemon has CAP_FSETID)');
  t.equal(readFileSync(join(dir, 'a'), 'utf8'), 'xata', 'the data was written');
});

t.test('SETATTR with FATTR_KILL_SUIDGID: truncate and chown', ROOT, async (t) => {
  const dir = t.testdir({});
  const c = setup(t, dir);
  const a = suidFile(t, c, dir, 'a', 0o6755);
  let r = c.setattr(a.node, { valid: FATTR_SIZE | FATTR_KILL_SUIDGID, size: 1n });
  t.equal(r.error, 0);
  t.equal(r.attr!.mode & 0o7777, 0o755, 'truncate: the reply shows them gone');
  t.equal(mode(join(dir, 'a')), 0o755, 'truncate: gone on the host');
  t.equal(lstatSync(join(dir, 'a')).size, 1, 'truncated');
  const n = suidFile(t, c, dir, 'n', 0o6755);
  t.equal(c.setattr(n.node, { valid: FATTR_SIZE, size: 1n }).error, 0);
  t.equal(mode(join(dir, 'n')), 0o6755, 'truncate without the flag: kept');
  const o = suidFile(t, c, dir, 'o', 0o6755);
  r = c.setattr(o.node, { valid: FATTR_UID | FATTR_GID | FATTR_KILL_SUIDGID, uid: 1234, gid: 5678 });
  t.equal(r.error, 0);
  t.same(owner(join(dir, 'o')), [1234, 5678]);
  t.equal(mode(join(dir, 'o')), 0o755, 'chown: gone');
  // a directory's set-group-ID bit is not a privilege: kept
  mkdirSync(join(dir, 'd'));
  chmodSync(join(dir, 'd'), 0o2775);
  const d = c.entry(c.lookup(1n, 'd')).nodeid;
  t.equal(c.setattr(d, { valid: FATTR_UID | FATTR_KILL_SUIDGID, uid: 1234 }).error, 0);
  t.equal(mode(join(dir, 'd')), 0o2775, 'a directory keeps set-group-ID');
});

t.test('OPEN and CREATE with O_TRUNC and FUSE_OPEN_KILL_SUIDGID', ROOT, async (t) => {
  const dir = t.testdir({});
  chmodSync(dir, 0o777);
  const c = setup(t, dir);
  const open = (node: bigint, flags: number, kill: boolean) => {
    const req = c.rb.open(node, flags);
    if (kill) new DataView(req.buffer).setUint32(IN_HEADER_SIZE + 4, FUSE_OPEN_KILL_SUIDGID, true);
    return c.raw(req);
  };
  const a = suidFile(t, c, dir, 'a', 0o6777);
  t.equal(open(a.node, O_RDWR | O_TRUNC, true).error, 0);
  t.equal(mode(join(dir, 'a')), 0o777, 'O_TRUNC with the flag: gone');
  t.equal(lstatSync(join(dir, 'a')).size, 0);
  const b = suidFile(t, c, dir, 'b', 0o6777);
  t.equal(open(b.node, O_RDWR, true).error, 0);
  t.equal(mode(join(dir, 'b')), 0o6777, 'no O_TRUNC: kept');
  t.equal(open(b.node, O_RDWR | O_TRUNC, false).error, 0);
  t.equal(mode(join(dir, 'b')), 0o6777, 'O_TRUNC without the flag: kept');
  suidFile(t, c, dir, 'e', 0o6777);
  const req = c.rb.create(1n, 'e', O_RDWR | O_CREAT | O_TRUNC, S_IFREG | 0o644);
  new DataView(req.buffer).setUint32(IN_HEADER_SIZE + 12, FUSE_OPEN_KILL_SUIDGID, true);
  t.equal(c.raw(req).error, 0, 'CREATE of an existing file');
  t.equal(mode(join(dir, 'e')), 0o777, 'CREATE O_TRUNC with the flag: gone');
});

t.test('LINK and RENAME run as root: they make no inode', ROOT, async (t) => {
  const dir = t.testdir({ f: 'f', d: {} });
  chmodSync(join(dir, 'd'), 0o700);
  const c = setup(t, dir);
  const f = c.entry(c.lookup(1n, 'f')).nodeid;
  const d = c.entry(c.lookup(1n, 'd')).nodeid;
  c.uid = 1234;
  c.gid = 5678;
  // The guest kernel checked the caller's permission on d already (its copy of the attributes).
  t.equal(c.link(f, d, 'hard').error, 0, 'LINK into a directory only root may write');
  t.equal(c.rename(d, 'hard', 1n, 'moved').error, 0, 'RENAME out of it');
  t.same(owner(join(dir, 'moved')), [0, 0], 'the inode keeps its owner');
});

t.test('setCreds: supplementary groups per thread, ids checked', ROOT, async (t) => {
  const status = () => readFileSync('/proc/thread-self/status', 'utf8');
  const groups = new Uint32Array([5678, 7777, 9]);
  t.equal(native.setCreds(1234, 100, groups, 2), 0);
  let st = status();
  t.match(st, /^Groups:\s*5678 7777\s*$/m, 'the first count groups');
  t.match(st, /^Uid:\s+0\s+0\s+0\s+1234$/m, 'fsuid');
  t.match(st, /^Gid:\s+0\s+0\s+0\s+100$/m, 'fsgid');
  t.equal(native.setCreds(1234, 100, null, 0), 0);
  t.match(status(), /^Groups:\s*$/m, 'none: the list is emptied, never inherited');
  t.equal(native.setCreds(0, 0), 0);
  st = status();
  t.match(st, /^Uid:\s+0\s+0\s+0\s+0$/m, 'back to root');
  t.match(st, /^Groups:\s*$/m);
  t.equal(native.setCreds(0xffffffff, 0), -E.EPERM, 'an id the kernel refuses: EPERM, not silence');
  t.equal(native.setCreds(0, 0xffffffff), -E.EPERM, 'a gid the kernel refuses: EPERM');
  t.equal(native.setCreds(0, 0), 0);
  t.throws(() => native.setCreds(1, 1, groups, 4), TypeError, 'count beyond the array');
  t.throws(() => native.setCreds(1, 1, new Uint32Array(65), 65), TypeError, 'more than 64 groups');
  t.match(status(), /^Uid:\s+0\s+0\s+0\s+0$/m, 'still root');
});
