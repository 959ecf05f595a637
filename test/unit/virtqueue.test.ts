import t from 'tap';
import { readFileSync } from 'node:fs';
import {
  createSharedMemory, loadVirtqueueModule, virtqueueWasmPath, VqError, LAYOUT_KEYS, type VqExports,
} from '../../src/virtio/wasm.js';
import {
  VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT, VIRTQ_AVAIL_F_NO_INTERRUPT,
} from '../../src/abi/virtio.js';
import { MockDriver, defaultRegion } from '../helpers/mock-driver.js';

const memory = createSharedMemory();
const vq: VqExports = await loadVirtqueueModule(memory);
const L = vq.layout;
const buf = memory.buffer;
const W = 3; // the worker whose scratch these tests use

function scratch(w = W) {
  const base = L.SCRATCH_BASE + w * L.SCRATCH_SIZE;
  const dv = new DataView(buf, base, L.SCRATCH_SIZE);
  // Segments are {u64 off, u32 len, u32 region}; shown as window addresses (the regions here are resident).
  const mem = new DataView(buf);
  const regionWin = (r: number): number => mem.getUint32(L.MEMTABLE_BASE + L.MEMTABLE_ENTRIES + r * L.MEMTABLE_STRIDE + L.MT_WIN, true);
  const list = (off: number, n: number) =>
    Array.from({ length: n }, (_, i) => ({
      win: regionWin(dv.getUint32(off + L.SEG_STRIDE * i + 12, true)) + Number(dv.getBigUint64(off + L.SEG_STRIDE * i, true)),
      len: dv.getUint32(off + L.SEG_STRIDE * i + 8, true),
    }));
  return {
    base,
    rcount: dv.getUint32(L.SCR_RCOUNT, true),
    wcount: dv.getUint32(L.SCR_WCOUNT, true),
    rtotal: dv.getUint32(L.SCR_RTOTAL, true),
    wtotal: dv.getUint32(L.SCR_WTOTAL, true),
    rlist: list(L.SCR_RLIST, dv.getUint32(L.SCR_RCOUNT, true)),
    wlist: list(L.SCR_WLIST, dv.getUint32(L.SCR_WCOUNT, true)),
  };
}

function driver(size = 16, opts: { eventIdx?: boolean; q?: number } = {}): MockDriver {
  const d = new MockDriver(buf, { region: defaultRegion(vq), queueSize: size });
  const rc = d.attach(vq, opts.q ?? 0, opts.eventIdx === undefined ? {} : { eventIdx: opts.eventIdx });
  if (rc !== 0) throw new Error(`attach failed ${rc}`);
  return d;
}

t.test('wasm smoke: exports, error codes, no data segments', async (t) => {
  const bytes = readFileSync(virtqueueWasmPath());
  const mod = new WebAssembly.Module(bytes);
  t.same(WebAssembly.Module.imports(mod).map((i) => `${i.module}.${i.name}:${i.kind}`), ['env.memory:memory']);
  // Custom sections aside, a data section (id 11) must be absent: every instance shares the memory.
  let off = 8;
  const ids: number[] = [];
  while (off < bytes.length) {
    const id = bytes[off++]!;
    let size = 0, shift = 0, b: number;
    do { b = bytes[off++]!; size |= (b & 0x7f) << shift; shift += 7; } while (b & 0x80);
    ids.push(id);
    off += size;
  }
  t.notOk(ids.includes(11), 'no data section');
  const inst = new WebAssembly.Instance(mod, { env: { memory } });
  for (const [name, code] of Object.entries(VqError)) {
    t.equal((inst.exports[name] as WebAssembly.Global).value, code, `VqError.${name}`);
  }
  for (const k of LAYOUT_KEYS) t.type(L[k], 'number');
  t.equal(L.WINDOW_END, 0xffff0000, 'u32 constants are unsigned');
  t.equal(L.WINDOW_BASE, 80 << 20);
  t.equal(L.INODE_MAX, 1 << 20, 'as many inodes as the default open-file limit');
});

t.test('layout: areas fit below the window and do not overlap', async (t) => {
  const areas: Array<[string, number, number]> = [
    ['control', L.CONTROL_BASE, L.CONTROL_SIZE],
    ['memtable', L.MEMTABLE_BASE, L.MEMTABLE_SIZE],
    ['queues', L.QUEUE_BASE, L.MAX_QUEUES * L.QUEUE_STRIDE],
    ['stats', L.STATS_BASE, L.MAX_WORKERS * L.STATS_STRIDE],
    ['inodes', L.INODE_BASE, L.INODE_SIZE],
    ['handles', L.HANDLE_BASE, L.HANDLE_SIZE],
    ['scratch', L.SCRATCH_BASE, L.MAX_WORKERS * L.SCRATCH_SIZE],
  ];
  t.ok(L.MEMTABLE_ENTRIES + L.MAX_REGIONS * L.MEMTABLE_STRIDE <= L.MEMTABLE_SIZE, 'memtable entries fit');
  t.ok(L.Q_READY + 4 <= L.QUEUE_STRIDE, 'queue record fits');
  t.ok(L.INODE_BUCKETS + 4 * L.INODE_MAX <= L.INODE_BASE + L.INODE_SIZE, 'inode buckets fit');
  t.ok(L.HANDLE_SLOTS + L.HANDLE_STRIDE * L.HANDLE_MAX <= L.HANDLE_BASE + L.HANDLE_SIZE, 'handle slots fit');
  for (const [name, base, size] of areas) {
    t.ok(base >= 65536, `${name} above the module's own memory`);
    t.ok(base + size <= L.WINDOW_BASE, `${name} below WINDOW_BASE`);
  }
  const sorted = [...areas].sort((a, b) => a[1] - b[1]);
  for (let i = 1; i < sorted.length; i++) {
    const [pn, pb, ps] = sorted[i - 1]!;
    t.ok(pb + ps <= sorted[i]![1], `${pn} ends before ${sorted[i]![0]}`);
  }
  // scratch area: header, stat, three lists, inbuf, outbuf in order, inside SCRATCH_SIZE
  const parts: Array<[number, number]> = [
    [0, 16], [L.SCR_STAT, L.SCR_STAT_SIZE], [L.SCR_RLIST, 8 * L.MAX_SEGS], [L.SCR_WLIST, 8 * L.MAX_SEGS],
    [L.SCR_SUBLIST, 8 * L.MAX_SEGS], [L.SCR_INBUF, L.INBUF_SIZE], [L.SCR_OUTBUF, L.OUTBUF_SIZE],
  ];
  for (let i = 1; i < parts.length; i++) t.ok(parts[i - 1]![0] + parts[i - 1]![1] <= parts[i]![0], `scratch part ${i}`);
  t.ok(L.SCR_OUTBUF + L.OUTBUF_SIZE <= L.SCRATCH_SIZE);
  t.ok(L.INBUF_SIZE >= 128 * 1024 + 4096 && L.OUTBUF_SIZE >= 128 * 1024 + 4096, 'room for a 128 KiB payload + header');
});

/** A resident region: host address and fd do not matter to the AS module's checks. */
const add = (gpa: bigint, size: bigint, ua: bigint, win: number): number => vq.memtableAdd(gpa, size, ua, ua, 0n, win, -1);

t.test('memory table', async (t) => {
  const WB = L.WINDOW_BASE;
  vq.memtableClear();
  t.equal(add(0x100000000n, 0x200000n, 0x7f1000000000n, WB + 0x100000), 0);
  t.equal(add(0x100000n, 0x100000n, 0x7f0000000000n, WB), 0, 'kept sorted by gpa: inserted first');
  t.equal(vq.memtableCount(), 2);
  t.equal(vq.gpaRegion(0x100000123n, 4), 1);
  t.equal(vq.gpaRegion(0x100000n, 4), 0);
  t.equal(vq.gpaRegion(0x300000n, 4), -1, 'between the regions');
  t.equal(vq.gpaToWin(0x100000n, 16), WB);
  t.equal(vq.gpaToWin(0x1ffff0n, 16), WB + 0xffff0, 'ends exactly at the region end');
  t.equal(vq.gpaToWin(0x1ffff1n, 16), 0, 'one byte past the end');
  t.equal(vq.gpaToWin(0x200000n, 0), 0, 'address at the end, zero length');
  t.equal(vq.gpaToWin(0xfffffn, 1), 0, 'below the region');
  t.equal(vq.gpaToWin(0x100000n, 0x100001), 0, 'longer than the region');
  t.equal(vq.gpaToWin(0x100000123n, 100), WB + 0x100123, 'second region');
  t.equal(vq.gpaToWin(0x1fffffn, 2), 0, 'straddles the gap between regions');
  t.equal(vq.gpaToWin(0xffffffffffffffffn, 0xffffffff), 0, 'u64 overflow');
  t.equal(vq.gpaToWin(0xfffffffffffffff0n, 0x20), 0, 'u64 wrap');
  t.equal(vq.uaddrToWin(0x7f0000000010n, 8), WB + 0x10);
  t.equal(vq.uaddrToWin(0x7f10001ffff8n, 8), WB + 0x2ffff8, 'uaddr at the end of region 1');
  t.equal(vq.uaddrToWin(0x7f10001ffff9n, 8), 0);
  t.equal(vq.uaddrToWin(0x100000n, 8), 0, 'a gpa is not a uaddr');
  // memtableAdd checks
  t.equal(add(0x180000n, 0x1000n, 0x1000n, WB + 0x400000), VqError.BAD_ADDR, 'gpa overlap');
  t.equal(add(0x900000000n, 0x1000n, 0x7f0000080000n, WB + 0x400000), VqError.BAD_ADDR, 'user address overlap');
  t.equal(add(0x900000000n, 0x1000n, 0x1000n, WB + 0x1000), VqError.BAD_ADDR, 'window overlap');
  t.equal(add(0x900000000n, 0n, 0x1000n, WB + 0x400000), VqError.BAD_SIZE);
  t.equal(add(0x900000000n, 0x1000n, 0x1000n, WB + 0x400001), VqError.ALIGN);
  t.equal(add(0x900000000n, 0x1000n, 0x1000n, WB - 0x1000), VqError.BAD_ADDR, 'below the window');
  t.equal(add(0x900000000n, 0x20000n, 0x1000n, L.WINDOW_END - 0x10000), VqError.BAD_ADDR, 'past WINDOW_END');
  t.equal(add(0xfffffffffffff000n, 0x2000n, 0x1000n, WB + 0x400000), VqError.BAD_ADDR, 'gpa + size overflows');
  t.equal(add(0x900000000n, 0x2000n, 0xfffffffffffff000n, WB + 0x400000), VqError.BAD_ADDR, 'uaddr + size overflows');
  t.equal(
    vq.memtableAdd(0x900000000n, 0x2000n, 0x1000n, 0xfffffffffffff000n, 0n, 0, -1), VqError.BAD_ADDR, 'host address + size overflows',
  );
  t.equal(add(0x900000000n, 0x10000n, 0x1000n, L.WINDOW_END - 0x10000), 2, 'last window page');
  t.equal(vq.gpaToWin(0x90000fff0n, 16), L.WINDOW_END - 16, 'window addresses above 2^31 come back unsigned');
  t.equal(add(0x1000000000n, 0x100000000n, 0x2000000000n, 0), 3, 'a region that is not resident (win 0)');
  t.equal(vq.gpaRegion(0x10ffffff00n, 0x100), 3, 'found above 64 GiB');
  t.equal(vq.gpaToWin(0x1000000000n, 16), 0, 'no window address without apertures');
  vq.memtableClear();
  t.equal(vq.gpaToWin(0x100000n, 16), 0, 'cleared');
  for (let i = 0; i < L.MAX_REGIONS; i++) t.equal(add(BigInt(i) << 20n, 0x1000n, BigInt(i) << 20n, WB + i * 0x1000), i);
  t.equal(vq.gpaRegion(BigInt(L.MAX_REGIONS - 1) << 20n, 8), L.MAX_REGIONS - 1, 'binary search reaches the last entry');
  t.equal(add(0x100000000n, 0x1000n, 0x100000000n, WB + 0x100000), VqError.FULL);
  vq.memtableClear();
});

t.test('queueSetup checks', async (t) => {
  const d = new MockDriver(buf, { region: defaultRegion(vq), queueSize: 16 });
  t.equal(d.attach(vq, 0), 0);
  const setup = (size: number, desc = d.descUa, avail = d.availUa, used = d.usedUa) =>
    vq.queueSetup(1, size, desc, avail, used, 0);
  t.equal(setup(0), VqError.BAD_SIZE);
  t.equal(setup(3), VqError.BAD_SIZE);
  t.equal(setup(65536), VqError.BAD_SIZE);
  t.equal(vq.queueSetup(L.MAX_QUEUES, 16, d.descUa, d.availUa, d.usedUa, 0), VqError.BAD_SIZE, 'queue index');
  t.equal(setup(16, d.descUa + 8n), VqError.ALIGN);
  t.equal(setup(16, d.descUa, d.availUa + 1n), VqError.ALIGN);
  t.equal(setup(16, d.descUa, d.availUa, d.usedUa + 2n), VqError.ALIGN);
  t.equal(setup(16, 0x1000n), VqError.BAD_ADDR, 'unmapped desc');
  const end = d.region.uaddr + BigInt(d.region.size);
  t.equal(setup(16, d.descUa, d.availUa, end - 100n), VqError.BAD_ADDR, 'used ring runs past the region');
  t.equal(vq.queueIsReady(1), 0);
  t.equal(vq.queuePop(1), VqError.EMPTY, 'a queue that is not set up has nothing');
  t.equal(setup(16), 0);
  t.equal(vq.queueIsReady(1), 1);
  t.equal(vq.queueSize(1), 16);
  vq.queueReset(1);
  t.equal(vq.queueIsReady(1), 0);
});

t.test('happy path: pop, parse 2 readable + 2 writable, gather, scatter, push', async (t) => {
  const d = driver(16);
  t.equal(vq.queuePop(0), VqError.EMPTY);
  const c = d.addChain({ readable: [new Uint8Array([1, 2, 3, 4, 5]), new Uint8Array([6, 7, 8])], writable: [10, 20] });
  const head = vq.queuePop(0);
  t.equal(head, c.head);
  t.equal(vq.queuePop(0), VqError.EMPTY);
  t.equal(vq.queueGetBase(0), 1);
  t.equal(vq.chainParse(0, head, W), 0);
  const s = scratch();
  t.same([s.rcount, s.wcount, s.rtotal, s.wtotal], [2, 2, 8, 30]);
  t.same(s.rlist, [{ win: d.win(c.readable[0]!), len: 5 }, { win: d.win(c.readable[1]!), len: 3 }]);
  t.same(s.wlist, [{ win: d.win(c.writable[0]!), len: 10 }, { win: d.win(c.writable[1]!), len: 20 }]);
  const inbuf = s.base + L.SCR_INBUF;
  t.equal(vq.gather(W, s.base + L.SCR_RLIST, s.rcount, 0, inbuf, 100), 8);
  t.same([...new Uint8Array(buf, inbuf, 8)], [1, 2, 3, 4, 5, 6, 7, 8]);
  const outbuf = s.base + L.SCR_OUTBUF;
  new Uint8Array(buf, outbuf, 30).set(Array.from({ length: 30 }, (_, i) => 100 + i));
  t.equal(vq.scatter(W, outbuf, 30, s.base + L.SCR_WLIST, s.wcount, 0), 30);
  t.same([...d.read(c.writable[0]!, 10)], Array.from({ length: 10 }, (_, i) => 100 + i));
  t.same([...d.read(c.writable[1]!, 20)], Array.from({ length: 20 }, (_, i) => 110 + i));
  t.equal(vq.queuePush(0, head, 30), 1, 'notify without EVENT_IDX and no NO_INTERRUPT');
  t.equal(d.usedIdx, 1);
  t.same(d.takeUsed(), [{ id: head, len: 30 }]);
  t.equal(vq.queuePush(0, 16, 0), VqError.BAD_HEAD, 'push of a head outside the table');
  t.equal(d.usedIdx, 1);
});

t.test('contiguous buffers merge into one segment', async (t) => {
  const d = driver(16);
  const c = d.addChain({ readable: [4, 4, 8], writable: [16, 16], contiguous: true });
  const head = vq.queuePop(0);
  t.equal(vq.chainParse(0, head, W), 0);
  const s = scratch();
  t.same(s.rlist, [{ win: d.win(c.readable[0]!), len: 16 }]);
  t.same(s.wlist, [{ win: d.win(c.writable[0]!), len: 32 }]);
  t.same([s.rtotal, s.wtotal], [16, 32]);
});

t.test('indirect chain', async (t) => {
  const d = driver(8);
  const c = d.addChain({ readable: [new Uint8Array([9, 8, 7])], writable: [64, 32, 16], indirect: true });
  t.equal(d.readDesc(c.head).flags, VIRTQ_DESC_F_INDIRECT);
  const head = vq.queuePop(0);
  t.equal(vq.chainParse(0, head, W), 0);
  const s = scratch();
  t.same([s.rcount, s.wcount, s.rtotal, s.wtotal], [1, 3, 3, 112]);
  t.same(s.wlist.map((e) => e.win), c.writable.map((g) => d.win(g)));
  // A direct descriptor before the indirect one is fine too (§2.6.5.3 allows a chain ending in it).
  const tbl = d.alloc(32);
  const b1 = d.alloc(8), b2 = d.alloc(8);
  d.writeDesc(0, { addr: b1, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 1 }, tbl);
  d.writeDesc(1, { addr: b2, len: 8, flags: VIRTQ_DESC_F_WRITE, next: 0 }, tbl);
  const b0 = d.alloc(4);
  d.writeDesc(5, { addr: b0, len: 4, flags: VIRTQ_DESC_F_NEXT, next: 6 });
  d.writeDesc(6, { addr: tbl, len: 32, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
  t.equal(vq.chainParse(0, 5, W), 0);
  t.same(scratch().rlist, [{ win: d.win(b0), len: 4 }, { win: d.win(b1), len: 8 }]);
  t.same(scratch().wlist, [{ win: d.win(b2), len: 8 }]);
  d.writeDesc(0, { addr: b1, len: 8, flags: 0, next: 1 }, tbl);
  t.equal(vq.chainParse(0, 5, W), 0, 'an entry without NEXT ends the indirect chain');
  t.same([scratch().rcount, scratch().wcount], [2, 0]);
});

t.test('EVENT_IDX and NO_INTERRUPT notification decisions', async (t) => {
  const d = driver(8, { eventIdx: true });
  const push = () => {
    const c = d.addChain({ readable: [4] });
    t.equal(vq.queuePop(0), c.head);
    return vq.queuePush(0, c.head, 0);
  };
  d.usedEvent = 0;
  t.equal(push(), 1, 'used_event 0: notify when used.idx goes 0 -> 1');
  t.equal(push(), 0, 'used idx 2 passes nothing');
  d.usedEvent = 5;
  t.equal(push(), 0); t.equal(push(), 0); t.equal(push(), 0); // 3,4,5
  t.equal(push(), 1, 'used idx 5 -> 6 crosses used_event 5');
  t.equal(push(), 0);
  d.takeUsed();
  // avail_event: enableNotify publishes last_avail and says whether work is pending
  t.equal(vq.queueEnableNotify(0), 0);
  t.equal(d.availEvent, 7);
  d.addChain({ readable: [4] });
  t.equal(vq.queueEnableNotify(0), 1, 'pending work seen after enabling');
  t.equal(d.availEvent, 7);
  t.equal(vq.queuePop(0) >= 0, true);
  t.equal(vq.queueEnableNotify(0), 0);
  t.equal(d.availEvent, 8);

  const e = driver(8, { eventIdx: false });
  e.availFlags = VIRTQ_AVAIL_F_NO_INTERRUPT;
  let c = e.addChain({ readable: [4] });
  t.equal(vq.queuePop(0), c.head);
  t.equal(vq.queuePush(0, c.head, 1), 0, 'NO_INTERRUPT suppresses');
  e.availFlags = 0;
  c = e.addChain({ readable: [4] });
  t.equal(vq.queuePop(0), c.head);
  t.equal(vq.queuePush(0, c.head, 1), 1);
  t.equal(e.availEvent, 0, 'avail_event untouched without EVENT_IDX');
  t.equal(vq.queueEnableNotify(0), 0);
});

t.test('u16 index wrap-around and base', async (t) => {
  const d = new MockDriver(buf, { region: defaultRegion(vq), queueSize: 4 });
  d.usedIdx = 65534;
  d.setAvailIdx(65534);
  t.equal(d.attach(vq, 2, { base: 65534 }), 0);
  t.equal(vq.queueGetBase(2), 65534);
  t.equal(vq.queuePop(2), VqError.EMPTY);
  const heads: number[] = [];
  for (let i = 0; i < 4; i++) heads.push(d.addChain({ writable: [8] }).head);
  for (const h of heads) t.equal(vq.queuePop(2), h);
  t.equal(vq.queuePop(2), VqError.EMPTY);
  t.equal(vq.queueGetBase(2), 2);
  for (const h of heads) vq.queuePush(2, h, 8);
  t.equal(d.usedIdx, 2, 'used idx wrapped from 65534');
  t.same(d.usedElem(65535 % 4), { id: heads[1], len: 8 });
  vq.queueSetBase(2, 0x12345);
  t.equal(vq.queueGetBase(2), 0x2345, 'base is a u16');
  vq.queueReset(2);
});

t.test('hostile chains: every error code', async (t) => {
  const d = driver(16);
  const buf8 = d.alloc(8);
  const setHead = (descs: Array<[number, bigint, number, number, number]>) => {
    for (const [i, addr, len, flags, next] of descs) d.writeDesc(i, { addr, len, flags, next });
  };
  // LOOP: 0 -> 1 -> 0
  setHead([[0, buf8, 8, VIRTQ_DESC_F_NEXT, 1], [1, buf8, 8, VIRTQ_DESC_F_NEXT, 0]]);
  t.equal(vq.chainParse(0, 0, W), VqError.LOOP);
  // self loop
  setHead([[0, buf8, 8, VIRTQ_DESC_F_NEXT, 0]]);
  t.equal(vq.chainParse(0, 0, W), VqError.LOOP);
  // a chain of exactly `size` descriptors is fine
  for (let i = 0; i < 16; i++) d.writeDesc(i, { addr: buf8, len: 8, flags: i < 15 ? VIRTQ_DESC_F_NEXT : 0, next: i + 1 });
  t.equal(vq.chainParse(0, 0, W), 0);
  t.equal(scratch().rtotal, 128);
  // BAD_HEAD: head or next outside the table
  t.equal(vq.chainParse(0, 16, W), VqError.BAD_HEAD);
  setHead([[0, buf8, 8, VIRTQ_DESC_F_NEXT, 16]]);
  t.equal(vq.chainParse(0, 0, W), VqError.BAD_HEAD);
  // BAD_ADDR: outside every region, straddling its end, u64 overflow
  setHead([[0, 0x1000n, 8, 0, 0]]);
  t.equal(vq.chainParse(0, 0, W), VqError.BAD_ADDR);
  const end = d.region.gpa + BigInt(d.region.size);
  setHead([[0, end - 4n, 8, 0, 0]]);
  t.equal(vq.chainParse(0, 0, W), VqError.BAD_ADDR);
  setHead([[0, 0xfffffffffffffffcn, 8, 0, 0]]);
  t.equal(vq.chainParse(0, 0, W), VqError.BAD_ADDR);
  setHead([[0, 0x1000n, 0, VIRTQ_DESC_F_NEXT, 1], [1, buf8, 8, 0, 0]]);
  t.equal(vq.chainParse(0, 0, W), 0, 'zero-length buffers are skipped, not translated');
  t.equal(scratch().rcount, 1);
  // ORDER: readable after writable; counts stay valid for what was parsed
  setHead([[0, buf8, 8, VIRTQ_DESC_F_NEXT, 1], [1, buf8, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2], [2, buf8, 8, 0, 0]]);
  t.equal(vq.chainParse(0, 0, W), VqError.ORDER);
  t.same([scratch().rcount, scratch().wcount, scratch().rtotal, scratch().wtotal], [1, 1, 8, 8]);
  // BAD_INDIRECT: NEXT together with INDIRECT, bad table lengths
  const tbl = d.alloc(16 * 4);
  for (let i = 0; i < 4; i++) d.writeDesc(i, { addr: buf8, len: 8, flags: i < 3 ? VIRTQ_DESC_F_NEXT : 0, next: i + 1 }, tbl);
  setHead([[0, tbl, 64, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1], [1, buf8, 8, 0, 0]]);
  t.equal(vq.chainParse(0, 0, W), VqError.BAD_INDIRECT);
  setHead([[0, tbl, 0, VIRTQ_DESC_F_INDIRECT, 0]]);
  t.equal(vq.chainParse(0, 0, W), VqError.BAD_INDIRECT, 'empty table');
  setHead([[0, tbl, 17, VIRTQ_DESC_F_INDIRECT, 0]]);
  t.equal(vq.chainParse(0, 0, W), VqError.BAD_INDIRECT, 'not a multiple of 16');
  setHead([[0, tbl, 16 * 32769, VIRTQ_DESC_F_INDIRECT, 0]]);
  t.equal(vq.chainParse(0, 0, W), VqError.BAD_INDIRECT, 'more than 32768 entries');
  setHead([[0, 0x1000n, 64, VIRTQ_DESC_F_INDIRECT, 0]]);
  t.equal(vq.chainParse(0, 0, W), VqError.BAD_ADDR, 'table outside memory');
  setHead([[0, tbl, 64, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0]]);
  t.equal(vq.chainParse(0, 0, W), 0, 'WRITE on the indirect descriptor is ignored');
  t.equal(scratch().rcount, 4);
  // NESTED_INDIRECT
  const tbl2 = d.alloc(32);
  d.writeDesc(0, { addr: buf8, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 1 }, tbl2);
  d.writeDesc(1, { addr: tbl, len: 64, flags: VIRTQ_DESC_F_INDIRECT, next: 0 }, tbl2);
  setHead([[0, tbl2, 32, VIRTQ_DESC_F_INDIRECT, 0]]);
  t.equal(vq.chainParse(0, 0, W), VqError.NESTED_INDIRECT);
  // LOOP inside an indirect table (ttl = table length)
  d.writeDesc(1, { addr: buf8, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 0 }, tbl2);
  t.equal(vq.chainParse(0, 0, W), VqError.LOOP);
  d.writeDesc(1, { addr: buf8, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 2 }, tbl2);
  t.equal(vq.chainParse(0, 0, W), VqError.BAD_HEAD, 'next past the indirect table');
  // TOO_MANY_SEGS: MAX_SEGS + 1 separate readable buffers via an indirect table
  const n = L.MAX_SEGS + 1;
  const big = d.alloc(16 * n);
  const seg = d.alloc(32 * n);
  for (let i = 0; i < n; i++) {
    d.writeDesc(i, { addr: seg + BigInt(32 * i), len: 8, flags: i < n - 1 ? VIRTQ_DESC_F_NEXT : 0, next: i + 1 }, big);
  }
  setHead([[0, big, 16 * n, VIRTQ_DESC_F_INDIRECT, 0]]);
  t.equal(vq.chainParse(0, 0, W), VqError.TOO_MANY_SEGS);
  t.equal(scratch().rcount, L.MAX_SEGS, 'list filled to the limit, not beyond');
  d.writeDesc(n - 2, { addr: seg + BigInt(32 * (n - 2)), len: 8, flags: 0, next: 0 }, big);
  t.equal(vq.chainParse(0, 0, W), 0, 'exactly MAX_SEGS is fine');
  // BAD_LEN: total over 2^32 - 1 with every buffer inside the region (257 x 16 MiB - 4 KiB)
  const blen = d.region.size - 4096;
  const m = 257;
  for (let i = 0; i < m; i++) {
    d.writeDesc(i, { addr: d.region.gpa, len: blen, flags: VIRTQ_DESC_F_WRITE | (i < m - 1 ? VIRTQ_DESC_F_NEXT : 0), next: i + 1 }, big);
  }
  setHead([[0, big, 16 * m, VIRTQ_DESC_F_INDIRECT, 0]]);
  t.equal(vq.chainParse(0, 0, W), VqError.BAD_LEN);
  t.equal(scratch().wtotal, 256 * blen, 'total kept at the last accepted value');
  // bad worker index
  t.equal(vq.chainParse(0, 0, L.MAX_WORKERS), VqError.BAD_SIZE);
});

t.test('hostile avail ring: head >= size and idx jumps break the queue until reset', async (t) => {
  let d = driver(8);
  d.pushAvail(8);
  d.publish();
  t.equal(vq.queuePop(0), VqError.BROKEN, 'head == size');
  t.equal(vq.queueIsBroken(0), 1);
  t.equal(vq.queuePop(0), VqError.BROKEN, 'stays broken');
  t.equal(vq.queuePush(0, 0, 0), VqError.BROKEN, 'push refused');
  t.equal(vq.queueEnableNotify(0), 0);

  d = driver(8);
  t.equal(vq.queueIsBroken(0), 0, 'reset clears broken');
  d.addChain({ readable: [4] });
  d.setAvailIdx(9); // 9 pending on a queue of 8
  t.equal(vq.queuePop(0), VqError.BROKEN);
  d.setAvailIdx(1);
  t.equal(vq.queuePop(0), VqError.BROKEN, 'still broken after the driver backs off');
  d = driver(8);
  d.setAvailIdx(0xffff); // backwards: (0xffff - 0) & 0xffff > size
  t.equal(vq.queuePop(0), VqError.BROKEN);
  d = driver(8);
  for (let i = 0; i < 8; i++) d.pushAvail(i % 8);
  d.publish();
  for (let i = 0; i < 8; i++) t.equal(vq.queuePop(0), i, 'exactly size pending is fine');
  t.equal(vq.queuePop(0), VqError.EMPTY);
});

t.test('gather, scatter, subList at boundaries', async (t) => {
  const s = L.SCRATCH_BASE + W * L.SCRATCH_SIZE;
  const list = s + L.SCR_RLIST;
  const out = s + L.SCR_SUBLIST;
  const dv = new DataView(buf);
  const A = L.WINDOW_BASE + 0x1000, B = L.WINDOW_BASE + 0x2000, C = L.WINDOW_BASE + 0x3000;
  // One resident region over the start of the window; segments are {off, len, region 0}.
  vq.memtableClear();
  t.equal(add(0x100000n, 0x10000n, 0x7f0000000000n, L.WINDOW_BASE), 0);
  const segs: Array<[number, number]> = [[A, 3], [B, 5], [C, 2]];
  segs.forEach(([w, l], i) => {
    dv.setBigUint64(list + L.SEG_STRIDE * i, BigInt(w - L.WINDOW_BASE), true);
    dv.setUint32(list + L.SEG_STRIDE * i + 8, l, true);
    dv.setUint32(list + L.SEG_STRIDE * i + 12, 0, true);
  });
  const bytes = new Uint8Array(buf);
  bytes.set([1, 2, 3], A); bytes.set([4, 5, 6, 7, 8], B); bytes.set([9, 10], C);
  const dst = s + L.SCR_INBUF;
  const g = (skip: number, len: number) => {
    bytes.fill(0, dst, dst + 16);
    const n = vq.gather(W, list, 3, skip, dst, len);
    return [n, [...bytes.subarray(dst, dst + n)]];
  };
  t.same(g(0, 100), [10, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]);
  t.same(g(3, 5), [5, [4, 5, 6, 7, 8]], 'starts and ends on segment boundaries');
  t.same(g(2, 2), [2, [3, 4]], 'spans a boundary');
  t.same(g(9, 5), [1, [10]]);
  t.same(g(10, 5), [0, []], 'skip at the end');
  t.same(g(50, 5), [0, []], 'skip past the end');
  t.equal(vq.gather(W, list, 2, 0, dst, 100), 8, 'count limits');
  t.equal(vq.gather(W, list, 3, 0, dst, 0), 0);
  const src = s + L.SCR_OUTBUF;
  bytes.set([21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31], src);
  t.equal(vq.scatter(W, src, 4, list, 3, 2), 4);
  t.same([...bytes.subarray(A, A + 3), ...bytes.subarray(B, B + 5)], [1, 2, 21, 22, 23, 24, 7, 8]);
  t.equal(vq.scatter(W, src, 11, list, 3, 0), 10, 'capped by the list');
  t.same([...bytes.subarray(C, C + 3)], [29, 30, 0], "nothing written past the last segment");
  const sub = (skip: number, len: number, max = 16) => {
    const n = vq.subList(list, 3, skip, len, out, max);
    if (n < 0) return n;
    return Array.from({ length: n }, (_, i) => {
      t.equal(dv.getUint32(out + L.SEG_STRIDE * i + 12, true), 0, 'region kept');
      return [L.WINDOW_BASE + Number(dv.getBigUint64(out + L.SEG_STRIDE * i, true)), dv.getUint32(out + L.SEG_STRIDE * i + 8, true)];
    });
  };
  t.same(sub(0, 10), [[A, 3], [B, 5], [C, 2]]);
  t.same(sub(3, 5), [[B, 5]], 'exactly one segment');
  t.same(sub(1, 8), [[A + 1, 2], [B, 5], [C, 1]]);
  t.same(sub(4, 1), [[B + 1, 1]]);
  t.same(sub(7, 0), []);
  t.equal(sub(5, 6), VqError.BAD_LEN, 'list shorter than skip + len');
  t.equal(sub(10, 1), VqError.BAD_LEN);
  t.equal(sub(0, 10, 2), VqError.TOO_MANY_SEGS);
  t.same(sub(0, 8, 2), [[A, 3], [B, 5]], 'fits in max');
});

t.test('a second instance on the same memory shares all state', async (t) => {
  const vq2 = await loadVirtqueueModule(memory);
  t.not(vq2, vq);
  t.same(vq2.layout, vq.layout);
  const d = driver(8);
  const a = d.addChain({ writable: [8] });
  const b = d.addChain({ writable: [8] });
  t.equal(vq2.queuePop(0), a.head, 'popped by instance 2');
  t.equal(vq.queuePop(0), b.head, 'instance 1 continues after it');
  t.equal(vq2.chainParse(0, a.head, W + 1), 0);
  t.equal(vq.queuePush(0, a.head, 8), 1);
  t.equal(vq2.queuePush(0, b.head, 4), 1);
  t.same(d.takeUsed(), [{ id: a.head, len: 8 }, { id: b.head, len: 4 }]);
  vq.inodeInit(3, 1n, 1n);
  const x = vq.inodeLookup(1, 0, 2, 0, 10);
  t.equal(vq.inodeLastExisted(), 0);
  t.equal(vq2.inodeLookup(1, 0, 2, 0, 11), x);
  t.equal(vq2.inodeLastExisted(), 1, 'lastExisted is per instance');
  t.equal(vq.inodeLastExisted(), 0);
});
