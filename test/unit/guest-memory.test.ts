// GuestMemory (src/memory/guest-memory.ts) against the real AS module and addon: which regions are
// resident, when it switches to apertures and back, the rings' pinned apertures, what it refuses, and
// that fds which are not memfds are served.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MemoryError } from '../../src/errors.js';
import { Logger } from '../../src/log.js';
import { GuestMemory, type RegionDesc } from '../../src/memory/guest-memory.js';
import { native } from '../../src/native.js';
import { createSharedMemory, loadVirtqueueModule, type VqExports } from '../../src/virtio/wasm.js';

const memory = createSharedMemory();
const vq: VqExports = await loadVirtqueueModule(memory);
const L = vq.layout;
const GiB = 1n << 30n;
const MiB = 1n << 20n;

function logger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: new Logger('debug', 'test', (_l, level, _th, msg) => void lines.push(`${level} ${msg}`)), lines };
}

/** A sparse memfd of `size` bytes (nothing is touched). */
const memfd = (size: bigint): number => native.memfdCreate('guest-memory-test', Number(size));
const region = (gpa: bigint, size: bigint, ua: bigint, off = 0n): RegionDesc => ({
  guestPhysAddr: gpa, memorySize: size, userspaceAddr: ua, mmapOffset: off,
});
const openFds = (): number => fs.readdirSync('/proc/self/fd').length;

t.test('small tables are resident; a hot-plug past the window switches to apertures and back', async (t) => {
  const { log, lines } = logger();
  const fds0 = openFds();
  const m = new GuestMemory(vq, memory, log, 509, 2);
  m.replace([region(0n, 2n * GiB, 0x7f00_0000_0000n), region(4n * GiB, GiB, 0x7f10_0000_0000n)], [memfd(2n * GiB), memfd(GiB)]);
  t.equal(m.memoryMode, 'resident');
  t.equal(vq.memtableCount(), 2);
  t.ok(m.mapped.every((r) => r.win >= L.WINDOW_BASE), 'both in the window');
  t.equal(vq.gpaToWin(4n * GiB + 16n, 8), m.mapped[1]!.win + 16, 'translation through the window');
  // the host mapping is the same memory
  const view = new Uint8Array(memory.buffer, m.mapped[1]!.win, 16);
  view.set([1, 2, 3]);
  const base = native.memoryAddress(memory.buffer as unknown as SharedArrayBuffer);
  t.not(m.mapped[1]!.hva, base + BigInt(m.mapped[1]!.win), 'the host mapping is outside the window');

  m.add(region(0x40_0000_0000n, 8n * GiB, 0x7f20_0000_0000n), memfd(8n * GiB));
  t.equal(m.memoryMode, 'apertures', '11 GiB: apertures');
  t.ok(m.mapped.every((r) => r.win === 0), 'nothing resident');
  t.match(lines.join('\n'), /reaching it through apertures \(472 × 4 MiB per worker\)/);
  t.equal(vq.gpaToWin(4n * GiB + 16n, 8), 0, 'no window address until an aperture is mapped');
  // the rings' pinned apertures make the main thread's translation work again
  m.pinRings([{ ua: 0x7f10_0000_0010n, len: 64 }, { ua: 0x7f20_0001_0000n, len: 4096 }, { ua: 0x1n, len: 8 }]);
  const w = vq.uaddrToWin(0x7f10_0000_0010n, 64);
  t.not(w, 0, 'pinned');
  t.same([...new Uint8Array(memory.buffer, w - 16, 3)], [1, 2, 3], 'the pinned aperture shows the region');
  t.not(vq.uaddrToWin(0x7f20_0001_0000n, 4096), 0, 'a ring in the big region is pinned too');
  m.pinRings([{ ua: 0x7f20_0001_0000n, len: 4096 }]);
  t.equal(vq.uaddrToWin(0x7f10_0000_0010n, 64), 0, 'a pin no ring needs is dropped');

  m.remove(region(0x40_0000_0000n, 8n * GiB, 0x7f20_0000_0000n));
  t.equal(m.memoryMode, 'resident', 'after the unplug: resident again');
  t.match(lines.join('\n'), /fits the window again/);
  t.not(vq.gpaToWin(4n * GiB + 16n, 8), 0);
  t.throws(() => m.remove(region(0x40_0000_0000n, 8n * GiB, 0x7f20_0000_0000n)), MemoryError, 'removing it twice');
  m.clear();
  t.equal(m.memoryMode, 'none');
  t.equal(vq.memtableCount(), 0);
  t.equal(openFds(), fds0, 'every region fd closed');
});

t.test('refusals: overlaps, a region past its file, too many regions; nothing stays mapped', async (t) => {
  const { log } = logger();
  const fds0 = openFds();
  const m = new GuestMemory(vq, memory, log, 4, 2);
  const ua = 0x7f00_0000_0000n;
  t.throws(
    () => m.replace([region(0n, GiB, ua), region(2n * GiB, GiB, ua + GiB / 2n)], [memfd(GiB), memfd(GiB)]),
    /overlap in the frontend's address space/,
  );
  t.throws(() => m.replace([region(0n, GiB, ua), region(GiB / 2n, GiB, ua + 4n * GiB)], [memfd(GiB), memfd(GiB)]), /overlap in guest-physical/);
  t.throws(() => m.replace([region(0n, 2n * GiB, ua)], [memfd(GiB)]), /extends past the end of its file/);
  t.throws(() => m.replace([region(0n, GiB, ua, 0n)], [1 << 29]), /memory region fd/);
  t.throws(
    () => m.replace(Array.from({ length: 5 }, (_, i) => region(BigInt(i) * GiB, MiB, ua + BigInt(i) * GiB)), Array.from({ length: 5 }, () => memfd(MiB))),
    /too many memory regions/,
  );
  t.equal(m.mapped.length, 0);
  m.replace([region(0n, GiB, ua)], [memfd(GiB)]);
  t.throws(() => m.add(region(8n * GiB, GiB, ua + 512n * MiB), memfd(GiB)), /overlap/, 'ADD_MEM_REG overlapping by user address');
  t.equal(m.mapped.length, 1, 'the table is unchanged');
  t.equal(vq.memtableCount(), 1);
  m.clear();
  t.equal(openFds(), fds0, 'refused fds are closed too');
});

t.test('a plain file (not a memfd) is served, and the missing seal logged once', async (t) => {
  const { log, lines } = logger();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-gm-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'ram');
  fs.writeFileSync(file, '');
  fs.truncateSync(file, 64 * 1024 * 1024);
  const fdOf = (): number => fs.openSync(file, 'r+');
  for (const forceApertures of [false, true]) {
    const m = new GuestMemory(vq, memory, log, 509, 2, { forceApertures });
    m.replace([region(0x1_0000_0000n, 32n * MiB, 0x7f00_0000_0000n, 32n * MiB)], [fdOf()]);
    m.add(region(0x2_0000_0000n, 16n * MiB, 0x7f10_0000_0000n), fdOf());
    t.equal(m.memoryMode, forceApertures ? 'apertures' : 'resident');
    t.equal(vq.memtableCount(), 2);
    m.clear();
  }
  t.equal(lines.filter((l) => /cannot be sealed/.test(l)).length, 2, 'one warning per GuestMemory, not one per region');
});
