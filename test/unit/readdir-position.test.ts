/**
 * READDIR's directory position lives in the shared handle table (handleDirPos/handleSetDirPos), not in a
 * worker: whichever worker serves the next READDIR of an open directory knows where its fd was left, so
 * a sequential listing never seeks (a seek, even lseek(SEEK_CUR), makes an ext4 directory rebuild its
 * hash-order cache on the next getdents), and any other offset (a rewind, a cookie) is sought.
 * Two FuseServers over two Passthroughs on the same tables stand for two workers.
 */
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { Opcode } from '../../src/abi/fuse.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { FuseServer } from '../../src/fuse/server.js';
import { type Native, native } from '../../src/native.js';
import { FuseClient } from '../helpers/fuse-client.js';
import { realTables, resetTables } from '../helpers/real-tables.js';

const dec = new TextDecoder();
const tables = await realTables();

function twoWorkers(t: Test, dir: string): [FuseClient, FuseClient] {
  const first = Passthrough.open(dir, resetTables(tables));
  const second = new Passthrough(tables, first.procFd);
  t.teardown(() => {
    first.destroy();
    native.close(first.procFd);
  });
  const a = new FuseClient(new FuseServer(first, { cache: 'auto' }));
  const b = new FuseClient(new FuseServer(second, { cache: 'auto' }));
  t.equal(a.init().error, 0);
  t.equal(b.init().error, 0);
  return [a, b];
}

/** Counts the addon's directory seeks for the rest of test t. */
function countSeeks(t: Test): { n: number } {
  const count = { n: 0 };
  const orig = native.lseekBig;
  native.lseekBig = ((fd, off, whence) => {
    count.n++;
    return orig(fd, off, whence);
  }) as Native['lseekBig'];
  t.teardown(() => {
    native.lseekBig = orig;
  });
  return count;
}

t.test('a listing served alternately by two workers is whole, in order, and seeks only when asked to', async (t) => {
  const dir = t.testdir({});
  const d = join(dir, 'd');
  fs.mkdirSync(d);
  const names = Array.from({ length: 400 }, (_, i) => `entry-${i}-${'n'.repeat(i % 30)}`);
  for (const n of names) fs.writeFileSync(join(d, n), '');
  const [a, b] = twoWorkers(t, dir);
  const e = a.entry(a.lookup(1n, 'd'));
  const od = a.opendir(e.nodeid);
  t.equal(od.error, 0);
  const seeks = countSeeks(t);

  const list = (from: bigint, size: number, stopAfter = Infinity): { names: string[]; cookies: bigint[] } => {
    const out: string[] = [];
    const cookies: bigint[] = [];
    let off = from;
    for (let i = 0; i < 10000 && cookies.length < stopAfter; i++) {
      const r = (i % 2 === 0 ? a : b).readdir(e.nodeid, od.fh!, off, size);
      t.equal(r.error, 0);
      if (r.entries.length === 0) break;
      for (const x of r.entries) out.push(dec.decode(x.name));
      off = r.entries.at(-1)!.off;
      cookies.push(off);
    }
    return { names: out, cookies };
  };

  const whole = list(0n, 1024);
  t.same([...whole.names].sort(), [...names, '.', '..'].sort(), 'every entry once');
  t.ok(whole.cookies.length > 10, `many READDIRs (${whole.cookies.length}), alternating workers`);
  // (the last READDIR, after the end was reached, seeks to its cookie: where a getdents that found
  // nothing leaves the position is not assumed)
  t.equal(seeks.n, 1, `a sequential listing of ${whole.cookies.length} READDIRs makes one seek, at the end`);

  // a rewind (offset 0) on the other worker: the listing again from the start, with one seek
  const again = list(0n, 1024);
  t.same(again.names, whole.names, 'the same listing after a rewind');
  t.equal(seeks.n, 3, 'the rewind seeks once (and the end once more)');

  // a cookie from the middle: the rest of the listing, whichever worker serves it
  const mid = whole.cookies[4]!;
  const before = whole.names.indexOf(list(0n, 1024, 5).names.at(-1)!);
  const rest = list(mid, 2048);
  t.same(rest.names, whole.names.slice(before + 1), 'from a cookie: the entries after it');
});

t.test('a handle reused for another directory starts at position 0', async (t) => {
  const dir = t.testdir({ x: { a: '', b: '' }, y: { c: '' } });
  const [a, b] = twoWorkers(t, dir);
  const x = a.entry(a.lookup(1n, 'x'));
  const ox = a.opendir(x.nodeid);
  const first = a.readdir(x.nodeid, ox.fh!, 0n, 4096);
  t.equal(first.entries.length, 4);
  t.equal(a.release(x.nodeid, ox.fh!, Opcode.Releasedir).error, 0);
  const y = b.entry(b.lookup(1n, 'y'));
  const oy = b.opendir(y.nodeid);
  const seeks = countSeeks(t);
  const r = a.readdir(y.nodeid, oy.fh!, 0n, 4096);
  t.same(r.entries.map((x) => dec.decode(x.name)).sort(), ['.', '..', 'c']);
  t.equal(seeks.n, 0, 'a new handle is at 0: no seek');
});
