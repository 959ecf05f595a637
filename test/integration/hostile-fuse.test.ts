/**
 * A hostile guest's FUSE requests against the real daemon process: random opcodes and bodies, header
 * lengths that disagree with the chain, made-up and stale node ids and handles, bad names, extreme
 * offsets and sizes, tiny reply buffers, session misuse (DESTROY, INIT twice), resource exhaustion.
 * After each group the daemon must be alive, no worker may have died, a fresh session must get
 * FUSE_INIT answered, and nothing beside the share may be read or changed.
 * Replay a fuzz run with HOSTILE_SEED=<seed>.
 */
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Opcode, encodeReadIn, encodeSetattrIn } from '../../src/abi/fuse.js';
import { Errno } from '../../src/errors.js';
import { S_IFREG } from '../../src/abi/stat.js';
import { cstr, parseReply, u32s, u64s } from '../../src/frontend/fuse-requests.js';
import {
  alive, canaryIntact, fdCount, fuseSession, leaksCanary, prng, seedFromEnv, startHostile, withTimeout,
  type HostileEnv,
} from '../fuzz/hostile-kit.js';
import { frontendsGone, until } from '../helpers/poll.js';

const O_RDWR = 2;
const O_CREAT = 0o100;

let env: HostileEnv;
t.before(async () => {
  env = await startHostile(t);
});

function readIn(fh: bigint, off: bigint, size: number, flags = 0): Uint8Array {
  const a = new Uint8Array(40);
  encodeReadIn(new DataView(a.buffer), 0, { fh, offset: BigInt.asUintN(64, off), size, readFlags: flags, lockOwner: 0n, flags: 0 });
  return a;
}

t.test('random opcodes 0..100 with random bodies, lengths and node ids', async (tt) => {
  const seed = seedFromEnv(0x5eed_f05e);
  const r = prng(seed);
  const { s, rb, raw } = await fuseSession(env);
  try {
    const nodeids = [0n, 1n, 2n, 0xffff_ffff_ffff_ffffn, 0x1_0000_0001n, 0xdead_beefn];
    for (let i = 0; i < 1500; i++) {
      let op = r.int(101);
      if (op === Opcode.Init || op === Opcode.Destroy) op = Opcode.Getattr; // session ops: tested below
      const body = r.bytes(r.pick([0, 1, 8, 16, 40, 64, 88, 200, 300]));
      if (r.next() < 0.5 && body.length > 0) body[body.length - 1] = 0; // a NUL at the end half the time
      const req = rb.build(op, r.next() < 0.7 ? r.pick(nodeids) : BigInt(r.int(100)), body);
      const dv = new DataView(req.buffer);
      const lenMode = r.int(6);
      if (lenMode === 0) dv.setUint32(0, r.int(req.length), true); // shorter than the chain
      else if (lenMode === 1) dv.setUint32(0, req.length + 1 + r.int(100000), true); // longer
      else if (lenMode === 2) dv.setUint32(0, 0xffffffff, true);
      if (r.next() < 0.1) dv.setBigUint64(8, 0n, true); // unique 0
      const cap = r.pick([0, 8, 15, 16, 17, 100, 4096, 8192]);
      const reply = await raw(req, cap).catch((e: Error) => {
        throw new Error(`seed ${seed} step ${i}: ${e.message}`);
      });
      if (leaksCanary(reply)) tt.fail(`seed ${seed} step ${i}: reply contains the canary`);
      if (cap === 0) continue;
      if (reply.length > cap) tt.fail(`seed ${seed} step ${i}: reply longer than the buffer`);
      // the reply must fit what the guest gave: a header only when there is room for it
      if (cap < 16 && reply.length !== 0) tt.fail(`seed ${seed} step ${i}: ${reply.length}-byte reply in a ${cap}-byte buffer`);
    }
    tt.pass(`1500 random requests answered (seed ${seed})`);
    tt.equal(parseReply(await raw(rb.getattr(1n), 4096)).error, 0, 'the session still serves');
  } finally {
    s.close();
  }
  await alive(tt, env);
  canaryIntact(tt, env);
});

t.test('reply buffers too small or missing', async (tt) => {
  const { s, rb, raw, call } = await session();
  try {
    for (const cap of [0, 8, 15]) {
      for (const req of [rb.getattr(1n), rb.lookup(1n, 'hello.txt'), rb.build(Opcode.Statfs, 1n), rb.build(9999, 1n)]) {
        const b = await raw(req, cap);
        tt.equal(b.length, 0, `cap ${cap}, opcode ${req[4]}: zero-length used element`);
      }
    }
    // readable-only chains (no writable part at all) for opcodes that would reply with data
    const o = await call(rb.open(await nodeOf(call, rb, 'hello.txt'), 0));
    const fh = o.view.getBigUint64(0, true);
    tt.equal((await raw(rb.read(2n, fh, 0n, 4096), 0)).length, 0, 'READ without a reply buffer');
    tt.equal((await raw(rb.read(2n, fh, 0n, 4096), 15)).length, 0, 'READ with 15 bytes of reply buffer');
    const r16 = parseReply(await raw(rb.read(2n, fh, 0n, 4096), 16));
    tt.equal(r16.error, 0, 'READ with exactly a header of room');
    tt.equal(r16.len, 16, '... reads nothing');
    // room for the header and 4 bytes: no directory entry fits, so an empty listing (not an error)
    const od = await call(rb.open(1n, 0, Opcode.Opendir));
    const dfh = od.view.getBigUint64(0, true);
    const rd20 = parseReply(await raw(rb.build(Opcode.Readdir, 1n, readIn(dfh, 0n, 4096)), 20));
    tt.equal(rd20.error, 0, 'READDIR with 20 bytes of reply buffer');
    tt.equal(rd20.len, 16, '... lists nothing');
    await call(rb.release(1n, dfh, Opcode.Releasedir));
    tt.equal((await call(rb.getattr(1n))).error, 0, 'still serving');
  } finally {
    s.close();
  }
  await alive(tt, env);
});

async function session(): ReturnType<typeof fuseSession> {
  return fuseSession(env);
}
async function nodeOf(call: (req: Uint8Array, cap?: number) => Promise<ReturnType<typeof parseReply>>, rb: { lookup(p: bigint, n: string | Uint8Array): Uint8Array }, name: string, parent = 1n): Promise<bigint> {
  const e = await call(rb.lookup(parent, name));
  if (e.error !== 0) throw new Error(`lookup ${name}: ${e.error}`);
  return e.view.getBigUint64(0, true);
}

t.test('names: empty, dot, dotdot, slash, no NUL, 255/256 bytes, non-UTF-8', async (tt) => {
  const { s, rb, call } = await session();
  try {
    const cases: Array<[string, Uint8Array, boolean]> = [
      ['empty', cstr(''), false],
      ['.', cstr('.'), false],
      ['..', cstr('..'), false],
      ['a/b', cstr('dir/inner.txt'), false],
      ['../canary.txt', cstr('../canary.txt'), false],
      ['no NUL', new TextEncoder().encode('hello.txt'), false],
      ['256 bytes', cstr('a'.repeat(256)), false],
    ];
    for (const [what, name, _ok] of cases) {
      const e = await call(rb.build(Opcode.Lookup, 1n, name));
      tt.ok(e.error < 0, `lookup ${what}: ${e.error}`);
      for (const op of [Opcode.Mkdir, Opcode.Unlink, Opcode.Rmdir]) {
        const pre = op === Opcode.Mkdir ? [u32s(0o755, 0)] : [];
        const r = await call(rb.build(op, 1n, ...pre, name));
        tt.ok(r.error < 0, `opcode ${op} on ${what}: ${r.error}`);
      }
      const c = await call(rb.build(Opcode.Create, 1n, u32s(O_RDWR | O_CREAT, 0o100644, 0, 0), name));
      tt.ok(c.error < 0, `create ${what}: ${c.error}`);
    }
    // a 255-byte name is legal
    const long = 'b'.repeat(255);
    const c = await call(rb.create(1n, long, O_RDWR | O_CREAT, S_IFREG | 0o644));
    tt.equal(c.error, 0, 'create a 255-byte name');
    // non-UTF-8 bytes are a legal Linux name
    const bin = new Uint8Array([0xff, 0xfe, 0x41]);
    const cb = await call(rb.build(Opcode.Create, 1n, u32s(O_RDWR | O_CREAT, S_IFREG | 0o644, 0, 0), cstr(bin)));
    tt.equal(cb.error, 0, 'create a non-UTF-8 name');
    tt.ok(fs.readdirSync(env.share, { encoding: 'buffer' }).some((n) => n.equals(Buffer.from(bin))), 'the host has the exact bytes');
    // rename with names at the edges
    tt.ok((await call(rb.build(Opcode.Rename, 1n, u64s(1n), cstr(long), cstr('..')))).error < 0, 'rename to ..');
    tt.ok((await call(rb.build(Opcode.Rename, 1n, u64s(1n), cstr(long), cstr('x/y')))).error < 0, 'rename to x/y');
    tt.ok((await call(rb.build(Opcode.Rename, 1n, u64s(1n), cstr(long)))).error < 0, 'rename without a new name');
    tt.ok((await call(rb.build(Opcode.Symlink, 1n, cstr('l'), new Uint8Array([0x2f])))).error < 0, 'symlink target without NUL');
  } finally {
    s.close();
  }
  await alive(tt, env);
  canaryIntact(tt, env);
});

t.test('node ids and handles: 0, random, stale after FORGET, closed', async (tt) => {
  const { s, rb, call, raw } = await session();
  try {
    for (const n of [0n, 0xffff_ffff_ffff_ffffn, 0x7fff_ffff_0000_0001n, 0x1_0000_0001n, 3n]) {
      tt.ok((await call(rb.getattr(n))).error < 0, `getattr ${n.toString(16)}`);
      tt.ok((await call(rb.lookup(n, 'hello.txt'))).error < 0, `lookup in ${n.toString(16)}`);
      tt.ok((await call(rb.open(n, 0))).error < 0, `open ${n.toString(16)}`);
    }
    const n = await nodeOf(call, rb, 'hello.txt');
    const o = await call(rb.open(n, 0));
    const fh = o.view.getBigUint64(0, true);
    // FORGET more lookups than were taken, then use the node id and the still-open handle
    await raw(rb.forget(n, 1000n), 0);
    await raw(rb.forget(1n, 0xffff_ffff_ffff_ffffn), 0); // FORGET of the root
    tt.equal((await call(rb.getattr(1n))).error, 0, 'the root survives FORGET');
    tt.ok((await call(rb.getattr(n))).error < 0, 'a forgotten node id is stale');
    const rd = await call(rb.read(n, fh, 0n, 100), 200);
    tt.equal(rd.error, 0, 'the open handle still reads after FORGET of its node');
    tt.equal((await call(rb.release(n, fh))).error, 0, 'release');
    tt.ok((await call(rb.release(n, fh))).error < 0, 'double release is refused');
    tt.ok((await call(rb.read(n, fh, 0n, 100), 200)).error < 0, 'read on a closed handle');
    for (const f of [0n, 1n, 0xffff_ffff_ffff_ffffn, fh + 1n, fh ^ (1n << 32n)]) {
      tt.ok((await call(rb.read(1n, f, 0n, 10), 200)).error < 0, `read fh ${f.toString(16)}`);
      tt.ok((await call(rb.write(1n, f, 0n, new Uint8Array(4)))).error < 0, `write fh ${f.toString(16)}`);
      tt.ok((await call(rb.build(Opcode.Readdir, 1n, readIn(f, 0n, 4096)))).error < 0, `readdir fh ${f.toString(16)}`);
      tt.ok((await call(rb.build(Opcode.Fsync, 1n, u64s(f), u32s(0, 0)))).error < 0, `fsync fh ${f.toString(16)}`);
      tt.ok((await call(rb.build(Opcode.Lseek, 1n, u64s(f), u64s(0n), u32s(0, 0)))).error < 0, `lseek fh ${f.toString(16)}`);
    }
    // BATCH_FORGET with a count far beyond its buffer, and with many real entries
    await raw(rb.build(Opcode.BatchForget, 0n, u32s(0xffffffff, 0), u64s(1n), u64s(1n)), 0);
    const many = new Uint8Array(16 * 4000);
    const mv = new DataView(many.buffer);
    for (let i = 0; i < 4000; i++) {
      mv.setBigUint64(16 * i, BigInt(i), true);
      mv.setBigUint64(16 * i + 8, 0xffff_ffff_ffff_ffffn, true);
    }
    await raw(rb.build(Opcode.BatchForget, 0n, u32s(4000, 0), many), 0);
    tt.equal((await call(rb.getattr(1n))).error, 0, 'still serving after BATCH_FORGET');
  } finally {
    s.close();
  }
  await alive(tt, env);
});

t.test('READ/WRITE: sizes 0 and > 1 MiB, offsets near 2^63 and 2^64, size disagreeing with payload', async (tt) => {
  const { s, rb, call } = await session();
  try {
    const c = await call(rb.create(1n, 'rw.bin', O_RDWR | O_CREAT, S_IFREG | 0o644));
    tt.equal(c.error, 0, 'create');
    const n = c.view.getBigUint64(0, true);
    const fh = c.view.getBigUint64(128, true);
    const offs = [0n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n, (1n << 53n), (1n << 53n) + 1n, -4096n, (1n << 62n)];
    // Offsets of 2^63 and more are negative as loff_t: EINVAL, as pread/pwrite give. Offsets from 2^53 up
    // are refused with EINVAL at the boundary (src/fuse/args.ts: no file is that large).
    const offErr = (off: bigint): number => (off === 0n ? 0 : -Errno.EINVAL);
    for (const off of offs) {
      const r = await call(rb.build(Opcode.Read, n, readIn(fh, off, 4096)), 8192);
      tt.equal(r.error, offErr(off), `read at ${off}: ${r.error}`);
      const w = await call(rb.build(Opcode.Write, n, readIn(fh, off, 4, 0), new Uint8Array(4)));
      tt.equal(w.error, offErr(off), `write at ${off}: ${w.error}`);
      if (off === 0n) tt.equal(w.view.getUint32(0, true), 4, '... 4 bytes written at 0');
    }
    tt.equal((await call(rb.build(Opcode.Read, n, readIn(fh, 0n, 0)), 64)).error, 0, 'read of size 0');
    tt.equal((await call(rb.build(Opcode.Write, n, readIn(fh, 0n, 0)))).error, 0, 'write of size 0');
    const big = await call(rb.build(Opcode.Read, n, readIn(fh, 0n, 0xffffffff)), 8192);
    tt.equal(big.error, 0, 'read of 4 GiB succeeds');
    tt.equal(big.len, 16 + 4, '... with the file\'s 4 bytes, cut to the buffer and the file');
    // write size larger than the payload, smaller, and > 1 MiB
    tt.ok((await call(rb.build(Opcode.Write, n, readIn(fh, 0n, 1000), new Uint8Array(10)))).error < 0, 'write size > payload');
    const small = await call(rb.build(Opcode.Write, n, readIn(fh, 0n, 5), new Uint8Array(100)));
    tt.equal(small.error, 0, 'write size < payload writes size bytes');
    tt.equal(small.view.getUint32(0, true), 5, '... 5 of them');
    tt.ok((await call(rb.build(Opcode.Write, n, readIn(fh, 0n, 0x7fffffff), new Uint8Array(16)))).error < 0, 'write of 2 GiB declared');
    // FALLOCATE / LSEEK with extreme numbers
    for (const off of offs) {
      const fa = await call(rb.build(Opcode.Fallocate, n, u64s(fh), u64s(off), u64s((1n << 64n) - 1n), u32s(0xffffffff, 0)));
      tt.ok(fa.error < 0, `fallocate at ${off}: ${fa.error}`);
      const ls = await call(rb.build(Opcode.Lseek, n, u64s(fh), u64s(off), u32s(4, 0)));
      tt.equal(ls.error, offErr(off), `lseek SEEK_HOLE at ${off}: ${ls.error}`);
      if (off === 0n) tt.equal(ls.view.getBigUint64(0, true), 5n, '... the hole is at the end of the 5-byte file');
    }
    await call(rb.release(n, fh));
    tt.ok(fs.statSync(path.join(env.share, 'rw.bin')).size < 1 << 20, 'no huge file');
  } finally {
    s.close();
  }
  await alive(tt, env);
});

t.test('SETATTR: every valid-bit combination, huge sizes and times', async (tt) => {
  const { s, rb, call } = await session();
  try {
    const c = await call(rb.create(1n, 'attr.bin', O_RDWR | O_CREAT, S_IFREG | 0o644));
    const n = c.view.getBigUint64(0, true);
    const fh = c.view.getBigUint64(128, true);
    const r = prng(seedFromEnv(77));
    const sizes = [0n, 1n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n, 1n << 40n];
    for (let valid = 0; valid < 1 << 13; valid += 1 + r.int(7)) {
      const a = new Uint8Array(88);
      encodeSetattrIn(new DataView(a.buffer), 0, {
        valid, fh: r.next() < 0.5 ? fh : BigInt(r.int(1000)), size: r.pick(sizes), lockOwner: 0n,
        atime: r.pick([0n, (1n << 64n) - 1n, 1n << 62n]), mtime: r.pick([0n, (1n << 64n) - 1n]), ctime: 0n,
        atimensec: r.pick([0, 999_999_999, 1_000_000_000, 0xffffffff]), mtimensec: r.pick([0, 0xffffffff]), ctimensec: 0,
        mode: r.pick([0o644, 0o7777, 0xffffffff, 0o170777]), uid: r.pick([0, 0xffffffff, 1000]), gid: r.pick([0, 0xffffffff]),
      });
      for (const node of [n, 1n]) {
        const res = await call(rb.build(Opcode.Setattr, node, a), 4096);
        if (res.error > 0) tt.fail(`setattr valid ${valid}: ${res.error}`);
      }
    }
    tt.pass('every combination answered');
    await call(rb.release(n, fh));
    tt.ok(fs.statSync(env.share).isDirectory(), 'the share is still a directory');
  } finally {
    s.close();
  }
  // the share root's mode may have changed: put it back for the next tests
  fs.chmodSync(env.share, 0o755);
  await alive(tt, env);
  canaryIntact(tt, env);
});

t.test('RENAME/LINK to a file as parent, LINK of a directory, readdir with odd offsets', async (tt) => {
  const { s, rb, call } = await session();
  try {
    const f = await nodeOf(call, rb, 'hello.txt');
    const d = await nodeOf(call, rb, 'dir');
    tt.ok((await call(rb.build(Opcode.Rename, 1n, u64s(f), cstr('hello.txt'), cstr('x')))).error < 0, 'rename into a file');
    tt.ok((await call(rb.build(Opcode.Rename2, 1n, u64s(d), u32s(0xffffffff, 0), cstr('hello.txt'), cstr('x')))).error < 0, 'rename2 with bad flags');
    tt.ok((await call(rb.build(Opcode.Link, f, u64s(f), cstr('x')))).error < 0, 'link with a file as parent');
    tt.ok((await call(rb.build(Opcode.Link, 1n, u64s(d), cstr('rootlink')))).error < 0, 'link of the root');
    tt.equal((await call(rb.build(Opcode.Link, 1n, u64s(d), cstr('dirlink')))).error, -Errno.EPERM, 'link of a directory: EPERM, as link(2)');
    tt.ok((await call(rb.build(Opcode.Link, d, u64s(1n), cstr('x')))).error < 0, 'link of a directory');
    tt.ok((await call(rb.build(Opcode.Rename, 1n, u64s(d), cstr('dir'), cstr('sub')))).error < 0, 'rename a directory into itself');
    const o = await call(rb.open(1n, 0, Opcode.Opendir));
    const fh = o.view.getBigUint64(0, true);
    for (const off of [1n, 2n, 3n, 12345n, (1n << 62n), (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n]) {
      for (const op of [Opcode.Readdir, Opcode.Readdirplus]) {
        const r = await call(rb.build(op, 1n, readIn(fh, off, 4096)), 8192);
        // an offset is the guest's cookie; one of 2^63 or more is negative as off_t: EINVAL
        const want = off >= 1n << 63n ? -Errno.EINVAL : 0;
        tt.equal(r.error, want, `readdir${op === Opcode.Readdirplus ? 'plus' : ''} at ${off}: ${r.error}`);
      }
    }
    for (const sz of [0, 1, 24, 0xffffffff]) {
      const r = await call(rb.build(Opcode.Readdirplus, 1n, readIn(fh, 0n, sz)), 8192);
      tt.equal(r.error, 0, `readdirplus size ${sz}`);
      // no entry fits in 0, 1 or 24 bytes (a direntplus is at least 152); 4 GiB is cut to the buffer
      if (sz < 152) tt.equal(r.len, 16, `... size ${sz} lists nothing`);
      else tt.ok(r.len > 16 && r.len <= 8192, `... size ${sz} lists entries within the buffer (${r.len})`);
    }
    // READDIR on a file handle, READ on a directory handle
    const fo = await call(rb.open(f, 0));
    const ffh = fo.view.getBigUint64(0, true);
    tt.ok((await call(rb.build(Opcode.Readdir, f, readIn(ffh, 0n, 4096)))).error < 0, 'readdir on a file handle');
    tt.ok((await call(rb.read(1n, fh, 0n, 100), 200)).error < 0, 'read on a directory handle');
    tt.ok((await call(rb.write(1n, fh, 0n, new Uint8Array(4)))).error < 0, 'write on a directory handle');
    await call(rb.release(f, ffh));
    await call(rb.release(1n, fh, Opcode.Releasedir));
  } finally {
    s.close();
  }
  await alive(tt, env);
});

t.test('session misuse: DESTROY then requests, INIT twice, INIT 6.x / 8.x / 7.0', async (tt) => {
  const { s, rb, call } = await session();
  try {
    tt.equal((await call(rb.build(Opcode.Destroy, 0n))).error, 0, 'DESTROY');
    tt.ok((await call(rb.getattr(1n))).error < 0, 'requests after DESTROY are refused');
    tt.equal((await call(rb.init())).error, 0, 'INIT again');
    tt.equal((await call(rb.init())).error, 0, 'INIT twice');
    const initWith = (major: number, minor: number): Uint8Array => {
      const a = new Uint8Array(64);
      const v = new DataView(a.buffer);
      v.setUint32(0, major, true);
      v.setUint32(4, minor, true);
      return rb.build(Opcode.Init, 0n, a);
    };
    tt.ok((await call(initWith(6, 99))).error < 0, 'INIT 6.99 refused');
    const r8 = await call(initWith(8, 0));
    tt.equal(r8.error, 0, 'INIT 8.0 answered with our major');
    tt.equal(r8.view.getUint32(0, true), 7, 'major 7');
    tt.ok((await call(initWith(7, 0))).error < 0, 'INIT 7.0 refused');
    tt.ok((await call(rb.build(Opcode.Init, 0n, new Uint8Array(4)))).error < 0, 'INIT with 4 bytes');
    tt.equal((await call(rb.init())).error, 0, 'a proper INIT still works');
    tt.equal((await call(rb.getattr(1n))).error, 0, 'and the session serves');
  } finally {
    s.close();
  }
  await alive(tt, env);
});

t.test('10k LOOKUPs without FORGET, then FORGET: fds come back to the baseline', async (tt) => {
  const { s, rb, call, raw } = await session();
  const pid = env.daemon.pid;
  try {
    const names: string[] = [];
    for (let i = 0; i < 200; i++) {
      const nm = `f${i}`;
      fs.writeFileSync(path.join(env.share, 'dir', nm), '');
      names.push(nm);
    }
    const d = await nodeOf(call, rb, 'dir');
    const base = fdCount(pid);
    const got = new Map<bigint, number>();
    const batch: Promise<void>[] = [];
    for (let i = 0; i < 10000; i++) {
      batch.push(call(rb.lookup(d, names[i % names.length]!), 256).then((e) => {
        if (e.error === 0) {
          const id = e.view.getBigUint64(0, true);
          got.set(id, (got.get(id) ?? 0) + 1);
        }
      }));
      if (batch.length >= 60) await Promise.all(batch.splice(0));
    }
    await Promise.all(batch);
    tt.equal(got.size, 200, '200 distinct node ids');
    const grown = fdCount(pid);
    tt.ok(grown - base <= 210, `fds grow by the inodes, not the lookups (${base} → ${grown})`);
    for (const [id, k] of got) await raw(rb.forget(id, BigInt(k)), 0);
    await call(rb.getattr(1n));
    // FORGET has no reply: wait for its effect, the fds closing
    tt.ok(await until(() => fdCount(pid) <= base), `fds back to the baseline after FORGET (${fdCount(pid)} ≤ ${base})`);
    // handles: thousands of OPENs without RELEASE, then RELEASE all
    const f = await nodeOf(call, rb, 'hello.txt');
    const base2 = fdCount(pid);
    const fhs: bigint[] = [];
    for (let i = 0; i < 3000; i++) {
      const o = await call(rb.open(f, 0), 256);
      if (o.error === 0) fhs.push(o.view.getBigUint64(0, true));
    }
    tt.equal(fhs.length, 3000, '3000 open handles');
    for (const fh of fhs) await call(rb.release(f, fh), 256);
    await raw(rb.forget(f, 1n), 0);
    await call(rb.getattr(1n));
    tt.ok(fdCount(pid) <= base2, `fds back after RELEASE (${fdCount(pid)} ≤ ${base2})`);
  } finally {
    s.close();
  }
  await alive(tt, env);
});

t.test('a disconnect drops every inode and handle the session held', async (tt) => {
  const pid = env.daemon.pid;
  await alive(tt, env);
  // alive() closed a session of its own: the baseline is the count once the daemon has reset after it
  await frontendsGone(env.daemon.logs);
  const base = fdCount(pid);
  for (let round = 0; round < 3; round++) {
    const { s, rb, call } = await session();
    const f = await nodeOf(call, rb, 'hello.txt');
    const d = await nodeOf(call, rb, 'dir');
    for (let i = 0; i < 100; i++) await call(rb.open(f, 0), 256);
    for (let i = 0; i < 100; i++) await call(rb.open(d, 0, Opcode.Opendir), 256);
    s.close();
    // the disconnect has no reply: wait for the daemon's reset, then for the session's fds to close
    tt.ok((await frontendsGone(env.daemon.logs)) && (await until(() => fdCount(pid) <= base + 2)), `round ${round}: fds back after the disconnect (${base} → ${fdCount(pid)})`);
  }
  await alive(tt, env);
  tt.ok((await frontendsGone(env.daemon.logs)) && (await until(() => fdCount(pid) <= base + 2)), `fds back to the baseline after disconnects (${base} → ${fdCount(pid)})`);
});

t.test('many requests in flight, then FORGET storms on the hiprio queue', async (tt) => {
  const { s, rb, call } = await session();
  try {
    const f = await nodeOf(call, rb, 'hello.txt');
    const all = Array.from({ length: 60 }, (_, i) => withTimeout(s.send(1, i % 2 ? rb.getattr(f) : rb.lookup(1n, 'hello.txt'), 512), 5000, 'storm'));
    for (let i = 0; i < 60; i++) void s.send(0, rb.forget(f, 1n), 0).catch(() => undefined);
    const res = await Promise.all(all);
    tt.equal(res.length, 60, 'all answered');
  } finally {
    s.close();
  }
  await alive(tt, env);
});
