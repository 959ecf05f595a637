// --readonly through the real FuseServer and Passthrough on a t.testdir(): every opcode that writes
// answers EROFS and leaves the host tree as it was (names, types, modes, sizes, mtimes, ctimes, link
// counts, contents, link targets), OPEN for writing or with O_TRUNC and ACCESS W_OK answer EROFS,
// reads work. The same requests on a writable mount of an identical tree succeed, so each EROFS is
// the option's and not a malformed request's. Also: the flag's parsing, and which opcodes are marked.
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { FATTR_MODE, FATTR_MTIME, FATTR_MTIME_NOW, FATTR_SIZE, Opcode } from '../../src/abi/fuse.js';
import { S_IFIFO, S_IFREG } from '../../src/abi/stat.js';
import { USAGE, parseArgs } from '../../src/config.js';
import { UsageError } from '../../src/errors.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { OPS } from '../../src/fuse/ops/table.js';
import { FuseServer } from '../../src/fuse/server.js';
import { E, native } from '../../src/native.js';
import { FuseClient, type Reply, concat, cstr, le } from '../helpers/fuse-client.js';
import { realTables, resetTables } from '../helpers/real-tables.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_CREAT = 0o100;
const O_TRUNC = 0o1000;
const O_APPEND = 0o2000;
const F_OK = 0;
const X_OK = 1;
const W_OK = 2;
const R_OK = 4;
const RENAME_NOREPLACE = 1;

const TREE = {
  f: 'file data\n',
  g: 'to be unlinked\n',
  h: 'copy target\n',
  d: {},
  sub: { inner: 'inner\n' },
  l: t.fixture('symlink', 'f'),
};

const tables = await realTables();

/** user.* xattrs on the host file system under `dir`? (tmpfs and ext4 have them; some overlays do not) */
function xattrSkip(dir: string): string | null {
  const p = path.join(dir, 'probe');
  fs.writeFileSync(p, '');
  const fd = fs.openSync(p, 'r');
  try {
    const r = native.fsetxattr(fd, enc.encode('user.probe'), enc.encode('x'), 0);
    return r < 0 ? `no user.* xattrs under ${dir} (errno ${-r})` : null;
  } finally {
    fs.closeSync(fd);
    fs.unlinkSync(p);
  }
}

/** A FUSE session over a Passthrough of `share`, INIT done. */
function mount(t: Test, share: string, readOnly: boolean): FuseClient {
  const pfs = Passthrough.open(share, resetTables(tables));
  t.teardown(() => { pfs.destroy(); native.close(pfs.procFd); });
  const c = new FuseClient(new FuseServer(pfs, { cache: 'auto', xattr: true, readOnly }));
  if (c.init().error !== 0) throw new Error('INIT failed');
  return c;
}

/** Everything under `dir` a change would show in (atimes aside: reads may move them). */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const p = path.join(dir, rel);
    const st = fs.lstatSync(p, { bigint: true });
    let body = '';
    if (st.isFile()) body = fs.readFileSync(p, 'utf8');
    else if (st.isSymbolicLink()) body = `-> ${fs.readlinkSync(p)}`;
    out.push(`${rel || '.'} ino=${st.ino} mode=${st.mode.toString(8)} nlink=${st.nlink} uid=${st.uid} size=${st.size} ` +
      `mtime=${st.mtimeNs} ctime=${st.ctimeNs} ${JSON.stringify(body)}`);
    if (st.isDirectory()) for (const name of fs.readdirSync(p).sort()) walk(path.join(rel, name));
  };
  walk('');
  return out;
}

const node = (c: FuseClient, parent: bigint, name: string): bigint => c.entry(c.lookup(parent, name)).nodeid;

/** The nodes and handles the writing requests use; `fhW`/`fhH` are RDWR opens on a writable mount, RDONLY on a read-only one. */
interface Ids { f: bigint; h: bigint; sub: bigint; fhW: bigint; fhH: bigint }

function ids(c: FuseClient, writable: boolean): Ids {
  const f = node(c, 1n, 'f');
  const h = node(c, 1n, 'h');
  const mode = writable ? O_RDWR : O_RDONLY;
  const fhW = c.open(f, mode).fh;
  const fhH = c.open(h, mode).fh;
  if (fhW === undefined || fhH === undefined) throw new Error('OPEN failed');
  return { f, h, sub: node(c, 1n, 'sub'), fhW, fhH };
}

/** One request of every opcode that writes (each on its own name, so all succeed on one writable tree). */
const WRITERS: ReadonlyArray<readonly [string, (c: FuseClient, i: Ids) => Reply, boolean?]> = [
  ['SETATTR mode (chmod)', (c, i) => c.setattr(i.f, { valid: FATTR_MODE, mode: S_IFREG | 0o600 })],
  ['SETATTR mtime (touch)', (c, i) => c.setattr(i.f, { valid: FATTR_MTIME | FATTR_MTIME_NOW })],
  ['SETATTR size (truncate)', (c, i) => c.setattr(i.h, { valid: FATTR_SIZE, size: 4n })],
  ['SYMLINK', (c) => c.symlink(1n, 'newlink', 'f')],
  ['MKNOD (a FIFO)', (c) => c.mknod(1n, 'fifo', S_IFIFO | 0o644)],
  ['MKDIR', (c) => c.mkdir(1n, 'newdir')],
  ['CREATE', (c) => c.create(1n, 'newfile', O_RDWR | O_CREAT)],
  ['UNLINK', (c) => c.unlink(1n, 'g')],
  ['RMDIR', (c) => c.rmdir(1n, 'd')],
  ['RENAME', (c, i) => c.rename(i.sub, 'inner', 1n, 'moved')],
  ['RENAME2 (RENAME_NOREPLACE)', (c) => c.rename(1n, 'l', 1n, 'l2', RENAME_NOREPLACE)],
  ['LINK', (c, i) => c.link(i.f, 1n, 'hard')],
  ['WRITE', (c, i) => c.write(i.f, i.fhW, 0, enc.encode('XX'))],
  ['FALLOCATE', (c, i) => c.call(Opcode.Fallocate, i.f, le([['u64', i.fhW], ['u64', 0], ['u64', 8192], ['u32', 0], ['u32', 0]]))],
  ['COPY_FILE_RANGE', (c, i) => c.call(Opcode.CopyFileRange, i.f,
    le([['u64', i.fhW], ['u64', 0], ['u64', i.h], ['u64', i.fhH], ['u64', 100], ['u64', 4], ['u64', 0]]))],
  ['SETXATTR', (c, i) => c.call(Opcode.Setxattr, i.f, concat(le([['u32', 1], ['u32', 0]]), cstr('user.new'), enc.encode('v'))), true],
  ['REMOVEXATTR', (c, i) => c.call(Opcode.Removexattr, i.f, cstr('user.pre')), true],
];

/** A tree as TREE, with user.pre on f when the file system has user xattrs. */
function tree(t: Test, xattrs: boolean): string {
  const share = t.testdir(TREE);
  if (xattrs) {
    const fd = fs.openSync(path.join(share, 'f'), 'r');
    native.fsetxattr(fd, enc.encode('user.pre'), enc.encode('1'), 0);
    fs.closeSync(fd);
  }
  return share;
}

const noXattrs = xattrSkip(t.testdir({}));
if (noXattrs) t.comment(`the xattr requests are checked on the read-only mount only: ${noXattrs}`);

t.test('read-only: every opcode that writes answers EROFS; the host tree is unchanged', async (t) => {
  const share = tree(t, noXattrs === null);
  const before = snapshot(share);
  const c = mount(t, share, true);
  const i = ids(c, false);
  for (const [what, req] of WRITERS) t.equal(req(c, i).error, -E.EROFS, what);
  t.same(snapshot(share), before, 'nothing changed on the host');
});

t.test('writable: the same requests succeed and change the tree', async (t) => {
  const share = tree(t, noXattrs === null);
  const before = snapshot(share);
  const c = mount(t, share, false);
  const i = ids(c, true);
  for (const [what, req, xattr] of WRITERS) {
    if (xattr && noXattrs) continue;
    const r = req(c, i);
    t.equal(r.error, 0, what);
  }
  t.notSame(snapshot(share), before, 'the tree changed');
  t.ok(fs.existsSync(path.join(share, 'newdir')) && !fs.existsSync(path.join(share, 'g')), 'mkdir and unlink reached the host');
  t.equal(fs.readFileSync(path.join(share, 'f'), 'utf8').slice(0, 2), 'XX', 'the write reached the host');
});

t.test('read-only: OPEN for writing or with O_TRUNC answers EROFS, O_RDONLY opens', async (t) => {
  const share = tree(t, false);
  const before = snapshot(share);
  const c = mount(t, share, true);
  const f = node(c, 1n, 'f');
  t.equal(c.open(f, O_WRONLY).error, -E.EROFS, 'O_WRONLY');
  t.equal(c.open(f, O_RDWR).error, -E.EROFS, 'O_RDWR');
  t.equal(c.open(f, 3).error, -E.EROFS, 'access mode 3');
  t.equal(c.open(f, O_RDONLY | O_TRUNC).error, -E.EROFS, 'O_RDONLY | O_TRUNC');
  t.equal(c.open(f, O_WRONLY | O_APPEND).error, -E.EROFS, 'O_WRONLY | O_APPEND');
  const ro = c.open(f, O_RDONLY);
  t.equal(ro.error, 0, 'O_RDONLY');
  t.equal(c.open(f, O_RDONLY | O_APPEND).error, 0, 'O_RDONLY | O_APPEND writes nothing');
  t.equal(dec.decode(c.read(f, ro.fh!, 0, 100).data), 'file data\n', 'and reads');
  t.equal(c.create(1n, 'f', O_RDONLY | O_CREAT).error, -E.EROFS, 'CREATE of an existing name too');
  t.same(snapshot(share), before, 'nothing changed on the host');
});

t.test('read-only: ACCESS with W_OK answers EROFS, the other bits are checked as usual', async (t) => {
  const share = tree(t, false);
  const c = mount(t, share, true);
  const f = node(c, 1n, 'f');
  const d = node(c, 1n, 'd');
  t.equal(c.access(f, W_OK).error, -E.EROFS, 'W_OK on a file');
  t.equal(c.access(d, W_OK | X_OK).error, -E.EROFS, 'W_OK | X_OK on a directory');
  t.equal(c.access(f, R_OK | W_OK).error, -E.EROFS, 'R_OK | W_OK');
  t.equal(c.access(f, R_OK).error, 0, 'R_OK');
  t.equal(c.access(f, F_OK).error, 0, 'F_OK');
  t.equal(c.access(d, R_OK | X_OK).error, 0, 'R_OK | X_OK on a directory');
  t.equal(c.access(node(c, 1n, 'sub'), X_OK).error, 0, 'X_OK');
  const w = mount(t, tree(t, false), false);
  t.equal(w.access(node(w, 1n, 'f'), R_OK | W_OK).error, 0, 'writable: R_OK | W_OK succeeds');
});

t.test('read-only: reads, lookups, directories, links, statfs, xattrs and syncs work; nothing changes', async (t) => {
  const share = tree(t, noXattrs === null);
  const before = snapshot(share);
  const c = mount(t, share, true);
  const f = node(c, 1n, 'f');
  const sub = node(c, 1n, 'sub');
  t.equal(c.lookup(sub, 'inner').error, 0, 'LOOKUP');
  t.equal(c.getattr(f).attr?.size, 10n, 'GETATTR');
  const o = c.open(f, O_RDONLY);
  t.equal(dec.decode(c.read(f, o.fh!, 5, 100).data), 'data\n', 'READ');
  t.equal(c.call(Opcode.Lseek, f, le([['u64', o.fh!], ['u64', 0], ['u32', 2], ['u32', 0]])).error, 0, 'LSEEK');
  t.equal(c.raw(c.rb.flush(f, o.fh!)).error, 0, 'FLUSH');
  t.equal(c.call(Opcode.Fsync, f, le([['u64', o.fh!], ['u32', 0], ['u32', 0]])).error, 0, 'FSYNC');
  t.equal(c.release(f, o.fh!).error, 0, 'RELEASE');
  const dh = c.opendir(sub);
  t.equal(dh.error, 0, 'OPENDIR');
  const names = c.readdir(sub, dh.fh!, 0n, 4096, true).entries.map((e) => dec.decode(e.name)).sort();
  t.same(names, ['.', '..', 'inner'], 'READDIRPLUS');
  t.equal(c.call(Opcode.Fsyncdir, sub, le([['u64', dh.fh!], ['u32', 0], ['u32', 0]])).error, 0, 'FSYNCDIR');
  t.equal(c.release(sub, dh.fh!, Opcode.Releasedir).error, 0, 'RELEASEDIR');
  t.equal(dec.decode(c.readlink(node(c, 1n, 'l')).data), 'f', 'READLINK');
  t.equal(c.statfs(1n).error, 0, 'STATFS');
  t.equal(c.call(Opcode.Syncfs, 1n, le([['u64', 0]])).error, 0, 'SYNCFS');
  if (noXattrs === null) {
    const g = c.call(Opcode.Getxattr, f, concat(le([['u32', 100], ['u32', 0]]), cstr('user.pre')));
    t.equal(dec.decode(g.data), '1', 'GETXATTR');
    const l = c.call(Opcode.Listxattr, f, le([['u32', 4096], ['u32', 0]]));
    t.ok(dec.decode(l.data).split('\0').includes('user.pre'), 'LISTXATTR');
  }
  t.same(snapshot(share), before, 'nothing changed on the host');
});

t.test('the dispatch table marks exactly the opcodes that always write', async (t) => {
  const marked = OPS.flatMap((op, opcode) => (op?.modifies ? [Opcode[opcode]] : [])).sort();
  t.same(marked, [
    'CopyFileRange', 'Create', 'Fallocate', 'Link', 'Mkdir', 'Mknod', 'Removexattr', 'Rename', 'Rename2', 'Rmdir',
    'Setattr', 'Setxattr', 'Symlink', 'Unlink', 'Write',
  ].sort());
});

t.test('--readonly: a flag, off by default, in the usage text', async (t) => {
  const base = ['--socket-path=/tmp/x.sock', '--shared-dir=/tmp'];
  t.equal(parseArgs(base).readOnly, false, 'off by default');
  t.equal(parseArgs([...base, '--readonly']).readOnly, true, '--readonly');
  t.throws(() => parseArgs([...base, '--readonly=yes']), UsageError, 'takes no value');
  t.match(USAGE, /^ {2}--readonly +export the share read-only/m, 'documented');
});
