/**
 * The load tester's driver side of a split virtqueue (assembly/driver.ts) in a loopback against the
 * daemon's device side (assembly/queue.ts, chain.ts) on one shared memory: the rings live in a guest
 * RAM region of the memory table that is resident in the window, the driver reaches them by window
 * address, the device by the region's user and guest-physical addresses (virtio 1.2 §2.7). Checked:
 * chains laid out by shape (indirect and direct) parse into the buffers the shape names; used elements
 * come back through drvReap; the EVENT_IDX and NO_NOTIFY decisions on both sides, across the 16-bit
 * wrap; the reply-header check; the data pattern.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_USED_F_NO_NOTIFY } from '../../src/abi/virtio.js';
import { writeShapes } from '../../src/loadtest/steps.js';
import { VqError } from '../../src/virtio/wasm.js';
import { DriverLoopback, type Seg, randomShape, rng, show } from '../helpers/driver-loopback.js';
import { type QueueStressResult, queueStress } from '../helpers/queue-stress.js';

const lb = await DriverLoopback.create();
const { vq, L, dv, u8, memory } = lb;
const W = lb.w;
const WIN = L.WINDOW_BASE;
const GPA = lb.gpaOfWin(WIN);

t.test('chains by shape: drvChain lays out, chainParse finds the same buffers, drvReap returns id and len', async (t) => {
  for (const indirect of [true, false]) {
    const mode = indirect ? 'indirect' : 'direct';
    const slots = 4;
    // direct: the real shapes for bs=8k have one data buffer; the ring holds slotDescs per slot
    const qq = lb.setup(indirect ? 0 : 1, { size: 32, indirect, slots, slotBytes: 16384, slotDescs: 8 });
    writeShapes(vq, memory, 8192, indirect);
    const shapes: Array<[number, Seg[]]> = [];
    for (let id = 0; id < 13; id++) shapes.push([id, lb.readShape(id)]);
    const r = rng(indirect ? 11 : 12);
    for (let id = 13; id < 20; id++) {
      const segs = randomShape(r, indirect ? 40 : qq.slotDescs, qq.slotBytes);
      lb.writeShape(id, segs);
      shapes.push([id, segs]);
    }
    let bad = '';
    let n = 0;
    for (const [id, segs] of shapes) {
      // one request per slot in flight, device pops, parses and answers them in reverse order
      const heads: number[] = [];
      for (let s = 0; s < slots; s++) {
        const head = vq.drvChain(qq.q, s, id);
        if (head !== (indirect ? s : s * qq.slotDescs)) bad += ` shape ${id} slot ${s}: head ${head};`;
        vq.drvAdd(qq.q, head);
        heads.push(head);
      }
      vq.drvKick(qq.q);
      const popped: number[] = [];
      for (let s = 0; s < slots; s++) {
        const head = vq.queuePop(qq.q);
        popped.push(head);
        const rc = vq.chainParse(qq.q, head, W);
        const got = lb.parsed();
        const want = lb.expected(qq, s, segs);
        if (rc !== 0) bad += ` shape ${id} slot ${s}: chainParse ${rc};`;
        else if (show([got.r, got.w]) !== show([want.r, want.w])) {
          bad += ` shape ${id} slot ${s}: buffers differ;`;
        } else if (got.rtotal !== want.r.reduce((x, b) => x + b.len, 0) || got.wtotal !== want.w.reduce((x, b) => x + b.len, 0)) {
          bad += ` shape ${id} slot ${s}: totals;`;
        }
        n++;
      }
      if (JSON.stringify(popped) !== JSON.stringify(heads)) bad += ` shape ${id}: popped ${popped} for ${heads};`;
      t.equal(vq.queuePop(qq.q), VqError.EMPTY);
      const answers = heads.map((h, i) => [h, 16 + 7 * i + id] as [number, number]).reverse();
      for (const [h, len] of answers) vq.queuePush(qq.q, h, len);
      const got = vq.drvReap(qq.q);
      if (got !== slots || JSON.stringify(lb.reaped(qq.q, got)) !== JSON.stringify(answers)) bad += ` shape ${id}: reaped ${JSON.stringify(lb.reaped(qq.q, got))};`;
      if (vq.drvReap(qq.q) !== 0) bad += ` shape ${id}: reaped twice;`;
    }
    t.equal(bad, '', `${mode}: ${n} chains of ${shapes.length} shapes (13 of writeShapes, 7 random)`);
  }
});

t.test('the descriptors drvChain writes', async (t) => {
  const qi = lb.setup(2, { size: 8, indirect: true, slots: 4 });
  const segs: Seg[] = [{ off: 0, len: 40, write: false }, { off: 100, len: 16, write: true }, { off: 4096, len: 4096, write: true }];
  lb.writeShape(0, segs);
  t.equal(vq.drvChain(qi.q, 3, 0), 3, 'indirect: head = slot');
  const d = qi.desc + 3 * 16;
  t.equal(dv.getBigUint64(d, true), lb.gpaOfWin(qi.tableWin) + 3n * BigInt(L.DRV_TABLE_STRIDE), 'ring descriptor: the slot\'s table');
  t.equal(dv.getUint32(d + 8, true), 3 * 16, 'of 3 descriptors');
  t.equal(dv.getUint16(d + 12, true), VIRTQ_DESC_F_INDIRECT, 'INDIRECT, no NEXT');
  const tbl = qi.tableWin + 3 * L.DRV_TABLE_STRIDE;
  const slot3 = lb.gpaOfWin(qi.dataWin + 3 * qi.slotBytes);
  const descs = (at: number, n: number) =>
    Array.from({ length: n }, (_, i) => [dv.getBigUint64(at + 16 * i, true) - slot3, dv.getUint32(at + 16 * i + 8, true), dv.getUint16(at + 16 * i + 12, true), dv.getUint16(at + 16 * i + 14, true)]);
  t.same(descs(tbl, 3), [
    [0n, 40, VIRTQ_DESC_F_NEXT, 1],
    [100n, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2],
    [4096n, 4096, VIRTQ_DESC_F_WRITE, 0],
  ]);
  const qd = lb.setup(3, { size: 16, indirect: false, slots: 4, slotDescs: 4 });
  t.equal(vq.drvChain(qd.q, 2, 0), 8, 'direct: head = slot × slotDescs');
  const slot2 = lb.gpaOfWin(qd.dataWin + 2 * qd.slotBytes);
  t.same(
    Array.from({ length: 3 }, (_, i) => {
      const a = qd.desc + (8 + i) * 16;
      return [dv.getBigUint64(a, true) - slot2, dv.getUint32(a + 8, true), dv.getUint16(a + 12, true), dv.getUint16(a + 14, true)];
    }),
    [[0n, 40, VIRTQ_DESC_F_NEXT, 9], [100n, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 10], [4096n, 4096, VIRTQ_DESC_F_WRITE, 0]],
    'ring descriptors 8..10 linked by NEXT',
  );
  t.equal(dv.getUint32(qd.desc + 11 * 16 + 8, true), 0, 'the slot\'s fourth descriptor untouched');
});

t.test('the largest shape: a full indirect table, nothing written past it', async (t) => {
  const qq = lb.setup(4, { size: 8, indirect: true, slots: 3, slotBytes: 16384 });
  const segs: Seg[] = Array.from({ length: L.DRV_SHAPE_MAX_SEGS }, (_, k) => ({ off: 16 * k, len: 8, write: k >= 250 }));
  lb.writeShape(1, segs);
  const next = qq.tableWin + 2 * L.DRV_TABLE_STRIDE;
  u8.fill(0xee, next, next + 64);
  u8.fill(0xee, qq.tableWin + L.DRV_TABLE_STRIDE + 16 * L.DRV_SHAPE_MAX_SEGS, next);
  const head = vq.drvChain(qq.q, 1, 1);
  t.equal(head, 1);
  t.ok(16 * L.DRV_SHAPE_MAX_SEGS <= L.DRV_TABLE_STRIDE, 'a table of DRV_SHAPE_MAX_SEGS fits its stride');
  t.ok(u8.subarray(qq.tableWin + L.DRV_TABLE_STRIDE + 16 * L.DRV_SHAPE_MAX_SEGS, next + 64).every((b) => b === 0xee), 'bytes after the table untouched');
  vq.drvAdd(qq.q, head);
  vq.drvKick(qq.q);
  t.equal(vq.queuePop(qq.q), 1);
  t.equal(vq.chainParse(qq.q, 1, W), 0);
  const got = lb.parsed();
  const want = lb.expected(qq, 1, segs);
  t.equal(got.r.length, 250, '250 readable segments (gaps between them)');
  t.equal(got.w.length, 250);
  t.same(got.r, want.r);
  t.same(got.w, want.w);
});

t.test('refusals: drvSetup and drvChain', async (t) => {
  const args = (size: number, q = 5) => [q, size, WIN, WIN + 4096, WIN + 8192, 0, 1, 4096, GPA, WIN, GPA, WIN, 4] as const;
  for (const size of [0, 3, 100, 65536]) t.equal(vq.drvSetup(...args(size)), VqError.BAD_SIZE, `size ${size}`);
  t.equal(vq.drvSetup(...args(16, L.DRV_MAX_QUEUES)), VqError.BAD_SIZE, 'queue index');
  t.equal(vq.drvSetup(...args(32768)), 0, 'size 32768');
  const qi = lb.setup(5, { size: 8, indirect: true, slots: 2 });
  lb.writeShape(2, [{ off: 0, len: 16, write: false }]);
  lb.writeShape(3, []);
  dv.setUint32(L.DRV_SHAPES + 4 * L.DRV_SHAPE_STRIDE, L.DRV_SHAPE_MAX_SEGS + 1, true);
  t.equal(vq.drvChain(qi.q, 0, 3), VqError.BAD_SIZE, 'a shape of no buffers');
  t.equal(vq.drvChain(qi.q, 0, 4), VqError.BAD_SIZE, 'a shape of too many');
  t.equal(vq.drvChain(qi.q, 0, L.DRV_MAX_SHAPES), VqError.BAD_SIZE, 'shape id');
  t.equal(vq.drvChain(L.DRV_MAX_QUEUES, 0, 2), VqError.BAD_SIZE, 'queue index');
  t.equal(vq.drvChain(qi.q, 8, 2), VqError.BAD_HEAD, 'indirect: slot ≥ queue size');
  t.equal(vq.drvChain(qi.q, 7, 2), 7, 'indirect: the last slot');
  const qd = lb.setup(6, { size: 8, indirect: false, slots: 2, slotDescs: 4 });
  lb.writeShape(5, Array.from({ length: 5 }, (_, k) => ({ off: 32 * k, len: 16, write: false })));
  t.equal(vq.drvChain(qd.q, 0, 5), VqError.BAD_HEAD, 'direct: more buffers than slotDescs');
  t.equal(vq.drvChain(qd.q, 2, 2), VqError.BAD_HEAD, 'direct: slot past the ring');
  t.equal(vq.drvChain(qd.q, 1, 2), 4, 'direct: the last slot');
  t.equal(vq.drvKick(L.DRV_MAX_QUEUES), 0);
  t.equal(vq.drvReap(L.DRV_MAX_QUEUES), 0);
  t.equal(vq.drvArm(L.DRV_MAX_QUEUES), 0);
});

t.test('drvReap: at most DRV_REAP_MAX at a time, the rest next call', async (t) => {
  const qq = lb.setup(7, { size: 512, slots: 1, start: 65500 });
  for (let i = 0; i < 300; i++) vq.queuePush(qq.q, i, 1000 + i);
  t.equal(vq.drvReap(qq.q), L.DRV_REAP_MAX);
  const first = lb.reaped(qq.q, L.DRV_REAP_MAX);
  t.same(first[0], [0, 1000]);
  t.same(first[255], [255, 1255]);
  t.equal(vq.drvReap(qq.q), 300 - L.DRV_REAP_MAX);
  t.same(lb.reaped(qq.q, 44).at(-1), [299, 1299], 'across the 16-bit wrap');
  t.equal(vq.drvReap(qq.q), 0);
});

/** (u16)(event - old) < (u16)(nu - old): the event index lies in [old, nu), so the update passed it. */
const passes = (event: number, nu: number, old: number): boolean => ((event - old) & 0xffff) < ((nu - old) & 0xffff);

t.test('EVENT_IDX kicks: drvKick says 1 exactly when avail.idx passes avail_event', async (t) => {
  for (const start of [0, 65530]) {
    const qq = lb.setup(8, { size: 8, eventIdx: true, start });
    const s = start;
    lb.writeShape(6, [{ off: 0, len: 64, write: false }, { off: 2048, len: 16, write: true }]);
    const add = (): void => vq.drvAdd(qq.q, vq.drvChain(qq.q, 0, 6));
    const label = `start ${start}`;
    t.equal(vq.queueEnableNotify(qq.q), 0, `${label}: device idle`);
    t.equal(lb.availEvent(qq), s, 'avail_event published = last_avail');
    t.equal(vq.drvKick(qq.q), 0, 'nothing added: no kick');
    add();
    t.equal(vq.drvKick(qq.q), 1, 'the first request passes avail_event');
    t.equal(lb.availIdx(qq), (s + 1) & 0xffff, 'avail.idx published');
    add();
    t.equal(vq.drvKick(qq.q), 0, 'the device has not asked again');
    t.equal(vq.queuePop(qq.q), 0);
    t.equal(vq.queuePop(qq.q), 0);
    add();
    t.equal(vq.drvKick(qq.q), 0, 'the device popped but did not re-arm');
    t.equal(vq.queuePop(qq.q), 0);
    t.equal(vq.queueEnableNotify(qq.q), 0, 'device re-arms: nothing pending');
    t.equal(lb.availEvent(qq), (s + 3) & 0xffff);
    add();
    add();
    t.equal(vq.drvKick(qq.q), 1, 'two at once pass it');
    t.equal(vq.queueEnableNotify(qq.q), 1, 'device re-arms with work pending: 1');
    // the device asks to be kicked only after two more requests
    lb.setAvailEvent(qq, s + 7);
    vq.queuePop(qq.q);
    vq.queuePop(qq.q);
    add();
    t.equal(vq.drvKick(qq.q), 0, 'avail.idx s+6: not there yet');
    add();
    t.equal(vq.drvKick(qq.q), 0, 'avail.idx s+7: equal is not past');
    add();
    t.equal(vq.drvKick(qq.q), 1, 'avail.idx s+8 passes s+7');
  }
  // every avail_event around old, every batch of 1..4, near the wrap: the spec's formula
  const qq = lb.setup(9, { size: 8, eventIdx: true, start: 65533 });
  let bad = '';
  let cases = 0;
  let old = 65533;
  for (let batch = 1; batch <= 4; batch++) {
    for (let d = -3; d <= 6; d++) {
      lb.setAvailEvent(qq, old + d);
      for (let i = 0; i < batch; i++) vq.drvAdd(qq.q, 0);
      const nu = (old + batch) & 0xffff;
      const want = passes((old + d) & 0xffff, nu, old) ? 1 : 0;
      const got = vq.drvKick(qq.q);
      if (got !== want) bad += ` old=${old} batch=${batch} event=old${d >= 0 ? '+' : ''}${d}: ${got};`;
      cases++;
      old = nu;
    }
  }
  t.equal(bad, '', `${cases} kicks against the formula, across 65535 → 0`);
});

t.test('without EVENT_IDX: drvKick honours used.flags NO_NOTIFY and ignores avail_event', async (t) => {
  const qq = lb.setup(10, { size: 8, eventIdx: false });
  lb.setAvailEvent(qq, 100);
  vq.drvAdd(qq.q, 0);
  t.equal(vq.drvKick(qq.q), 1, 'no flags: kick');
  dv.setUint16(qq.used, VIRTQ_USED_F_NO_NOTIFY, true);
  vq.drvAdd(qq.q, 0);
  t.equal(vq.drvKick(qq.q), 0, 'NO_NOTIFY: no kick');
  t.equal(lb.availIdx(qq), 2, 'but avail.idx is published');
  dv.setUint16(qq.used, 0, true);
  t.equal(vq.drvKick(qq.q), 0, 'nothing new: no kick');
  vq.drvAdd(qq.q, 0);
  t.equal(vq.drvKick(qq.q), 1, 'flag cleared: kick again');
  t.equal(vq.queueEnableNotify(qq.q), 1, 'the device sees 3 pending');
  t.equal(lb.availEvent(qq), 100, 'the device writes no avail_event without EVENT_IDX');
});

t.test('interrupts: drvArm writes used_event, queuePush notifies by it; drvArm says 1 when an element is pending', async (t) => {
  for (const start of [0, 65534]) {
    const qq = lb.setup(11, { size: 8, eventIdx: true, start });
    const s = start;
    lb.setUsedEvent(qq, s + 1000);
    t.equal(vq.drvArm(qq.q), 0, `start ${start}: nothing used`);
    t.equal(lb.usedEvent(qq), s, 'used_event = the next used index the driver waits for');
    t.equal(vq.queuePush(qq.q, 0, 10), 1, 'the first element: interrupt');
    t.equal(vq.queuePush(qq.q, 1, 11), 0, 'the second: the driver has not re-armed');
    t.equal(vq.drvArm(qq.q), 1, 'arming with elements not reaped: 1 (reap first)');
    t.equal(lb.usedEvent(qq), s, 'used_event still the first unreaped');
    t.equal(vq.drvReap(qq.q), 2);
    t.same(lb.reaped(qq.q, 2), [[0, 10], [1, 11]]);
    t.equal(vq.drvArm(qq.q), 0, 'all reaped');
    t.equal(lb.usedEvent(qq), (s + 2) & 0xffff);
    t.equal(vq.queuePush(qq.q, 2, 12), 1, 'interrupt again');
    t.equal(lb.usedEvent(qq), (s + 2) & 0xffff);
  }
  // every used_event near the push index: an interrupt exactly when it equals the old used.idx
  const qq = lb.setup(12, { size: 8, eventIdx: true, start: 65533 });
  let bad = '';
  let old = 65533;
  for (let i = 0; i < 12; i++) {
    for (const d of [-2, -1, 0, 1, 2]) {
      lb.setUsedEvent(qq, old + d);
      const got = vq.queuePush(qq.q, 0, 1);
      const want = passes((old + d) & 0xffff, (old + 1) & 0xffff, old) ? 1 : 0;
      if (got !== want) bad += ` old=${old} event=old${d >= 0 ? '+' : ''}${d}: ${got};`;
      old = (old + 1) & 0xffff;
    }
  }
  t.equal(bad, '', 'queuePush against the formula across the wrap');
  // without EVENT_IDX the driver writes no used_event and always wants interrupts
  const qn = lb.setup(13, { size: 8, eventIdx: false });
  lb.setUsedEvent(qn, 0xabcd);
  t.equal(vq.drvArm(qn.q), 0);
  t.equal(lb.usedEvent(qn), 0xabcd, 'used_event untouched');
  t.equal(vq.queuePush(qn.q, 0, 1), 1);
  t.equal(vq.queuePush(qn.q, 0, 1), 1);
  t.equal(vq.drvArm(qn.q), 1, 'pending elements');
});

t.test('batched interrupts: queuePushQuiet publishes, queueNotify decides once for everything since the last decision', async (t) => {
  for (const start of [0, 65534]) {
    const qq = lb.setup(15, { size: 8, eventIdx: true, start });
    t.equal(vq.drvArm(qq.q), 0, `start ${start}: armed`);
    t.equal(vq.queueNotify(qq.q), 0, 'nothing published: no interrupt');
    for (let i = 0; i < 3; i++) t.equal(vq.queuePushQuiet(qq.q, i, 10 + i), 0);
    t.equal(lb.usedIdx(qq), (start + 3) & 0xffff, 'the elements are published at once (a polling driver sees them)');
    t.equal(vq.queueNotify(qq.q), 1, 'one interrupt for the three: used_event lies in the batch');
    t.equal(vq.queueNotify(qq.q), 0, 'and no second one for the same batch');
    t.equal(vq.drvReap(qq.q), 3);
    t.equal(vq.drvArm(qq.q), 0);
    // used_event past the next batch: the driver asked to hear later
    lb.setUsedEvent(qq, start + 5);
    t.equal(vq.queuePushQuiet(qq.q, 3, 1), 0);
    t.equal(vq.queueNotify(qq.q), 0, 'used_event not reached');
    t.equal(vq.queuePushQuiet(qq.q, 4, 1), 0);
    t.equal(vq.queuePushQuiet(qq.q, 5, 1), 0);
    t.equal(vq.queueNotify(qq.q), 1, 'reached inside the batch: one interrupt');
  }
  const qn = lb.setup(13, { size: 8, eventIdx: false });
  t.equal(vq.queueNotify(qn.q), 0, 'without EVENT_IDX: nothing published, nothing to notify');
  t.equal(vq.queuePushQuiet(qn.q, 0, 1), 0);
  t.equal(vq.queuePushQuiet(qn.q, 1, 1), 0);
  t.equal(vq.queueNotify(qn.q), 1, 'one interrupt for the batch');
  t.equal(vq.queueNotify(qn.q), 0);
});

t.test('a loop across the 16-bit wrap: chain, kick, pop, parse, push, reap, arm', async (t) => {
  for (const eventIdx of [true, false]) {
    for (const indirect of [true, false]) {
      const qq = lb.setup(14, { size: 8, eventIdx, indirect, slots: 2, slotDescs: 4, start: 65520 });
      const segs: Seg[] = [{ off: 0, len: 48, write: false }, { off: 2048, len: 16, write: true }, { off: 4096, len: 512, write: true }];
      lb.writeShape(7, segs);
      let bad = '';
      vq.queueEnableNotify(qq.q);
      vq.drvArm(qq.q);
      for (let i = 0; i < 40; i++) {
        const slot = i % 2;
        vq.drvAdd(qq.q, vq.drvChain(qq.q, slot, 7));
        if (i % 3 !== 0) vq.drvAdd(qq.q, vq.drvChain(qq.q, 1 - slot, 7));
        const n = i % 3 !== 0 ? 2 : 1;
        if (vq.drvKick(qq.q) !== 1) bad += ` ${i}: no kick;`;
        const answers: Array<[number, number]> = [];
        for (let k = 0; k < n; k++) {
          const head = vq.queuePop(qq.q);
          const s = indirect ? head : head / qq.slotDescs;
          if (vq.chainParse(qq.q, head, W) !== 0 || JSON.stringify(lb.parsed().w.map((b) => b.len)) !== JSON.stringify(lb.expected(qq, s, segs).w.map((b) => b.len))) bad += ` ${i}: parse;`;
          answers.push([head, 16 + i]);
        }
        if (vq.queueEnableNotify(qq.q) !== 0) bad += ` ${i}: device sees more;`;
        answers.forEach(([h, len], k) => {
          const notify = vq.queuePush(qq.q, h, len);
          // with EVENT_IDX the driver armed before: the first push interrupts, the second does not
          if (notify !== (eventIdx && k > 0 ? 0 : 1)) bad += ` ${i}: push ${k} notify ${notify};`;
        });
        const got = vq.drvReap(qq.q);
        if (got !== n || JSON.stringify(lb.reaped(qq.q, got)) !== JSON.stringify(answers)) bad += ` ${i}: reaped ${got};`;
        if (vq.drvArm(qq.q) !== 0) bad += ` ${i}: arm;`;
      }
      const total = 40 + 26;
      const end = (65520 + total) & 0xffff;
      t.equal(bad, '', `EVENT_IDX ${eventIdx}, ${indirect ? 'indirect' : 'direct'}: 40 rounds, ${total} requests`);
      t.equal(lb.availIdx(qq), end, `avail.idx wrapped to ${end}`);
      t.equal(lb.usedIdx(qq), end, 'used.idx too');
      t.equal(vq.queueGetBase(qq.q), end, 'the device\'s last_avail too');
      if (eventIdx) t.equal(lb.usedEvent(qq), end, 'used_event follows');
    }
  }
});

t.test('drvReplyCheck: every code, errno passed through', async (t) => {
  const at = lb.spare;
  const hdr = (len: number, error: number, lo: number, hi: number): number => {
    dv.setUint32(at, len, true);
    dv.setInt32(at + 4, error, true);
    dv.setUint32(at + 8, lo, true);
    dv.setUint32(at + 12, hi, true);
    return at;
  };
  const LO = 0xdeadbeef;
  const HI = 3;
  const cases: Array<[string, [number, number, number, number], number, number, number]> = [
    // [what, header {len, error, unique lo, hi}, used length, cap, result]
    ['success, header only', [16, 0, LO, HI], 16, 16, 0],
    ['success with payload', [16 + 80, 0, LO, HI], 96, 4096, 0],
    ['payload filling the buffers exactly', [4096, 0, LO, HI], 4096, 4096, 0],
    ['ENOENT passed through', [16, -2, LO, HI], 16, 160, -2],
    ['the lowest errno', [16, -4095, LO, HI], 16, 16, -4095],
    ['used length 15', [16, 0, LO, HI], 15, 16, 1],
    ['used length 0', [0, 0, 0, 0], 0, 16, 1],
    ['header len ≠ used length', [32, 0, LO, HI], 40, 4096, 2],
    ['header len > used length', [40, 0, LO, HI], 32, 4096, 2],
    ['longer than the buffers', [100, 0, LO, HI], 100, 64, 3],
    ['one byte longer than the buffers', [65, 0, LO, HI], 65, 64, 3],
    ['wrong unique (low half)', [16, 0, LO ^ 1, HI], 16, 16, 4],
    ['wrong unique (high half)', [16, 0, LO, HI + 1], 16, 16, 4],
    ['positive error', [16, 1, LO, HI], 16, 16, 5],
    ['error below -4095', [16, -4096, LO, HI], 16, 16, 5],
    ['error INT_MIN', [16, -0x80000000, LO, HI], 16, 16, 5],
    ['an error with a payload', [24, -2, LO, HI], 24, 64, 6],
    ['len checked before unique', [32, 0, 0, 0], 40, 4096, 2],
  ];
  for (const [what, [len, error, lo, hi], usedLen, cap, want] of cases) {
    t.equal(vq.drvReplyCheck(hdr(len, error, lo, hi), usedLen, cap, LO, HI), want, what);
  }
  hdr(16, 0, 0xffffffff, 0x80000000);
  t.equal(vq.drvReplyCheck(at, 16, 16, 0xffffffff, 0x80000000), 0, 'unique halves with the top bit set');
  t.equal(vq.drvReplyCheck(at, 16, 16, 0xfffffffe, 0x80000000), 4);
});

t.test('data pattern: round trip, a flipped byte found where it is, seed and offset tell apart, tails', async (t) => {
  const A = lb.spare + 0x10000;
  const Bw = lb.spare + 0x200000;
  const fill = (at: number, len: number, off: number, seed: number): Uint8Array => {
    vq.patternFill(at, len, off, seed);
    return u8.slice(at, at + len);
  };
  let bad = '';
  for (const off of [0, 8, 4096, 2 ** 32 + 8, 2 ** 40 + 4096]) {
    for (const len of [0, 1, 7, 8, 9, 13, 15, 16, 17, 4095, 4096, 4099]) {
      for (const seed of [0, 1, 0x7fffffff, 0xffffffff]) {
        u8.fill(0x5a, A - 8, A + len + 8);
        vq.patternFill(A, len, off, seed);
        if (vq.patternCheck(A, len, off, seed) !== -1) bad += ` off=${off} len=${len} seed=${seed}: round trip;`;
        if (!u8.subarray(A - 8, A).every((b) => b === 0x5a) || !u8.subarray(A + len, A + len + 8).every((b) => b === 0x5a)) bad += ` off=${off} len=${len}: wrote outside;`;
      }
    }
  }
  t.equal(bad, '', 'fill then check: -1, nothing written outside [dst, dst+len)');

  // a flipped byte anywhere (every byte of words and tail, and some of a large block)
  bad = '';
  for (const len of [37, 64]) {
    for (let i = 0; i < len; i++) {
      vq.patternFill(A, len, 8192, 42);
      u8[A + i]! ^= 1 << (i % 8);
      const got = vq.patternCheck(A, len, 8192, 42);
      if (got !== i) bad += ` len=${len}: flipped ${i}, found ${got};`;
    }
  }
  vq.patternFill(A, 1 << 20, 0, 9);
  for (const i of [0, 7, 8, 4095, 4096, 500_001, (1 << 20) - 1]) {
    u8[A + i]! ^= 0x80;
    const got = vq.patternCheck(A, 1 << 20, 0, 9);
    if (got !== i) bad += ` 1 MiB: flipped ${i}, found ${got};`;
    u8[A + i]! ^= 0x80;
  }
  t.equal(bad, '', 'the first wrong byte is reported at its index');
  t.equal(vq.patternCheck(A, 1 << 20, 0, 9), -1, 'and restored passes');

  /** index of the first byte where two arrays differ, or -1 */
  const firstDiff = (x: Uint8Array, y: Uint8Array): number => x.findIndex((b, i) => b !== y[i]);
  const base = fill(A, 4096, 65536, 5);
  for (const [what, off, seed] of [['another seed', 65536, 6], ['seed 0 against 5', 65536, 0], ['seed 5 + 2^16', 65536, 0x10005], ['seed 5 + 2^31', 65536, 0x80000005], ['offset + 8', 65544, 5], ['offset - 4096', 61440, 5], ['offset + 2^32', 65536 + 2 ** 32, 5]] as const) {
    const other = fill(Bw, 4096, off, seed);
    const want = firstDiff(base, other);
    t.ok(want >= 0 && want < 8, `${what}: the data differ in the first word`);
    t.equal(vq.patternCheck(A, 4096, off, seed), want, `${what}: detected at the first differing byte`);
  }
  // the pattern is a function of the file offset: any 8-aligned piece checks against its own offset
  t.equal(vq.patternCheck(A + 1024, 2048, 65536 + 1024, 5), -1, 'a piece of a block, at its offset');
  t.equal(vq.patternCheck(A + 1024, 2048, 65536, 5), firstDiff(base.subarray(1024, 1032), base.subarray(0, 8)), 'the same piece at the block\'s offset fails');
  t.same(fill(Bw, 13, 65536, 5), base.subarray(0, 13), 'a 13-byte tail is the start of the full words');
  t.same(fill(Bw, 4096 - 512, 65536 + 512, 5), base.subarray(512), 'filled from a later offset: the same bytes');
  // no two words of a MiB alike: a block read from the wrong place never passes
  vq.patternFill(A, 1 << 20, 0, 77);
  const words = new BigUint64Array(memory.buffer, A, (1 << 20) / 8);
  t.equal(new Set(words).size, words.length, 'every 8-byte word of 1 MiB distinct');
  t.equal(vq.patternCheck(A, 16, 0, 77), -1);
  t.equal(vq.patternCheck(A, 0, 0, 1), -1, 'an empty range is always right');
});

function checkQueueStress(t: Test, r: QueueStressResult): void {
  t.same(r.errors, [], 'no worker saw the ring broken or failed');
  t.equal(r.bad, 0, 'every used element names an outstanding head with its length');
  t.equal(r.reaped, r.n, 'every chain came back');
  t.equal(r.served[0]! + r.served[1]!, r.n, 'served once each');
  t.ok(r.served[0]! > 0 && r.served[1]! > 0, `both workers served (${r.served.join(' + ')})`);
  t.equal(r.lock, 0, 'queue lock free');
}

t.test('two workers serving one ring while the driver drives it: pop, push, notify under contention', { timeout: 90000 }, async (t) => {
  checkQueueStress(t, await queueStress(100_000));
});

t.test('... and so in the baseline wasm compiler (node --liftoff-only)', { timeout: 120000 }, async (t) => {
  // Liftoff is the tier every wasm function starts in (the daemon runs it until a function is hot);
  // under --liftoff-only it never leaves it. (It has not caught the lock hazard of assembly/queue.ts
  // queueLocked with the old code: the queue's critical sections rarely make a waiter sleep.)
  const script = fileURLToPath(new URL('../helpers/queue-stress.js', import.meta.url));
  const out = execFileSync(process.execPath, ['--liftoff-only', script, '100000'], { encoding: 'utf8', timeout: 110_000 });
  checkQueueStress(t, JSON.parse(out) as QueueStressResult);
});
