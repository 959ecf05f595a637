// Tests of the harness pieces the guest-memory tests rest on: the QMP client (against a scripted fake
// QEMU), console waits, the guest memory report parser, the hot-plug command line, and that aborting a
// run kills the guest at once. The one guest boot uses the reference daemon.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import {
  ConsoleWatch,
  guestSkipReason,
  parseMemoryReport,
  QmpClient,
  QmpCommandError,
  qemuArgs,
  ramAbove4GiB,
  runGuest,
  startDaemon,
} from '../../harness/index.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-harness-mem-'));
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));

/** A fake QMP server: greeting, then `answer` decides each reply from the parsed command. */
async function fakeQmp(
  answer: (cmd: { execute: string; id?: unknown }, send: (o: unknown) => void) => void,
): Promise<{ path: string; close(): void }> {
  const p = path.join(root, `qmp-${Math.random().toString(36).slice(2)}.sock`);
  const conns: net.Socket[] = [];
  const server = net.createServer((c) => {
    conns.push(c);
    const send = (o: unknown) => c.write(`${JSON.stringify(o)}\r\n`);
    send({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 } }, capabilities: [] } });
    let buf = '';
    c.on('data', (d) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        answer(JSON.parse(line), send);
      }
    });
  });
  await new Promise<void>((res) => server.listen(p, res));
  return {
    path: p,
    close: () => {
      for (const c of conns) c.destroy();
      server.close();
    },
  };
}

t.test('QMP client: capabilities, replies by id, errors, events, timeouts, a closed connection', async (tt) => {
  const seen: string[] = [];
  const fake = await fakeQmp((cmd, send) => {
    seen.push(cmd.execute);
    if (cmd.execute === 'qmp_capabilities') send({ return: {}, id: cmd.id });
    else if (cmd.execute === 'slow') setTimeout(() => send({ return: 'late', id: cmd.id }), 200);
    else if (cmd.execute === 'fast') {
      // an event between the command and its reply
      send({ event: 'DEVICE_DELETED', data: { device: 'dimm0' }, timestamp: { seconds: 1, microseconds: 0 } });
      send({ return: { ok: 1 }, id: cmd.id });
    } else if (cmd.execute === 'silent') {
      /* never answered */
    } else send({ error: { class: 'CommandNotFound', desc: `The command ${cmd.execute} has not been found` }, id: cmd.id });
  });
  const q = await QmpClient.connect(fake.path, 5000);
  tt.same(seen, ['qmp_capabilities'], 'qmp_capabilities is sent first');
  // replies are matched by id, not by order
  const [slow, fast] = await Promise.all([q.execute('slow'), q.execute('fast')]);
  tt.equal(slow, 'late');
  tt.same(fast, { ok: 1 });
  const err = await q.execute('bogus').catch((e: unknown) => e);
  tt.ok(err instanceof QmpCommandError && err.errorClass === 'CommandNotFound', 'an error reply rejects with its class', { err });
  const ev = await q.waitForEvent('DEVICE_DELETED', 1000, (e) => e.data?.device === 'dimm0');
  tt.equal(ev.data?.device, 'dimm0', 'an event that came before the wait is found');
  await tt.rejects(q.waitForEvent('DEVICE_DELETED', 300, undefined, q.events.length), /timed out/, 'no new event: timeout');
  await tt.rejects(q.execute('silent', undefined, 300), /no reply in 300 ms/, 'no reply: timeout');
  const pending = q.execute('silent', undefined, 5000);
  fake.close();
  await tt.rejects(pending, /^QMP silent: (QMP connection closed|read ECONNRESET)/, 'a closed connection rejects what is pending');
  q.close();
});

t.test('QMP client: connect gives up when nothing listens', async (tt) => {
  await tt.rejects(QmpClient.connect(path.join(root, 'nobody.sock'), 500), /cannot connect/);
});

t.test('console watch: waits for a line, finds one already seen, fails when the guest ended', async (tt) => {
  const w = new ConsoleWatch();
  w.feed('@@BOOTED@@');
  tt.equal(await w.waitFor(/BOOTED/, 100), '@@BOOTED@@', 'a line before the wait');
  const later = w.waitFor(/@@WAITFOR plug@@/, 1000);
  setTimeout(() => w.feed('x @@WAITFOR plug@@'), 20);
  tt.equal(await later, 'x @@WAITFOR plug@@', 'a line after the wait');
  await tt.rejects(w.waitFor(/never/, 50), /no \/never\/ on the console in 50 ms/, 'timeout');
  const open = w.waitFor(/never/, 5000);
  w.end();
  await tt.rejects(open, /ended without printing/, 'the end of the run fails open waits');
});

t.test('guest memory report parser', async (tt) => {
  const out = [
    '@@BEGIN mem_x@@',
    'MemTotal:       16375000 kB',
    'MemFree:        16000000 kB',
    'ram 00001000-0009fbff : System RAM',
    'ram 00100000-7ffdffff : System RAM',
    'ram 100000000-47fffffff : System RAM',
    'block_size 8000000',
    'blocks_online 128',
    'zone DMA 3998 3840 3776',
    'zone DMA32 520160 482617 472598',
    'zone Normal 3670016 3600000 3500000',
    '@@END mem_x@@',
  ].join('\n');
  const v = parseMemoryReport(out, 'x');
  tt.equal(v?.memTotalKiB, 16375000);
  tt.equal(v?.ram.length, 3);
  tt.equal(v && ramAbove4GiB(v), 14n << 30n, 'RAM above 4 GiB');
  tt.equal(v?.blockSize, 128n << 20n);
  tt.equal(v?.blocksOnline, 128);
  tt.same(v?.zones.get('Normal'), { present: 3670016, managed: 3600000, free: 3500000 });
  tt.equal(parseMemoryReport(out, 'y'), null, 'a missing block');
});

t.test('the QEMU command line for hot-plug: slots and maxmem, QMP socket, kernel arguments', async (tt) => {
  const k = { kver: '6.1.0-1-amd64', vmlinuz: '/boot/vmlinuz-6.1.0-1-amd64', modulesDir: '/lib/modules/6.1.0-1-amd64' };
  const a = qemuArgs(
    { socketPath: '/s', script: '', memMiB: 2048, memSlots: 4, maxMemMiB: 16384, qmpSocket: '/q.sock', kernelArgs: ['memhp_default_state=online'] },
    k,
    '/i',
    60,
  );
  tt.equal(a[a.indexOf('-m') + 1], '2048M,slots=4,maxmem=16384M');
  tt.ok(a.includes('memory-backend-memfd,share=on,id=mem,size=2048M'), 'the boot RAM backend keeps the -m size');
  tt.equal(a[a.indexOf('-qmp') + 1], 'unix:/q.sock,server=on,wait=off');
  tt.equal(a[a.indexOf('-append') + 1], 'console=ttyS0 quiet panic=-1 memhp_default_state=online');
  const plain = qemuArgs({ socketPath: '/s', script: '', memMiB: 65536 }, k, '/i', 60);
  tt.equal(plain[plain.indexOf('-m') + 1], '65536M', 'no slots without both options');
  tt.notOk(plain.includes('-qmp'));
});

const skip = guestSkipReason('reference');
t.test('an aborted guest run is killed at once and says why', { skip: skip ?? false }, async (tt) => {
  const share = path.join(root, 'share');
  fs.mkdirSync(share);
  const sock = path.join(root, 'ref.sock');
  const d = await startDaemon('reference', { sharedDir: share, socketPath: sock });
  tt.teardown(() => d.stop(2000));
  const ac = new AbortController();
  const r = await runGuest({
    socketPath: sock,
    timeoutSec: 120,
    script: 'echo "@@HANGING@@"; sleep 100000\n',
    signal: ac.signal,
    onLine: (l) => {
      if (l.includes('@@HANGING@@')) ac.abort('the test saw enough');
    },
  });
  tt.equal(r.aborted, 'the test saw enough', 'the reason is reported');
  tt.notOk(r.timedOut, 'not reported as a timeout');
  tt.equal(r.rc, null);
  tt.ok(r.durationMs < 60_000, `QEMU gone long before its timeout (${r.durationMs} ms)`);
});
