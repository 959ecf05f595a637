import t, { type Test } from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { lstatSync, mkdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { FATTR_ATIME, FATTR_MODE, FATTR_MTIME, FATTR_SIZE, Opcode, decodeEntryOut } from '../../src/abi/fuse.js';
import { parseArgs } from '../../src/config.js';
import { Errno as E } from '../../src/errors.js';
import { FuseServer } from '../../src/fuse/server.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { native } from '../../src/native.js';
import { FuseClient, concat, le } from '../helpers/fuse-client.js';
import { nlookup, realTables, resetTables } from '../helpers/real-tables.js';

const dec = new TextDecoder();
/** the daemon's inode/handle tables (the wasm module), one instance for this file */
const tables = await realTables();

function setup(dir: string, opts: Parameters<typeof Passthrough.open>[2] = {}) {
  const fs = Passthrough.open(dir, resetTables(tables), opts);
  const server = new FuseServer(fs, { cache: 'auto' });
  const c = new FuseClient(server);
  t.teardown(() => { fs.destroy(); native.close(fs.procFd); });
  t.equal(c.init().error, 0);
  return { tables, fs, c };
}

/** every reply: returned length = header len = bytes the writer saw */
function consistent(t: Test, r: { ret: number; len: number; written: number }, what: string) {
  t.equal(r.ret, r.len, `${what}: return = len`);
  t.equal(r.written, r.len, `${what}: written = len`);
}

t.test('lookup, getattr, mkdir, create, write, read', async (t) => {
  const dir = t.testdir({ sub: { 'hello.txt': 'hello world' } });
  const { c } = setup(dir);
  const sub = c.lookup(1n, 'sub');
  consistent(t, sub, 'lookup');
  const se = c.entry(sub);
  t.equal(se.attr.ino, BigInt(statSync(join(dir, 'sub')).ino));
  t.equal(se.attr.mode & 0o170000, 0o040000, 'directory');
  t.equal(nlookup(se.nodeid), 1n);
  c.lookup(1n, 'sub');
  t.equal(nlookup(se.nodeid), 2n, 'second lookup adds a reference');
  const nope = c.lookup(1n, 'nope');
  t.equal(nope.error, 0, 'a missing name is a negative entry (cache=auto)');
  t.equal(decodeEntryOut(nope.view, 0).nodeid, 0n, 'with node id 0');

  const hello = c.entry(c.lookup(se.nodeid, 'hello.txt'));
  t.equal(hello.attr.size, 11n);
  const ga = c.getattr(hello.nodeid);
  consistent(t, ga, 'getattr');
  t.equal(ga.attr!.size, 11n);

  const md = c.mkdir(1n, 'newdir', 0o750);
  consistent(t, md, 'mkdir');
  t.ok(statSync(join(dir, 'newdir')).isDirectory());
  t.equal(c.mkdir(1n, 'newdir').error, -E.EEXIST);

  const cr = c.create(c.entry(md).nodeid, 'f.bin');
  consistent(t, cr, 'create');
  t.equal(cr.error, 0);
  const fe = decodeEntryOut(cr.view, 0);
  t.equal(fe.attr.mode & 0o170000, 0o100000);
  const data = new Uint8Array(100_000).map((_, i) => (i * 7) & 255);
  const wr = c.write(fe.nodeid, cr.fh!, 0, data);
  consistent(t, wr, 'write');
  t.equal(wr.size, data.length);
  t.same(new Uint8Array(readFileSync(join(dir, 'newdir', 'f.bin'))), data, 'host sees the data');
  const rd = c.read(fe.nodeid, cr.fh!, 10, 50_000);
  consistent(t, rd, 'read');
  t.equal(rd.len, 16 + 50_000);
  t.same(rd.data, data.subarray(10, 50_010));
  const eof = c.read(fe.nodeid, cr.fh!, 99_990, 4096);
  t.equal(eof.data.length, 10, 'short read at EOF');
  t.equal(c.read(fe.nodeid, 12345n, 0, 10).error, -E.EBADF, 'unknown fh');
  consistent(t, c.call(Opcode.Flush, fe.nodeid, le([['u64', cr.fh!], ['u32', 0], ['u32', 0], ['u64', 0]])), 'flush');
  consistent(t, c.call(Opcode.Fsync, fe.nodeid, le([['u64', cr.fh!], ['u32', 1], ['u32', 0]])), 'fsync');
  const ls = c.call(Opcode.Lseek, fe.nodeid, le([['u64', cr.fh!], ['u64', 5], ['u32', 2 /* SEEK_END */], ['u32', 0]]));
  consistent(t, ls, 'lseek');
  t.equal(ls.view.getBigUint64(0, true), 100_005n);
  const rel = c.release(fe.nodeid, cr.fh!);
  consistent(t, rel, 'release');
  t.equal(rel.error, 0);
  t.equal(c.read(fe.nodeid, cr.fh!, 0, 10).error, -E.EBADF, 'closed fh');
  t.equal(c.release(fe.nodeid, cr.fh!).error, -E.EBADF);
  t.equal(c.create(1n, 'newdir', 0o302 /* O_RDWR|O_CREAT|O_EXCL */).error, -E.EEXIST);

  // open existing, O_TRUNC
  const op = c.open(hello.nodeid, 0o1001 /* O_WRONLY|O_TRUNC */);
  t.equal(op.error, 0);
  t.equal(statSync(join(dir, 'sub', 'hello.txt')).size, 0, 'O_TRUNC honoured');
  c.release(hello.nodeid, op.fh!);
});

t.test('stale node ids and forget', async (t) => {
  const dir = t.testdir({ a: 'x' });
  const { c } = setup(dir);
  const a = c.entry(c.lookup(1n, 'a'));
  t.equal(c.getattr(123456789n).error, -E.ESTALE, 'unknown nodeid: an error, no crash');
  t.equal(c.lookup(999n, 'a').error, -E.ESTALE);
  t.equal(c.getattr(0n).error, -E.ESTALE);
  c.forget(a.nodeid, 1n);
  t.equal(nlookup(a.nodeid), undefined, 'forgotten');
  t.equal(c.getattr(a.nodeid).error, -E.ESTALE, 'stale after forget');
  c.forget(1n, 100n);
  t.equal(c.getattr(1n).error, 0, 'root is never forgotten');
});

t.test('readdir and readdirplus', async (t) => {
  const names = Array.from({ length: 300 }, (_, i) => `file-with-a-longish-name-${i}`);
  const tree: Record<string, string> = {};
  for (const n of names) tree[n] = n;
  const dir = t.testdir({ d: tree });
  const { c, tables } = setup(dir);
  const d = c.entry(c.lookup(1n, 'd'));
  const od = c.opendir(d.nodeid);
  consistent(t, od, 'opendir');
  t.equal(od.error, 0);

  // small buffers force many round trips; offsets must resume exactly
  const seen: string[] = [];
  let off = 0n;
  let rounds = 0;
  for (;;) {
    const r = c.readdir(d.nodeid, od.fh!, off, 1024);
    consistent(t, r, 'readdir');
    t.ok(r.len <= 16 + 1024, 'within size');
    if (r.entries.length === 0) break;
    for (const e of r.entries) seen.push(dec.decode(e.name));
    off = r.entries.at(-1)!.off;
    rounds++;
  }
  t.ok(rounds > 5, 'several rounds');
  t.same(seen.filter((n) => n !== '.' && n !== '..').sort(), [...names].sort(), 'every entry exactly once');
  t.ok(seen.includes('.') && seen.includes('..'));

  // rewind to 0
  const again = c.readdir(d.nodeid, od.fh!, 0n, 4096);
  t.ok(again.entries.length > 0, 'rewind works');
  // resume from the middle of an earlier listing after a rewind
  const first = c.readdir(d.nodeid, od.fh!, 0n, 2048).entries;
  const mid = first[5]!.off;
  const resumed = c.readdir(d.nodeid, od.fh!, mid, 2048).entries;
  t.same(dec.decode(resumed[0]!.name), dec.decode(first[6]!.name), 'seek to an offset gives the next entry');

  // readdirplus: lookup counts
  const plusSeen: string[] = [];
  off = 0n;
  for (;;) {
    const r = c.readdir(d.nodeid, od.fh!, off, 4096, true);
    consistent(t, r, 'readdirplus');
    if (r.entries.length === 0) break;
    for (const e of r.entries) {
      const n = dec.decode(e.name);
      plusSeen.push(n);
      if (n === '.' || n === '..') t.equal(e.entry!.nodeid, 0n, `${n} has nodeid 0`);
      else {
        t.not(e.entry!.nodeid, 0n);
        t.equal(nlookup(e.entry!.nodeid), 1n, 'one lookup reference');
        t.equal(e.entry!.attr.ino, e.ino);
      }
    }
    off = r.entries.at(-1)!.off;
  }
  t.same(plusSeen.filter((n) => n !== '.' && n !== '..').sort(), [...names].sort(), 'plus: every entry once');
  t.equal(tables.inodeCount(), 1 + 1 + 300, 'no references leaked for records that did not fit');
  consistent(t, c.release(d.nodeid, od.fh!, Opcode.Releasedir), 'releasedir');
  t.equal(c.opendir(c.entry(c.lookup(d.nodeid, names[0]!)).nodeid).error, -E.ENOTDIR);
});

t.test('rename, rename2, link, unlink, rmdir', async (t) => {
  const dir = t.testdir({ a: 'A', b: 'B', d1: { x: 'X' }, d2: {} });
  const { c } = setup(dir);
  const d1 = c.entry(c.lookup(1n, 'd1')).nodeid;
  const d2 = c.entry(c.lookup(1n, 'd2')).nodeid;
  consistent(t, c.rename(d1, 'x', d2, 'y'), 'rename');
  t.notOk(existsSync(join(dir, 'd1', 'x')));
  t.equal(readFileSync(join(dir, 'd2', 'y'), 'utf8'), 'X');
  t.equal(c.rename(1n, 'a', 1n, 'b', 1 /* NOREPLACE */).error, -E.EEXIST, 'NOREPLACE');
  t.equal(readFileSync(join(dir, 'b'), 'utf8'), 'B');
  t.equal(c.rename(1n, 'a', 1n, 'b', 2 /* EXCHANGE */).error, 0, 'EXCHANGE');
  t.equal(readFileSync(join(dir, 'b'), 'utf8'), 'A');
  t.equal(c.rename(1n, 'a', 1n, 'b', 0x100).error, -E.EINVAL, 'unknown flags');
  t.equal(c.rename(1n, 'a', 1n, '..').error, -E.EINVAL, 'rename onto ..');

  const a = c.entry(c.lookup(1n, 'a'));
  const l = c.link(a.nodeid, d1, 'hard');
  consistent(t, l, 'link');
  const le2 = c.entry(l);
  t.equal(le2.nodeid, a.nodeid, 'a hard link is the same node');
  t.equal(le2.attr.nlink, 2);
  t.equal(statSync(join(dir, 'd1', 'hard')).ino, statSync(join(dir, 'a')).ino);

  consistent(t, c.unlink(d1, 'hard'), 'unlink');
  t.notOk(existsSync(join(dir, 'd1', 'hard')));
  t.equal(c.unlink(d1, 'hard').error, -E.ENOENT);
  t.equal(c.rmdir(1n, 'd2').error, -E.ENOTEMPTY);
  c.unlink(d2, 'y');
  consistent(t, c.rmdir(1n, 'd2'), 'rmdir');
  t.notOk(existsSync(join(dir, 'd2')));
});

t.test('symlinks are never followed on the host', async (t) => {
  const dir = t.testdir({ f: 'inside' });
  symlinkSync('/etc/passwd', join(dir, 'evil'));
  symlinkSync('..', join(dir, 'up'));
  const { c } = setup(dir);
  const sl = c.symlink(1n, 'lnk', 'f');
  consistent(t, sl, 'symlink');
  t.equal(readlinkSync(join(dir, 'lnk')), 'f');
  t.equal(c.entry(sl).attr.mode & 0o170000, 0o120000);
  const rl = c.readlink(c.entry(sl).nodeid);
  consistent(t, rl, 'readlink');
  t.equal(dec.decode(rl.data), 'f');

  const evil = c.entry(c.lookup(1n, 'evil'));
  t.equal(evil.attr.mode & 0o170000, 0o120000, 'lookup gives the link, not its target');
  t.not(evil.attr.ino, BigInt(statSync('/etc/passwd').ino));
  t.equal(dec.decode(c.readlink(evil.nodeid).data), '/etc/passwd');
  const op = c.open(evil.nodeid, 0);
  t.ok(op.error < 0, 'OPEN of a symlink fails');
  const rd = op.fh !== undefined ? c.read(evil.nodeid, op.fh, 0, 100) : undefined;
  t.equal(rd, undefined, 'nothing to read');
  t.equal(c.setattr(evil.nodeid, { valid: FATTR_SIZE, size: 0n }).error < 0, true, 'no truncate through a link');
  t.ok(statSync('/etc/passwd').size > 0);
  // a symlink as a directory: lookup below it does not follow it
  const up = c.entry(c.lookup(1n, 'up'));
  t.ok(c.lookup(up.nodeid, 'etc').error < 0, 'lookup through a symlink fails');
  t.ok(c.opendir(up.nodeid).error < 0, 'opendir of a symlink fails');
  t.ok(c.create(up.nodeid, 'x').error < 0, 'create through a symlink fails');
  t.notOk(existsSync(join(dir, '..', 'x')));
  // create over an existing symlink does not follow it
  t.ok(c.create(1n, 'evil', 0o101 /* O_WRONLY|O_CREAT */).error < 0, 'create on a symlink name fails');
  t.equal(lstatSync(join(dir, 'evil')).isSymbolicLink(), true);
});

t.test('setattr chmod, truncate, utimes; statfs; access', async (t) => {
  const dir = t.testdir({ f: '0123456789' });
  const { c } = setup(dir);
  const f = c.entry(c.lookup(1n, 'f'));
  const ch = c.setattr(f.nodeid, { valid: FATTR_MODE, mode: 0o100600 });
  consistent(t, ch, 'setattr');
  t.equal(ch.attr!.mode & 0o7777, 0o600);
  t.equal(statSync(join(dir, 'f')).mode & 0o7777, 0o600);
  const tr = c.setattr(f.nodeid, { valid: FATTR_SIZE, size: 4n });
  t.equal(tr.attr!.size, 4n);
  t.equal(readFileSync(join(dir, 'f'), 'utf8'), '0123');
  const tm = c.setattr(f.nodeid, { valid: FATTR_ATIME | FATTR_MTIME, atime: 1000n, mtime: 2000n, mtimensec: 5 });
  t.equal(tm.attr!.mtime, 2000n);
  t.equal(tm.attr!.atime, 1000n);
  t.equal(statSync(join(dir, 'f')).mtimeMs, 2000_000.000005);
  const root = c.getattr(1n);
  t.equal(root.error, 0);

  const sf = c.statfs(1n);
  consistent(t, sf, 'statfs');
  t.equal(sf.len, 16 + 80);
  t.ok(sf.view.getBigUint64(0, true) > 0n, 'blocks');
  t.ok(sf.view.getUint32(44, true) >= 255, 'namelen');

  consistent(t, c.access(f.nodeid, 4), 'access');
  t.equal(c.access(f.nodeid, 4, 1000, 1000).error, -E.EACCES, 'mode 600 owned by root: other cannot read');
  t.equal(c.access(f.nodeid, 1).error, -E.EACCES, 'root cannot execute without x bits');
  t.equal(c.access(f.nodeid, 6).error, 0, 'root may read/write');
  t.equal(c.access(f.nodeid, 0, 1000, 1000).error, 0, 'F_OK');
});

/**
 * open(2) is synchronous here: if it blocked on a FIFO, nothing in this process could time it out.
 * A helper process opens the other end after 2 s (which releases a blocked open), so a hang ends
 * and shows as a slow open instead of running into tap's timeout.
 */
function fifoUnblocker(fifo: string, side: 'read' | 'write'): { stop(): void } {
  const redir = side === 'write' ? '3>"$0"' : '3<"$0"';
  const child = spawn('timeout', ['10', 'sh', '-c', `sleep 2; exec ${redir}`, fifo], { stdio: 'ignore' });
  return { stop: () => void child.kill('SIGKILL') };
}

t.test('special files: fifo and device are not opened', async (t) => {
  const dir = t.testdir({});
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  // the daemon's default (--no-device-nodes off), as src/daemon.ts passes it
  const daemonDefaults = parseArgs(['--socket-path=/s', `--shared-dir=${dir}`]);
  const { c } = setup(dir, { allowDevices: daemonDefaults.deviceNodes });
  const fifo = c.entry(c.lookup(1n, 'fifo'));
  const w = fifoUnblocker(join(dir, 'fifo'), 'write');
  let started = Date.now();
  const r = c.open(fifo.nodeid, 0);
  w.stop();
  t.ok(r.error < 0, 'open of a fifo for reading is an error');
  t.ok(Date.now() - started < 1500, `and does not block (${Date.now() - started} ms)`);
  const mk = c.mknod(1n, 'p2', 0o010644);
  consistent(t, mk, 'mknod fifo');
  const rd = fifoUnblocker(join(dir, 'p2'), 'read');
  started = Date.now();
  t.ok(c.open(c.entry(mk).nodeid, 1).error < 0, 'open of a fifo for writing is an error');
  rd.stop();
  t.ok(Date.now() - started < 1500, `and does not block (${Date.now() - started} ms)`);
  // The daemon lets the guest make device nodes by default (as virtiofsd does); it never opens them.
  t.equal(daemonDefaults.deviceNodes, true, 'the daemon allows device nodes by default');
  const nd = c.mknod(1n, 'null2', 0o020666, 0x103);
  consistent(t, nd, 'mknod of a char device with the daemon\'s default');
  t.ok(statSync(join(dir, 'null2')).isCharacterDevice(), 'the device node is made');
  t.ok(c.open(c.entry(nd).nodeid, 2).error < 0, 'but never opened');
  // --no-device-nodes: EPERM, nothing made
  const { c: strict } = setup(dir, { allowDevices: parseArgs(['--socket-path=/s', `--shared-dir=${dir}`, '--no-device-nodes']).deviceNodes });
  t.equal(strict.mknod(1n, 'null3', 0o020666, 0x103).error, -E.EPERM, '--no-device-nodes: EPERM');
  t.notOk(existsSync(join(dir, 'null3')));
});

t.test('creation runs as the caller', async (t) => {
  const dir = t.testdir({});
  const { c } = setup(dir);
  const r = c.call(Opcode.Mkdir, 1n, concat(le([['u32', 0o777], ['u32', 0]]), new TextEncoder().encode('u\0')), { uid: 1234, gid: 5678 });
  // the testdir belongs to root with mode 755: uid 1234 cannot create in it
  t.equal(r.error, -E.EACCES, 'host permission checks apply to the caller');
  mkdirSync(join(dir, 'open'), { mode: 0o777 });
  execFileSync('chmod', ['777', join(dir, 'open')]);
  const o = c.entry(c.lookup(1n, 'open'));
  const m = c.call(Opcode.Mkdir, o.nodeid, concat(le([['u32', 0o755], ['u32', 0]]), new TextEncoder().encode('u\0')), { uid: 1234, gid: 5678 });
  t.equal(m.error, 0);
  const st = statSync(join(dir, 'open', 'u'));
  t.equal(st.uid, 1234);
  t.equal(st.gid, 5678);
  // credentials were restored: a file created by root afterwards is root's
  writeFileSync(join(dir, 'probe'), '');
  const cr = c.create(1n, 'rootfile');
  t.equal(cr.error, 0);
  t.equal(statSync(join(dir, 'rootfile')).uid, 0);
});

t.test('DESTROY closes everything but the root', async (t) => {
  const dir = t.testdir({ a: 'x', b: 'y' });
  const { c, tables } = setup(dir);
  const a = c.entry(c.lookup(1n, 'a'));
  const op = c.open(a.nodeid, 0);
  c.lookup(1n, 'b');
  t.equal(tables.inodeCount(), 3);
  t.equal(tables.handleCount(), 1);
  t.equal(c.call(Opcode.Destroy, 0n, new Uint8Array(0)).error, 0);
  t.equal(tables.inodeCount(), 1);
  t.equal(tables.handleCount(), 0);
  t.equal(c.init().error, 0);
  t.equal(c.getattr(1n).error, 0, 'root survives');
  t.equal(c.read(a.nodeid, op.fh!, 0, 1).error, -E.EBADF);
});

t.test('COPY_FILE_RANGE copies on the host, checks handles and flags', async (t) => {
  const src = new Uint8Array(300_000).map((_, i) => (i * 13 + 1) & 255);
  const dir = t.testdir({ 'src.bin': Buffer.from(src), 'dst.bin': 'ABCDEFGH' });
  const { c } = setup(dir);
  const se = c.entry(c.lookup(1n, 'src.bin'));
  const de = c.entry(c.lookup(1n, 'dst.bin'));
  const rfh = c.open(se.nodeid, 0 /* O_RDONLY */).fh!;
  const wfh = c.open(de.nodeid, 2 /* O_RDWR */).fh!;
  const cfr = (fhIn: bigint, offIn: number, nodeOut: bigint, fhOut: bigint, offOut: number, len: bigint, flags = 0) =>
    c.call(Opcode.CopyFileRange, se.nodeid, le([['u64', fhIn], ['u64', offIn], ['u64', nodeOut], ['u64', fhOut],
      ['u64', offOut], ['u64', len], ['u64', flags]]));

  const r = cfr(rfh, 1000, de.nodeid, wfh, 4, 200_000n);
  consistent(t, r, 'copy_file_range');
  t.equal(r.error, 0);
  t.equal(r.view.getUint32(0, true), 200_000, 'bytes copied');
  const host = new Uint8Array(readFileSync(join(dir, 'dst.bin')));
  t.equal(host.length, 200_004);
  t.same(host.subarray(0, 4), Buffer.from('ABCD'), 'bytes before the destination offset kept');
  t.same(host.subarray(4), src.subarray(1000, 201_000), 'host sees the copied range');

  const tail = cfr(rfh, 299_000, de.nodeid, wfh, 0, 0xffff_ffff_ffff_ffffn);
  t.equal(tail.error, 0, 'a huge length is clamped, not refused');
  t.equal(tail.view.getUint32(0, true), 1000, 'short copy at the source EOF');
  t.equal(cfr(rfh, 400_000, de.nodeid, wfh, 0, 10n).view.getUint32(0, true), 0, 'past EOF: 0 bytes');
  t.equal(cfr(rfh, 0, de.nodeid, wfh, 0, 10n, 1).error, -E.EINVAL, 'unknown flags');
  t.equal(cfr(wfh, 0, se.nodeid, rfh, 0, 10n).error, -E.EBADF, 'destination opened read-only');
  t.equal(cfr(777n, 0, de.nodeid, wfh, 0, 10n).error, -E.EBADF, 'unknown source handle');
  t.equal(cfr(rfh, 0, de.nodeid, 778n, 0, 10n).error, -E.EBADF, 'unknown destination handle');
  t.equal(c.call(Opcode.CopyFileRange, se.nodeid, le([['u64', rfh], ['u64', 0]])).error, -E.EINVAL, 'truncated request');
  t.same(new Uint8Array(readFileSync(join(dir, 'src.bin'))), src, 'the source is unchanged');
  c.release(se.nodeid, rfh);
  c.release(de.nodeid, wfh);
});

t.test('SYNCFS commits the share\'s file system; only directories and regular files', async (t) => {
  const dir = t.testdir({ f: 'x', d: {} });
  symlinkSync('f', join(dir, 'l'));
  const { c } = setup(dir);
  const r = c.call(Opcode.Syncfs, 1n, le([['u64', 0]]));
  consistent(t, r, 'syncfs');
  t.equal(r.error, 0, 'on the root');
  t.equal(c.call(Opcode.Syncfs, c.entry(c.lookup(1n, 'f')).nodeid, le([['u64', 0]])).error, 0, 'on a regular file');
  t.equal(c.call(Opcode.Syncfs, c.entry(c.lookup(1n, 'l')).nodeid, le([['u64', 0]])).error, -E.EINVAL, 'not through a symlink');
  t.equal(c.call(Opcode.Syncfs, 9999n, le([['u64', 0]])).error, -E.ESTALE, 'unknown node');
});

t.test('--announce-submounts: directories on another host file system carry FUSE_ATTR_SUBMOUNT', async (t) => {
  // the host's / has /proc (procfs) beside /etc (the root file system): no mount needed
  const run = (announceSubmounts: boolean) => {
    const fs = Passthrough.open('/', resetTables(tables), { announceSubmounts });
    const server = new FuseServer(fs, { cache: 'auto', announceSubmounts });
    const c = new FuseClient(server);
    t.teardown(() => { fs.destroy(); native.close(fs.procFd); });
    t.equal(c.init().error, 0);
    const flagsOf = (name: string) => decodeEntryOut(c.lookup(1n, name).view, 0).attr.flags;
    return { proc: flagsOf('proc'), etc: flagsOf('etc'), c };
  };
  const on = run(true);
  t.equal(on.proc & 1, 1, 'proc (another file system): FUSE_ATTR_SUBMOUNT');
  t.equal(on.etc & 1, 0, 'etc (same file system as the root): no flag');
  const off = run(false);
  t.equal(off.proc & 1, 0, 'without the option: never');
});
