// Extended attributes (--xattr / -o xattr): the four FUSE opcodes through FuseServer + Passthrough on a
// t.testdir(), the wire checks of every guest number, the never-follow / never-open rules for symlinks
// and FIFOs, and ENOSYS (with an unchanged INIT) when the option is off.
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import {
  IN_HEADER_SIZE, OUT_HEADER_SIZE, Opcode, XATTR_CREATE, XATTR_REPLACE, XATTR_SIZE_MAX, decodeOutHeader,
  encodeInHeader,
} from '../../src/abi/fuse.js';
import { BufferReader, BufferWriter } from '../helpers/buffer-io.js';
import { FuseServer } from '../../src/fuse/server.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { C, E, native } from '../../src/native.js';
import { FuseClient, type Reply, concat, cstr, le } from '../helpers/fuse-client.js';
import { realTables, resetTables } from '../helpers/real-tables.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Host-side xattr access for the checks (Node has none): on a real fd of the path. */
function hostFd(p: string): number {
  const st = fs.lstatSync(p);
  return fs.openSync(p, st.isDirectory() ? fs.constants.O_RDONLY | fs.constants.O_DIRECTORY : fs.constants.O_RDONLY);
}
function hostGet(p: string, name: string): string | number {
  const fd = hostFd(p);
  try {
    const buf = new Uint8Array(4096);
    const n = native.fgetxattr(fd, enc.encode(name), buf);
    return n < 0 ? n : dec.decode(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
}
function hostSet(p: string, name: string, value: string): number {
  const fd = hostFd(p);
  try {
    return native.fsetxattr(fd, enc.encode(name), enc.encode(value), 0);
  } finally {
    fs.closeSync(fd);
  }
}

/** Does this host file system take user.* xattrs? (ext4 and tmpfs do; some overlays don't.) */
function userXattrSupport(dir: string): string | null {
  const p = path.join(dir, '.xattr-probe');
  fs.writeFileSync(p, '');
  try {
    const r = hostSet(p, 'user.probe', 'x');
    if (r === -E.EOPNOTSUPP) return `the file system under ${dir} has no user.* xattrs (EOPNOTSUPP)`;
    if (r < 0) return `setting a user.* xattr under ${dir} failed: errno ${-r}`;
    return null;
  } finally {
    fs.unlinkSync(p);
  }
}

class XattrClient extends FuseClient {
  setx(node: bigint, name: string | Uint8Array, value: string | Uint8Array, flags = 0): Reply {
    const v = typeof value === 'string' ? enc.encode(value) : value;
    return this.call(Opcode.Setxattr, node, concat(le([['u32', v.length], ['u32', flags]]), cstr(name), v));
  }
  getx(node: bigint, name: string | Uint8Array, size: number, capacity?: number): Reply {
    return this.call(Opcode.Getxattr, node, concat(le([['u32', size], ['u32', 0]]), cstr(name)),
      capacity !== undefined ? { capacity } : {});
  }
  listx(node: bigint, size: number): Reply {
    return this.call(Opcode.Listxattr, node, le([['u32', size], ['u32', 0]]));
  }
  rmx(node: bigint, name: string | Uint8Array): Reply {
    return this.call(Opcode.Removexattr, node, cstr(name));
  }
  /** the size in a fuse_getxattr_out reply */
  static outSize(r: Reply): number {
    if (r.error !== 0 || r.data.length !== 8) throw new Error(`not a getxattr_out: error ${r.error}, ${r.data.length} bytes`);
    return r.view.getUint32(0, true);
  }
  static names(r: Reply): string[] {
    return dec.decode(r.data).split('\0').filter((s) => s !== '');
  }
}

/** the daemon's inode/handle tables (the wasm module), one instance for this file */
const tables = await realTables();

function passthrough(t: Test, share: string): Passthrough {
  const pfs = Passthrough.open(share, resetTables(tables));
  t.teardown(() => { pfs.destroy(); native.close(pfs.procFd); });
  return pfs;
}

function mount(t: Test, share: string, xattr = true): XattrClient {
  const c = new XattrClient(new FuseServer(passthrough(t, share), { cache: 'auto', xattr }));
  if (c.init().error !== 0) throw new Error('INIT failed');
  return c;
}

const skip = userXattrSupport(t.testdir({}));
if (skip) t.comment(`skipping: ${skip}`);

t.test('native f*xattr: -errno results, names checked, an O_PATH fd is refused', { skip: skip ?? false }, async (t) => {
  const dir = t.testdir({ f: 'data' });
  const p = path.join(dir, 'f');
  const fd = fs.openSync(p, 'r');
  t.teardown(() => fs.closeSync(fd));
  t.equal(native.fsetxattr(fd, enc.encode('user.a'), enc.encode('one'), 0), 0);
  t.equal(native.fgetxattr(fd, enc.encode('user.a'), null), 3, 'null out: the size');
  t.equal(native.fgetxattr(fd, enc.encode('user.a'), new Uint8Array(0)), 3, 'empty out: the size');
  const buf = new Uint8Array(8);
  t.equal(native.fgetxattr(fd, enc.encode('user.a'), buf), 3);
  t.equal(dec.decode(buf.subarray(0, 3)), 'one');
  t.equal(native.fgetxattr(fd, enc.encode('user.a'), new Uint8Array(2)), -E.ERANGE);
  t.equal(native.fgetxattr(fd, enc.encode('user.none'), buf), -E.ENODATA);
  t.equal(native.fsetxattr(fd, enc.encode('user.a'), enc.encode('x'), XATTR_CREATE), -E.EEXIST);
  t.equal(native.fsetxattr(fd, enc.encode('user.b'), enc.encode('x'), XATTR_REPLACE), -E.ENODATA);
  t.equal(native.fsetxattr(fd, enc.encode('user.e'), new Uint8Array(0), 0), 0, 'an empty value');
  t.equal(native.fgetxattr(fd, enc.encode('user.e'), buf), 0);
  const n = native.flistxattr(fd, null);
  t.ok(n >= 'user.a\0user.e\0'.length, 'list size');
  const lb = new Uint8Array(n);
  t.equal(native.flistxattr(fd, lb), n);
  t.ok(dec.decode(lb).split('\0').includes('user.a'));
  t.equal(native.fremovexattr(fd, enc.encode('user.a')), 0);
  t.equal(native.fremovexattr(fd, enc.encode('user.a')), -E.ENODATA);
  t.equal(native.fgetxattr(fd, new Uint8Array(0), buf), -E.ERANGE, 'empty name: ERANGE');
  t.equal(native.fgetxattr(fd, enc.encode(`user.${'n'.repeat(251)}`), buf), -E.ERANGE, '256-byte name: ERANGE');
  t.equal(native.fsetxattr(fd, enc.encode('user.\0x'), buf, 0), -E.EINVAL, 'embedded NUL');
  t.equal(native.fgetxattr(-1, enc.encode('user.a'), buf), -E.EBADF);
  const pathFd = native.openat2(C.AT_FDCWD, enc.encode(p), C.O_PATH, 0, 0);
  t.ok(pathFd >= 0);
  t.equal(native.fgetxattr(pathFd, enc.encode('user.e'), buf), -E.EBADF, 'O_PATH fds need the /proc/self/fd reopen');
  native.close(pathFd);
  t.throws(() => native.fsetxattr(fd, enc.encode('user.a'), 'x' as unknown as Uint8Array, 0), TypeError);
});

t.test('set / get / list / remove round trips on a file and a directory', { skip: skip ?? false }, async (t) => {
  const share = t.testdir({ f: 'data', d: {} });
  const c = mount(t, share);
  const f = c.entry(c.lookup(1n, 'f')).nodeid;
  const d = c.entry(c.lookup(1n, 'd')).nodeid;

  t.equal(c.setx(f, 'user.color', 'blue').error, 0, 'SETXATTR');
  t.equal(hostGet(path.join(share, 'f'), 'user.color'), 'blue', 'on the host file');
  const g = c.getx(f, 'user.color', 100);
  t.equal(g.error, 0);
  t.equal(dec.decode(g.data), 'blue', 'GETXATTR returns exactly the value');
  t.equal(XattrClient.outSize(c.getx(f, 'user.color', 0)), 4, 'size-0 probe: fuse_getxattr_out');
  t.equal(c.getx(f, 'user.color', 4).error, 0, 'a buffer of exactly the size');
  t.equal(c.getx(f, 'user.color', 3).error, -E.ERANGE, 'short buffer: ERANGE');
  t.equal(c.getx(f, 'user.missing', 100).error, -E.ENODATA, 'missing name: ENODATA');
  t.equal(c.getx(f, 'user.missing', 0).error, -E.ENODATA, 'missing name, probe: ENODATA');

  t.equal(c.setx(f, 'user.empty', '').error, 0, 'an empty value');
  t.equal(XattrClient.outSize(c.getx(f, 'user.empty', 0)), 0);
  const ge = c.getx(f, 'user.empty', 10);
  t.equal(ge.error, 0);
  t.equal(ge.data.length, 0);

  const binary = new Uint8Array(4000).map((_, i) => (i * 7) & 0xff);
  t.equal(c.setx(f, 'user.bin', binary).error, 0, 'a 4000-byte binary value (with NULs)');
  t.same(c.getx(f, 'user.bin', 65536).data, binary);

  const lsize = XattrClient.outSize(c.listx(f, 0));
  const l = c.listx(f, lsize);
  t.equal(l.error, 0);
  t.equal(l.data.length, lsize, 'LISTXATTR fills exactly the probed size');
  t.equal(l.data[l.data.length - 1], 0, 'NUL-terminated names');
  t.same(XattrClient.names(l).filter((n) => n.startsWith('user.')).sort(), ['user.bin', 'user.color', 'user.empty']);
  t.equal(c.listx(f, lsize - 1).error, -E.ERANGE, 'short list buffer: ERANGE');

  t.equal(c.rmx(f, 'user.color').error, 0, 'REMOVEXATTR');
  t.equal(hostGet(path.join(share, 'f'), 'user.color'), -E.ENODATA, 'gone on the host');
  t.equal(c.rmx(f, 'user.color').error, -E.ENODATA, 'remove a missing name: ENODATA');
  t.notOk(XattrClient.names(c.listx(f, 65536)).includes('user.color'));

  // directories, the root included
  for (const [node, p] of [[d, path.join(share, 'd')], [1n, share]] as const) {
    t.equal(c.setx(node, 'user.dir', 'yes').error, 0, `dir ${p}`);
    t.equal(hostGet(p, 'user.dir'), 'yes');
    t.equal(dec.decode(c.getx(node, 'user.dir', 10).data), 'yes');
    t.ok(XattrClient.names(c.listx(node, 65536)).includes('user.dir'));
    t.equal(c.rmx(node, 'user.dir').error, 0);
  }

  // a file without read permission: the daemon works as root, like the reference
  fs.writeFileSync(path.join(share, 'locked'), '');
  fs.chmodSync(path.join(share, 'locked'), 0);
  const locked = c.entry(c.lookup(1n, 'locked')).nodeid;
  t.equal(c.setx(locked, 'user.k', 'v', 0).error, 0, 'mode 000 file (root creds)');
  t.equal(dec.decode(c.getx(locked, 'user.k', 10).data), 'v');
  t.equal(c.getx(123456n, 'user.k', 10).error, -E.ESTALE, 'unknown node id');
});

t.test('XATTR_CREATE / XATTR_REPLACE and bad flags', { skip: skip ?? false }, async (t) => {
  const share = t.testdir({ f: '' });
  const c = mount(t, share);
  const f = c.entry(c.lookup(1n, 'f')).nodeid;
  t.equal(c.setx(f, 'user.a', 'new', XATTR_REPLACE).error, -E.ENODATA, 'REPLACE of a missing name');
  t.equal(c.setx(f, 'user.a', 'one', XATTR_CREATE).error, 0, 'CREATE');
  t.equal(c.setx(f, 'user.a', 'two', XATTR_CREATE).error, -E.EEXIST, 'CREATE of an existing name');
  t.equal(c.setx(f, 'user.a', 'three', XATTR_REPLACE).error, 0, 'REPLACE');
  t.equal(dec.decode(c.getx(f, 'user.a', 10).data), 'three');
  t.equal(c.setx(f, 'user.a', 'x', 4).error, -E.EINVAL, 'unknown flag bit');
  t.equal(c.setx(f, 'user.a', 'x', 0x80000000).error, -E.EINVAL, 'high flag bit');
  t.equal(dec.decode(c.getx(f, 'user.a', 10).data), 'three', 'unchanged by refused requests');
});

t.test('every guest number is checked', { skip: skip ?? false }, async (t) => {
  const share = t.testdir({ f: '' });
  const c = mount(t, share);
  const f = c.entry(c.lookup(1n, 'f')).nodeid;
  const name255 = `user.${'n'.repeat(250)}`;
  const name256 = `${name255}n`;
  t.equal(c.setx(f, name256, 'v').error, -E.ERANGE, 'a 256-byte name: ERANGE (set)');
  t.equal(c.getx(f, name256, 10).error, -E.ERANGE, '(get)');
  t.equal(c.getx(f, name256, 0).error, -E.ERANGE, '(get probe)');
  t.equal(c.rmx(f, name256).error, -E.ERANGE, '(remove)');
  t.equal(c.setx(f, '', 'v').error, -E.ERANGE, 'an empty name: ERANGE');
  t.equal(c.getx(f, '', 10).error, -E.ERANGE);
  t.equal(c.rmx(f, '').error, -E.ERANGE);
  const r255 = c.setx(f, name255, 'v');
  t.ok(r255.error === 0 || r255.error === -E.ERANGE || r255.error === -E.ENOSPC,
    `a 255-byte name reaches the host (${r255.error})`);

  // names without their NUL
  t.equal(c.call(Opcode.Removexattr, f, enc.encode('user.a')).error, -E.EINVAL, 'REMOVEXATTR name without NUL');
  t.equal(c.call(Opcode.Getxattr, f, concat(le([['u32', 10], ['u32', 0]]), enc.encode('user.a'))).error, -E.EINVAL,
    'GETXATTR name without NUL');
  t.equal(c.call(Opcode.Removexattr, f, enc.encode('x'.repeat(300))).error, -E.ERANGE, 'over-long, no NUL: ERANGE');
  t.equal(c.call(Opcode.Setxattr, f, concat(le([['u32', 1], ['u32', 0]]), enc.encode('user.a'))).error, -E.EINVAL,
    'SETXATTR name without NUL');
  // short fixed parts
  t.equal(c.call(Opcode.Setxattr, f, le([['u32', 0]])).error, -E.EINVAL, 'SETXATTR shorter than setxattr_in');
  t.equal(c.call(Opcode.Getxattr, f, le([['u32', 0]])).error, -E.EINVAL, 'GETXATTR shorter than getxattr_in');
  t.equal(c.call(Opcode.Listxattr, f, new Uint8Array(4)).error, -E.EINVAL, 'LISTXATTR shorter than getxattr_in');
  // header len beyond the chain
  t.equal(c.call(Opcode.Removexattr, f, cstr('user.a'), { len: 4096 }).error, -E.EINVAL, 'in_header.len beyond the chain');

  // value size vs the bytes present
  t.equal(c.call(Opcode.Setxattr, f, concat(le([['u32', 10], ['u32', 0]]), cstr('user.a'), enc.encode('12345'))).error,
    -E.EINVAL, 'size 10 with 5 bytes present');
  t.equal(c.call(Opcode.Setxattr, f, concat(le([['u32', 0xffffffff], ['u32', 0]]), cstr('user.a'), enc.encode('1'))).error,
    -E.E2BIG, 'size 2^32-1: E2BIG');
  t.equal(c.getx(f, 'user.a', 10).error, -E.ENODATA, 'nothing was set');
  t.equal(c.call(Opcode.Setxattr, f, concat(le([['u32', 3], ['u32', 0]]), cstr('user.t'), enc.encode('abcdef'))).error,
    0, 'bytes beyond size are not part of the value');
  t.equal(dec.decode(c.getx(f, 'user.t', 10).data), 'abc');

  // a value over XATTR_SIZE_MAX, sent whole (a head big enough to hold it, as the daemon's INBUF is)
  const big = new Uint8Array(XATTR_SIZE_MAX + 1);
  const args = concat(le([['u32', big.length], ['u32', 0]]), cstr('user.big'), big);
  const req = c.request(Opcode.Setxattr, f, args);
  const w = new BufferWriter(4096);
  t.equal(c.server.handle(new BufferReader(req, 132 * 1024), w), OUT_HEADER_SIZE);
  t.equal(decodeOutHeader(new DataView(w.out.buffer), 0).error, -E.E2BIG, 'a 65537-byte value: E2BIG');

  // reply sizes: capped by the writer's capacity
  t.equal(c.setx(f, 'user.v', 'hello').error, 0);
  t.equal(c.getx(f, 'user.v', 100, OUT_HEADER_SIZE + 3).error, -E.ERANGE, 'the writable part cannot hold it: ERANGE');
  const fit = c.getx(f, 'user.v', 100, OUT_HEADER_SIZE + 5);
  t.equal(fit.error, 0, 'exactly the writable part');
  t.equal(fit.len, OUT_HEADER_SIZE + 5);
  t.equal(c.getx(f, 'user.v', 100, OUT_HEADER_SIZE).error, -E.ERANGE, 'no room for any byte');
  t.equal(c.getx(f, 'user.v', 0, OUT_HEADER_SIZE + 4).error, -E.ERANGE, 'no room for getxattr_out');
  t.equal(c.listx(f, 65536).error, 0);
  t.equal(c.call(Opcode.Listxattr, f, le([['u32', 65536], ['u32', 0]]), { capacity: OUT_HEADER_SIZE + 2 }).error,
    -E.ERANGE, 'LISTXATTR capped by the writable part');
  const huge = c.getx(f, 'user.v', 0xffffffff);
  t.equal(huge.error, 0, 'a guest size of 2^32-1 is capped, not trusted');
  t.equal(dec.decode(huge.data), 'hello');
  t.equal(c.getx(f, 'user.v', 100, 8).ret, 0, 'a writable part shorter than the out header gets nothing');
});

t.test('symlinks are never followed: the target outside the share is not touched', { skip: skip ?? false }, async (t) => {
  const root = t.testdir({ share: {}, outside: { target: 'secret' } });
  const share = path.join(root, 'share');
  const target = path.join(root, 'outside', 'target');
  t.equal(hostSet(target, 'user.secret', 'host-only'), 0);
  fs.symlinkSync(target, path.join(share, 'lnk'));
  fs.symlinkSync('../outside', path.join(share, 'dirlnk'));
  const c = mount(t, share);
  for (const name of ['lnk', 'dirlnk']) {
    const e = c.entry(c.lookup(1n, name));
    t.equal(e.attr.mode & C.S_IFMT, C.S_IFLNK, `${name} is the link itself`);
    t.equal(c.getx(e.nodeid, 'user.secret', 100).error, -E.ENODATA, `${name}: GETXATTR does not read the target`);
    t.equal(c.getx(e.nodeid, 'user.secret', 0).error, -E.ENODATA, `${name}: nor its size`);
    const l = c.listx(e.nodeid, 1000);
    t.equal(l.error, 0);
    t.equal(l.data.length, 0, `${name}: LISTXATTR is empty`);
    t.equal(XattrClient.outSize(c.listx(e.nodeid, 0)), 0);
    t.equal(c.setx(e.nodeid, 'user.secret', 'guest').error, -E.EOPNOTSUPP, `${name}: SETXATTR refused`);
    t.equal(c.setx(e.nodeid, 'trusted.x', 'guest').error, -E.EOPNOTSUPP, `${name}: trusted.* too`);
    t.equal(c.rmx(e.nodeid, 'user.secret').error, -E.EOPNOTSUPP, `${name}: REMOVEXATTR refused`);
  }
  t.equal(hostGet(target, 'user.secret'), 'host-only', 'the target keeps its xattr');
  t.equal(hostGet(target, 'user.guest'), -E.ENODATA);
  t.equal(hostGet(path.join(root, 'outside'), 'user.secret'), -E.ENODATA, 'the outside directory got nothing');
  t.equal(fs.readFileSync(target, 'utf8'), 'secret');
});

t.test('a FIFO is never opened (no hang), nor a socket', { skip: skip ?? false, timeout: 20000 }, async (t) => {
  const share = t.testdir({});
  const c = mount(t, share);
  const fifo = c.mknod(1n, 'fifo', C.S_IFIFO | 0o644);
  t.equal(fifo.error, 0, 'mkfifo');
  const node = c.entry(fifo).nodeid;
  // An open of a FIFO without a writer would block this thread forever: these return at once.
  t.equal(c.getx(node, 'user.a', 100).error, -E.ENODATA);
  t.equal(c.listx(node, 100).data.length, 0);
  t.equal(c.setx(node, 'user.a', 'v').error, -E.EOPNOTSUPP);
  t.equal(c.setx(node, 'security.a', 'v').error, -E.EOPNOTSUPP);
  t.equal(c.rmx(node, 'user.a').error, -E.EOPNOTSUPP);
  const sock = c.mknod(1n, 'sock', C.S_IFSOCK | 0o644);
  t.equal(sock.error, 0, 'a socket inode');
  const snode = c.entry(sock).nodeid;
  t.equal(c.getx(snode, 'user.a', 100).error, -E.ENODATA);
  t.equal(c.setx(snode, 'user.a', 'v').error, -E.EOPNOTSUPP);
  t.ok(fs.lstatSync(path.join(share, 'fifo')).isFIFO(), 'the FIFO is still there');
});

t.test('off (the default): the four opcodes answer ENOSYS, INIT is unchanged', async (t) => {
  const share = t.testdir({ f: '' });
  const off = mount(t, share, false);
  const f = off.entry(off.lookup(1n, 'f')).nodeid;
  t.equal(off.setx(f, 'user.a', 'v').error, -E.ENOSYS, 'SETXATTR');
  t.equal(off.getx(f, 'user.a', 10).error, -E.ENOSYS, 'GETXATTR');
  t.equal(off.getx(f, 'user.a', 0).error, -E.ENOSYS, 'GETXATTR probe');
  t.equal(off.listx(f, 0).error, -E.ENOSYS, 'LISTXATTR');
  t.equal(off.rmx(f, 'user.a').error, -E.ENOSYS, 'REMOVEXATTR');
  // ENOSYS comes before any check of the request, as before
  t.equal(off.call(Opcode.Setxattr, f, new Uint8Array(0)).error, -E.ENOSYS, 'even a malformed request');
  if (!skip) t.equal(hostGet(path.join(share, 'f'), 'user.a'), -E.ENODATA, 'nothing reached the host');

  const dflt = new FuseServer(passthrough(t, share), { cache: 'auto' });
  const req = new Uint8Array(IN_HEADER_SIZE);
  encodeInHeader(new DataView(req.buffer), 0, { len: IN_HEADER_SIZE, opcode: Opcode.Listxattr, unique: 9n, nodeid: 1n, uid: 0, gid: 0, pid: 1, totalExtlen: 0 });
  const dc = new FuseClient(dflt);
  dc.init();
  t.equal(dc.raw(req).error, -E.ENOSYS, 'without the option at all');

  const onInit = new FuseClient(new FuseServer(passthrough(t, share), { xattr: true })).init();
  const offInit = new FuseClient(new FuseServer(passthrough(t, share), { xattr: false })).init();
  t.same(onInit.data, offInit.data, 'INIT replies are identical with xattr on and off');
  t.equal(onInit.init!.flags & (1 << 29), 0, 'FUSE_SETXATTR_EXT is not negotiated');
});
