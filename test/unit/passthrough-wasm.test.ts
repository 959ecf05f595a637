// The passthrough on two instances of the wasm module over one shared memory, as two workers have them.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Opcode, decodeEntryOut } from '../../src/abi/fuse.js';
import { Errno } from '../../src/errors.js';
import { FuseServer } from '../../src/fuse/server.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { native } from '../../src/native.js';
import { createSharedMemory, loadVirtqueueModule } from '../../src/virtio/wasm.js';
import { FuseClient } from '../helpers/fuse-client.js';

t.test('two servers (two "workers") share the wasm tables', async (t) => {
  const dir = t.testdir({ d: { f: 'data' } });
  const memory = createSharedMemory();
  const tables = await loadVirtqueueModule(memory);
  const tables2 = await loadVirtqueueModule(memory); // a second instance on the same memory
  tables.handleInit();
  const fs1 = Passthrough.open(dir, tables);
  const fs2 = new Passthrough(tables2, fs1.procFd);
  const session = new Int32Array(new SharedArrayBuffer(16));
  const a = new FuseClient(new FuseServer(fs1, { session }));
  const b = new FuseClient(new FuseServer(fs2, { session }));
  t.teardown(() => { fs1.destroy(); native.close(fs1.procFd); });

  t.equal(a.init().error, 0);
  const d = a.entry(a.lookup(1n, 'd'));
  t.equal(d.nodeid & 0xffffffffn, 2n, 'slot 2');
  t.equal(tables.inodeCount(), 2);
  const f = b.entry(b.lookup(d.nodeid, 'f'));
  const again = a.entry(a.lookup(d.nodeid, 'f'));
  t.equal(again.nodeid, f.nodeid, 'same (dev, ino) → same node id from either worker');
  t.equal(tables.inodeCount(), 3);

  const op = a.open(f.nodeid, 2 /* O_RDWR */);
  t.equal(op.error, 0);
  t.not(op.fh, 0n);
  const rd = b.read(f.nodeid, op.fh!, 0, 100);
  t.equal(new TextDecoder().decode(rd.data), 'data', 'a handle opened on one worker reads on another');
  const wr = b.write(f.nodeid, op.fh!, 4, new TextEncoder().encode('+more'));
  t.equal(wr.size, 5);
  t.equal(readFileSync(join(dir, 'd', 'f'), 'utf8'), 'data+more');
  t.equal(a.release(f.nodeid, op.fh!).error, 0);
  t.equal(b.read(f.nodeid, op.fh!, 0, 1).error, -Errno.EBADF, 'released handle: EBADF');

  // readdirplus through the real tables, then forget the references it took
  writeFileSync(join(dir, 'd', 'g'), 'g');
  const od = a.opendir(d.nodeid);
  const list = a.readdir(d.nodeid, od.fh!, 0n, 4096, true);
  const names = list.entries.map((e) => new TextDecoder().decode(e.name)).sort();
  t.same(names, ['.', '..', 'f', 'g']);
  for (const e of list.entries) if (e.entry!.nodeid !== 0n) a.forget(e.entry!.nodeid, 1n);
  a.release(d.nodeid, od.fh!, Opcode.Releasedir);
  // f had 2 lookups + 1 from readdirplus (forgotten); forget the 2 others
  a.forget(f.nodeid, 2n);
  t.equal(b.getattr(f.nodeid).error, -Errno.ESTALE, 'forgotten on one worker: stale on the other');
  t.equal(tables.inodeCount(), 2, 'root and d left');
  t.equal(tables.handleCount(), 0);

  const c = a.create(d.nodeid, 'new');
  t.equal(c.error, 0);
  t.equal(decodeEntryOut(c.view, 0).attr.size, 0n);
  t.equal(a.call(Opcode.Destroy, 0n, new Uint8Array(0)).error, 0);
  t.equal(tables.inodeCount(), 1, 'DESTROY: only the root');
  t.equal(tables.handleCount(), 0, 'DESTROY: no handles');
});
