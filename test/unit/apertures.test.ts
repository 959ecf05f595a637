// The aperture cache (assembly/aperture.ts) and the worker side that maps its misses (ApertureMapper):
// guest RAM that is not resident in the window, reached through 4 MiB apertures onto its memfd.
import t from 'tap';
import fs from 'node:fs';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_WRITE } from '../../src/abi/virtio.js';
import { Logger } from '../../src/log.js';
import { native } from '../../src/native.js';
import { ApertureMapper } from '../../src/virtio/guest-io.js';
import { createSharedMemory, loadVirtqueueModule, VqError, type VqExports } from '../../src/virtio/wasm.js';
import { MockDriver } from '../helpers/mock-driver.js';

const memory = createSharedMemory();
const vq: VqExports = await loadVirtqueueModule(memory);
const L = vq.layout;
const buf = memory.buffer as unknown as SharedArrayBuffer;
const W = 1; // the worker whose partition and scratch these tests use
const MiB = 1 << 20;
const G = 1 << L.GRANULE_SHIFT;

// One 64 MiB region above 4 GiB, never resident: only apertures reach it.
const SIZE = 64 * MiB;
const GPA = 0x1_0000_0000n;
const UA = 0x7f00_0000_0000n;
const memfd = native.memfdCreate('apertures-test', SIZE);
const hva = native.mapShared(memfd, 0, SIZE);
t.teardown(() => {
  native.unmapShared(hva, SIZE);
  native.close(memfd);
});

function install(workers = 2, slots = 16, fd = memfd): void {
  vq.memtableClear();
  t.equal(vq.memtableAdd(GPA, BigInt(SIZE), UA, BigInt(hva), 0n, 0, fd), 0, 'region installed, not resident');
  t.equal(vq.apertureConfig(L.WINDOW_BASE, workers, slots), 0, 'apertures configured');
  native.unmapFixed(buf, L.WINDOW_BASE, (L.APERTURE_PINNED + workers * slots) * L.APERTURE_SLOT_SIZE);
}

const log = new Logger('error', 'test');
const mapper = (): ApertureMapper => new ApertureMapper(vq, buf, W, L.SCRATCH_BASE + W * L.SCRATCH_SIZE, log);
const fill = (off: number, bytes: Uint8Array): void => void fs.writeSync(memfd, bytes, 0, bytes.length, off);
const fileBytes = (off: number, len: number): Buffer => {
  const b = Buffer.alloc(len);
  fs.readSync(memfd, b, 0, len, off);
  return b;
};
const stats = (): [bigint, bigint] => {
  const v = new DataView(buf, L.STATS_BASE + W * L.STATS_STRIDE, 16);
  return [v.getBigUint64(L.STAT_APERTURE_HITS, true), v.getBigUint64(L.STAT_APERTURE_MISSES, true)];
};

t.test('configuration is checked', async (t) => {
  t.equal(vq.apertureConfig(L.WINDOW_BASE + 4096, 1, 8), VqError.ALIGN, 'area not granule aligned');
  t.equal(vq.apertureConfig(L.WINDOW_BASE, 0, 8), VqError.BAD_SIZE, 'no workers');
  t.equal(vq.apertureConfig(L.WINDOW_BASE, 1, 12), VqError.BAD_SIZE, 'slots not a whole number of sets');
  t.equal(vq.apertureConfig(L.WINDOW_BASE, L.MAX_WORKERS + 1, 8), VqError.BAD_SIZE, 'too many workers');
  t.equal(vq.apertureConfig(L.WINDOW_BASE, 1, L.APERTURE_MAX_SLOTS), VqError.BAD_SIZE, 'more slots than the table holds');
  t.equal(vq.apertureConfig(L.WINDOW_BASE - G, 1, 8), VqError.BAD_ADDR, 'below the window');
  t.equal(vq.apertureConfig(L.WINDOW_BASE, 2, 480), VqError.BAD_ADDR, 'past the window end');
});

t.test('a miss is recorded, filled, mapped; then the same granule hits', async (t) => {
  install();
  const m = mapper();
  fill(5 * MiB + 100, Buffer.from('hello through an aperture'));
  const [h0, m0] = stats();
  t.equal(vq.apertureWin(W, 0, BigInt(5 * MiB + 100), 25), 0, 'first lookup misses');
  t.equal(vq.apertureMissPending(W), 1, 'the miss is recorded');
  t.ok(m.fault(), 'mapped');
  t.equal(vq.apertureMissPending(W), 0, 'the record is consumed');
  const win = vq.apertureWin(W, 0, BigInt(5 * MiB + 100), 25);
  t.not(win, 0, 'hit after the fill');
  const first = L.WINDOW_BASE + (L.APERTURE_PINNED + W * 16) * L.APERTURE_SLOT_SIZE;
  t.ok(win >= first && win < first + 16 * L.APERTURE_SLOT_SIZE, "inside the worker's own partition");
  t.equal((win - L.WINDOW_BASE) % L.APERTURE_SLOT_SIZE, (5 * MiB + 100) % G, 'offset inside the granule kept');
  t.equal(Buffer.from(new Uint8Array(buf, win, 25)).toString(), 'hello through an aperture', 'the memfd bytes');
  // The aperture covers the next granule too: a read that crosses the granule boundary is contiguous.
  fill(6 * MiB - 4, Buffer.from('ABCDEFGH'));
  const cross = vq.apertureWin(W, 0, BigInt(6 * MiB - 4), 8);
  t.equal(Buffer.from(new Uint8Array(buf, cross, 8)).toString(), 'ABCDEFGH', 'across a granule boundary');
  t.equal(vq.apertureWin(W, 0, 0n, G + 1), 0, 'longer than a granule: refused');
  t.equal(vq.apertureMissPending(W), 0, 'and not recorded as a miss');
  const [h1, m1] = stats();
  t.equal(m1 - m0, 1n, 'one miss counted');
  t.equal(h1 - h0, 2n, 'two hits counted');
  t.equal(vq.apertureSpan(0, 0n), L.APERTURE_SLOT_SIZE, 'an aperture maps two granules');
  t.equal(vq.apertureSpan(0, BigInt(SIZE / G - 1)), G, "but not past the end of the region's last granule");
  t.equal(vq.apertureSpan(0, BigInt(SIZE / G)), 0, 'nothing beyond it');
  t.equal(vq.apertureSpan(5, 0n), 0, 'unknown region');
  t.equal(vq.apertureWin(W + 1, 0, 0n, 8), 0, 'worker 2 has no partition (2 configured: 0 and 1)');
  t.equal(vq.apertureFill(W + 1), 0);
  t.notOk(m.fault(), 'nothing to fill');
});

t.test('a set holds APERTURE_WAYS granules; the least recently used goes', async (t) => {
  install(2, L.APERTURE_WAYS); // one set per worker
  const m = mapper();
  const at = (g: number): number => {
    let w = vq.apertureWin(W, 0, BigInt(g * G), 8);
    if (w === 0) {
      t.ok(m.fault());
      w = vq.apertureWin(W, 0, BigInt(g * G), 8);
    }
    return w;
  };
  for (let g = 0; g < L.APERTURE_WAYS; g++) fill(g * G, Buffer.from(`granule ${g}`.padEnd(8)));
  for (let g = 0; g < L.APERTURE_WAYS; g++) at(g);
  const [, m0] = stats();
  for (let g = 0; g < L.APERTURE_WAYS; g++) t.not(vq.apertureWin(W, 0, BigInt(g * G), 8), 0, `granule ${g} cached`);
  t.equal(stats()[1], m0, 'no miss while the set holds them all');
  at(0); // granule 0 is now the most recently used; granule 1 the least
  fill(20 * G, Buffer.from('granule20'));
  at(20);
  t.equal(vq.apertureWin(W, 0, BigInt(G), 8), 0, 'granule 1 (least recently used) was replaced');
  vq.apertureFill(W); // drop the recorded miss without mapping
  t.not(vq.apertureWin(W, 0, 0n, 8), 0, 'granule 0 stayed');
  t.equal(Buffer.from(new Uint8Array(buf, vq.apertureWin(W, 0, BigInt(20 * G), 9), 9)).toString(), 'granule20');
  // apertureDrop forgets a slot (what a failed mapping does)
  vq.apertureDrop(W, vq.apertureWin(W, 0, 0n, 8) - 0);
  t.equal(vq.apertureWin(W, 0, 0n, 8), 0, 'dropped slot misses');
  vq.apertureFill(W);
});

t.test('gather and scatter through apertures: partial on a miss, complete after fills', async (t) => {
  install();
  const m = mapper();
  const s = L.SCRATCH_BASE + W * L.SCRATCH_SIZE;
  const list = s + L.SCR_RLIST;
  const dv = new DataView(buf);
  // One segment of 3 MiB + 200 bytes starting 100 bytes before a granule boundary: three granules.
  const off = 2 * G - 100;
  const len = 3 * MiB + 200;
  dv.setBigUint64(list, BigInt(off), true);
  dv.setUint32(list + 8, len, true);
  dv.setUint32(list + 12, 0, true);
  const src = Buffer.alloc(len);
  for (let i = 0; i < len; i++) src[i] = (i * 31 + 7) & 0xff;
  fill(off, src);
  // gather copies at most INBUF_SIZE at a time in the daemon; here straight into a big scratch area
  const dst = L.SCRATCH_BASE + 8 * L.SCRATCH_SIZE;
  let got = vq.gather(W, list, 1, 0, dst, len);
  t.equal(got, 0, 'first piece misses');
  let faults = 0;
  while (got < len && m.fault()) {
    faults++;
    got += vq.gather(W, list, 1, got, dst + got, len - got);
  }
  t.equal(got, len, 'all bytes after the fills');
  t.ok(faults >= 2 && faults <= 3, `a fill per granule not yet mapped (${faults})`);
  t.ok(Buffer.from(new Uint8Array(buf, dst, len)).equals(src), 'gathered bytes are the memfd bytes');
  // scatter back different bytes at an offset into the list
  const out = Buffer.alloc(5000, 0xc3);
  new Uint8Array(buf, dst, 5000).set(out);
  let put = vq.scatter(W, dst, 5000, list, 1, 99);
  while (put < 5000 && m.fault()) put += vq.scatter(W, dst + put, 5000 - put, list, 1, 99 + put);
  t.equal(put, 5000);
  t.ok(fileBytes(off + 99, 5000).equals(out), 'scattered into the memfd');
  t.equal(fileBytes(off + 98, 1)[0], src[98], 'nothing before');
  t.equal(fileBytes(off + 5099, 1)[0], src[5099], 'nothing after');
});

t.test('rings in pinned apertures; an indirect table far away needs a map, then parses', async (t) => {
  install();
  const m = mapper();
  // Pin the region's first granule (the rings and the driver's buffers live there).
  const pin = vq.aperturePin(0, 0, 0n);
  t.equal(pin, L.WINDOW_BASE, 'pinned slot 0 is the first slot of the area');
  t.equal(native.mapFixed(buf, pin, L.APERTURE_SLOT_SIZE, memfd, 0), 0);
  t.equal(vq.aperturePin(L.APERTURE_PINNED, 0, 0n), 0, 'pinned slot index checked');
  t.equal(vq.aperturePin(1, 5, 0n), 0, 'region index checked');
  const d = new MockDriver(buf, { region: { gpa: GPA, size: 4 * MiB, uaddr: UA, win: pin }, queueSize: 16 });
  t.equal(vq.uaddrToWin(d.descUa, 256), d.win(d.descGpa), 'ring address through the pinned aperture');
  t.equal(vq.gpaToWin(GPA + 0x10n, 8), pin + 0x10, 'gpaToWin sees pinned apertures too');
  t.equal(vq.gpaToWin(GPA + BigInt(8 * MiB), 8), 0, 'but not a granule nobody pinned');
  vq.queueReset(0);
  vq.queueSetBase(0, 0);
  t.equal(vq.queueSetup(0, 16, d.descUa, d.availUa, d.usedUa, 0), 0, 'queue set up on pinned rings');
  // The chain: one INDIRECT descriptor whose table is at 40 MiB, with a readable buffer at 50 MiB and a
  // writable one back in the first granule.
  const TABLE = 40 * MiB;
  const readGpa = GPA + BigInt(50 * MiB);
  const writeGpa = d.alloc(64);
  const table = Buffer.alloc(32);
  table.writeBigUInt64LE(readGpa, 0);
  table.writeUInt32LE(100, 8);
  table.writeUInt16LE(1, 12); // VIRTQ_DESC_F_NEXT
  table.writeUInt16LE(1, 14);
  table.writeBigUInt64LE(writeGpa, 16);
  table.writeUInt32LE(64, 24);
  table.writeUInt16LE(VIRTQ_DESC_F_WRITE, 28);
  fill(TABLE, table);
  d.writeDesc(0, { addr: GPA + BigInt(TABLE), len: 32, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
  d.pushAvail(0);
  d.publish();
  t.equal(vq.queuePop(0), 0);
  t.equal(vq.chainParse(0, 0, W), VqError.NEED_MAP, 'the table is behind an aperture not mapped yet');
  t.ok(m.fault());
  t.equal(vq.chainParse(0, 0, W), 0, 'parsed after the map');
  const s = new DataView(buf, L.SCRATCH_BASE + W * L.SCRATCH_SIZE, L.SCRATCH_SIZE);
  t.same([s.getUint32(L.SCR_RCOUNT, true), s.getUint32(L.SCR_WCOUNT, true)], [1, 1]);
  t.equal(s.getBigUint64(L.SCR_RLIST, true), BigInt(50 * MiB), 'readable segment: region offset 50 MiB');
  t.equal(s.getBigUint64(L.SCR_WLIST, true), writeGpa - GPA, 'writable segment in the first granule');
  t.equal(vq.queuePush(0, 0, 0), 1, 'pushed through the pinned used ring');
  t.equal(d.usedIdx, 1);
  vq.apertureUnpin(0);
  t.equal(vq.uaddrToWin(d.descUa, 256), 0, 'unpinned');
  vq.queueReset(0);
});

t.test('a mapping that fails is dropped and reported, not retried forever', async (t) => {
  install(2, 16, 1 << 29); // an fd that is not open
  const m = mapper();
  t.equal(vq.apertureWin(W, 0, 0n, 8), 0);
  t.notOk(m.fault(), 'mmap of a closed fd fails');
  t.equal(m.failures, 1);
  t.equal(vq.apertureWin(W, 0, 0n, 8), 0, 'the slot was dropped: still a miss');
  vq.apertureFill(W);
  vq.apertureOff();
  t.equal(vq.apertureWin(W, 0, 0n, 8), 0, 'apertures off: nothing resolves');
  t.equal(vq.apertureMissPending(W), 0, 'and no miss is recorded');
  vq.memtableClear();
});
