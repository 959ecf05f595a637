/**
 * A hostile driver's virtqueues against the real daemon: descriptor loops (direct and indirect),
 * bad indirect tables, zero-length and misordered chains, lengths that overflow u32, buffers crossing
 * the end of guest memory, avail index jumps, heads out of range, rings overlapping each other, queue
 * sizes 1 and 32768, GET_VRING_BASE in the middle of traffic, SET_MEM_TABLE under in-flight requests.
 * Each bad chain must come back as a zero-length used element (or stop that queue only), and the
 * daemon must keep serving.
 */
import t from 'tap';
import { parseReply } from '../../src/frontend/fuse-requests.js';
import { Opcode } from '../../src/abi/fuse.js';
import { VIRTQ_DESC_F_INDIRECT as F_INDIRECT, VIRTQ_DESC_F_NEXT as F_NEXT, VIRTQ_DESC_F_WRITE as F_WRITE } from '../../src/abi/virtio.js';
import { type Desc, DriverQueue } from '../../src/frontend/driver-queue.js';
import type { VirtioFsSession } from '../../src/frontend/virtio-fs-session.js';
import { native } from '../../src/native.js';
import { alive, canaryIntact, fuseSession, leaksCanary, prng, seedFromEnv, sleep, startHostile, withTimeout, type HostileEnv } from '../fuzz/hostile-kit.js';
import { until } from '../helpers/poll.js';

const GPA = 0x1_0000_0000n;
const USER = 0x7f00_0000_0000n;

let env: HostileEnv;

/** Waits until the daemon's log since `from` (an earlier logs().length) matches `re`. */
function logsSince(from: number, re: RegExp, ms = 5000): Promise<boolean> {
  return until(() => re.test(env.daemon.logs().slice(from)), ms);
}

t.before(async () => {
  env = await startHostile(t);
});

function priv(s: VirtioFsSession): { kicks: number[]; calls: number[] } {
  return s as unknown as { kicks: number[]; calls: number[] };
}

/** Writes an indirect table (or any descriptor array) at a memory offset. */
function writeTable(s: VirtioFsSession, off: number, descs: Desc[]): void {
  const dq = s.queues[1]!;
  for (const [i, d] of descs.entries()) dq.writeDesc(i, d, GPA + BigInt(off));
}

/**
 * Publishes a raw chain on queue 1: `build` gets the head slot's data offset and may use the
 * descriptors 2*slot and 2*slot+1 plus those of `extra` spare slots. Resolves with the used length.
 */
async function rawChain(s: VirtioFsSession, build: (ctx: { head: number; data: number; spare: number[]; desc: (i: number, d: Desc) => void }) => void, extra = 0): Promise<number> {
  const dq = s.queues[1]!;
  const slot = dq.takeSlot();
  const spare: number[] = [];
  for (let i = 0; i < extra; i++) spare.push(dq.takeSlot());
  const head = slot * 2;
  build({ head, data: dq.slotData(slot), spare, desc: (i, d) => dq.writeDesc(i, d) });
  const done = s.waitUsed(1, slot);
  dq.pushAvail(head);
  dq.publish();
  s.kick(1);
  const b = await withTimeout(done, 5000, 'raw chain');
  return b.length;
}

t.test('bad chains are returned with zero length and the queue keeps serving', async (tt) => {
  const { s, rb, call } = await fuseSession(env, { queueSize: 256, slotBytes: 65536 });
  const memEnd = GPA + BigInt(s.mem.length);
  const getattr = rb.getattr(1n);
  try {
    const cases: Array<[string, Parameters<typeof rawChain>[1], number?]> = [
      ['descriptor outside memory', ({ head, desc }) => desc(head, { addr: 0xffff_ffff_0000n, len: 64, flags: 0, next: 0 })],
      ['buffer crossing the end of memory', ({ head, desc }) => desc(head, { addr: memEnd - 10n, len: 100, flags: 0, next: 0 })],
      ['address wrapping 2^64', ({ head, desc }) => desc(head, { addr: 0xffff_ffff_ffff_fff0n, len: 0x20, flags: 0, next: 0 })],
      ['direct loop', ({ head, data, desc }) => {
        s.mem.set(getattr, data);
        desc(head, { addr: GPA + BigInt(data), len: 40, flags: F_NEXT, next: head + 1 });
        desc(head + 1, { addr: GPA + BigInt(data) + 4096n, len: 64, flags: F_NEXT | F_WRITE, next: head + 1 });
      }],
      ['next beyond the table', ({ head, data, desc }) => desc(head, { addr: GPA + BigInt(data), len: 40, flags: F_NEXT, next: 60000 })],
      ['writable before readable', ({ head, data, desc }) => {
        desc(head, { addr: GPA + BigInt(data) + 4096n, len: 64, flags: F_NEXT | F_WRITE, next: head + 1 });
        desc(head + 1, { addr: GPA + BigInt(data), len: 40, flags: 0, next: 0 });
      }],
      ['indirect with length 0', ({ head, data, desc }) => desc(head, { addr: GPA + BigInt(data), len: 0, flags: F_INDIRECT, next: 0 })],
      ['indirect with length 17', ({ head, data, desc }) => desc(head, { addr: GPA + BigInt(data), len: 17, flags: F_INDIRECT, next: 0 })],
      ['indirect outside memory', ({ head, desc }) => desc(head, { addr: memEnd - 16n, len: 64, flags: F_INDIRECT, next: 0 })],
      ['indirect with NEXT', ({ head, data, desc }) => desc(head, { addr: GPA + BigInt(data), len: 32, flags: F_INDIRECT | F_NEXT, next: head + 1 })],
      ['nested indirect', ({ head, data, desc }) => {
        writeTable(s, data + 8192, [{ addr: GPA + BigInt(data) + 8192n, len: 32, flags: F_INDIRECT, next: 0 }]);
        desc(head, { addr: GPA + BigInt(data) + 8192n, len: 16, flags: F_INDIRECT, next: 0 });
      }],
      ['loop inside an indirect table', ({ head, data, desc }) => {
        s.mem.set(getattr, data);
        writeTable(s, data + 8192, [
          { addr: GPA + BigInt(data), len: 40, flags: F_NEXT, next: 1 },
          { addr: GPA + BigInt(data) + 4096n, len: 64, flags: F_NEXT | F_WRITE, next: 0 },
        ]);
        desc(head, { addr: GPA + BigInt(data) + 8192n, len: 32, flags: F_INDIRECT, next: 0 });
      }],
      ['indirect table of 32768+1 entries', ({ head, data, desc }) => desc(head, { addr: GPA + BigInt(data), len: 16 * 32769, flags: F_INDIRECT, next: 0 })],
      ['writable total over 4 GiB', ({ head, data, desc, spare }) => {
        s.mem.set(getattr, data);
        desc(head, { addr: GPA + BigInt(data), len: 40, flags: F_NEXT, next: head + 1 });
        // 20 writable descriptors of the whole 256 MiB memory each: 5 GiB in total
        const ids = [head + 1, ...spare.flatMap((sp) => [sp * 2, sp * 2 + 1])].slice(0, 20);
        for (const [k, id] of ids.entries()) {
          desc(id, { addr: GPA, len: s.mem.length, flags: F_WRITE | (k < ids.length - 1 ? F_NEXT : 0), next: ids[k + 1] ?? 0 });
        }
      }, 10],
    ];
    for (const [what, build, extra] of cases) {
      const len = await rawChain(s, build, extra ?? 0);
      tt.equal(len, 0, `${what}: returned with used length 0`);
      tt.equal((await call(rb.getattr(1n))).error, 0, `${what}: the queue still serves`);
    }
    // zero-length chain and an empty readable part: no reply, no crash
    tt.equal(await rawChain(s, ({ head, data, desc }) => desc(head, { addr: GPA + BigInt(data), len: 0, flags: 0, next: 0 })), 0, 'zero-length chain');
    tt.equal(await rawChain(s, ({ head, data, desc }) => desc(head, { addr: GPA + BigInt(data), len: 0, flags: F_WRITE, next: 0 })), 0, 'zero-length writable-only chain');
    // a valid request through an indirect table, with the reply split over many 1-byte descriptors
    const len = await rawChain(s, ({ head, data, desc }) => {
      s.mem.set(rb.getattr(1n), data);
      const tbl: Desc[] = [{ addr: GPA + BigInt(data), len: 56, flags: F_NEXT, next: 1 }];
      for (let i = 0; i < 120; i++) tbl.push({ addr: GPA + BigInt(data) + 4096n + BigInt(2 * i), len: 1, flags: F_WRITE | (i < 119 ? F_NEXT : 0), next: i + 2 });
      writeTable(s, data + 8192, tbl);
      desc(head, { addr: GPA + BigInt(data) + 8192n, len: 16 * tbl.length, flags: F_INDIRECT, next: 0 });
    });
    tt.equal(len, 120, 'a GETATTR reply scattered over 120 one-byte buffers');
    // a reply buffer that overlaps the rings: the driver's own problem, the daemon survives
    let replyAt = 0;
    const l2 = await rawChain(s, ({ head, data, desc }) => {
      const req = rb.getattr(1n);
      s.mem.set(req, data);
      replyAt = data - 8;
      desc(head, { addr: GPA + BigInt(data), len: req.length, flags: F_NEXT, next: head + 1 });
      desc(head + 1, { addr: GPA + BigInt(replyAt), len: 120, flags: F_WRITE, next: 0 });
    });
    // the request is read before the reply is written: a whole GETATTR reply (16 + fuse_attr_out)
    tt.equal(l2, 120, 'reply over its own request: the full GETATTR reply');
    tt.equal(parseReply(s.mem.slice(replyAt, replyAt + 120)).error, 0, '... and it is a success');
    tt.equal((await call(rb.getattr(1n))).error, 0, 'still serving');
  } finally {
    s.close();
  }
  await alive(tt, env);
});

t.test('random descriptor tables (seeded)', async (tt) => {
  const seed = seedFromEnv(0xd35c);
  const r = prng(seed);
  const { s, rb } = await fuseSession(env, { queueSize: 64 });
  const dq = s.queues[1]!;
  const memLen = BigInt(s.mem.length);
  try {
    for (let round = 0; round < 300; round++) {
      const slot = dq.takeSlot();
      const head = slot * 2;
      const data = dq.slotData(slot);
      // any opcode but the session ones: a well-formed DESTROY would end the session on purpose
      let op = r.int(60);
      if (op === Opcode.Init || op === Opcode.Destroy) op = Opcode.Getattr;
      s.mem.set(rb.build(op, BigInt(r.int(4)), r.bytes(r.int(100))), data);
      const addrs = [GPA + BigInt(data), GPA + BigInt(data) + 4096n, GPA - 1n, GPA + memLen - BigInt(r.int(64)), 0n, BigInt(r.int(2 ** 31)) << 8n];
      // scribble over this slot's two descriptors and an indirect table in its data area
      const tbl: Desc[] = Array.from({ length: 1 + r.int(8) }, () => ({ addr: r.pick(addrs), len: r.pick([0, 1, 40, 64, 4096, 0xffffffff]), flags: r.int(8), next: r.int(10) }));
      writeTable(s, data + 8192, tbl);
      for (const i of [head, head + 1]) {
        const ind = r.next() < 0.3;
        dq.writeDesc(i, {
          addr: ind ? GPA + BigInt(data) + 8192n : r.pick(addrs),
          len: ind ? 16 * tbl.length + r.pick([0, 0, 1, 16]) : r.pick([0, 40, 64, 4096, 1 << 20]),
          flags: ind ? F_INDIRECT | (r.next() < 0.2 ? F_NEXT : 0) : r.int(4),
          next: r.pick([head, head + 1, r.int(64), 65535]),
        });
      }
      const done = s.waitUsed(1, slot);
      dq.pushAvail(head);
      dq.publish();
      s.kick(1);
      const b = await withTimeout(done, 5000, `seed ${seed} round ${round}`);
      if (leaksCanary(b)) tt.fail(`seed ${seed} round ${round}: canary in a reply`);
    }
    tt.pass(`300 random chains answered (seed ${seed})`);
    tt.equal(parseReply(await withTimeout(s.send(1, rb.getattr(1n), 4096), 5000, 'getattr')).error, 0, 'still serving');
  } finally {
    s.close();
  }
  await alive(tt, env);
});

t.test('avail index jump and a head beyond the queue stop that queue only', async (tt) => {
  for (const attack of ['jump', 'head', 'jump-by-size+1'] as const) {
    const { s, rb } = await fuseSession(env, { queueSize: 64, requestQueues: 2, slotBytes: 65536 });
    const dq = s.queues[1]!;
    if (attack === 'jump') dq.setAvailIdx(40000);
    // one more than the ring holds past what the device has taken (INIT went through this queue)
    else if (attack === 'jump-by-size+1') dq.setAvailIdx(dq.availIndex + 65);
    else {
      dq.pushAvail(64 + 7);
      dq.publish();
    }
    const from = env.daemon.logs().length;
    s.kick(1);
    // logged for every attack: each session is a new device, so a ring broken by an earlier one is forgotten
    tt.ok(await logsSince(from, /queue 1: the driver corrupted the avail ring/, 5000), `${attack}: the daemon logs that it stops queue 1`);
    // the other request queue is unaffected
    const r = parseReply(await withTimeout(s.send(2, rb.getattr(1n), 4096), 5000, 'queue 2'));
    tt.equal(r.error, 0, `${attack}: the other queue still serves`);
    s.close();
    await alive(tt, env, attack);
  }
});

t.test('queue sizes 1 and 32768', async (tt) => {
  // 32768: the largest ring, with all slots in flight at once
  {
    const { s, rb } = await fuseSession(env, { queueSize: 32768, slotBytes: 16384, memBytes: 1024 << 20 });
    try {
      const all: Promise<Uint8Array>[] = [];
      for (let i = 0; i < 3000; i++) all.push(withTimeout(s.send(1, rb.getattr(1n), 256), 10000, 'getattr'));
      const res = await Promise.all(all);
      tt.ok(res.every((b) => parseReply(b).error === 0), '3000 requests on a 32768-entry ring');
      // wrap the 16-bit indexes: 70000 requests in total on this ring
      for (let k = 0; k < 67; k++) {
        const batch: Promise<Uint8Array>[] = [];
        for (let i = 0; i < 1000; i++) batch.push(withTimeout(s.send(1, rb.getattr(1n), 256), 10000, 'getattr'));
        await Promise.all(batch);
      }
      tt.pass('70000 requests: the indexes wrapped');
    } finally {
      s.close();
    }
  }
  // 1: one descriptor; request and reply travel through an indirect table
  {
    const { s, rb } = await fuseSession(env, { queueSize: 64 });
    try {
      const fe = s.fe;
      const p = priv(s);
      fe.getVringBase(1);
      // a size-1 ring in an unused part of the session memory, driven by its own driver-side queue
      const ringOff = 16 * 1024 * 1024;
      const ring = new DriverQueue(s.mem, { gpa: GPA, ringOff, size: 1 });
      const ua = (g: bigint): bigint => g - GPA + USER;
      fe.setVringNum(1, 1);
      fe.setVringBase(1, 0);
      fe.setVringAddr(1, ua(ring.descGpa), ua(ring.usedGpa), ua(ring.availGpa));
      fe.setVringKick(1, p.kicks[1]!);
      fe.setVringCall(1, p.calls[1]!);
      fe.setVringEnable(1, true);
      const data = ringOff + 8192;
      for (let k = 0; k < 5; k++) {
        const req = rb.getattr(1n);
        s.mem.set(req, data);
        ring.writeIndirect(0, GPA + BigInt(data) + 4096n, [
          { addr: GPA + BigInt(data), len: req.length },
          { addr: GPA + BigInt(data) + 1024n, len: 256, write: true },
        ]);
        ring.pushAvail(0);
        ring.publish();
        native.eventfdWrite(p.kicks[1]!, 1);
        const t0 = Date.now();
        while (ring.usedIdx !== k + 1 && Date.now() - t0 < 5000) await sleep(5);
        tt.equal(ring.usedIdx, k + 1, `size-1 ring: request ${k} used`);
        tt.equal(parseReply(s.mem.slice(data + 1024, data + 1024 + 256)).error, 0, `size-1 ring: request ${k} answered`);
      }
    } finally {
      s.close();
    }
  }
  await alive(tt, env);
});

t.test('used ring overlapping the descriptor table, rings outside or misaligned', async (tt) => {
  const { s, rb } = await fuseSession(env, { queueSize: 64, requestQueues: 2, slotBytes: 65536 });
  try {
    const fe = s.fe;
    const p = priv(s);
    const dq = s.queues[1]!;
    const restart = (desc: bigint, used: bigint, avail: bigint): void => {
      fe.getVringBase(1);
      fe.setVringNum(1, 64);
      fe.setVringBase(1, 0);
      try {
        fe.setVringAddr(1, desc, used, avail);
      } catch {
        /* refused: fine */
      }
      fe.setVringKick(1, p.kicks[1]!);
      fe.setVringCall(1, p.calls[1]!);
      fe.setVringEnable(1, true);
    };
    const ua = (g: bigint): bigint => g - GPA + USER;
    // used ring on top of the descriptor table: requests come back garbled, never crash
    restart(ua(dq.descGpa), ua(dq.descGpa), ua(dq.availGpa));
    for (let i = 0; i < 5; i++) void s.send(1, rb.getattr(1n), 256).catch(() => undefined);
    await sleep(200);
    tt.equal(parseReply(await withTimeout(s.send(2, rb.getattr(1n), 4096), 5000, 'q2')).error, 0, 'overlapping rings: queue 2 serves');
    // unmapped, misaligned and wrapping addresses
    for (const [what, d, u, a] of [
      ['unmapped', 0x1000n, 0x2000n, 0x3000n],
      ['misaligned desc', ua(dq.descGpa) + 8n, ua(dq.usedGpa), ua(dq.availGpa)],
      ['misaligned used', ua(dq.descGpa), ua(dq.usedGpa) + 2n, ua(dq.availGpa)],
      ['odd avail', ua(dq.descGpa), ua(dq.usedGpa), ua(dq.availGpa) + 1n],
      ['ring past the end', USER + BigInt(s.mem.length) - 16n, ua(dq.usedGpa), ua(dq.availGpa)],
      ['wrapping', 0xffff_ffff_ffff_fff0n, 0xffff_ffff_ffff_fff0n, 0xffff_ffff_ffff_fff0n],
    ] as const) {
      const from = env.daemon.logs().length;
      restart(d, u, a);
      s.kick(1);
      tt.ok(await logsSince(from, /SET_VRING_ADDR rejected: queue 1|queue 1: cannot start/), `${what}: queue 1 is refused or does not start`);
      tt.equal(parseReply(await withTimeout(s.send(2, rb.getattr(1n), 4096), 5000, 'q2')).error, 0, `${what}: queue 2 serves`);
    }
  } finally {
    s.close();
  }
  await alive(tt, env);
});

t.test('GET_VRING_BASE in the middle of traffic, then restart: every request is answered', async (tt) => {
  const { s, rb } = await fuseSession(env, { queueSize: 256, slotBytes: 65536 });
  try {
    const p = priv(s);
    for (let round = 0; round < 5; round++) {
      const all = Array.from({ length: 100 }, () => s.send(1, rb.getattr(1n), 256));
      const base = s.fe.getVringBase(1);
      s.fe.setVringBase(1, base);
      s.fe.setVringKick(1, p.kicks[1]!);
      s.fe.setVringCall(1, p.calls[1]!);
      s.kick(1);
      const res = await withTimeout(Promise.all(all), 5000, `round ${round}`);
      tt.ok(res.every((b) => parseReply(b).error === 0), `round ${round}: 100 requests answered across the stop (base ${base})`);
    }
  } finally {
    s.close();
  }
  await alive(tt, env);
});

t.test('SET_MEM_TABLE replaced while requests are in flight', async (tt) => {
  const { s, rb } = await fuseSession(env, { queueSize: 256, slotBytes: 65536 });
  try {
    const region = { guestPhysAddr: GPA, memorySize: BigInt(s.mem.length), userspaceAddr: USER, mmapOffset: 0n };
    for (let round = 0; round < 5; round++) {
      const all = Array.from({ length: 100 }, () => s.send(1, rb.getattr(1n), 256));
      // the same memory again (QEMU does this on hotplug): requests continue
      s.fe.setMemTable([region], [s.memfd]);
      s.kick(1);
      const res = await withTimeout(Promise.all(all), 5000, `round ${round}`);
      tt.ok(res.every((b) => parseReply(b).error === 0), `round ${round}: all answered`);
    }
    // moved guest addresses under running queues: the rings no longer translate; nothing crashes
    const lost = Array.from({ length: 50 }, () => s.send(1, rb.getattr(1n), 256).catch(() => undefined));
    const from = env.daemon.logs().length;
    s.fe.setMemTable([{ ...region, guestPhysAddr: GPA * 4n, userspaceAddr: USER * 2n }], [s.memfd]);
    s.kick(1);
    tt.ok(await logsSince(from, /queue 1: cannot start: ring addresses are invalid or unmapped/), 'moved memory: queue 1 stops, its rings no longer translate');
    void lost;
    // a smaller table: the frontend's to give (vhost-user spec, SET_MEM_TABLE); the backend maps it
    tt.doesNotThrow(() => s.fe.setMemTable([{ ...region, memorySize: region.memorySize / 2n }], [s.memfd]), 'half the memory is accepted');
  } finally {
    s.close();
  }
  await alive(tt, env);
  canaryIntact(tt, env);
});
