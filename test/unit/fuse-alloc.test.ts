// The hot opcodes allocate nothing per request (docs/testing.md "Allocation check"): GETATTR, LOOKUP,
// READ, WRITE, OPEN, FLUSH, RELEASE and FORGET/BATCH_FORGET through FuseServer + Passthrough on the real
// wasm tables, with a Reader and Writer whose views are reused (as the virtio layer's are), must leave
// V8's young generation almost untouched: a few hundred thousand requests may not cause more than a
// couple of scavenges. Code that builds an object, a BigInt or a DataView per request (some 100-500
// bytes) fills the young generation many times over in that many requests.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { OUT_HEADER_SIZE, Opcode } from '../../src/abi/fuse.js';
import { FuseServer } from '../../src/fuse/server.js';
import type { Reader, Writer } from '../../src/fuse/io.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { native } from '../../src/native.js';
import { FuseClient, le } from '../helpers/fuse-client.js';
import { realTables, resetTables } from '../helpers/real-tables.js';

/** A request's readable part in a fixed buffer; `head` is one view, made once. */
class FixedReader implements Reader {
  readonly total: number;
  readonly head: Uint8Array;
  constructor(readonly data: Uint8Array, headLen = data.length) {
    this.total = data.length;
    this.head = data.subarray(0, headLen);
  }

  writeToFile(fd: number, pos: number, off: number, len: number): number {
    return native.pwrite(fd, this.data, off, len, pos);
  }
}

/** The writable part: a fixed reply scratch and a fixed data area behind it. */
class FixedWriter implements Writer {
  readonly capacity: number;
  readonly buf: Uint8Array;
  readonly out: Uint8Array;
  constructor(capacity: number, scratch = 8192) {
    this.capacity = capacity;
    this.out = new Uint8Array(capacity);
    this.buf = new Uint8Array(Math.min(capacity, scratch));
  }

  commit(len: number): void {
    // (a loop: a subarray would be an allocation of the test's own)
    const { out, buf } = this;
    for (let i = 0; i < len; i++) out[i] = buf[i]!;
  }

  readFromFile(fd: number, pos: number, off: number, len: number): number {
    return native.pread(fd, this.out, off, len, pos);
  }
}

interface Young {
  scavenges: number;
  /** bytes the heap grew by between GCs (a lower bound of what was allocated) */
  grown: number;
}

/** Scavenges (minor GCs) that `run` causes, and the heap growth seen. */
async function youngGcs(run: () => void): Promise<Young> {
  let scavenges = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      // detail.kind: NODE_PERFORMANCE_GC_MINOR = 1 (scavenge), 2 major, 4 incremental, 8 weakcb
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      if (kind === 1) scavenges++;
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  const before = getHeapStatistics().used_heap_size;
  run();
  const after = getHeapStatistics().used_heap_size;
  // gc entries are delivered asynchronously
  await new Promise((r) => setTimeout(r, 100));
  obs.disconnect();
  return { scavenges, grown: after - before };
}

t.test('the hot opcodes allocate nothing per request', async (t) => {
  const dir = t.testdir({ f: 'x'.repeat(256 * 1024) });
  writeFileSync(join(dir, 'g'), new Uint8Array(4096));
  const vq = resetTables(await realTables());
  const fs = Passthrough.open(dir, vq);
  t.teardown(() => { fs.destroy(); fs.close(); });
  const server = new FuseServer(fs);
  const c = new FuseClient(server);
  t.equal(c.init().error, 0);
  const f = c.entry(c.lookup(1n, 'f'));
  const g = c.entry(c.lookup(1n, 'g'));
  const op = c.open(f.nodeid, 2 /* O_RDWR */);
  t.equal(op.error, 0);
  const fh = op.fh!;

  const payload = new Uint8Array(512).fill(0x61);
  const reqs = {
    getattr: new FixedReader(c.request(Opcode.Getattr, f.nodeid, le([['u32', 0], ['u32', 0], ['u64', 0]]))),
    lookup: new FixedReader(c.rb.lookup(1n, 'g')),
    read: new FixedReader(c.rb.read(f.nodeid, fh, 8192n, 4096)),
    write: new FixedReader(c.rb.write(g.nodeid, fh, 0n, payload), 80),
    flush: new FixedReader(c.request(Opcode.Flush, f.nodeid, le([['u64', fh], ['u32', 0], ['u32', 0], ['u64', 0]]))),
    open: new FixedReader(c.rb.open(g.nodeid, 0)),
    forget: new FixedReader(c.rb.forget(g.nodeid, 1n)),
    batchForget: new FixedReader(c.request(Opcode.BatchForget, 0n,
      le([['u32', 1], ['u32', 0], ['u64', g.nodeid], ['u64', 1]]))),
  };
  const w = new FixedWriter(64 * 1024);
  const none = new FixedWriter(0);
  const rel = new Uint8Array(c.rb.release(g.nodeid, 0n));
  const release = new FixedReader(rel);
  const relView = new DataView(rel.buffer, rel.byteOffset);
  const wv = new DataView(w.buf.buffer, w.buf.byteOffset);

  const check = (what: string, n: number, expect: number) => {
    if (n !== expect) throw new Error(`${what}: reply length ${n}, expected ${expect} (error ${wv.getInt32(4, true)})`);
  };
  const round = () => {
    check('getattr', server.handle(reqs.getattr, w), OUT_HEADER_SIZE + 104);
    // LOOKUP takes a reference, FORGET drops it again (half of them through BATCH_FORGET)
    check('lookup', server.handle(reqs.lookup, w), OUT_HEADER_SIZE + 128);
    check('forget', server.handle(reqs.forget, none), 0);
    check('lookup', server.handle(reqs.lookup, w), OUT_HEADER_SIZE + 128);
    check('batch forget', server.handle(reqs.batchForget, none), 0);
    check('read', server.handle(reqs.read, w), OUT_HEADER_SIZE + 4096);
    check('write', server.handle(reqs.write, w), OUT_HEADER_SIZE + 8);
    check('flush', server.handle(reqs.flush, w), OUT_HEADER_SIZE);
    // OPEN then RELEASE of the handle it gave (its fh patched into the RELEASE request)
    check('open', server.handle(reqs.open, w), OUT_HEADER_SIZE + 16);
    relView.setUint32(40, wv.getUint32(16, true), true);
    relView.setUint32(44, wv.getUint32(20, true), true);
    check('release', server.handle(release, w), OUT_HEADER_SIZE);
  };
  const ROUNDS = 20_000; // 11 requests each: 220 000 requests
  for (let i = 0; i < 2000; i++) round(); // warm-up: optimised code, caches filled
  const getattrs = await youngGcs(() => {
    for (let i = 0; i < 200_000; i++) check('getattr', server.handle(reqs.getattr, w), OUT_HEADER_SIZE + 104);
  });
  t.comment(`200 000 GETATTRs: ${getattrs.scavenges} scavenges, heap +${getattrs.grown} bytes`);
  t.ok(getattrs.scavenges <= 2, `200 000 GETATTRs caused ${getattrs.scavenges} scavenges (at most 2)`);
  const mix = await youngGcs(() => { for (let i = 0; i < ROUNDS; i++) round(); });
  t.comment(`${ROUNDS * 11} mixed requests: ${mix.scavenges} scavenges, heap +${mix.grown} bytes`);
  t.ok(mix.scavenges <= 2, `${ROUNDS * 11} mixed requests caused ${mix.scavenges} scavenges (at most 2)`);
  t.equal(vq.handleCount(), 1, 'every OPEN was released');
  t.equal(c.release(f.nodeid, fh).error, 0);
});
