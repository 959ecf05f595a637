/**
 * Closing a file when a native call fails:
 * - FLUSH: a failed dup is the flush's error, not a silent success.
 *
 * Failures are injected as in rel-passthrough-readdir.test.ts: `native` is a plain object read at
 * call time, so a test swaps one method for a wrapper and puts it back in teardown.
 */
import t, { type Test } from 'tap';
import { Opcode } from '../../src/abi/fuse.js';
import { Errno as E } from '../../src/errors.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { FuseServer } from '../../src/fuse/server.js';
import { C, type Native, native } from '../../src/native.js';
import { FuseClient, MapTables, le } from '../helpers/fuse-client.js';

function setup(t: Test, dir: string) {
  const tables = new MapTables();
  const fs = Passthrough.open(dir, tables);
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

function openFile(t: Test) {
  const dir = t.testdir({ 'a.txt': 'data' });
  const s = setup(t, dir);
  const e = s.c.entry(s.c.lookup(1n, 'a.txt'));
  const o = s.c.open(e.nodeid, C.O_RDWR);
  t.equal(o.error, 0, 'open');
  return { ...s, nodeid: e.nodeid, fh: o.fh! };
}

t.test('FLUSH: a failed dup is the flush error', async (t) => {
  for (const errno of [E.EMFILE, E.ENFILE]) {
    await t.test(`dup fails with ${errno}`, async (t) => {
      const { c, nodeid, fh } = openFile(t);
      inject(t, 'dup', () => () => -errno);
      t.equal(c.call(Opcode.Flush, nodeid, le([['u64', fh], ['u32', 0], ['u32', 0], ['u64', 0]])).error, -errno);
    });
  }
  await t.test('a failed close of the dup is the flush error', async (t) => {
    const { c, nodeid, fh } = openFile(t);
    let dupFd = -1;
    inject(t, 'dup', (orig) => (fd) => (dupFd = orig(fd)));
    inject(t, 'close', (orig) => (fd) => {
      const r = orig(fd);
      return fd === dupFd ? -E.EIO : r;
    });
    t.equal(c.call(Opcode.Flush, nodeid, le([['u64', fh], ['u32', 0], ['u32', 0], ['u64', 0]])).error, -E.EIO);
  });
});
