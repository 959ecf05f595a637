import t from 'tap';
import {
  FOPEN_CACHE_DIR, FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE, FUSE_ASYNC_READ, FUSE_DO_READDIRPLUS, FUSE_MAX_PAGES,
  FUSE_POSIX_LOCKS, FUSE_WRITEBACK_CACHE, IN_HEADER_SIZE, Opcode, decodeEntryOut, encodeInHeader,
} from '../../src/abi/fuse.js';
import { Errno as E } from '../../src/errors.js';
import { type CacheMode, cachePolicy } from '../../src/fuse/cache-policy.js';
import { OPS } from '../../src/fuse/ops/table.js';
import { FuseServer } from '../../src/fuse/server.js';
import { MAX_WRITE } from '../../src/fuse/session.js';
import type { Ctx, Entry, FileSystem } from '../../src/fs/filesystem.js';
import { BufferReader, BufferWriter } from '../helpers/buffer-io.js';
import { FuseClient, concat, cstr, le } from '../helpers/fuse-client.js';

/** A fake file system that records calls. */
class FakeFs implements FileSystem {
  calls: string[] = [];
  forgets: Array<[number, number]> = [];
  destroyed = 0;
  writeback: boolean | undefined;
  init(o: { writeback: boolean }): void { this.writeback = o.writeback; }
  destroy(): void { this.destroyed++; }
  lookup(_c: Ctx, parent: number, name: Uint8Array): Entry | number {
    const n = new TextDecoder().decode(name);
    this.calls.push(`lookup ${parent} ${n}`);
    if (n === 'missing') return -E.ENOENT;
    if (n === 'boom') throw new Error('bug in fs');
    return { nodeid: 77, generation: 0, attr: new Uint8Array(88).fill(1) };
  }
  forget(nodeid: number, n: number): void { this.forgets.push([nodeid, n]); }
  getattr(): Uint8Array { return new Uint8Array(88).fill(2); }
  unlink(_c: Ctx, _p: number, name: Uint8Array): number {
    this.calls.push(`unlink ${new TextDecoder().decode(name)}`);
    return 0;
  }
  open(): { fh: number; openFlags: number } { return { fh: 5, openFlags: 0 }; }
  opendir(): { fh: number; openFlags: number } { return { fh: 6, openFlags: 0 }; }
  read(_c: Ctx, _n: number, _fh: number, _off: number, size: number): number {
    this.calls.push(`read ${size}`);
    return 0;
  }
}

function setup(opts: { cache?: CacheMode; writeback?: boolean; timeout?: number } = {}) {
  const fs = new FakeFs();
  const server = new FuseServer(fs, opts);
  const c = new FuseClient(server);
  return { fs, server, c };
}

t.test('INIT negotiation', async (t) => {
  const { c, server, fs } = setup();
  const r0 = c.lookup(1n, 'x');
  t.equal(r0.error, -E.EIO, 'ops before INIT get EIO');
  t.equal(r0.ret, 16);

  const r = c.init(7, 38, FUSE_ASYNC_READ | FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES | FUSE_POSIX_LOCKS | FUSE_WRITEBACK_CACHE);
  t.equal(r.error, 0);
  t.equal(r.len, 16 + 64);
  t.equal(r.ret, r.len, 'returned length equals the header len');
  t.equal(r.init!.major, 7);
  t.equal(r.init!.minor, 36, 'minor = min(kernel, 36)');
  t.equal(r.init!.maxWrite, MAX_WRITE);
  t.equal(r.init!.maxPages, 256);
  t.ok(r.init!.flags & FUSE_ASYNC_READ);
  t.ok(r.init!.flags & FUSE_DO_READDIRPLUS);
  t.notOk(r.init!.flags & FUSE_POSIX_LOCKS, 'no posix locks');
  t.notOk(r.init!.flags & FUSE_WRITEBACK_CACHE, 'no writeback unless asked');
  t.equal(fs.writeback, false);
  t.ok(server.initialized);

  const older = setup().c.init(7, 31, FUSE_ASYNC_READ);
  t.equal(older.init!.minor, 31);
  t.equal(older.init!.flags, FUSE_ASYNC_READ, 'only flags the kernel offers');

  t.equal(setup().c.init(7, 20).error, -E.EPROTO, '7.20 is too old');
  t.equal(setup().c.init(6, 40).error, -E.EPROTO, 'major 6');
  const s8 = setup();
  const r8 = s8.c.init(8, 0);
  t.equal(r8.error, 0, 'major 8: a reply with our version');
  t.equal(r8.init!.major, 7);
  t.equal(r8.init!.minor, 36);
  t.equal(r8.init!.flags, 0);
  t.notOk(s8.server.initialized, 'not initialised: the kernel retries');

  const wb = setup({ writeback: true });
  t.ok(wb.c.init().init!.flags & FUSE_WRITEBACK_CACHE);
  t.equal(wb.fs.writeback, true);

  // short INIT payload
  const s = setup();
  t.equal(s.c.call(Opcode.Init, 0n, le([['u32', 7], ['u32', 36]])).error, -E.EINVAL);

  // re-INIT resets the session
  const re = setup();
  re.c.init();
  re.c.init();
  t.equal(re.fs.destroyed, 1);
  t.ok(re.server.initialized);
});

t.test('header checks', async (t) => {
  const { c } = setup();
  c.init();
  const req = c.request(Opcode.Lookup, 1n, cstr('a'));
  const r = c.raw(req.subarray(0, 30));
  t.equal(r.error, -E.EINVAL, 'chain shorter than the header');
  t.equal(r.ret, 16);
  const big = c.call(Opcode.Lookup, 1n, cstr('a'), { len: 4096 });
  t.equal(big.error, -E.EINVAL, 'in.len larger than the chain');
  t.equal(big.unique, c.unique - 1n, 'reply carries the unique');
  const small = c.call(Opcode.Lookup, 1n, cstr('a'), { len: 39 });
  t.equal(small.error, -E.EINVAL, 'in.len below the header size');
  t.equal(c.call(9999, 1n, new Uint8Array(8)).error, -E.ENOSYS, 'unknown opcode');
  t.equal(c.call(Opcode.Getxattr, 1n, new Uint8Array(16)).error, -E.ENOSYS, 'xattr not enabled');
  t.equal(c.call(Opcode.Readlink, 1n, new Uint8Array(0)).error, -E.ENOSYS, 'missing method → ENOSYS');
  t.equal(c.call(Opcode.Open, 1n, new Uint8Array(4)).error, -E.EINVAL, 'short fixed args');
  // WRITE whose size claims more data than the request carries
  const wi = le([['u64', 5], ['u64', 0], ['u32', 100], ['u32', 0], ['u64', 0], ['u32', 0], ['u32', 0]]);
  t.equal(c.call(Opcode.Write, 2n, concat(wi, new Uint8Array(10))).error, -E.EINVAL, 'write size beyond the data');
  t.equal(c.call(Opcode.Write, 2n, wi.subarray(0, 20)).error, -E.EINVAL, 'short write_in');
  const boom = c.lookup(1n, 'boom');
  t.equal(boom.error, -E.EIO, 'exception → EIO, no throw');
  // a writer with no room at all: nothing written, no throw
  const w = new BufferWriter(0);
  t.equal(c.server.handle(new BufferReader(c.request(Opcode.Lookup, 1n, cstr('a'))), w), 0);
  t.equal(w.written, 0);
  // reply that does not fit: error header instead of an overflow
  const tiny = c.call(Opcode.Lookup, 1n, cstr('a'), { capacity: 64 });
  t.equal(tiny.error < 0, true);
  t.equal(tiny.ret, 16);
});

t.test('names', async (t) => {
  const { c, fs } = setup();
  c.init();
  const ok = c.lookup(1n, 'file');
  t.equal(ok.error, 0);
  t.equal(ok.ret, 16 + 128);
  t.equal(ok.len, ok.ret);
  t.equal(decodeEntryOut(ok.view, 0).nodeid, 77n);
  t.equal(decodeEntryOut(ok.view, 0).attr.ino, 0x0101010101010101n, 'attr copied');
  t.equal(decodeEntryOut(ok.view, 0).entryValid, 1n, 'auto: 1 s');
  const neg = c.lookup(1n, 'missing');
  t.equal(neg.error, 0, 'missing name with cache=auto: a negative entry');
  t.equal(decodeEntryOut(neg.view, 0).nodeid, 0n, 'node id 0');
  t.equal(decodeEntryOut(neg.view, 0).entryValid, 1n, 'cached for the entry timeout');
  const never = setup({ cache: 'never' });
  never.c.init();
  t.equal(never.c.lookup(1n, 'missing').error, -E.ENOENT, 'cache=never: plain ENOENT, nothing cached');
  t.equal(c.lookup(1n, 'a/b').error, -E.EINVAL, 'slash');
  t.equal(c.call(Opcode.Lookup, 1n, new TextEncoder().encode('abc')).error, -E.EINVAL, 'no NUL');
  t.equal(c.lookup(1n, '').error, -E.EINVAL, 'empty');
  t.equal(c.lookup(1n, 'x'.repeat(256)).error, -E.ENAMETOOLONG, '256 bytes');
  t.equal(c.lookup(1n, 'x'.repeat(255)).error, 0, '255 bytes is fine');
  t.equal(c.lookup(1n, '..').error, -E.ENOENT, 'lookup ..');
  t.equal(c.lookup(1n, '.').error, -E.ENOENT, 'lookup .');
  t.equal(c.unlink(1n, '..').error, -E.EINVAL, 'unlink ..');
  t.equal(c.unlink(1n, '...').error, 0, '... is a name');
  // NUL beyond in.len (inside the chain) is not accepted
  const req = c.request(Opcode.Lookup, 1n, cstr('abc'), { len: IN_HEADER_SIZE + 3 });
  t.equal(c.raw(req).error, -E.EINVAL, 'NUL must be within the payload');
  t.notOk(fs.calls.some((x) => x.includes('/')), 'fs never saw a bad name');
  t.notOk(fs.calls.includes('unlink ..'));
});

t.test('forget and batch forget', async (t) => {
  const { c, fs } = setup();
  c.forget(5n, 1n);
  t.same(fs.forgets, [], 'forget before INIT ignored');
  c.init();
  const r = c.forget(5n, 3n);
  t.equal(r.ret, 0, 'no reply');
  t.equal(r.written, 0);
  t.same(fs.forgets, [[5, 3]]);
  const batch = concat(le([['u32', 2], ['u32', 0]]), le([['u64', 10n], ['u64', 1n]]), le([['u64', 11n], ['u64', 2n]]));
  const rb = c.call(Opcode.BatchForget, 0n, batch, { capacity: 0 });
  t.equal(rb.ret, 0);
  t.same(fs.forgets.slice(1), [[10, 1], [11, 2]]);
  const lie = concat(le([['u32', 1000], ['u32', 0]]), le([['u64', 12n], ['u64', 1n]]));
  t.equal(c.call(Opcode.BatchForget, 0n, lie).ret, 0);
  t.equal(fs.forgets.length, 3, 'count beyond the buffer: nothing forgotten');
});

t.test('read size is capped', async (t) => {
  const { c, fs } = setup();
  c.init();
  c.read(1n, 5n, 0, 8 * 1024 * 1024);
  t.equal(fs.calls.at(-1), `read ${MAX_WRITE}`);
  c.read(1n, 5n, 0, 4096, 1000);
  t.equal(fs.calls.at(-1), 'read 984', 'capacity - 16');
  const r = c.read(1n, 5n, 0, 10);
  t.equal(r.ret, 16);
  t.equal(r.len, 16);
});

t.test('cache policies', async (t) => {
  for (const [cache, flags, tmo] of [['never', FOPEN_DIRECT_IO, 0n], ['metadata', FOPEN_DIRECT_IO, 86400n],
    ['auto', 0, 1n], ['always', FOPEN_KEEP_CACHE, 86400n]] as const) {
    const { c } = setup({ cache });
    c.init();
    t.equal(c.open(2n).openFlags, flags, `${cache} open flags`);
    t.equal(decodeEntryOut(c.lookup(1n, 'f').view, 0).attrValid, tmo, `${cache} timeout`);
  }
});

t.test('-o timeout= overrides the cache mode\'s validity, fractions in the _nsec fields', async (t) => {
  const { c } = setup({ cache: 'always', timeout: 2.5 });
  c.init();
  const e = c.lookup(1n, 'f').view;
  t.equal(e.getBigUint64(16, true), 2n, 'entry_valid');
  t.equal(e.getBigUint64(24, true), 2n, 'attr_valid');
  t.equal(e.getUint32(32, true), 500_000_000, 'entry_valid_nsec');
  t.equal(e.getUint32(36, true), 500_000_000, 'attr_valid_nsec');
  const g = c.getattr(1n).view;
  t.equal(g.getBigUint64(0, true), 2n, 'GETATTR attr_valid');
  t.equal(g.getUint32(8, true), 500_000_000, 'GETATTR attr_valid_nsec');
  t.equal(c.open(2n).openFlags, FOPEN_KEEP_CACHE, 'the cache mode still sets the open flags');
  const zero = setup({ cache: 'auto', timeout: 0 }).c;
  zero.init();
  t.equal(zero.lookup(1n, 'missing').error, -E.ENOENT, 'timeout=0: a missing name is ENOENT, not a cached negative entry');
  t.throws(() => new FuseServer(new FakeFs(), { timeout: -1 }), RangeError);
  t.throws(() => new FuseServer(new FakeFs(), { timeout: Number.NaN }), RangeError);
});

t.test('DESTROY', async (t) => {
  const { c, fs, server } = setup();
  c.init();
  const r = c.call(Opcode.Destroy, 0n, new Uint8Array(0));
  t.equal(r.error, 0);
  t.equal(r.ret, 16);
  t.equal(fs.destroyed, 1);
  t.notOk(server.initialized);
  t.equal(c.lookup(1n, 'a').error, -E.EIO);
});

t.test('shared session state across servers', async (t) => {
  const session = new Int32Array(new SharedArrayBuffer(16));
  const a = new FuseClient(new FuseServer(new FakeFs(), { session }));
  const b = new FuseClient(new FuseServer(new FakeFs(), { session }));
  t.equal(b.lookup(1n, 'x').error, -E.EIO);
  a.init();
  t.equal(b.lookup(1n, 'x').error, 0, 'INIT on one worker serves all');
});

t.test('in header encoding round trip', async (t) => {
  const b = new Uint8Array(40);
  encodeInHeader(new DataView(b.buffer), 0, { len: 40, opcode: 3, unique: 9n, nodeid: 1n, uid: 1, gid: 2, pid: 3, totalExtlen: 0 });
  t.equal(b[4], 3);
  t.equal(b[8], 9);
});

t.test('cache policy: each mode\'s timeouts, negative entries and open flags', async (t) => {
  const rows: Array<[CacheMode, number, boolean, number, number]> = [
    ['never', 0, false, FOPEN_DIRECT_IO, 0],
    ['metadata', 86400, true, FOPEN_DIRECT_IO, 0],
    ['auto', 1, true, 0, 0],
    ['always', 86400, true, FOPEN_KEEP_CACHE, FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR],
  ];
  for (const [mode, tmo, negativeEntries, fileOpenFlags, dirOpenFlags] of rows) {
    t.same(cachePolicy(mode), { entryTimeout: tmo, attrTimeout: tmo, negativeEntries, fileOpenFlags, dirOpenFlags }, mode);
    // the same on the wire
    const { c } = setup({ cache: mode });
    c.init();
    t.equal(c.opendir(1n).openFlags, dirOpenFlags, `${mode}: OPENDIR flags`);
    t.equal(c.open(2n).openFlags, fileOpenFlags, `${mode}: OPEN flags`);
    t.equal(c.lookup(1n, 'missing').error, negativeEntries ? 0 : -E.ENOENT, `${mode}: missing name`);
  }
  t.same(cachePolicy(), cachePolicy('auto'), 'auto is the default');
  const o = cachePolicy('always', 2.5);
  t.same([o.entryTimeout, o.attrTimeout, o.negativeEntries, o.fileOpenFlags, o.dirOpenFlags],
    [2.5, 2.5, true, FOPEN_KEEP_CACHE, FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR], 'timeout= replaces the timeouts only');
  t.equal(cachePolicy('metadata', 0).negativeEntries, false, 'timeout=0: no negative entries');
  t.throws(() => cachePolicy('sometimes' as CacheMode), RangeError);
  t.throws(() => cachePolicy('auto', Number.POSITIVE_INFINITY), RangeError);
});

/** The opcodes served before the dispatch table replaced the switch (every other one was ENOSYS). */
const SERVED = [
  Opcode.Init, Opcode.Destroy, Opcode.Lookup, Opcode.Forget, Opcode.BatchForget, Opcode.Getattr, Opcode.Setattr,
  Opcode.Readlink, Opcode.Symlink, Opcode.Mknod, Opcode.Mkdir, Opcode.Unlink, Opcode.Rmdir, Opcode.Rename,
  Opcode.Rename2, Opcode.Link, Opcode.Open, Opcode.Read, Opcode.Write, Opcode.Statfs, Opcode.Release, Opcode.Fsync,
  Opcode.Flush, Opcode.Opendir, Opcode.Readdir, Opcode.Readdirplus, Opcode.Releasedir, Opcode.Fsyncdir,
  Opcode.Access, Opcode.Create, Opcode.Fallocate, Opcode.Lseek, Opcode.CopyFileRange, Opcode.Syncfs,
  Opcode.Setxattr, Opcode.Getxattr, Opcode.Listxattr, Opcode.Removexattr,
];

t.test('dispatch table: a handler for each served opcode, ENOSYS for the rest', async (t) => {
  const all = Object.values(Opcode).filter((v): v is Opcode => typeof v === 'number');
  for (const op of all) t.equal(OPS[op] !== undefined, SERVED.includes(op), `${Opcode[op]} ${SERVED.includes(op) ? 'served' : 'not served'}`);
  t.equal(OPS.filter((x) => x !== undefined).length, SERVED.length, 'nothing else in the table');
  // An empty file system with xattrs on: what is not in the table answers ENOSYS with a bare header.
  const c = new FuseClient(new FuseServer({}, { xattr: true }));
  c.init();
  for (const op of [...all.filter((o) => !SERVED.includes(o)), 0, 7, 19, 53, 1000, 0xffffffff]) {
    const r = c.call(op, 1n, new Uint8Array(64));
    t.same([r.error, r.ret], [-E.ENOSYS, 16], `opcode ${op}: ENOSYS`);
  }
  // ... and so does a served opcode whose method the file system lacks (after its arguments are checked)
  t.equal(c.lookup(1n, 'a').error, -E.ENOSYS, 'LOOKUP without fs.lookup');
  t.equal(c.lookup(1n, 'a/b').error, -E.EINVAL, 'a bad name is refused first');
});
