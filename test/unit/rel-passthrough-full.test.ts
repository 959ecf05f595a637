/**
 * The passthrough on full tables: the real inode table (2^20 slots) and handle table (2^18) are
 * filled with fake entries (test/helpers/real-tables.ts), then every request that needs a new slot
 * must answer ENFILE and close the descriptors it opened for it (counted in /proc/self/fd), leave no
 * lookup reference or handle behind, and work again once FORGET or RELEASE frees a slot. And a
 * FORGET or RELEASE that arrives while another worker's request still uses the fd defers the close
 * to the end of that request.
 */
import t, { type Test } from 'tap';
import { existsSync, fstatSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { Opcode } from '../../src/abi/fuse.js';
import { Errno as E } from '../../src/errors.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { FuseServer } from '../../src/fuse/server.js';
import { type Native, native } from '../../src/native.js';
import { FuseClient, le } from '../helpers/fuse-client.js';
import { FAKE_FD, fdCount, fillHandles, fillInodes, nlookup, realTables, resetTables } from '../helpers/real-tables.js';

const dec = new TextDecoder();
const tables = await realTables();
const L = tables.layout;

/** A session on `dir` with two "workers" (two servers on the same tables, as src/worker.ts has). */
function setup(t: Test, dir: string) {
  const fs = Passthrough.open(dir, resetTables(tables));
  const session = new Int32Array(new SharedArrayBuffer(16));
  const a = new FuseClient(new FuseServer(fs, { cache: 'auto', session }));
  const b = new FuseClient(new FuseServer(new Passthrough(tables, fs.procFd), { cache: 'auto', session }));
  t.teardown(() => { fs.destroy(); fs.close(); });
  t.equal(a.init().error, 0);
  return { a, b };
}

/** Replace native[name] for the rest of test t. */
function inject<K extends keyof Native>(t: Test, name: K, f: (orig: Native[K]) => Native[K]): void {
  const orig = native[name];
  native[name] = f(orig);
  t.teardown(() => { native[name] = orig; });
}

/** Whether fd is an open descriptor of this process. */
function isOpen(fd: number): boolean {
  try {
    fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

t.test('inode table full: requests that need a new inode answer ENFILE, keep no fd; FORGET frees a slot', async (t) => {
  const dir = t.testdir({ known: 'k', a: 'a', b: 'b', c: 'c', d: {} });
  const { a } = setup(t, dir);
  const known = a.entry(a.lookup(1n, 'known'));
  const d = a.entry(a.lookup(1n, 'd'));
  const fill = fillInodes(tables);
  t.teardown(() => fill.unfill());
  t.equal(tables.inodeCount(), L.INODE_MAX - 1, `full: every slot but slot 0 (${fill.count} fake inodes)`);
  const fds = fdCount();
  const at = (what: string) => t.equal(fdCount(), fds, `${what}: no descriptor kept`);

  t.equal(a.lookup(1n, 'a').error, -E.ENFILE, 'LOOKUP of a new inode: ENFILE');
  at('LOOKUP');
  t.equal(a.mkdir(d.nodeid, 'm').error, -E.ENFILE, 'MKDIR: ENFILE');
  t.ok(lstatSync(join(dir, 'd', 'm')).isDirectory(), 'the directory is made (as mkdir then a failed lookup)');
  at('MKDIR');
  t.equal(a.create(d.nodeid, 'new').error, -E.ENFILE, 'CREATE: ENFILE');
  t.ok(existsSync(join(dir, 'd', 'new')), 'the file is made');
  t.equal(tables.handleCount(), 0, 'CREATE left no handle');
  at('CREATE (the open file and its O_PATH fd)');
  t.equal(a.mknod(d.nodeid, 'p', 0o010644).error, -E.ENFILE, 'MKNOD: ENFILE');
  t.equal(a.symlink(d.nodeid, 's', 'known').error, -E.ENFILE, 'SYMLINK: ENFILE');
  at('MKNOD, SYMLINK');

  // An inode already in the table needs no slot: LOOKUP, LINK and CREATE of it work when full.
  t.equal(a.entry(a.lookup(1n, 'known')).nodeid, known.nodeid, 'LOOKUP of a known inode works');
  t.equal(a.entry(a.link(known.nodeid, d.nodeid, 'known2')).nodeid, known.nodeid, 'LINK to a known inode works');
  t.equal(nlookup(known.nodeid), 3n);
  const cr = a.create(1n, 'known');
  t.equal(cr.error, 0, 'CREATE of an existing, known file works');
  t.equal(a.release(known.nodeid, cr.fh!).error, 0);
  a.forget(known.nodeid, 1n);
  at('known inodes');
  t.equal(tables.inodeCount(), L.INODE_MAX - 1, 'still full');

  t.equal(fill.free(1), 1, 'one fake inode forgotten');
  const ea = a.entry(a.lookup(1n, 'a'));
  t.equal(fdCount(), fds + 1, 'LOOKUP in the freed slot keeps its O_PATH fd');
  t.equal(a.lookup(1n, 'b').error, -E.ENFILE, 'full again');
  a.forget(ea.nodeid, 1n);
  at('FORGET');
  const eb = a.entry(a.lookup(1n, 'b'));
  t.equal(nlookup(eb.nodeid), 1n, 'FORGET freed the slot for the next LOOKUP');
  a.forget(eb.nodeid, 1n);
  t.equal(fill.unfill(), fill.count - 1, 'every other fake inode forgotten');
  t.equal(a.entry(a.lookup(1n, 'c')).attr.size, 1n, 'a table with room again');
});

t.test('inode table full: READDIRPLUS lists every name, without attributes where no inode can be made; READDIR is unaffected', async (t) => {
  const names = ['f0', 'f1', 'f2', 'f3', 'f4'];
  const dir = t.testdir(Object.fromEntries(names.map((n) => [n, n])));
  const { a } = setup(t, dir);
  const od = a.opendir(1n);
  t.equal(od.error, 0);
  const fill = fillInodes(tables);
  t.teardown(() => fill.unfill());
  const fds = fdCount();
  const inodes = tables.inodeCount();

  /** READDIRPLUS from the start to the end: every name listed, the names with a node id, the error */
  const list = () => {
    const all: string[] = [];
    const withId: string[] = [];
    let error = 0;
    let off = 0n;
    for (let i = 0; i < 20; i++) {
      const r = a.readdir(1n, od.fh!, off, 64 * 1024, true);
      if (r.error !== 0) { error = r.error; break; }
      if (r.entries.length === 0) break;
      for (const e of r.entries) {
        const name = dec.decode(e.name);
        off = e.off;
        if (name.startsWith('.')) continue;
        all.push(name);
        if (e.entry!.nodeid !== 0n) withId.push(name);
      }
    }
    return { all: all.sort(), withId: withId.sort(), error };
  };

  // node id 0 is "no attributes" to the guest's kernel (it makes no dentry and looks the name up
  // itself): the listing stays complete, and the lookup's own error reaches the guest there
  const full = list();
  t.same([full.all, full.withId, full.error], [names, [], 0], 'full: every name, none with a node id, no error');
  t.equal(fdCount(), fds, 'no descriptor kept');
  t.equal(tables.inodeCount(), inodes, 'no reference taken');
  const plain = a.readdir(1n, od.fh!, 0n, 64 * 1024).entries.map((e) => dec.decode(e.name));
  t.same(plain.filter((n) => !n.startsWith('.')).sort(), names, 'READDIR needs no inode: lists everything');

  fill.free(2);
  const two = list();
  t.same([two.all, two.withId.length, two.error], [names, 2, 0], 'two free slots: every name, two with a node id');
  t.equal(tables.inodeCount(), inodes, 'the two freed slots hold the two new inodes');
  fill.free(3);
  const rest = list();
  t.same([rest.all, rest.withId, rest.error], [names, names, 0], 'with room every name has a node id');
  t.equal(fdCount(), fds + names.length, 'one O_PATH fd per inode, none for an entry listed twice');
  a.release(1n, od.fh!, Opcode.Releasedir);
  fill.unfill();
});

t.test('handle table full: OPEN, OPENDIR, CREATE answer ENFILE, keep no fd or reference; RELEASE frees a slot', async (t) => {
  const dir = t.testdir({ f: 'x', g: 'y', d: {} });
  const { a } = setup(t, dir);
  const f = a.entry(a.lookup(1n, 'f'));
  const d = a.entry(a.lookup(1n, 'd'));
  const h0 = a.open(f.nodeid, 0);
  t.equal(h0.error, 0);
  const fill = fillHandles(tables);
  t.teardown(() => fill.unfill());
  t.equal(tables.handleCount(), L.HANDLE_MAX - 1, `full: every slot but slot 0 (${fill.count} fake handles)`);
  const fds = fdCount();
  const inodes = tables.inodeCount();
  const at = (what: string) => t.equal(fdCount(), fds, `${what}: no descriptor kept`);

  t.equal(a.open(f.nodeid, 2).error, -E.ENFILE, 'OPEN: ENFILE');
  at('OPEN');
  t.equal(a.opendir(d.nodeid).error, -E.ENFILE, 'OPENDIR: ENFILE');
  at('OPENDIR');
  t.equal(a.create(d.nodeid, 'new').error, -E.ENFILE, 'CREATE of a new file: ENFILE');
  t.ok(existsSync(join(dir, 'd', 'new')), 'the file is made');
  t.equal(tables.inodeCount(), inodes, 'CREATE dropped the inode it entered');
  at('CREATE of a new file');
  t.equal(a.create(1n, 'f').error, -E.ENFILE, 'CREATE of a known file: ENFILE');
  t.equal(nlookup(f.nodeid), 1n, 'CREATE gave back the lookup reference it took');
  at('CREATE of a known file');

  t.equal(a.release(f.nodeid, h0.fh!).error, 0, 'RELEASE of a real handle');
  t.equal(fdCount(), fds - 1, 'its fd closed');
  const h1 = a.open(f.nodeid, 2);
  t.equal(h1.error, 0, 'OPEN in the freed slot');
  t.equal(a.opendir(d.nodeid).error, -E.ENFILE, 'full again');
  t.equal(a.release(f.nodeid, h1.fh!).error, 0);
  const od = a.opendir(d.nodeid);
  t.equal(od.error, 0, 'OPENDIR in the slot RELEASE freed');
  t.equal(a.release(d.nodeid, od.fh!, Opcode.Releasedir).error, 0);
  t.equal(fdCount(), fds - 1);
  t.equal(fill.unfill(), fill.count, 'every fake handle closed');
});

t.test('DESTROY of full tables closes every fd but the root\'s; the next session starts empty', async (t) => {
  const dir = t.testdir({ f: 'x', g: 'y' });
  const { a } = setup(t, dir);
  const fds = fdCount();
  const f = a.entry(a.lookup(1n, 'f'));
  a.lookup(1n, 'g');
  t.equal(a.open(f.nodeid, 0).error, 0);
  const inodes = fillInodes(tables);
  const handles = fillHandles(tables);
  t.teardown(() => { inodes.unfill(); handles.unfill(); });
  t.equal(fdCount(), fds + 3, 'two inodes and a handle');
  // The fake fds are counted, not passed to close(2): 1.3 million EBADF calls would take seconds.
  let fakes = 0;
  inject(t, 'close', (orig) => (fd) => {
    if (fd !== FAKE_FD) return orig(fd);
    fakes++;
    return 0;
  });
  t.equal(a.call(Opcode.Destroy, 0n, new Uint8Array(0)).error, 0);
  t.equal(tables.inodeCount(), 1, 'only the root is left');
  t.equal(tables.handleCount(), 0, 'no handle is left');
  t.equal(fakes, inodes.count + handles.count, 'every fake entry drained, once');
  t.equal(fdCount(), fds, 'every real fd closed');
  t.equal(a.init().error, 0);
  t.equal(a.entry(a.lookup(1n, 'g')).attr.size, 1n, 'the next session looks up');
  t.equal(a.open(f.nodeid, 0).error, -E.ESTALE, 'the old node ids are gone');
});

t.test('FORGET of an inode another worker is using: its fd closes when that request ends', async (t) => {
  const dir = t.testdir({ f: 'x' });
  const { a, b } = setup(t, dir);
  const e = a.entry(a.lookup(1n, 'f'));
  const fd = tables.inodeAcquire(Number(e.nodeid));
  t.equal(tables.inodeRelease(Number(e.nodeid)), -1);
  const fds = fdCount();
  const inodes = tables.inodeCount();
  let during: Record<string, unknown> | undefined;
  inject(t, 'statAt', (orig) => (dirfd, name, flags, out) => {
    if (dirfd === fd && during === undefined) {
      // Worker a's GETATTR has the inode pinned; worker b gets the guest's FORGET now.
      during = {};
      b.forget(e.nodeid, 1n);
      during.open = isOpen(fd);
      during.stale = b.getattr(e.nodeid).error;
      during.count = tables.inodeCount();
    }
    return orig(dirfd, name, flags, out);
  });
  const r = a.getattr(e.nodeid);
  t.ok(during, 'the FORGET came while the GETATTR had the inode');
  t.equal(r.error, 0, 'the GETATTR that had the inode completes');
  t.equal(during!.open, true, 'the fd stayed open while pinned');
  t.equal(during!.stale, -E.ESTALE, 'a forgotten inode takes no new users');
  t.equal(during!.count, inodes, 'it keeps its slot until then');
  t.notOk(isOpen(fd), 'the last release closed the fd');
  t.equal(fdCount(), fds - 1);
  t.equal(tables.inodeCount(), inodes - 1, 'and freed the slot');
});

t.test('RELEASE of a handle another worker is using: its fd closes when that request ends', async (t) => {
  const dir = t.testdir({ f: 'x' });
  const { a, b } = setup(t, dir);
  const e = a.entry(a.lookup(1n, 'f'));
  const fh = a.open(e.nodeid, 2).fh!;
  const fd = tables.handleAcquire(Number(fh));
  t.equal(tables.handleRelease(Number(fh)), -1);
  const fds = fdCount();
  let during: Record<string, unknown> | undefined;
  inject(t, 'fsync', (orig) => (ffd, datasync) => {
    if (ffd === fd && during === undefined) {
      during = {};
      during.release = b.release(e.nodeid, fh).error;
      during.open = isOpen(fd);
      during.read = b.read(e.nodeid, fh, 0, 1).error;
    }
    return orig(ffd, datasync);
  });
  const r = a.call(Opcode.Fsync, e.nodeid, le([['u64', fh], ['u32', 0], ['u32', 0]]));
  t.ok(during, 'the RELEASE came while the FSYNC had the handle');
  t.equal(r.error, 0, 'the FSYNC completes');
  t.equal(during!.release, 0, 'RELEASE answers at once');
  t.equal(during!.open, true, 'the fd stayed open while pinned');
  t.equal(during!.read, -E.EBADF, 'a released handle takes no new users');
  t.notOk(isOpen(fd), 'the last release closed the fd');
  t.equal(fdCount(), fds - 1);
  t.equal(tables.handleCount(), 0);
});
