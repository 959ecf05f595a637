/**
 * READDIRPLUS when a lookup fails: an entry whose lookup fails (EMFILE and the like) is listed without
 * attributes (node id 0, which the guest does not link), so the listing is complete even while the
 * descriptors are used up; only an entry that vanished (ENOENT) is skipped.
 *
 * Failures are injected: `native` is a plain object every module reads its syscalls from at call time,
 * so a test swaps one method for a wrapper and puts it back in teardown (nothing on the daemon's hot path).
 */
import t, { type Test } from 'tap';
import { Errno as E } from '../../src/errors.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { FuseServer } from '../../src/fuse/server.js';
import { C, type Native, native } from '../../src/native.js';
import { FuseClient } from '../helpers/fuse-client.js';
import { realTables, resetTables } from '../helpers/real-tables.js';

const dec = new TextDecoder();
const PATH_FLAGS = C.O_PATH | C.O_NOFOLLOW | C.O_CLOEXEC;

/** the daemon's inode/handle tables (the wasm module), one instance for this file */
const tables = await realTables();

function setup(t: Test, dir: string) {
  const fs = Passthrough.open(dir, resetTables(tables));
  const server = new FuseServer(fs, { cache: 'auto' });
  const c = new FuseClient(server);
  t.teardown(() => { fs.destroy(); native.close(fs.procFd); });
  t.equal(c.init().error, 0);
  return { tables, c };
}

/** Replace native[name] for the rest of test t. */
function inject<K extends keyof Native>(t: Test, name: K, f: (orig: Native[K]) => Native[K]): void {
  const orig = native[name];
  native[name] = f(orig);
  t.teardown(() => { native[name] = orig; });
}

/** Make the passthrough's name lookups (openat2 of one O_PATH name) fail while `fail(name)` says so. */
function failLookups(t: Test, fail: (name: string) => number) {
  inject(t, 'openat2', (orig) => (dirfd, name, flags, mode, resolve) => {
    if (flags === PATH_FLAGS && name.length > 0) {
      const e = fail(dec.decode(name));
      if (e < 0) return e;
    }
    return orig(dirfd, name, flags, mode, resolve);
  });
}

const NAMES = Array.from({ length: 24 }, (_, i) => `f${String(i).padStart(2, '0')}`);

/** READDIRPLUS from offset 0 to the end (an empty reply) or the first error, as the guest's getdents loop does. */
function listPlus(c: FuseClient, nodeid: bigint, fh: bigint, size = 4096) {
  const seen: string[] = [];
  const entries: Array<{ name: string; nodeid: bigint }> = [];
  let off = 0n;
  for (let rounds = 1; rounds < 1000; rounds++) {
    const r = c.readdir(nodeid, fh, off, size, true);
    if (r.error !== 0) return { seen, entries, error: r.error, rounds };
    if (r.entries.length === 0) return { seen, entries, error: 0, rounds };
    for (const e of r.entries) {
      seen.push(dec.decode(e.name));
      entries.push({ name: dec.decode(e.name), nodeid: e.entry?.nodeid ?? -1n });
    }
    off = r.entries.at(-1)!.off;
  }
  throw new Error('READDIRPLUS never ended');
}

function openDir(t: Test) {
  const dir = t.testdir({ d: Object.fromEntries(NAMES.map((n) => [n, n])) });
  const s = setup(t, dir);
  const d = s.c.entry(s.c.lookup(1n, 'd'));
  const od = s.c.opendir(d.nodeid);
  t.equal(od.error, 0, 'opendir');
  return { ...s, nodeid: d.nodeid, fh: od.fh! };
}

/** The entries of a listing, without . and .., by name: node id (0: listed without attributes). */
function byName(l: { entries: Array<{ name: string; nodeid: bigint }> }): Map<string, bigint> {
  return new Map(l.entries.filter((e) => e.name !== '.' && e.name !== '..').map((e) => [e.name, e.nodeid]));
}

t.test('READDIRPLUS: an entry whose lookup fails (EMFILE) is listed without attributes', async (t) => {
  const { c, nodeid, fh } = openDir(t);
  let failed = 0;
  failLookups(t, (name) => (name === 'f07' && failed++ === 0 ? -E.EMFILE : 0));
  const l = listPlus(c, nodeid, fh);
  t.equal(failed > 0, true, 'the lookup of f07 was made to fail');
  t.equal(l.error, 0, 'the listing ends normally');
  const got = byName(l);
  t.same([...got.keys()].sort(), NAMES, 'every entry, exactly once');
  t.equal(got.get('f07'), 0n, 'f07 comes with node id 0 (no lookup count taken)');
  t.equal([...got.values()].filter((n) => n === 0n).length, 1, 'every other entry with its node id');
});

t.test('READDIRPLUS under descriptor pressure: every entry, never a gap or a failed listing', async (t) => {
  for (const errno of [E.EMFILE, E.ENFILE, E.EACCES]) {
    await t.test(`every third lookup fails with ${errno}`, async (t) => {
      const { c, nodeid, fh } = openDir(t);
      let calls = 0;
      let failures = 0;
      failLookups(t, () => {
        if (++calls % 3 !== 0) return 0;
        failures++;
        return -errno;
      });
      const l = listPlus(c, nodeid, fh);
      t.equal(l.error, 0, 'the listing ends normally');
      const got = l.entries.filter((e) => e.name !== '.' && e.name !== '..');
      t.equal(new Set(got.map((e) => e.name)).size, got.length, 'no entry twice');
      t.same(got.map((e) => e.name).sort(), NAMES, 'every entry');
      t.equal(got.filter((e) => e.nodeid === 0n).length, failures, 'the entries whose lookup failed have node id 0');
    });
  }
});

t.test('READDIRPLUS: a lookup that keeps failing still lists the entry; LOOKUP reports the error', async (t) => {
  const { c, nodeid, fh } = openDir(t);
  let failing = true;
  failLookups(t, (name) => (failing && name === 'f07' ? -E.EMFILE : 0));
  const l = listPlus(c, nodeid, fh);
  t.equal(l.error, 0, 'the listing ends normally');
  t.same([...byName(l).keys()].sort(), NAMES, 'every entry, f07 included');
  t.equal(byName(l).get('f07'), 0n, 'f07 without attributes');
  t.equal(c.lookup(nodeid, 'f07').error, -E.EMFILE, 'the guest\'s own LOOKUP of it gets the error');
  failing = false;
  t.equal(c.lookup(nodeid, 'f07').error, 0, 'and succeeds once descriptors are back');
});

t.test('READDIRPLUS: an entry that vanished (ENOENT) is skipped', async (t) => {
  const { c, nodeid, fh } = openDir(t);
  failLookups(t, (name) => (name === 'f07' || name === 'f08' ? -E.ENOENT : 0));
  const l = listPlus(c, nodeid, fh);
  t.equal(l.error, 0);
  t.same(l.seen.filter((n) => n !== '.' && n !== '..').sort(), NAMES.filter((n) => n !== 'f07' && n !== 'f08'));
});

