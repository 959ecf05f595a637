/**
 * Memory tables a large VM sends, against the daemon as a process: a 6 GiB region above 4 GiB, a
 * region above 64 GiB (guest-physical and user address), 8 regions in one SET_MEM_TABLE and 12 by
 * ADD_MEM_REG (more than 4 GiB in all), and tables whose regions overlap. In each, rings, indirect
 * tables, request headers, replies and data buffers sit in different arenas far apart, data buffers
 * straddle a 2 MiB boundary, and real FUSE traffic is checked byte for byte (see
 * test/helpers/guest-memory-kit.ts). MEM_TEST_DAEMON=reference runs the cases against QEMU 7.2's C
 * virtiofsd, to check the tests themselves.
 */
import fs from 'node:fs';
import t, { type Test } from 'tap';
import { native } from '../../src/native.js';
import { FrontendReq, type MemoryRegion, VIRTIO_RING_F_INDIRECT_DESC } from '../../src/vhost/message.js';
import { decodeOpenOut, parseReply } from '../../src/frontend/fuse-requests.js';
import { GuestRam, type RegionSpec } from '../../src/frontend/guest-ram.js';
import { memTablePayload, singleRegionPayload } from '../../src/frontend/vhost-user-frontend.js';
import { type SessionMemory, VirtioFsSession } from '../../src/frontend/virtio-fs-session.js';
import { DAEMON, DATA_LEN, GiB, MiB, type MemEnv, PlacedFuse, type Places, exercise, pattern, startMemDaemon, within } from '../helpers/guest-memory-kit.js';

const M = BigInt(MiB);
const ARENA = 4 * MiB;

/** Opens a session on `memory`; a refused table is a failed assertion (with the backend's reason). */
function open(tt: Test, env: MemEnv, memory: SessionMemory): VirtioFsSession | undefined {
  try {
    const s = VirtioFsSession.open(env.sock, { queueSize: 64, slotBytes: 64 * 1024, memory });
    tt.pass(`the backend took the table (${memory.regions.length} regions via ${memory.via ?? 'set-mem-table'})`);
    return s;
  } catch (e) {
    tt.fail(`the backend refused the table: ${(e as Error).message}`);
    return undefined;
  }
}

/** Traffic through `p`, then again with every chain in an indirect table at `indirect`, if negotiated. */
async function traffic(tt: Test, s: VirtioFsSession, env: MemEnv, p: Places, indirect: bigint, label: string): Promise<void> {
  await exercise(tt, s, env, p, label);
  if ((s.features & (1n << VIRTIO_RING_F_INDIRECT_DESC)) !== 0n) await exercise(tt, s, env, { ...p, indirect }, `${label}, indirect`, false);
}

t.test('the frontend maps only its arenas; a buffer straddles two only where they are contiguous in gpa', (tt) => {
  const A: RegionSpec = { guestPhysAddr: 4n * GiB, userspaceAddr: 0x7f40_0000_0000n, size: 6n * GiB, arenas: [{ offset: 0n, bytes: ARENA }, { offset: 6n * GiB - BigInt(ARENA), bytes: ARENA }] };
  const B: RegionSpec = { guestPhysAddr: 10n * GiB, userspaceAddr: 0x7f00_0000_0000n, size: GiB, mmapOffset: 1n * M, arenas: [{ offset: 0n, bytes: ARENA }] };
  const ram = GuestRam.create([A, B], 0);
  try {
    tt.ok(ram.bytes.length < 16 * MiB, `7 GiB of guest RAM, ${ram.bytes.length >> 20} MiB mapped here`);
    const bytes = pattern(8192, 7);
    ram.write(10n * GiB - 4096n, bytes);
    const a = Buffer.alloc(4096);
    const b = Buffer.alloc(4096);
    fs.readSync(ram.region(0).fd, a, 0, 4096, Number(6n * GiB) - 4096);
    fs.readSync(ram.region(1).fd, b, 0, 4096, MiB);
    tt.ok(Buffer.concat([a, b]).equals(bytes), 'a buffer across the two regions lands in both memfds, at their offsets');
    tt.throws(() => ram.offsetOf(4n * GiB + BigInt(ARENA) - 4096n, 8192), RangeError, 'not across arenas that are not contiguous');
    tt.throws(() => ram.offsetOf(5n * GiB), RangeError, 'not outside the arenas');
    tt.equal(ram.uaddrOf(10n * GiB + 5n), 0x7f00_0000_0005n, 'user addresses through the region');
  } finally {
    ram.close();
  }
  tt.end();
});

t.test('one 6 GiB region at gpa 4 GiB, user address above 4 GiB, buffers 3 and 5.9 GiB into it', async (tt) => {
  const env = await startMemDaemon(tt, 1);
  const region: RegionSpec = {
    guestPhysAddr: 4n * GiB,
    userspaceAddr: 0x5_4000_0000n,
    size: 6n * GiB,
    arenas: [
      { offset: 0n, bytes: ARENA }, // rings and request slots
      { offset: 3n * GiB, bytes: ARENA }, // request headers and replies
      { offset: 0x1_7980_0000n, bytes: 2 * ARENA }, // ~5.9 GiB: data and indirect tables
    ],
  };
  const s = open(tt, env, { regions: [region] });
  if (!s) return;
  try {
    const hdr = region.guestPhysAddr + 3n * GiB;
    const far = region.guestPhysAddr + 0x1_7980_0000n;
    // the data buffer straddles a 4 MiB (so also a 2 MiB) boundary of guest-physical space
    await traffic(tt, s, env, { req: hdr, reply: hdr + M, data: far + 4n * M - 64n * 1024n }, far + 6n * M, '6 GiB region');
  } finally {
    s.close();
  }
});

t.test('one region at gpa 64 GiB and user address 128 GiB, with an mmap offset', async (tt) => {
  const env = await startMemDaemon(tt, 2);
  const region: RegionSpec = {
    guestPhysAddr: 0x10_0000_0000n,
    userspaceAddr: 0x20_0000_0000n,
    size: GiB,
    mmapOffset: 2n * M,
    arenas: [
      { offset: 0n, bytes: ARENA },
      { offset: 512n * M, bytes: 2 * ARENA },
    ],
  };
  const s = open(tt, env, { regions: [region] });
  if (!s) return;
  try {
    const a0 = region.guestPhysAddr;
    const a1 = region.guestPhysAddr + 512n * M;
    await traffic(tt, s, env, { req: a0 + 3n * M, reply: a0 + 3n * M + 65536n, data: a1 + 4n * M - 12288n }, a1, 'region at 64 GiB');
  } finally {
    s.close();
  }
});

t.test('requests hopping over 63 places spread across a 6 GiB region', async (tt) => {
  // More distinct 4 MiB stretches of guest RAM than a backend would keep mapped at once, each request
  // touching three of them; each data buffer straddles a 4 MiB boundary.
  const env = await startMemDaemon(tt, 6);
  const SPOTS = 63;
  const spot = (k: number): bigint => BigInt(k + 1) * 96n * M + 4n * M - 8192n;
  const region: RegionSpec = {
    guestPhysAddr: 4n * GiB,
    userspaceAddr: 0x7e00_0000_0000n,
    size: 6n * GiB,
    arenas: [{ offset: 0n, bytes: ARENA }, ...Array.from({ length: SPOTS }, (_, k) => ({ offset: spot(k), bytes: 16384 }))],
  };
  const s = open(tt, env, { regions: [region] });
  if (!s) return;
  try {
    const at = (k: number): bigint => region.guestPhysAddr + spot(k % SPOTS);
    const f = new PlacedFuse(s, { req: at(0), reply: at(1), data: at(2) });
    tt.equal((await f.call(f.rb.init())).error, 0, 'INIT');
    const e = await f.call(f.rb.lookup(1n, 'data.bin'));
    const node = e.view.getBigUint64(0, true);
    const o = await f.call(f.rb.open(node, 0));
    const fh = decodeOpenOut(o.view).fh;
    let good = 0;
    for (let k = 0; k < SPOTS; k++) {
      const g = new PlacedFuse(s, { req: at(k), reply: at(k + 21) + 12288n, data: at(k + 42) + 4096n });
      const pos = (k * 8192) % (DATA_LEN - 8192);
      const req = g.rb.read(node, fh, BigInt(pos), 8192);
      const r = parseReply(await within(s.sendChain(1, req, { out: [{ addr: g.p.req, len: req.length }], in: [{ addr: g.p.reply, len: 16 }, { addr: g.p.data, len: 8192 }] }), 5000, `READ ${k}`));
      if (r.error === 0 && r.len === 16 + 8192 && Buffer.from(s.ram.read(g.p.data, 8192)).equals(env.data.subarray(pos, pos + 8192))) good++;
    }
    tt.equal(good, SPOTS, `all ${SPOTS} READs returned the right bytes`);
  } catch (e) {
    tt.fail((e as Error).message);
  } finally {
    s.close();
  }
});

/**
 * `n` regions of `size` spread over guest-physical space with gaps, user addresses descending, one
 * arena each at a different offset; the last two are contiguous in gpa, the arena of the one before
 * last at its very end and the last one's at its start, so a buffer may straddle the two regions.
 */
function manyRegions(n: number, size: bigint, gpaBase: bigint): RegionSpec[] {
  const out: RegionSpec[] = [];
  for (let k = 0; k < n; k++) {
    const contiguous = k === n - 1;
    const gpa = contiguous ? out[k - 1]!.guestPhysAddr + size : gpaBase + BigInt(k) * 2n * size;
    const offset = k === n - 2 ? size - BigInt(ARENA) : contiguous ? 0n : BigInt(k % 4) * 64n * M;
    out.push({ guestPhysAddr: gpa, userspaceAddr: 0x7f00_0000_0000n - BigInt(k + 1) * 4n * GiB, size, arenas: [{ offset, bytes: ARENA }] });
  }
  return out;
}

/** Queue 0's rings in region `r0`, queue 1's in `r1`, both queues' slots in `slots`, 2 MiB apart. */
function queuesIn(regions: RegionSpec[], r0: number, r1: number, slots: number): SessionMemory['queues'] {
  const at = (i: number): bigint => regions[i]!.guestPhysAddr + regions[i]!.arenas[0]!.offset;
  return [
    { rings: at(r0), slots: at(slots) },
    { rings: at(r1) + 1n * M, slots: at(slots) + 2n * M },
  ];
}

async function manyCase(tt: Test, n: number, size: bigint, via: SessionMemory['via'], seed: number): Promise<void> {
  const env = await startMemDaemon(tt, seed);
  const regions = manyRegions(n, size, 4n * GiB);
  tt.ok(BigInt(n) * size > 4n * GiB, 'more than 4 GiB in all');
  const s = open(tt, env, { regions, via, queues: queuesIn(regions, 0, 2, 1) });
  if (!s) return;
  const at = (i: number): bigint => regions[i]!.guestPhysAddr + regions[i]!.arenas[0]!.offset;
  try {
    await traffic(tt, s, env, { req: at(3), reply: at(4) + 512n * 1024n, data: at(5) + 2n * M - 4096n }, at(n - 2), `${n} regions`);
    // A data buffer across the boundary of two regions that are contiguous in gpa: a guest's buffer
    // may cross a DIMM boundary, and QEMU (like libvhost-user) splits such a descriptor.
    await tt.test('a data buffer across two regions contiguous in gpa', async (t2) => {
      const across = regions[n - 1]!.guestPhysAddr - 64n * 1024n;
      await exercise(t2, s, env, { req: at(3), reply: at(4), data: across }, 'across two regions', false);
    });
  } finally {
    s.close();
  }
  tt.equal(env.daemon.exitCode(), undefined, 'the daemon is still running');
}

t.test('8 regions (6 GiB) in one SET_MEM_TABLE, rings and buffers in different regions', async (tt) => {
  await manyCase(tt, 8, 768n * M, 'set-mem-table', 3);
});

t.test('12 regions (6 GiB) by ADD_MEM_REG after CONFIGURE_MEM_SLOTS', async (tt) => {
  await manyCase(tt, 12, 512n * M, 'add-mem-reg', 4);
});

const noOverlapCheck = DAEMON === 'reference' ? 'the reference (libvhost-user) does not check regions for overlaps' : false;
t.test('regions overlapping by user address or by gpa are refused; the daemon then serves a correct table', { skip: noOverlapCheck }, async (tt) => {
  const env = await startMemDaemon(tt, 5);
  const r0: RegionSpec = { guestPhysAddr: 4n * GiB, userspaceAddr: 0x7f10_0000_0000n, size: 64n * M, arenas: [{ offset: 0n, bytes: ARENA }] };
  const r1: RegionSpec = { guestPhysAddr: 8n * GiB, userspaceAddr: 0x7f10_4000_0000n, size: 64n * M, arenas: [{ offset: 0n, bytes: ARENA }] };
  const s = open(tt, env, { regions: [r0, r1], queues: [{ rings: r0.guestPhysAddr, slots: r0.guestPhysAddr + 1n * M }, { rings: r0.guestPhysAddr + 16384n, slots: r0.guestPhysAddr + 2n * M }] });
  if (!s) return;
  const places: Places = { req: r1.guestPhysAddr, reply: r1.guestPhysAddr + 8192n, data: r1.guestPhysAddr + 65536n };
  try {
    await exercise(tt, s, env, places, 'before');
    const [w0, w1] = [s.ram.region(0).wire, s.ram.region(1).wire];
    const [fd0, fd1] = [s.ram.region(0).fd, s.ram.region(1).fd];
    const table = (regions: MemoryRegion[]): bigint => s.fe.post(FrontendReq.SET_MEM_TABLE, memTablePayload(regions), [fd0, fd1]).status();
    tt.not(table([w0, { ...w1, userspaceAddr: w0.userspaceAddr + 32n * M }]), 0n, 'SET_MEM_TABLE: regions overlapping by user address only are refused');
    tt.not(table([w0, { ...w1, guestPhysAddr: w0.guestPhysAddr + 32n * M }]), 0n, 'SET_MEM_TABLE: regions overlapping by gpa only are refused');
    tt.equal(table([w0, w1]), 0n, 'the correct table is taken');
    await exercise(tt, s, env, places, 'after the refused tables', false);

    const extra = native.memfdCreate('extra', 64 << 20);
    try {
      const add = (r: MemoryRegion): bigint => s.fe.post(FrontendReq.ADD_MEM_REG, singleRegionPayload(r), [extra]).status();
      const fresh = { guestPhysAddr: 16n * GiB, memorySize: 64n * M, userspaceAddr: 0x7f20_0000_0000n, mmapOffset: 0n };
      tt.not(add({ ...fresh, guestPhysAddr: w1.guestPhysAddr + 48n * M }), 0n, 'ADD_MEM_REG overlapping a region by gpa is refused');
      tt.not(add({ ...fresh, userspaceAddr: w1.userspaceAddr + 48n * M }), 0n, 'ADD_MEM_REG overlapping a region by user address is refused');
      // (apart from both of the above, in case one was taken)
      tt.equal(add({ ...fresh, guestPhysAddr: 24n * GiB, userspaceAddr: 0x7f30_0000_0000n }), 0n, 'a region that overlaps nothing is added');
    } finally {
      native.close(extra);
    }
    await exercise(tt, s, env, places, 'after the refused regions', false);
  } finally {
    s.close();
  }
  tt.equal(env.daemon.exitCode(), undefined, 'the daemon is still running');
});
