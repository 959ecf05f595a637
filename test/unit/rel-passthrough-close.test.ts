/**
 * Closing a file when a native call fails:
 * - FLUSH: out of descriptors (dup fails) the data is flushed with fdatasync instead, whose error is
 *   the flush's (it used to be a silent success); any other dup failure is the flush's error.
 * - RELEASE: FUSE_RELEASE_FLUSH flushes, and a failed close is logged (the kernel ignores the reply).
 *
 * Failures are injected as in rel-passthrough-readdir.test.ts: `native` is a plain object read at
 * call time, so a test swaps one method for a wrapper and puts it back in teardown.
 */
import t, { type Test } from 'tap';
import { FUSE_RELEASE_FLUSH, Opcode } from '../../src/abi/fuse.js';
import { Errno as E } from '../../src/errors.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { FuseServer } from '../../src/fuse/server.js';
import { Logger } from '../../src/log.js';
import { C, type Native, native } from '../../src/native.js';
import { FuseClient, le } from '../helpers/fuse-client.js';
import { realTables, resetTables } from '../helpers/real-tables.js';

/** the daemon's inode/handle tables (the wasm module), one instance for this file */
const tables = await realTables();

function setup(t: Test, dir: string) {
  const fs = Passthrough.open(dir, resetTables(tables));
  const logged: string[] = [];
  const log = new Logger('warn', 'test', (_line, _level, _thread, msg) => { logged.push(msg); });
  const server = new FuseServer(fs, { cache: 'auto', log });
  const c = new FuseClient(server);
  t.teardown(() => { fs.destroy(); native.close(fs.procFd); });
  t.equal(c.init().error, 0);
  return { tables, c, logged };
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

/** close(2) that closes but reports EIO, as NFS does for a write-back error */
function closeFailing(orig: Native['close']): Native['close'] {
  return (fd) => {
    orig(fd);
    return -E.EIO;
  };
}

function release(c: FuseClient, nodeid: bigint, fh: bigint, releaseFlags: number) {
  return c.call(Opcode.Release, nodeid, le([['u64', fh], ['u32', 0], ['u32', releaseFlags], ['u64', 0]]));
}

t.test('FLUSH without a descriptor to spare: fdatasync flushes instead, and its error is the flush error', async (t) => {
  for (const errno of [E.EMFILE, E.ENFILE]) {
    await t.test(`dup fails with ${errno}: fdatasync, success`, async (t) => {
      const { c, nodeid, fh } = openFile(t);
      const syncs: boolean[] = [];
      inject(t, 'dup', () => () => -errno);
      inject(t, 'fsync', (orig) => (fd, datasync) => { syncs.push(datasync); return orig(fd, datasync); });
      t.equal(c.call(Opcode.Flush, nodeid, le([['u64', fh], ['u32', 0], ['u32', 0], ['u64', 0]])).error, 0, 'the guest close(2) does not fail');
      t.same(syncs, [true], 'flushed with fdatasync');
    });
  }
  await t.test('dup fails with EMFILE and fdatasync with EIO: EIO', async (t) => {
    const { c, nodeid, fh } = openFile(t);
    inject(t, 'dup', () => () => -E.EMFILE);
    inject(t, 'fsync', () => () => -E.EIO);
    t.equal(c.call(Opcode.Flush, nodeid, le([['u64', fh], ['u32', 0], ['u32', 0], ['u64', 0]])).error, -E.EIO);
  });
  await t.test('another dup failure is the flush error', async (t) => {
    const { c, nodeid, fh } = openFile(t);
    inject(t, 'dup', () => () => -E.EBADF);
    t.equal(c.call(Opcode.Flush, nodeid, le([['u64', fh], ['u32', 0], ['u32', 0], ['u64', 0]])).error, -E.EBADF);
  });
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

t.test('RELEASE: FUSE_RELEASE_FLUSH flushes, close errors are logged', async (t) => {
  await t.test('with FUSE_RELEASE_FLUSH the handle is flushed (close of a dup) before it closes', async (t) => {
    const { c, nodeid, fh, tables } = openFile(t);
    const calls: string[] = [];
    inject(t, 'dup', (orig) => (fd) => { calls.push('dup'); return orig(fd); });
    inject(t, 'close', (orig) => (fd) => { calls.push('close'); return orig(fd); });
    t.equal(release(c, nodeid, fh, FUSE_RELEASE_FLUSH).error, 0);
    t.same(calls, ['dup', 'close', 'close'], 'flush, then the handle fd');
    t.equal(tables.handleCount(), 0, 'the handle is gone');
  });
  await t.test('without it, no flush', async (t) => {
    const { c, nodeid, fh } = openFile(t);
    let dups = 0;
    inject(t, 'dup', (orig) => (fd) => { dups++; return orig(fd); });
    t.equal(release(c, nodeid, fh, 0).error, 0);
    t.equal(dups, 0);
  });
  await t.test('a failed flush is reported and logged, and the handle still closes', async (t) => {
    const { c, nodeid, fh, tables, logged } = openFile(t);
    inject(t, 'dup', () => () => -E.EMFILE);
    inject(t, 'fsync', () => () => -E.EIO);
    t.equal(release(c, nodeid, fh, FUSE_RELEASE_FLUSH).error, -E.EIO);
    t.equal(tables.handleCount(), 0, 'the handle is gone');
    t.match(logged.join('\n'), new RegExp(`RELEASE.*errno ${E.EIO}`), 'logged');
  });
  await t.test('a failed close of the handle fd is reported and logged', async (t) => {
    const { c, nodeid, fh, tables, logged } = openFile(t);
    inject(t, 'close', closeFailing);
    t.equal(release(c, nodeid, fh, 0).error, -E.EIO);
    t.equal(tables.handleCount(), 0, 'the handle is gone');
    t.match(logged.join('\n'), new RegExp(`RELEASE.*errno ${E.EIO}`), 'logged');
  });
  await t.test('the log is rate limited', async (t) => {
    const dir = t.testdir({ 'a.txt': 'data' });
    const s = setup(t, dir);
    const e = s.c.entry(s.c.lookup(1n, 'a.txt'));
    inject(t, 'close', closeFailing);
    for (let i = 0; i < 50; i++) {
      const o = s.c.open(e.nodeid, C.O_RDONLY);
      t.equal(release(s.c, e.nodeid, o.fh!, 0).error, -E.EIO);
    }
    t.ok(s.logged.length > 0 && s.logged.length <= 10, `${s.logged.length} lines for 50 failed closes`);
  });
  await t.test('an unknown fh is EBADF and not logged', async (t) => {
    const { c, nodeid, logged } = openFile(t);
    t.equal(release(c, nodeid, 987654n, FUSE_RELEASE_FLUSH).error, -E.EBADF);
    t.same(logged, []);
  });
});
