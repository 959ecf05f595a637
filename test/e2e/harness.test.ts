// Tests of the e2e harness itself: the cpio writer, marker parsing, and that the guest runner reports
// failures (a wrong mount tag) and kills a hung guest at its timeout. The guest boots use the reference
// daemon, so they do not depend on our daemon working.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  CpuSampler,
  GUEST_PRELUDE,
  LineSplitter,
  buildBaseInitramfs,
  cpioNewc,
  daemonCpuSeconds,
  earlyGuestPanic,
  exitCode,
  guestSkipReason,
  parseBlock,
  parseSteps,
  parseVals,
  qemuArgs,
  runGuest,
  startDaemon,
} from '../../harness/index.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-harness-'));
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));

t.test('cpioNewc writes an archive GNU cpio can list', async (tt) => {
  const buf = cpioNewc([
    { name: 'd', mode: 0o040755 },
    { name: 'd/f', mode: 0o100644, data: Buffer.from('hello') },
    { name: 'd/l', mode: 0o120777, data: Buffer.from('f') },
    { name: 'dev-console', mode: 0o020600, rdevMajor: 5, rdevMinor: 1 },
  ]);
  tt.equal(buf.length % 512, 0, 'padded to 512 bytes');
  tt.equal(buf.subarray(0, 6).toString(), '070701', 'newc magic');
  const r = spawnSync('cpio', ['-itv', '--quiet'], { input: buf, encoding: 'utf8' });
  if (r.error || r.status === null) {
    tt.pass('cpio listing', { skip: `cpio not runnable: ${r.error?.message}` });
    return;
  }
  tt.equal(r.status, 0, 'cpio accepts it', { stderr: r.stderr });
  const lines = r.stdout.trim().split('\n');
  tt.equal(lines.length, 4, 'four entries');
  tt.match(lines[0], /^drwxr-xr-x .* d$/);
  tt.match(lines[1], /^-rw-r--r-- .* 5 .* d\/f$/);
  tt.match(lines[2], /^lrwxrwxrwx .* d\/l -> f$/);
  tt.match(lines[3], /^crw------- .* 5,\s*1 .* dev-console$/);
});

t.test('marker parsing', async (tt) => {
  const out = [
    'noise @@STEP a ok@@',
    '@@STEP b FAIL rc=3@@',
    '@@VAL k some value@@',
    '@@BEGIN blk@@',
    'x',
    'y',
    '@@END blk@@',
  ].join('\n');
  const steps = parseSteps(out);
  tt.same(steps.get('a'), { ok: true, detail: '' });
  tt.same(steps.get('b'), { ok: false, detail: 'rc=3' });
  tt.equal(parseVals(out).get('k'), 'some value');
  tt.same(parseBlock(out, 'blk'), ['x', 'y']);
  tt.equal(parseBlock(out, 'none'), null);
});

t.test('console lines: CRLF stripped, split across chunks, a throwing callback does not stop the stream', async (tt) => {
  const lines: string[] = [];
  const sp = new LineSplitter((l) => {
    lines.push(l);
    if (l === 'boom') throw new Error('callback failure');
  });
  sp.push('one\r\ntw');
  sp.push('o\r\nboom\r\nthr');
  sp.push('ee');
  tt.same(lines, ['one', 'two', 'boom'], 'complete lines only');
  sp.flush();
  tt.same(lines, ['one', 'two', 'boom', 'three'], 'flush delivers the last partial line');
  tt.equal(exitCode('x\n@@EXIT rc=3@@\n'), 3);
  tt.equal(exitCode('no marker'), null);
});

t.test('the QEMU command line: timeout wrapper, shared RAM of the same size, device properties', async (tt) => {
  const k = { kver: '6.1.0-1-amd64', vmlinuz: '/boot/vmlinuz-6.1.0-1-amd64', modulesDir: '/lib/modules/6.1.0-1-amd64' };
  const a = qemuArgs({ socketPath: '/s.sock', script: '', memMiB: 512, tag: 'tg', deviceProps: ['num-request-queues=4'] }, k, '/i.cpio', 60);
  tt.same(a.slice(0, 3), ['-k', '10', '60'], 'timeout -k 10 <secs>');
  tt.ok(a.includes('memory-backend-memfd,share=on,id=mem,size=512M'), 'memfd RAM, shared, sized like -m');
  tt.equal(a[a.indexOf('-m') + 1], '512M');
  tt.ok(a.includes('vhost-user-fs-pci,queue-size=1024,chardev=char0,tag=tg,num-request-queues=4'));
  tt.ok(a.includes('-no-reboot'), 'a guest reboot ends QEMU by default');
  tt.notOk(qemuArgs({ socketPath: '/s', script: '', allowReboot: true }, k, '/i', 60).includes('-no-reboot'));
});

t.test('the /proc CPU sampler measures a busy process', async (tt) => {
  // a process that spins for 3 s, sampled for 0.7 s of it (10 ms ticks; loose bounds: the host is shared)
  const live = spawn(process.execPath, ['-e', 'const e = Date.now() + 3000; while (Date.now() < e);']);
  t.teardown(() => live.kill());
  const cpu = new CpuSampler('ours', live.pid!);
  tt.equal(cpu.end(), null, 'no sample without begin()');
  await new Promise((r) => setTimeout(r, 200));
  cpu.begin();
  await new Promise((r) => setTimeout(r, 700));
  const sample = cpu.end();
  live.kill();
  if (!sample) throw new Error('no sample after begin()');
  tt.ok(sample.daemonPct > 15, `a spinning process shows up: ${sample.daemonPct.toFixed(0)}%`);
  tt.ok(sample.mainPct > 15, 'on its main thread');
  const sec = daemonCpuSeconds(sample);
  tt.ok(sec > 0.1 && sec < 1.5, `CPU seconds over 0.7 s: ${sec}`);
});

t.test('only a guest panic before userspace, outside virtio-fs and FUSE, counts as an emulation flake', async (tt) => {
  const base = { rc: null, durationMs: 1, bootMs: null, qemuExitCode: 0, qemuSignal: null, timedOut: false, stderr: '' };
  const early = '[ 1.47] Oops: int3\n[ 1.47]  ttwu_queue_wakelist+0xa4/0x100\n[ 1.47] Kernel panic - not syncing: Fatal exception';
  tt.ok(earlyGuestPanic({ ...base, output: early }), 'a panic in an initcall before @@BOOTED');
  tt.notOk(earlyGuestPanic({ ...base, output: `${early}\n virtio_fs_probe+0x1f/0x300` }), 'not with virtio-fs in the trace');
  tt.notOk(earlyGuestPanic({ ...base, output: `${early}\n fuse_iget+0x10/0x90` }), 'not with FUSE in the trace');
  tt.notOk(earlyGuestPanic({ ...base, bootMs: 4000, output: early }), 'not once userspace ran (@@BOOTED)');
  tt.notOk(earlyGuestPanic({ ...base, output: '@@BOOTED@@ no panic' }), 'not without a panic');
  tt.notOk(earlyGuestPanic({ ...base, rc: 0, output: early }), 'not when the script reported an exit code');
});

const skip = guestSkipReason('reference');

t.test('guest runs report failures and timeouts', { skip: skip ?? false }, async (tt) => {
  const base = buildBaseInitramfs();
  tt.ok(fs.statSync(base).size > 1 << 20, 'base initramfs built and cached');
  tt.equal(buildBaseInitramfs(), base, 'second call reuses the cached image');

  const share = path.join(root, 'share');
  fs.mkdirSync(share);
  const sock = path.join(root, 'ref.sock');

  await tt.test('a wrong tag makes the guest mount fail', async (t1) => {
    const d = await startDaemon('reference', { sharedDir: share, socketPath: sock });
    const lines: string[] = [];
    const r = await runGuest({
      socketPath: sock,
      tag: 'righttag',
      timeoutSec: 120,
      script: `${GUEST_PRELUDE}step mount mount -t virtiofs wrongtag /mnt\nstep check sh -c "exit 7"\nfinish\n`,
      onLine: (l) => lines.push(l),
    });
    t1.comment(`guest run ${r.durationMs} ms`);
    t1.notOk(r.timedOut, 'not a timeout');
    t1.equal(r.rc, 2, 'exit code is the number of failed steps');
    const steps = parseSteps(r.output);
    t1.equal(steps.get('mount')?.ok, false, 'mount step failed');
    t1.equal(steps.get('check')?.detail, 'rc=7', 'a failing step reports its rc');
    t1.ok(lines.some((l) => l.includes('@@BOOTED')), 'console lines were streamed to the caller');
    t1.ok(r.bootMs !== null && r.bootMs > 0, 'boot time measured');
    await Promise.race([d.exited, new Promise((res) => setTimeout(res, 10000))]);
    await d.stop(2000);
  });

  await tt.test('a hung guest is killed at its timeout', async (t2) => {
    const d = await startDaemon('reference', { sharedDir: share, socketPath: sock });
    const timeoutSec = 15;
    const r = await runGuest({ socketPath: sock, timeoutSec, script: 'echo hanging; sleep 100000\n' });
    t2.ok(r.timedOut, 'reported as timed out');
    t2.equal(r.rc, null, 'no exit marker');
    t2.ok(r.output.includes('hanging'), 'console collected up to the hang');
    t2.ok(r.durationMs < (timeoutSec + 12) * 1000, `QEMU gone within the timeout (+kill grace): ${r.durationMs} ms`);
    await d.stop(2000);
  });
});
