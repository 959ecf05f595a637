import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { AttrOff } from '../../src/abi/fuse.js';
import { ADDON_PATH, C, E, native, STAT_OUT_SIZE, STATFS_OUT_SIZE } from '../../src/native.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const PAGE = 4096;

function openDir(path: string): number {
  return fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
}

/** sun_path holds 108 bytes: tap's testdir paths are too long for sockets. */
function sockDir(t: Test): string {
  const dir = fs.mkdtempSync(join(tmpdir(), 'vfsd-native-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function fdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** Runs CommonJS code in a worker with `addon` (a fresh instance of the .node) and `workerData` in scope. */
function runWorker(code: string, workerData: unknown): Promise<unknown> {
  const src = `const { parentPort, workerData } = require('node:worker_threads');
const addon = require(${JSON.stringify(ADDON_PATH)});
(async () => { ${code} })().then((r) => parentPort.postMessage({ ok: r }), (e) => parentPort.postMessage({ err: String(e) }));`;
  return new Promise((resolve, reject) => {
    const w = new Worker(src, { eval: true, workerData });
    w.once('message', (m: { ok?: unknown; err?: string }) => {
      if (m.err !== undefined) reject(new Error(m.err));
      else resolve(m.ok);
    });
    w.once('error', reject);
  });
}

t.test('constants', async (t) => {
  t.equal(C.O_PATH, 0o10000000);
  t.equal(C.O_CLOEXEC, 0o2000000);
  t.equal(C.RESOLVE_BENEATH, 0x08);
  t.equal(C.RESOLVE_NO_SYMLINKS, 0x04);
  t.equal(C.RESOLVE_NO_MAGICLINKS, 0x02);
  t.equal(C.AT_EMPTY_PATH, 0x1000);
  t.equal(C.AT_REMOVEDIR, 0x200);
  t.equal(C.RENAME_NOREPLACE, 1);
  t.equal(C.RENAME_EXCHANGE, 2);
  t.equal(C.UTIME_NOW, (1 << 30) - 1);
  t.equal(C.UTIME_OMIT, (1 << 30) - 2);
  t.equal(C.S_IFMT, 0o170000);
  t.equal(C.S_IFDIR, 0o040000);
  t.equal(C.SEEK_DATA, 3);
  t.equal(C.FALLOC_FL_PUNCH_HOLE, 2);
  t.equal(E.ENOENT, 2);
  t.equal(E.ENAMETOOLONG, 36);
  t.equal(E.EXDEV, 18);
  t.equal(E.ELOOP, 40);
  t.equal(E.EAGAIN, 11);
  t.equal(typeof native.preadvWin, 'function');
});

t.test('argument type errors throw TypeError, syscall errors return -errno', async (t) => {
  t.throws(() => native.close('3' as unknown as number), TypeError);
  t.throws(() => native.pread(0, new Uint8Array(4), 2, 3, 0), TypeError, 'slice outside the buffer');
  t.throws(() => native.statAt(C.AT_FDCWD, null, 0, new Uint8Array(50)), TypeError, 'short stat buffer');
  t.throws(() => native.mkdirat(C.AT_FDCWD, 'x' as unknown as Uint8Array, 0o755), TypeError, 'names are bytes');
  t.throws(() => native.memoryAddress(new ArrayBuffer(8) as unknown as SharedArrayBuffer), TypeError);
  t.equal(native.close(1 << 29), -E.EBADF);
  t.equal(native.fcntlGetFl(1 << 29), -E.EBADF);
});

t.test('eventfd write/read/EAGAIN', async (t) => {
  const fd = native.eventfd(0);
  t.ok(fd >= 0);
  t.equal(native.eventfdRead(fd), -E.EAGAIN);
  t.equal(native.eventfdWrite(fd, 3), 0);
  t.equal(native.eventfdWrite(fd, 4), 0);
  t.equal(native.eventfdRead(fd), 7);
  t.equal(native.eventfdRead(fd), -E.EAGAIN);
  t.ok(native.fcntlGetFl(fd) & C.O_NONBLOCK, 'nonblocking');
  const fdinfo = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const flags = parseInt(/flags:\s*(\d+)/.exec(fdinfo)![1]!, 8);
  t.ok(flags & C.O_CLOEXEC, 'close-on-exec');
  const init = native.eventfd(5);
  t.equal(native.eventfdRead(init), 5);
  t.equal(native.close(fd), 0);
  t.equal(native.close(init), 0);
  t.equal(native.eventfdRead(fd), -E.EBADF);
});

t.test('poll: timeout 0, readiness, and a blocked worker woken by an eventfd', async (t) => {
  const a = native.eventfd(0);
  const b = native.eventfd(0);
  const fds = Int32Array.of(a, b);
  const rev = new Int32Array(2);
  t.equal(native.poll(fds, 2, 0, rev), 0, 'nothing ready');
  native.eventfdWrite(b, 1);
  t.equal(native.poll(fds, 2, 0, rev), 1);
  t.equal(rev[0], 0);
  t.ok(rev[1]! & C.POLLIN);
  t.throws(() => native.poll(fds, 3, 0, rev), TypeError, 'n beyond the arrays');

  // The worker says when it is about to poll (a thread can take long to start on a busy host), then
  // the eventfd is written 150 ms later: the poll must have blocked that long.
  const started = new Int32Array(new SharedArrayBuffer(4));
  const worker = runWorker(
    `const rev = new Int32Array(1);
     Atomics.store(workerData.started, 0, 1);
     const t0 = Date.now();
     const r = addon.poll(Int32Array.of(workerData.fd), 1, 10000, rev);
     return { r, rev: rev[0], waited: Date.now() - t0, v: addon.eventfdRead(workerData.fd) };`,
    { fd: a, started },
  );
  while (Atomics.load(started, 0) === 0) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 150));
  native.eventfdWrite(a, 42);
  const res = (await worker) as { r: number; rev: number; waited: number; v: number };
  t.equal(res.r, 1);
  t.ok(res.rev & C.POLLIN);
  t.ok(res.waited >= 100 && res.waited < 9000, `blocked until woken (${res.waited} ms)`);
  t.equal(res.v, 42);
  native.close(a);
  native.close(b);
});

t.test('eventfdRead never blocks, even on a blocking eventfd several threads read', async (t) => {
  const fd = native.eventfd(0, true);
  t.ok(fd >= 0);
  t.equal(native.fcntlGetFl(fd) & C.O_NONBLOCK, 0, 'the eventfd is blocking');
  t.equal(native.eventfdRead(fd), -E.EAGAIN, 'empty: EAGAIN at once instead of blocking');
  native.eventfdWrite(fd, 3);
  t.equal(native.eventfdRead(fd), 3);
  // Two threads race for one write: exactly one gets the counter, the other EAGAIN; neither blocks
  // (before, the loser sat in read(2) forever).
  const go = new Int32Array(new SharedArrayBuffer(4));
  const ready = new Int32Array(new SharedArrayBuffer(4));
  const racer = `const g = workerData.go;
     Atomics.add(workerData.ready, 0, 1);
     while (Atomics.load(g, 0) === 0) {}
     const out = [];
     for (let i = 0; i < 200; i++) out.push(addon.eventfdRead(workerData.fd));
     return out;`;
  const a = runWorker(racer, { fd, go, ready });
  const b = runWorker(racer, { fd, go, ready });
  // both threads spin at the start line before the write (a thread can take long to start)
  while (Atomics.load(ready, 0) < 2) await new Promise((r) => setTimeout(r, 5));
  native.eventfdWrite(fd, 7);
  Atomics.store(go, 0, 1);
  const [ra, rb] = (await Promise.all([a, b])) as [number[], number[]];
  const got = [...ra, ...rb].filter((v) => v > 0);
  t.same(got, [7], 'the counter is read once');
  t.ok([...ra, ...rb].every((v) => v === 7 || v === -E.EAGAIN), 'every other read is EAGAIN');
  native.close(fd);
  t.equal(native.eventfdRead(fd), -E.EBADF, 'a closed fd: EBADF');
});

/**
 * Lets the event loop poll twice with a fd of its own ready: a watcher on a readable fd that is still
 * active gets its callback in those turns, so its silence afterwards means it is stopped.
 */
async function pollTurns(): Promise<void> {
  for (let i = 0; i < 2; i++) {
    const fd = native.eventfd(0);
    await new Promise<void>((resolve) => {
      const w = native.watchFd(fd, () => {
        w.stop();
        resolve();
      });
      native.eventfdWrite(fd, 1);
    });
    native.close(fd);
  }
}

t.test('watchFd calls back on readable, stop() is final and idempotent', async (t) => {
  const fd = native.eventfd(0);
  const seen: number[] = [];
  let resolveFirst!: () => void;
  const first = new Promise<void>((r) => (resolveFirst = r));
  const w = native.watchFd(fd, (revents) => {
    seen.push(revents);
    native.eventfdRead(fd); // drain, level triggered
    resolveFirst();
  });
  native.eventfdWrite(fd, 1);
  await first;
  t.equal(seen[0], 1);
  w.stop();
  w.stop();
  const n = seen.length;
  native.eventfdWrite(fd, 1);
  await pollTurns();
  t.equal(seen.length, n, 'no callback after stop');
  t.throws(() => native.watchFd(fd, 5 as unknown as () => void), TypeError);

  // A stop() from inside the callback.
  let calls = 0;
  let resolveCalled!: () => void;
  const called = new Promise<void>((r) => (resolveCalled = r));
  const w2 = native.watchFd(fd, () => {
    calls++;
    w2.stop();
    resolveCalled();
  });
  await called;
  await pollTurns(); // the fd is still readable: a watcher that did not stop would be called again
  t.equal(calls, 1, 'stopped from its own callback');
  native.close(fd);
});

t.test('watchFd: one watcher per fd, worker teardown with active watchers, keeps the loop alive', async (t) => {
  const fd = native.eventfd(0);
  const w = native.watchFd(fd, () => {});
  t.throws(() => native.watchFd(fd, () => {}), Error, 'libuv allows one poll handle per fd and loop');
  w.stop();
  const w2 = native.watchFd(fd, () => {});
  t.ok(w2, 'the fd can be watched again after stop');
  w2.stop();

  // A worker terminated while its watchers are active must tear down cleanly (env cleanup hook).
  for (let k = 0; k < 3; k++) {
    const worker = new Worker(
      `const { parentPort } = require('node:worker_threads');
       const addon = require(${JSON.stringify(ADDON_PATH)});
       const a = addon.watchFd(addon.eventfd(1), () => parentPort.postMessage('fired'));
       const b = addon.watchFd(addon.eventfd(0), () => {});
       b.stop();`,
      { eval: true },
    );
    t.equal(await new Promise((r) => worker.once('message', r)), 'fired');
    t.equal(await worker.terminate(), 1);
  }

  // An active watcher keeps the process alive; a stopped one does not.
  const run = (code: string): Promise<string> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: 'ignore' });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve('alive');
      }, 4000); // (a loaded machine takes over a second to start node and load the addon)
      child.once('exit', () => {
        clearTimeout(timer);
        resolve('exited');
      });
    });
  const mod = JSON.stringify(new URL('../../src/native.js', import.meta.url).href);
  const [active, stopped] = await Promise.all([
    run(`const { native } = await import(${mod}); native.watchFd(native.eventfd(0), () => {});`),
    run(`const { native } = await import(${mod}); native.watchFd(native.eventfd(0), () => {}).stop();`),
  ]);
  t.equal(active, 'alive');
  t.equal(stopped, 'exited');
  native.close(fd);
});

t.test('watchFd reports a hangup as an error', async (t) => {
  const dir = sockDir(t);
  const path = join(dir, 'sock');
  const l = native.listenUnix(path, 1);
  const c = native.connectUnix(path);
  const s = native.acceptUnix(l);
  const got = new Promise<number>((resolve) => {
    const w = native.watchFd(s, (rev) => {
      w.stop();
      resolve(rev);
    });
  });
  native.close(c);
  const rev = await got;
  t.equal(rev, 3, 'readable (EOF) and hangup');
  t.equal(native.recvMsg(s, new Uint8Array(8), 0, 8, new Int32Array(1)), 0, 'EOF');
  native.close(s);
  native.close(l);
});

t.test('memfd + mapFixed into a shared wasm memory, unmapFixed gives zeros', async (t) => {
  const mem = new WebAssembly.Memory({ initial: 256, maximum: 256, shared: true });
  const buf = mem.buffer as unknown as SharedArrayBuffer;
  const view = new Uint8Array(buf);
  const addr = native.memoryAddress(buf);
  t.equal(typeof addr, 'bigint');
  t.ok(addr > 0n);
  t.equal(addr % BigInt(PAGE), 0n, 'page aligned base');

  const fd = native.memfdCreate('test-ram', 4 * PAGE);
  t.ok(fd >= 0);
  t.equal(fs.fstatSync(fd).size, 4 * PAGE);
  const off = 16 * PAGE;
  t.equal(native.mapFixed(buf, off + 1, PAGE, fd, 0), -E.EINVAL, 'unaligned offset');
  t.equal(native.mapFixed(buf, off, PAGE + 1, fd, 0), -E.EINVAL, 'unaligned length');
  t.equal(native.mapFixed(buf, buf.byteLength - PAGE, 2 * PAGE, fd, 0), -E.EINVAL, 'past the end');
  t.equal(native.mapFixed(buf, off, 2 * PAGE, 1 << 29, 0), -E.EBADF, 'bad fd');
  t.equal(native.mapFixed(buf, off, 2 * PAGE, fd, PAGE), 0);

  // File → memory: file offset PAGE+100 appears at off+100.
  t.equal(native.pwrite(fd, enc('hello'), 0, 5, PAGE + 100), 5);
  t.same(Array.from(view.subarray(off + 100, off + 105)), Array.from(enc('hello')));
  // Memory → file.
  view[off + PAGE + 7] = 0x77;
  const b = new Uint8Array(1);
  t.equal(native.pread(fd, b, 0, 1, 2 * PAGE + 7), 1);
  t.equal(b[0], 0x77);
  // Atomics work on the mapped range (it is still the wasm memory).
  const i32 = new Int32Array(buf);
  Atomics.store(i32, (off + 200) / 4, 0x01020304);
  const w = new Uint8Array(4);
  native.pread(fd, w, 0, 4, PAGE + 200);
  t.same(Array.from(w), [4, 3, 2, 1]);

  t.equal(native.unmapFixed(buf, off, 2 * PAGE), 0);
  t.equal(view[off + 100], 0, 'anonymous zero page again');
  t.equal(view[off + PAGE + 7], 0);
  view[off + 100] = 9;
  t.equal(native.pread(fd, b, 0, 1, PAGE + 100), 1);
  t.equal(b[0], 'h'.charCodeAt(0), 'file no longer mapped');
  t.equal(native.unmapFixed(buf, off, 3), -E.EINVAL);
  native.close(fd);
});

t.test('unix socket: listen/connect/accept, fds passed with sendMsg/recvMsg', async (t) => {
  const long = join(t.testdir({}), 'x'.repeat(110));
  t.equal(native.listenUnix(long, 4), -E.ENAMETOOLONG, 'path longer than sun_path');
  t.equal(native.connectUnix(long), -E.ENAMETOOLONG);
  const dir = sockDir(t);
  const path = join(dir, 'vhost.sock');
  const l = native.listenUnix(path, 4);
  t.ok(l >= 0);
  t.ok(fs.statSync(path).isSocket());
  t.equal(native.listenUnix(path, 4), -E.EADDRINUSE, 'does not unlink');
  t.equal(native.acceptUnix(l), -E.EAGAIN, 'nonblocking accept');
  t.equal(native.connectUnix(join(dir, 'nope')), -E.ENOENT);
  const c = native.connectUnix(path);
  t.ok(c >= 0);
  const s = native.acceptUnix(l);
  t.ok(s >= 0);
  t.ok(native.fcntlGetFl(s) & C.O_NONBLOCK);
  t.notOk(native.fcntlGetFl(c) & C.O_NONBLOCK, 'connectUnix is blocking');

  const rbuf = new Uint8Array(64);
  const fds = Int32Array.of(99, 99, 99);
  t.equal(native.recvMsg(s, rbuf, 0, 64, fds), -E.EAGAIN);

  const efd = native.eventfd(0);
  t.equal(native.sendMsg(c, enc('ping'), 0, 4, Int32Array.of(efd)), 4);
  t.equal(native.recvMsg(s, rbuf, 8, 56, fds), 4);
  t.same(Array.from(rbuf.subarray(8, 12)), Array.from(enc('ping')));
  t.ok(fds[0]! >= 0 && fds[0] !== efd, 'a new fd');
  t.equal(fds[1], -1);
  t.equal(fds[2], -1);
  t.equal(native.eventfdWrite(fds[0]!, 7), 0);
  t.equal(native.eventfdRead(efd), 7, 'the received fd is the same eventfd');
  const fdinfo = fs.readFileSync(`/proc/self/fdinfo/${fds[0]}`, 'utf8');
  t.ok(parseInt(/flags:\s*(\d+)/.exec(fdinfo)![1]!, 8) & C.O_CLOEXEC, 'received fd is CLOEXEC');
  native.close(fds[0]!);

  // No fds, null list.
  t.equal(native.sendMsg(c, enc('abc'), 1, 2, null), 2);
  t.equal(native.recvMsg(s, rbuf, 0, 64, fds), 2);
  t.equal(fds[0], -1);
  t.same(Array.from(rbuf.subarray(0, 2)), Array.from(enc('bc')));

  // Surplus fds are closed, not leaked.
  t.equal(native.sendMsg(c, enc('x'), 0, 1, Int32Array.of(efd, efd, efd)), 1);
  const before = fdCount();
  const one = new Int32Array(1);
  t.equal(native.recvMsg(s, rbuf, 0, 64, one), 1);
  t.ok(one[0]! >= 0);
  t.equal(fdCount(), before + 1, 'only one fd kept');
  native.close(one[0]!);

  native.close(c);
  t.equal(native.recvMsg(s, rbuf, 0, 64, fds), 0, 'EOF');
  t.equal(native.sendMsg(s, enc('x'), 0, 1, null), -E.EPIPE, 'EPIPE, no SIGPIPE');
  native.close(s);
  native.close(l);
  native.close(efd);
});

t.test('openat2 confinement', async (t) => {
  const dir = t.testdir({ x: 'outside', sub: { file: 'inside', link: t.fixture('symlink', 'file') } });
  const d = openDir(join(dir, 'sub'));
  const fd = native.openat2(d, enc('file'), C.O_RDONLY, 0, C.RESOLVE_BENEATH | C.RESOLVE_NO_MAGICLINKS);
  t.ok(fd >= 0);
  const b = new Uint8Array(16);
  t.equal(native.pread(fd, b, 0, 16, 0), 6);
  const fdinfo = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  t.ok(parseInt(/flags:\s*(\d+)/.exec(fdinfo)![1]!, 8) & C.O_CLOEXEC, 'O_CLOEXEC added');
  native.close(fd);

  t.equal(native.openat2(d, enc('../x'), C.O_RDONLY, 0, C.RESOLVE_BENEATH), -E.EXDEV);
  t.ok(native.openat2(d, enc('../x'), C.O_RDONLY, 0, 0) >= 0, 'without RESOLVE_BENEATH it escapes');
  t.equal(native.openat2(d, enc('link'), C.O_RDONLY, 0, C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS), -E.ELOOP);
  const viaLink = native.openat2(d, enc('link'), C.O_RDONLY, 0, C.RESOLVE_BENEATH);
  t.ok(viaLink >= 0, 'a symlink inside is fine without NO_SYMLINKS');
  native.close(viaLink);
  t.equal(native.openat2(d, enc('missing'), C.O_RDONLY, 0o644, C.RESOLVE_BENEATH), -E.ENOENT, 'mode ignored');

  const created = native.openat2(d, enc('new'), C.O_CREAT | C.O_EXCL | C.O_RDWR, 0o600, C.RESOLVE_BENEATH);
  t.ok(created >= 0);
  t.equal(fs.statSync(join(dir, 'sub', 'new')).mode & 0o7777, 0o600);
  t.equal(native.openat2(d, enc('new'), C.O_CREAT | C.O_EXCL | C.O_RDWR, 0o600, 0), -E.EEXIST);
  native.close(created);

  // openProcFd reopens an O_PATH fd with real access.
  const procFd = openDir('/proc/self/fd');
  const p = native.openat2(d, enc('file'), C.O_PATH | C.O_NOFOLLOW, 0, C.RESOLVE_BENEATH);
  t.ok(p >= 0);
  t.equal(native.pread(p, b, 0, 4, 0), -E.EBADF, 'O_PATH fds cannot read');
  const r = native.openProcFd(procFd, p, C.O_RDWR | C.O_NOFOLLOW);
  t.ok(r >= 0);
  t.equal(native.pread(r, b, 0, 6, 0), 6);
  t.equal(new TextDecoder().decode(b.subarray(0, 6)), 'inside');
  t.equal(native.openProcFd(procFd, 1 << 29, C.O_RDONLY), -E.ENOENT);
  native.close(r);
  native.close(p);
  fs.closeSync(procFd);
  fs.closeSync(d);
});

t.test('names: embedded NUL, length limits', async (t) => {
  const dir = t.testdir({});
  const d = openDir(dir);
  t.equal(native.mkdirat(d, Uint8Array.of(0x61, 0, 0x62), 0o755), -E.EINVAL);
  t.equal(native.openat2(d, Uint8Array.of(0x61, 0), C.O_RDONLY, 0, 0), -E.EINVAL);
  t.equal(native.mkdirat(d, new Uint8Array(256).fill(0x61), 0o755), -E.ENAMETOOLONG);
  t.equal(native.statAt(d, new Uint8Array(256).fill(0x61), 0, new Uint8Array(96)), -E.ENAMETOOLONG);
  t.equal(native.mkdirat(d, new Uint8Array(255).fill(0x61), 0o755), 0, '255 bytes is allowed');
  t.equal(native.symlinkat(new Uint8Array(4096).fill(0x61), d, enc('l')), -E.ENAMETOOLONG);
  t.equal(native.symlinkat(new Uint8Array(300).fill(0x61), d, enc('l')), 0, 'targets may exceed 255');
  t.equal(native.symlinkat(Uint8Array.of(0x61, 0), d, enc('l2')), -E.EINVAL);
  // Non-UTF-8 names pass through as bytes.
  t.equal(native.mkdirat(d, Uint8Array.of(0xff, 0xfe), 0o755), 0);
  t.ok(fs.readdirSync(dir, { encoding: 'buffer' }).some((n) => n.equals(Buffer.from([0xff, 0xfe]))));
  fs.closeSync(d);
});

t.test('statAt writes struct fuse_attr + st_dev', async (t) => {
  const dir = t.testdir({ f: 'x'.repeat(1234) });
  const d = openDir(dir);
  const out = new Uint8Array(STAT_OUT_SIZE);
  const dv = new DataView(out.buffer);
  t.equal(native.statAt(d, enc('f'), C.AT_SYMLINK_NOFOLLOW, out), 0);
  const st = fs.statSync(join(dir, 'f'), { bigint: true });
  t.equal(dv.getBigUint64(0, true), st.ino, 'ino');
  t.equal(dv.getBigUint64(8, true), 1234n, 'size');
  t.equal(dv.getBigUint64(16, true), st.blocks, 'blocks');
  t.equal(dv.getBigUint64(32, true), st.mtimeNs / 1_000_000_000n, 'mtime');
  t.equal(BigInt(dv.getUint32(52, true)), st.mtimeNs % 1_000_000_000n, 'mtimensec');
  t.equal(dv.getUint32(60, true), Number(st.mode), 'mode');
  t.equal(dv.getUint32(64, true), 1, 'nlink');
  t.equal(dv.getUint32(68, true), Number(st.uid), 'uid');
  t.equal(dv.getUint32(72, true), Number(st.gid), 'gid');
  t.equal(dv.getUint32(80, true), Number(st.blksize), 'blksize');
  t.equal(dv.getUint32(84, true), 0, 'flags');
  t.equal(dv.getBigUint64(AttrOff.dev, true), st.dev, 'st_dev');

  // name null → the fd itself (AT_EMPTY_PATH), works on O_PATH fds.
  const p = native.openat2(d, enc('f'), C.O_PATH, 0, 0);
  out.fill(0);
  t.equal(native.statAt(p, null, 0, out), 0);
  t.equal(dv.getBigUint64(0, true), st.ino);
  native.close(p);
  t.equal(native.statAt(d, enc('nope'), 0, out), -E.ENOENT);

  // rdev in FUSE's new_encode_dev form: /dev/null is 1:3.
  const dev = openDir('/dev');
  t.equal(native.statAt(dev, enc('null'), 0, out), 0);
  t.equal(dv.getUint32(76, true), (3 & 0xff) | (1 << 8));
  t.equal(dv.getUint32(60, true) & C.S_IFMT, C.S_IFCHR);
  fs.closeSync(dev);
  fs.closeSync(d);
});

t.test('directory operations round trip', async (t) => {
  const dir = t.testdir({ a: 'AAA', b: 'BBBB' });
  const d = openDir(dir);
  const out = new Uint8Array(STAT_OUT_SIZE);
  const dv = new DataView(out.buffer);

  t.equal(native.mkdirat(d, enc('sub'), 0o750), 0);
  t.ok(fs.statSync(join(dir, 'sub')).isDirectory());
  t.equal(native.mkdirat(d, enc('sub'), 0o750), -E.EEXIST);
  t.equal(native.unlinkat(d, enc('sub'), 0), -E.EISDIR);
  t.equal(native.unlinkat(d, enc('sub'), C.AT_REMOVEDIR), 0);
  t.notOk(fs.existsSync(join(dir, 'sub')));

  t.equal(native.renameat2(d, enc('a'), d, enc('b'), C.RENAME_NOREPLACE), -E.EEXIST);
  t.equal(native.renameat2(d, enc('a'), d, enc('b'), C.RENAME_EXCHANGE), 0);
  t.equal(fs.readFileSync(join(dir, 'a'), 'utf8'), 'BBBB');
  t.equal(fs.readFileSync(join(dir, 'b'), 'utf8'), 'AAA');
  t.equal(native.renameat2(d, enc('a'), d, enc('c'), 0), 0);
  t.notOk(fs.existsSync(join(dir, 'a')));

  t.equal(native.linkat(d, enc('c'), d, enc('c2'), 0), 0);
  t.equal(fs.statSync(join(dir, 'c')).nlink, 2);
  const p = native.openat2(d, enc('b'), C.O_PATH, 0, 0);
  t.equal(native.linkat(p, null, d, enc('b2'), 0), 0, 'AT_EMPTY_PATH link of an O_PATH fd');
  t.equal(fs.readFileSync(join(dir, 'b2'), 'utf8'), 'AAA');

  t.equal(native.symlinkat(enc('c'), d, enc('ln')), 0);
  const target = new Uint8Array(64);
  t.equal(native.readlinkat(d, enc('ln'), target), 1);
  t.equal(target[0], 'c'.charCodeAt(0));
  const lp = native.openat2(d, enc('ln'), C.O_PATH | C.O_NOFOLLOW, 0, 0);
  t.equal(native.readlinkat(lp, null, target), 1, 'readlink of an O_PATH symlink fd');
  t.equal(native.readlinkat(d, enc('c'), target), -E.EINVAL, 'not a symlink');
  native.close(lp);

  t.equal(native.mknodat(d, enc('fifo'), C.S_IFIFO | 0o640, 0), 0);
  t.ok(fs.statSync(join(dir, 'fifo')).isFIFO());

  // Attributes.
  t.equal(native.fchmodat(p, null, 0o604), 0, 'chmod via /proc/self/fd');
  t.equal(fs.statSync(join(dir, 'b')).mode & 0o7777, 0o604);
  t.equal(native.fchmodat(d, enc('c'), 0o611), 0);
  t.equal(fs.statSync(join(dir, 'c')).mode & 0o7777, 0o611);
  const uid = process.getuid!();
  const gid = process.getgid!();
  t.equal(native.fchownat(p, null, -1, -1, 0), 0);
  t.equal(native.fchownat(d, enc('c'), uid, gid, C.AT_SYMLINK_NOFOLLOW), 0);
  t.equal(native.fchownat(d, enc('nope'), uid, gid, 0), -E.ENOENT);

  t.equal(native.utimensat(p, null, 1000, 5, 2000, 7, 0), 0);
  t.equal(native.statAt(p, null, 0, out), 0);
  t.equal(dv.getBigUint64(24, true), 1000n);
  t.equal(dv.getUint32(48, true), 5);
  t.equal(dv.getBigUint64(32, true), 2000n);
  t.equal(dv.getUint32(52, true), 7);
  t.equal(native.utimensat(d, enc('c'), 0, C.UTIME_OMIT, 3000, 0, C.AT_SYMLINK_NOFOLLOW), 0);
  t.equal(fs.statSync(join(dir, 'c')).mtimeMs, 3000 * 1000);
  native.close(p);

  t.equal(native.faccessat(d, enc('c'), C.F_OK, 0), 0);
  t.equal(native.faccessat(d, enc('zz'), C.F_OK, 0), -E.ENOENT);
  t.equal(native.faccessat(d, null, C.F_OK, 0), 0, 'AT_EMPTY_PATH');

  // getdents64 lists names.
  const dfd = native.openat2(d, enc('.'), C.O_RDONLY | C.O_DIRECTORY, 0, 0);
  const names: string[] = [];
  const buf = new Uint8Array(512); // small: forces several calls
  const bdv = new DataView(buf.buffer);
  for (;;) {
    const n = native.getdents64(dfd, buf);
    t.ok(n >= 0);
    if (n <= 0) break;
    for (let o = 0; o < n; ) {
      const reclen = bdv.getUint16(o + 16, true);
      const nameStart = o + 19;
      const end = buf.indexOf(0, nameStart);
      names.push(new TextDecoder().decode(buf.subarray(nameStart, end)));
      o += reclen;
    }
  }
  t.same(names.sort(), ['.', '..', 'b', 'b2', 'c', 'c2', 'fifo', 'ln'].sort());
  t.equal(native.getdents64(dfd, new Uint8Array(8)), 0, 'at the end');
  native.close(dfd);
  fs.closeSync(d);
});

t.test('getdentsFuse: fuse_dirent records for what getdents64 lists, resumable from the last d_off', async (t) => {
  const dir = t.testdir({});
  // names of every length class, many of them: several calls, each bounded by the room given
  const want = ['.', '..'];
  for (let i = 0; i < 300; i++) {
    const name = `e${i}-${'x'.repeat(i % 40)}`;
    fs.writeFileSync(join(dir, name), '');
    want.push(name);
  }
  const dfd = openDir(dir);
  t.teardown(() => fs.closeSync(dfd));
  const out = new Uint8Array(4096 + 64);
  const dv = new DataView(out.buffer);
  const state = new Uint8Array(16);
  const sv = new DataView(state.buffer);
  const AT = 40; // records go to out[AT, AT + room)
  const seen: string[] = [];
  const cookies: bigint[] = [];
  let calls = 0;
  let bad = '';
  for (;;) {
    const room = 600 + (calls % 5) * 700; // varying room, as replies of different sizes
    const n = native.getdentsFuse(dfd, out, AT, room, state);
    if (n < 0) {
      bad += ` errno ${-n}`;
      break;
    }
    if (n === 0) break;
    calls++;
    if (n > room) bad += ` wrote ${n} > room ${room};`;
    let p = AT;
    let count = 0;
    let last = 0n;
    while (p < AT + n) {
      const namelen = dv.getUint32(p + 16, true);
      const rec = (24 + namelen + 7) & ~7;
      const name = new TextDecoder().decode(out.subarray(p + 24, p + 24 + namelen));
      if (out.subarray(p + 24 + namelen, p + rec).some((b) => b !== 0)) bad += ` padding of ${name};`;
      const type = dv.getUint32(p + 20, true);
      if (type !== (name === '.' || name === '..' ? 4 : 8)) bad += ` type ${type} for ${name};`;
      if (dv.getBigUint64(p, true) === 0n) bad += ` ino 0 for ${name};`;
      last = dv.getBigUint64(p + 8, true);
      seen.push(name);
      count++;
      p += rec;
    }
    if (count !== sv.getUint32(0, true)) bad += ` state count ${sv.getUint32(0, true)} != ${count};`;
    if (last !== sv.getBigUint64(8, true)) bad += ' state d_off is not the last record\'s;';
    cookies.push(last);
  }
  t.equal(bad, '', 'records well formed and within the room');
  t.ok(calls > 5, `several calls (${calls})`);
  t.same([...seen].sort(), [...want].sort(), 'every entry once');
  // resuming from a cookie (the guest's next READDIR offset) lists the rest
  const mid = cookies[2]!;
  t.equal(native.lseekBig(dfd, mid, C.SEEK_SET), mid);
  const rest: string[] = [];
  for (;;) {
    const n = native.getdentsFuse(dfd, out, 0, 4096, state);
    if (n <= 0) break;
    for (let p = 0; p < n; ) {
      const namelen = dv.getUint32(p + 16, true);
      rest.push(new TextDecoder().decode(out.subarray(p + 24, p + 24 + namelen)));
      p += (24 + namelen + 7) & ~7;
    }
  }
  t.same(rest, seen.slice(seen.length - rest.length), 'from a cookie: the entries after it');
  t.ok(rest.length > 0 && rest.length < seen.length);
  t.equal(native.getdentsFuse(dfd, out, 0, 16, state), 0, 'no room for one entry: 0');
  t.equal(native.getdentsFuse(-1, out, 0, 4096, state), -E.EBADF);
  t.throws(() => native.getdentsFuse(dfd, out, 0, 4096, new Uint8Array(8)), 'state too small');
  t.throws(() => native.getdentsFuse(dfd, out, 4000, 4096, state), 'out of bounds');
});

t.test('file I/O: pread/pwrite/ftruncate/fallocate/lseek/fsync/dup/fstatfs', async (t) => {
  const dir = t.testdir({});
  const d = openDir(dir);
  const fd = native.openat2(d, enc('f'), C.O_CREAT | C.O_RDWR, 0o644, 0);
  t.equal(native.pwrite(fd, enc('0123456789'), 2, 5, 100), 5);
  t.equal(native.lseek(fd, 0, C.SEEK_END), 105);
  const b = new Uint8Array(10);
  t.equal(native.pread(fd, b, 1, 9, 100), 5);
  t.same(Array.from(b.subarray(1, 6)), Array.from(enc('23456')));
  t.equal(native.ftruncate(fd, 50), 0);
  t.equal(fs.fstatSync(fd).size, 50);
  t.equal(native.fallocate(fd, 0, 0, 8192), 0);
  t.equal(fs.fstatSync(fd).size, 8192);
  t.equal(native.fallocate(fd, C.FALLOC_FL_KEEP_SIZE, 8192, 4096), 0);
  t.equal(fs.fstatSync(fd).size, 8192);
  t.equal(native.fsync(fd, false), 0);
  t.equal(native.fsync(fd, true), 0);
  const dup = native.dup(fd);
  t.ok(dup >= 0 && dup !== fd);
  t.equal(native.lseek(dup, 7, C.SEEK_SET), 7);
  t.equal(native.lseek(fd, 0, C.SEEK_CUR), 7, 'shared file offset');
  t.equal(native.lseek(fd, -1, C.SEEK_SET), -E.EINVAL);
  native.close(dup);

  const sf = new Uint8Array(STATFS_OUT_SIZE).fill(0xee);
  t.equal(native.fstatfs(fd, sf), 0);
  const sv = new DataView(sf.buffer);
  t.ok(sv.getUint32(40, true) > 0, 'bsize');
  t.equal(sv.getUint32(44, true), 255, 'namelen');
  t.ok(sv.getUint32(48, true) > 0, 'frsize');
  t.equal(sv.getUint32(52, true), 0, 'padding zeroed');
  t.ok(sv.getBigUint64(0, true) >= sv.getBigUint64(8, true), 'blocks >= bfree');
  t.equal(native.fstatfs(1 << 29, sf), -E.EBADF);
  native.close(fd);
  fs.closeSync(d);
});

t.test('preadvWin / pwritevWin through the guest memory table', async (t) => {
  const mem = new WebAssembly.Memory({ initial: 256, maximum: 256, shared: true });
  const buf = mem.buffer as unknown as SharedArrayBuffer;
  const view = new Uint8Array(buf);
  const dv = new DataView(buf);
  const dir = t.testdir({});
  const d = openDir(dir);
  const fd = native.openat2(d, enc('f'), C.O_CREAT | C.O_RDWR, 0o644, 0);
  // A table like assembly/layout.ts's, at 2048: u32 count, entries from +64, 64 bytes each.
  const TABLE = { base: 2048, entries: 64, stride: 64, max: 4, sizeOff: 8, hvaOff: 24 };
  native.setWindow(buf, TABLE);
  const setRegion = (i: number, hva: bigint, size: bigint): void => {
    const e = TABLE.base + TABLE.entries + i * TABLE.stride;
    dv.setBigUint64(e + TABLE.sizeOff, size, true);
    dv.setBigUint64(e + TABLE.hvaOff, hva, true);
  };
  const setCount = (n: number): void => dv.setUint32(TABLE.base, n, true);
  // Region 0: the test memory itself ("resident"); region 1: a memfd mapped outside it.
  const base = native.memoryAddress(buf);
  setRegion(0, base, BigInt(buf.byteLength));
  const OUT = 1 << 20;
  const memfd = native.memfdCreate('outside', OUT);
  const outAddr = native.mapShared(memfd, 0, OUT);
  t.ok(outAddr > 0, 'mapShared gives an address');
  t.ok(native.mapShared(memfd, 0, 0) < 0, 'an empty mapping is refused');
  setRegion(1, BigInt(outAddr), BigInt(OUT));
  setCount(2);

  const LIST = 4096;
  const setSeg = (i: number, off: number | bigint, len: number, region = 0): void => {
    dv.setBigUint64(LIST + i * 16, BigInt(off), true);
    dv.setUint32(LIST + i * 16 + 8, len, true);
    dv.setUint32(LIST + i * 16 + 12, region, true);
  };
  setSeg(0, 16384, 10);
  setSeg(1, 20480, 6);
  view.set(enc('abcdefghij'), 16384);
  view.set(enc('KLMNOP'), 20480);
  t.equal(native.pwritevWin(fd, LIST, 2, 3), 16);
  t.equal(fs.readFileSync(join(dir, 'f'), 'latin1'), '\0\0\0abcdefghijKLMNOP');

  view.fill(0, 16384, 16384 + 10);
  view.fill(0, 20480, 20480 + 6);
  t.equal(native.preadvWin(fd, LIST, 2, 3), 16);
  t.equal(new TextDecoder().decode(view.subarray(16384, 16394)), 'abcdefghij');
  t.equal(new TextDecoder().decode(view.subarray(20480, 20486)), 'KLMNOP');

  // Into the outside mapping: the bytes land in the memfd.
  setSeg(1, OUT - 6, 6, 1);
  t.equal(native.preadvWin(fd, LIST, 2, 3), 16, 'a segment in a region mapped outside the window');
  const tail = Buffer.alloc(6);
  fs.readSync(memfd, tail, 0, 6, OUT - 6);
  t.equal(tail.toString('latin1'), 'KLMNOP', 'read into the outside region');

  // Short read at EOF.
  t.equal(native.preadvWin(fd, LIST, 2, 10), 9);
  t.equal(native.preadvWin(fd, LIST, 2, 1000), 0);
  t.equal(native.preadvWin(fd, LIST, 0, 0), 0, 'empty list');

  // Bounds: any bad segment fails the whole call before I/O.
  setSeg(1, OUT - 2, 10, 1);
  t.equal(native.pwritevWin(fd, LIST, 2, 0), -E.EFAULT, 'past the end of its region');
  setSeg(1, 0xffffffffffffffffn, 0xffffffff, 1);
  t.equal(native.preadvWin(fd, LIST, 2, 0), -E.EFAULT, 'no u64 overflow');
  setSeg(1, 0, 6, 2);
  t.equal(native.preadvWin(fd, LIST, 2, 0), -E.EFAULT, 'a region past the table count');
  setCount(5);
  setSeg(1, 0, 6, 1);
  t.equal(native.preadvWin(fd, LIST, 2, 0), -E.EFAULT, 'a table count above its maximum');
  setCount(2);
  setSeg(1, buf.byteLength - 6, 6);
  t.equal(native.preadvWin(fd, LIST, 2, 3), 16, 'the last bytes of the region are fine');
  t.equal(native.preadvWin(fd, buf.byteLength - 8, 2, 0), -E.EFAULT, 'list past the end');
  t.equal(native.preadvWin(fd, LIST, 2 ** 32, 0), -E.EFAULT, 'huge count');
  t.equal(fs.readFileSync(join(dir, 'f'), 'latin1'), '\0\0\0abcdefghijKLMNOP', 'failed calls wrote nothing');
  t.throws(() => native.setWindow(buf, { ...TABLE, max: 1 << 20 }), /does not fit/, 'a table past the window is refused');
  native.setWindow(buf, TABLE);

  // More segments than IOV_MAX: 1500 segments of 3 bytes each.
  const N = 1500;
  const BIG = 65536;
  for (let i = 0; i < N; i++) {
    setSeg(i, BIG + i * 4, 3);
    view[BIG + i * 4] = i & 0xff;
    view[BIG + i * 4 + 1] = (i >> 8) & 0xff;
    view[BIG + i * 4 + 2] = 0x5a;
  }
  t.equal(native.pwritevWin(fd, LIST, N, 0), 3 * N);
  const file = fs.readFileSync(join(dir, 'f'));
  t.equal(file.length, 3 * N);
  t.equal(file[3 * 1400], 1400 & 0xff);
  t.equal(file[3 * 1400 + 1], 1400 >> 8);
  view.fill(0, BIG, BIG + 4 * N);
  t.equal(native.preadvWin(fd, LIST, N, 0), 3 * N);
  t.equal(view[BIG + 1499 * 4], 1499 & 0xff);
  t.equal(view[BIG + 1499 * 4 + 2], 0x5a);
  t.equal(native.preadvWin(1 << 29, LIST, N, 0), -E.EBADF);

  // The window is per thread: a worker's own instance has none until it calls setWindow.
  const r = (await runWorker(
    `const before = addon.preadvWin(workerData.fd, ${LIST}, 2, 0);
     const T = workerData.table;
     addon.setWindow(new Uint8Array(workerData.buf), T.base, T.entries, T.stride, T.max, T.sizeOff, T.hvaOff);
     const after = addon.preadvWin(workerData.fd, ${LIST}, 2, 0);
     return { before, after };`,
    { fd, buf, table: TABLE },
  )) as { before: number; after: number };
  t.equal(r.before, -E.EFAULT, 'no window in a fresh thread');
  t.equal(r.after, 6, 'worker sees the same memory once set');
  t.equal(native.unmapShared(outAddr, OUT), 0);
  native.close(memfd);
  native.close(fd);
  fs.closeSync(d);
});

t.test('setCreds is per thread', { skip: process.getuid!() !== 0 && 'needs root' }, async (t) => {
  const dir = t.testdir({ shared: {} });
  const shared = join(dir, 'shared');
  fs.chmodSync(shared, 0o1777);
  const r = (await runWorker(
    `const fs = require('node:fs');
     const d = fs.openSync(workerData.shared, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
     // setCreds returns 0 whatever happened (setfsuid(2) reports no error): read the thread's fsuid
     // and fsgid, the 4th field of Uid:/Gid: in /proc/thread-self/status, instead
     const ids = () => {
       const st = fs.readFileSync('/proc/thread-self/status', 'utf8');
       const f = (k) => Number(st.split(String.fromCharCode(10)).find((l) => l.startsWith(k + ':')).split(String.fromCharCode(9))[4]);
       return [f('Uid'), f('Gid')];
     };
     addon.setCreds(65534, 65533);
     const during = ids();
     const fd = addon.openat2(d, new TextEncoder().encode('w'), addon.constants.O_CREAT | addon.constants.O_RDWR, 0o600, 0);
     addon.close(fd);
     // With fsuid != 0 CAP_DAC_READ_SEARCH is dropped: before Linux 6.10 AT_EMPTY_PATH then gives ENOENT
     // and linkat falls back to /proc/self/fd; either way the link must be made.
     const p = addon.openat2(d, new TextEncoder().encode('w'), addon.constants.O_PATH, 0, 0);
     const link = addon.linkat(p, null, d, new TextEncoder().encode('w2'), 0);
     addon.close(p);
     addon.setCreds(0, 0);
     return { during, after: ids(), fd, link };`,
    { shared },
  )) as { during: number[]; after: number[]; fd: number; link: number };
  t.same(r.during, [65534, 65533], 'the worker thread\'s fsuid and fsgid are set');
  t.same(r.after, [0, 0], 'setCreds(0, 0) puts them back');
  t.ok(r.fd >= 0);
  t.equal(r.link, 0, 'linkat of an O_PATH fd without CAP_DAC_READ_SEARCH');
  t.equal(fs.statSync(join(shared, 'w2')).ino, fs.statSync(join(shared, 'w')).ino);
  const st = fs.statSync(join(shared, 'w'));
  t.equal(st.uid, 65534, 'created with the fsuid');
  t.equal(st.gid, 65533, 'created with the fsgid');
  fs.writeFileSync(join(shared, 'm'), '');
  t.equal(fs.statSync(join(shared, 'm')).uid, 0, 'main thread unaffected');
  const main = fs.readFileSync('/proc/thread-self/status', 'utf8');
  t.match(main, /^Uid:\s+0\s+0\s+0\s+0$/m, 'the main thread\'s ids are all 0');
});
