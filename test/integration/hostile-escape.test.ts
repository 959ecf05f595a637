/**
 * Path escapes and resource exhaustion against the daemon process: symlinks inside the share that
 * point out, used as parents, opened, created over, renamed over, hard-linked; a host-side swap of a
 * directory for a symlink racing guest lookups; special files the guest creates (the daemon must
 * never open a FIFO or a device node); fd exhaustion under a low RLIMIT_NOFILE.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Opcode, decodeEntryOut } from '../../src/abi/fuse.js';
import { S_IFIFO, S_IFLNK, S_IFMT, S_IFREG } from '../../src/abi/stat.js';
import { cstr, u32s, u64s } from '../../src/frontend/fuse-requests.js';
import { native } from '../../src/native.js';
import { alive, canaryIntact, fuseSession, leaksCanary, sleep, startHostile, type HostileEnv } from '../fuzz/hostile-kit.js';

const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_CREAT = 0o100;
const O_TRUNC = 0o1000;

let env: HostileEnv;
t.before(async () => {
  env = await startHostile(t);
  fs.symlinkSync('../canary.txt', path.join(env.share, 'rel-out'));
  fs.symlinkSync(env.canary, path.join(env.share, 'abs-out'));
  fs.symlinkSync('../outside', path.join(env.share, 'dir-out'));
  fs.symlinkSync(env.outsideDir, path.join(env.share, 'absdir-out'));
});


t.test('symlinks pointing out of the share: lookup, open, create, mkdir, rename, link through them', async (tt) => {
  const { s, rb, call } = await fuseSession(env);
  try {
    for (const link of ['rel-out', 'abs-out', 'dir-out', 'absdir-out']) {
      const e = await call(rb.lookup(1n, link));
      tt.equal(e.error, 0, `lookup ${link}`);
      const n = e.view.getBigUint64(0, true);
      tt.equal(decodeEntryOut(e.view, 0).attr.mode & S_IFMT, S_IFLNK, `${link} is a symlink`);
      for (const flags of [O_RDONLY, O_RDWR, O_WRONLY | O_TRUNC]) tt.ok((await call(rb.open(n, flags))).error < 0, `open ${link} flags ${flags}`);
      tt.ok((await call(rb.open(n, 0, Opcode.Opendir))).error < 0, `opendir ${link}`);
      tt.ok((await call(rb.lookup(n, 'canary2.txt'))).error < 0, `lookup through ${link}`);
      tt.ok((await call(rb.create(n, 'new.txt', O_RDWR | O_CREAT, S_IFREG | 0o644))).error < 0, `create under ${link}`);
      tt.ok((await call(rb.build(Opcode.Mkdir, n, u32s(0o755, 0), cstr('d')))).error < 0, `mkdir under ${link}`);
      tt.ok((await call(rb.build(Opcode.Mknod, n, u32s(S_IFREG | 0o644, 0, 0, 0), cstr('m')))).error < 0, `mknod under ${link}`);
      tt.ok((await call(rb.build(Opcode.Symlink, n, cstr('s'), cstr('x')))).error < 0, `symlink under ${link}`);
      // CREATE with the link's own name (O_CREAT without O_EXCL would follow it on a naive server)
      const c = await call(rb.create(1n, link, O_RDWR | O_CREAT | O_TRUNC, S_IFREG | 0o644));
      tt.ok(c.error < 0, `create over ${link}: ${c.error}`);
      tt.ok((await call(rb.build(Opcode.Mkdir, 1n, u32s(0o755, 0), cstr(link)))).error < 0, `mkdir over ${link}`);
      // setattr on the link: truncation and chmod must not reach the target
      const sa = new Uint8Array(88);
      const sv = new DataView(sa.buffer);
      sv.setUint32(0, 1 | 8 | 16 | 32, true); // MODE | SIZE | ATIME | MTIME
      sv.setUint32(68, 0o777, true);
      tt.ok((await call(rb.build(Opcode.Setattr, n, sa), 4096)).error < 0, `setattr through ${link}`);
      // readlink is fine: it returns the link text, not the target's content
      const rl = await call(rb.build(Opcode.Readlink, n), 4096);
      tt.notOk(leaksCanary(rl.data), `readlink ${link} does not leak content`);
      // a hard link of the link is another link, not the target
      const l = await call(rb.build(Opcode.Link, 1n, u64s(n), cstr(`hl-${link}`)));
      if (l.error === 0) tt.ok(fs.lstatSync(path.join(env.share, `hl-${link}`)).isSymbolicLink(), `hard link of ${link} is a symlink`);
    }
    // rename a file over a symlink: replaces the link inside the share, the target is untouched
    await call(rb.create(1n, 'victim.txt', O_RDWR | O_CREAT, S_IFREG | 0o644));
    tt.equal((await call(rb.build(Opcode.Rename, 1n, u64s(1n), cstr('victim.txt'), cstr('rel-out')))).error, 0, 'rename over a symlink');
    tt.ok(fs.lstatSync(path.join(env.share, 'rel-out')).isFile(), 'the link was replaced');
    // readdirplus of the share: the links are listed as links
    const o = await call(rb.open(1n, 0, Opcode.Opendir));
    const fh = o.view.getBigUint64(0, true);
    const rd = new Uint8Array(40);
    const rv = new DataView(rd.buffer);
    rv.setBigUint64(0, fh, true);
    rv.setUint32(16, 65536, true);
    const list = await call(rb.build(Opcode.Readdirplus, 1n, rd), 70000);
    tt.notOk(leaksCanary(list.data), 'readdirplus does not leak');
  } finally {
    s.close();
  }
  await alive(tt, env);
  canaryIntact(tt, env);
});

t.test('host swaps a directory for a symlink while the guest looks up and opens', async (tt) => {
  const swap = path.join(env.share, 'swap');
  const real = path.join(env.share, 'swap-real');
  fs.mkdirSync(real);
  fs.writeFileSync(path.join(real, 'canary2.txt'), 'inside\n');
  const { s, rb, call } = await fuseSession(env);
  let stop = false;
  let flips = 0;
  const flipper = (async () => {
    while (!stop) {
      try {
        fs.rmSync(swap, { force: true, recursive: false });
      } catch {
        /* a dir */
      }
      try {
        if (flips % 2) fs.symlinkSync(env.outsideDir, swap);
        else fs.renameSync(real, swap);
      } catch {
        /* lost a race with ourselves */
      }
      if (flips % 2 === 0) {
        // hold the real directory a moment: the guest must get lookups through it, or nothing is tested
        await sleep(1);
        try {
          fs.renameSync(swap, real);
        } catch {
          /* */
        }
      }
      flips++;
      await sleep(0);
    }
  })();
  let leaked = 0;
  let served = 0;
  let inside = 0;
  try {
    // 3 s of races, longer (up to 20 s) until at least 20 reads went through the swapped directory
    const start = Date.now();
    while (Date.now() - start < 3000 || (served < 20 && Date.now() - start < 20000)) {
      const e = await call(rb.lookup(1n, 'swap'));
      if (e.error !== 0) continue;
      const d = e.view.getBigUint64(0, true);
      const f = await call(rb.lookup(d, 'canary2.txt'));
      if (f.error === 0) {
        const n = f.view.getBigUint64(0, true);
        const o = await call(rb.open(n, 0));
        if (o.error === 0) {
          const fh = o.view.getBigUint64(0, true);
          const r = await call(rb.read(n, fh, 0n, 4096), 8192);
          if (leaksCanary(r.data)) leaked++;
          if (r.error === 0 && new TextDecoder().decode(r.data) === 'inside\n') inside++;
          served++;
          await call(rb.release(n, fh));
        }
        await s.send(0, rb.forget(n, 1n), 0).catch(() => undefined);
      }
      await s.send(0, rb.forget(d, 1n), 0).catch(() => undefined);
    }
  } finally {
    stop = true;
    await flipper;
    s.close();
  }
  tt.equal(leaked, 0, `no read through the swapped-in symlink (${served} reads, ${flips} flips)`);
  tt.ok(served >= 20, `the race was run: reads were served through the directory (${served})`);
  tt.equal(inside, served, 'every served read got the file inside the share');
  await alive(tt, env);
  canaryIntact(tt, env);
});

t.test('the daemon never opens a FIFO or device node the guest made (CREATE over an existing name)', async (tt) => {
  const { s, rb, call } = await fuseSession(env);
  try {
    // The guest makes a FIFO; a host process holds its read end. If the daemon opened the FIFO for
    // writing (O_CREAT without O_EXCL opens an existing node), the reader would see a writer come
    // and go: POLLHUP on the read end.
    const mk = await call(rb.build(Opcode.Mknod, 1n, u32s(S_IFIFO | 0o666, 0, 0, 0), cstr('fifo')));
    tt.equal(mk.error, 0, 'mknod a FIFO');
    const rfd = fs.openSync(path.join(env.share, 'fifo'), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      for (const flags of [O_WRONLY | O_CREAT, O_RDWR | O_CREAT, O_WRONLY | O_CREAT | O_TRUNC]) {
        const c = await call(rb.create(1n, 'fifo', flags, S_IFREG | 0o644));
        tt.ok(c.error < 0, `create over the FIFO (flags ${flags.toString(8)}): ${c.error}`);
      }
      const rev = new Int32Array(1);
      const n = native.poll(Int32Array.from([rfd]), 1, 0, rev);
      tt.equal(n, 0, `no writer ever opened the FIFO (revents 0x${rev[0]!.toString(16)})`);
    } finally {
      fs.closeSync(rfd);
    }
    // a device node the guest made: mknod c 1 3 (a null device), then CREATE over it
    const dev = await call(rb.build(Opcode.Mknod, 1n, u32s(0o020666, (1 << 8) | 3, 0, 0), cstr('nulldev')));
    if (dev.error === 0) {
      const c = await call(rb.create(1n, 'nulldev', O_RDWR | O_CREAT, S_IFREG | 0o644));
      tt.ok(c.error < 0, `create over a device node is refused: ${c.error}`);
    }
  } finally {
    s.close();
  }
  await alive(tt, env);
});

t.test('fd exhaustion under a low RLIMIT_NOFILE: errors, not a crash, and recovery', async (tt) => {
  const low = await startHostile(tt);
  // the daemon raises its limit at start; lower it from outside
  execFileSync('prlimit', [`--pid=${low.daemon.pid}`, '--nofile=300:20000']);
  const { s, rb, call, raw } = await fuseSession(low);
  try {
    for (let i = 0; i < 400; i++) fs.writeFileSync(path.join(low.share, 'dir', `g${i}`), 'x');
    // a file opened before the descriptors run out, to FLUSH at the limit
    const hello = (await call(rb.lookup(1n, 'hello.txt'))).view.getBigUint64(0, true);
    const helloFh = (await call(rb.open(hello, O_RDONLY))).view.getBigUint64(0, true);
    const e = await call(rb.lookup(1n, 'dir'));
    const d = e.view.getBigUint64(0, true);
    const ids: bigint[] = [];
    let errors = 0;
    for (let i = 0; i < 400; i++) {
      const r = await call(rb.lookup(d, `g${i}`), 256);
      if (r.error === 0) ids.push(r.view.getBigUint64(0, true));
      else errors++;
    }
    tt.ok(errors > 0, `lookups fail once fds run out (${ids.length} ok, ${errors} errors)`);
    const f = ids[0]!;
    const fhs: bigint[] = [];
    for (let i = 0; i < 50; i++) {
      const o = await call(rb.open(f, 0), 256);
      if (o.error === 0) fhs.push(o.view.getBigUint64(0, true));
    }
    tt.ok((await call(rb.getattr(1n))).error === 0, 'getattr still works at the limit');
    const flush = new Uint8Array(24);
    new DataView(flush.buffer).setBigUint64(0, helloFh, true);
    // FLUSH is close(dup(fd)); with no descriptor left for the dup it falls back to fdatasync
    // (src/fs/passthrough/file.ts flushFd): the data is flushed and the guest's close(2) succeeds
    tt.equal((await call(rb.build(Opcode.Flush, hello, flush), 256)).error, 0, 'FLUSH at the limit: flushed by fdatasync, the guest\'s close(2) does not fail with EMFILE');
    await call(rb.release(hello, helloFh), 256);
    // a ring restart at the limit (workers rebuild their epoll sets): must not kill a worker
    const p = s as unknown as { kicks: number[]; calls: number[] };
    const base = s.fe.getVringBase(1);
    s.fe.setVringBase(1, base);
    s.fe.setVringKick(1, p.kicks[1]!);
    s.fe.setVringCall(1, p.calls[1]!);
    tt.ok((await call(rb.getattr(1n))).error === 0, 'the ring restarted at the limit serves');
    for (const fh of fhs) await call(rb.release(f, fh), 256).catch(() => undefined);
    for (const id of ids) await raw(rb.forget(id, 1n), 0).catch(() => undefined);
  } catch (err) {
    tt.fail(`during exhaustion: ${(err as Error).message}`);
  } finally {
    s.close();
  }
  await sleep(200);
  await alive(tt, low, 'after exhaustion');
  const { s: s2, rb: rb2, call: call2 } = await fuseSession(low);
  try {
    const r = await call2(rb2.lookup(1n, 'hello.txt'));
    tt.equal(r.error, 0, 'lookups work again after FORGET/RELEASE and a reconnect');
  } finally {
    s2.close();
  }
});
