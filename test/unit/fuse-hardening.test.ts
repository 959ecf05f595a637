/** Hostile or racy requests that once could hang a worker or desynchronise workers. */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { FUSE_DO_READDIRPLUS, FUSE_READDIRPLUS_AUTO, FUSE_WRITEBACK_CACHE } from '../../src/abi/fuse.js';
import { FuseServer } from '../../src/fuse/server.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { C, native } from '../../src/native.js';
import { FuseClient } from '../helpers/fuse-client.js';
import { realTables, resetTables } from '../helpers/real-tables.js';

/** the daemon's inode/handle tables (the wasm module), one instance for this file */
const tables = await realTables();

t.test('CREATE of an existing FIFO does not block the worker', async (t) => {
  const dir = t.testdir({});
  execFileSync('mkfifo', [join(dir, 'p')]);
  const fs = Passthrough.open(dir, resetTables(tables));
  t.teardown(() => { fs.destroy(); native.close(fs.procFd); });
  const c = new FuseClient(new FuseServer(fs, { cache: 'auto' }));
  t.equal(c.init().error, 0);
  // Without O_EXCL, O_RDONLY: a plain open(2) of the FIFO would wait for a writer forever.
  const r = c.create(1n, 'p', 0o100 /* O_CREAT */, 0o100644);
  t.ok(r.error < 0, `refused with ${r.error}`);
  const r2 = c.create(1n, 'p', 0o101 /* O_CREAT|O_WRONLY */, 0o100644);
  t.ok(r2.error < 0, `write side refused with ${r2.error}`);
});

t.test('negotiated writeback reaches every worker, not only the one that saw INIT', async (t) => {
  const dir = t.testdir({ f: 'data' });
  resetTables(tables);
  const session = new Int32Array(new SharedArrayBuffer(16));
  const fsA = Passthrough.open(dir, tables);
  const fsB = new Passthrough(tables, fsA.procFd);
  t.teardown(() => { fsA.destroy(); native.close(fsA.procFd); });
  const a = new FuseClient(new FuseServer(fsA, { cache: 'auto', writeback: true, session }));
  const b = new FuseClient(new FuseServer(fsB, { cache: 'auto', writeback: true, session }));
  const init = a.init();
  t.ok((init.init!.flags & FUSE_WRITEBACK_CACHE) !== 0, 'writeback negotiated');
  // Worker B opens O_WRONLY: with writeback the kernel may read to fill pages, so B must open O_RDWR.
  const e = b.entry(b.lookup(1n, 'f'));
  const o = b.open(e.nodeid, 1 /* O_WRONLY */);
  t.equal(o.error, 0);
  const rd = b.read(e.nodeid, o.fh!, 0, 4);
  t.equal(rd.error, 0, 'a read through the write-only handle works (opened O_RDWR)');
  t.equal(new TextDecoder().decode(rd.data), 'data');
});

t.test('readdirplus can be turned off', async (t) => {
  const dir = t.testdir({ f: 'x' });
  const fs = Passthrough.open(dir, resetTables(tables));
  t.teardown(() => { fs.destroy(); native.close(fs.procFd); });
  const on = new FuseClient(new FuseServer(fs, { cache: 'auto' })).init();
  t.ok((on.init!.flags & FUSE_DO_READDIRPLUS) !== 0, 'offered by default');
  const off = new FuseClient(new FuseServer(fs, { cache: 'auto', readdirplus: false })).init();
  t.equal(off.init!.flags & (FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO), 0, 'not negotiated with readdirplus: false');
});

t.test('the guest O_DIRECT reaches the host only with allowDirectIo', async (t) => {
  const dir = t.testdir({ f: 'x'.repeat(4096) });
  for (const allow of [false, true]) {
    const fs = Passthrough.open(dir, resetTables(tables), { allowDirectIo: allow });
    const c = new FuseClient(new FuseServer(fs, { cache: 'auto' }));
    c.init();
    const e = c.entry(c.lookup(1n, 'f'));
    const o = c.open(e.nodeid, C.O_RDONLY | C.O_DIRECT);
    t.equal(o.error, 0);
    const fd = tables.handleAcquire(Number(o.fh!));
    t.equal((native.fcntlGetFl(fd) & C.O_DIRECT) !== 0, allow, `allowDirectIo=${allow}: host fd O_DIRECT ${allow}`);
    tables.handleRelease(Number(o.fh!));
    fs.destroy();
    native.close(fs.procFd);
  }
});
