// --security-label (FUSE_SECURITY_CTX) and --allow-mmap (FUSE_DIRECT_IO_ALLOW_MMAP) through the FUSE
// server and the passthrough on the real tables: the INIT negotiation of both; CREATE, MKDIR, MKNOD and
// SYMLINK carrying a security context as a request extension (Linux 6.4 on) or after the names (Linux
// 5.17 to 6.3), the host node getting the xattr under the --xattrmap name; malformed blocks (EINVAL)
// and refused or failing labels (the errno) leaving no node behind. Needs root (trusted.* and
// security.* xattrs on the host, as the test's reference for what the daemon set).
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  FUSE_DIRECT_IO_ALLOW_MMAP2, FUSE_INIT_EXT, FUSE_SECURITY_CTX2, decodeInitOut, decodeSecctx, encodeExtGroups,
  encodeSecctx,
} from '../../src/abi/fuse.js';
import { Errno as E } from '../../src/errors.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { xattrPolicy } from '../../src/fs/xattrmap.js';
import { FuseServer, type FuseServerOptions } from '../../src/fuse/server.js';
import { native } from '../../src/native.js';
import { FuseClient, withExt } from '../helpers/fuse-client.js';
import { realTables, resetTables } from '../helpers/real-tables.js';

const tables = await realTables();
const ROOT = { skip: process.getuid?.() !== 0 && 'needs root (trusted.* and security.* xattrs on host files)' };
const S_IFREG = 0o100000;
const S_IFIFO = 0o010000;
const O_RDWR = 2;
const O_CREAT = 0o100;
const enc = new TextEncoder();
process.umask(0);

const LABEL = 'system_u:object_r:container_file_t:s0';
const SELINUX = enc.encode('security.selinux');
/** virtiofsd's advice for hosts with their own SELinux: the guest's labels apart, under trusted. */
const TRUSTED_MAP = ':map:security.selinux:trusted.virtiofs.:';
const HOST_NAME = 'trusted.virtiofs.security.selinux';

interface Setup {
  xattrmap?: string;
  server?: FuseServerOptions;
  /** INIT's flags2 offer (default: SECURITY_CTX) */
  offer2?: number;
}

function setup(t: Test, dir: string, o: Setup = {}) {
  const fs = Passthrough.open(dir, resetTables(tables), {
    xattrPolicy: xattrPolicy(o.xattrmap, false),
    secctxAsIs: o.xattrmap === undefined,
  });
  const c = new FuseClient(new FuseServer(fs, { cache: 'auto', xattr: true, securityLabel: true, ...o.server }));
  t.teardown(() => { fs.destroy(); native.close(fs.procFd); });
  const r = c.raw(c.rb.init(0xffffffff, o.offer2 ?? FUSE_SECURITY_CTX2));
  t.equal(r.error, 0, 'INIT');
  t.equal(decodeInitOut(r.view, 0).flags2 & FUSE_SECURITY_CTX2, FUSE_SECURITY_CTX2, 'SECURITY_CTX negotiated');
  return c;
}

/** A request with `block` appended after its names, as Linux 5.17 to 6.3 sent it (no total_extlen). */
function withTrailer(req: Uint8Array, block: Uint8Array): Uint8Array {
  const out = new Uint8Array(req.length + block.length);
  out.set(req);
  out.set(block, req.length);
  new DataView(out.buffer).setUint32(0, out.length, true);
  return out;
}

/** A host node's xattr (not following a symlink), as a string; null when absent. */
function hostXattr(path: string, name: string): string | null {
  const r = spawnSync('python3', ['-c', `import os,sys
try: sys.stdout.write(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False).decode())
except OSError as e: sys.exit(3 if e.errno == 61 else 4)`, path, name], { encoding: 'utf8' });
  if (r.status === 3) return null;
  if (r.status !== 0) throw new Error(`getxattr ${name} on ${path}: ${r.stderr}`);
  return r.stdout;
}

const secctx = (name: string | Uint8Array, value = LABEL) =>
  encodeSecctx(typeof name === 'string' ? enc.encode(name) : name, enc.encode(value));

/** The four creating requests, for names with prefix n, in `parent`. */
function creating(c: FuseClient, parent: bigint, n: string): Array<[string, string, Uint8Array]> {
  return [
    ['CREATE', `${n}f`, c.rb.create(parent, `${n}f`, O_RDWR | O_CREAT, S_IFREG | 0o644)],
    ['MKDIR', `${n}d`, c.rb.mkdir(parent, `${n}d`, 0o755)],
    ['MKNOD', `${n}p`, c.rb.mknod(parent, `${n}p`, S_IFIFO | 0o644)],
    ['SYMLINK', `${n}l`, c.rb.symlink(parent, `${n}l`, 'target')],
  ];
}

t.test('INIT: SECURITY_CTX and DIRECT_IO_ALLOW_MMAP only when asked for and offered', async (t) => {
  const dir = t.testdir({});
  const fs = Passthrough.open(dir, resetTables(tables), {});
  t.teardown(() => { fs.destroy(); native.close(fs.procFd); });
  const both = FUSE_SECURITY_CTX2 | FUSE_DIRECT_IO_ALLOW_MMAP2;
  const init = (opts: FuseServerOptions, flags: number, flags2: number) => {
    const c = new FuseClient(new FuseServer(fs, opts));
    const r = c.raw(c.rb.init(flags, flags2));
    return { error: r.error, flags2: r.error === 0 ? decodeInitOut(r.view, 0).flags2 : -1 };
  };
  t.same(init({}, 0xffffffff, both), { error: 0, flags2: 0 }, 'not asked for: neither taken, though offered');
  t.same(init({ securityLabel: true }, 0xffffffff, both), { error: 0, flags2: FUSE_SECURITY_CTX2 }, '--security-label');
  t.same(init({ allowMmap: true }, 0xffffffff, both), { error: 0, flags2: FUSE_DIRECT_IO_ALLOW_MMAP2 }, '--allow-mmap');
  t.same(init({ securityLabel: true, allowMmap: true }, 0xffffffff, both), { error: 0, flags2: both }, 'both');
  t.same(init({ allowMmap: true }, 0xffffffff, 0), { error: 0, flags2: 0 },
    '--allow-mmap with a guest kernel before 6.6: the session goes on without it');
  t.same(init({ securityLabel: true }, 0xffffffff, 0), { error: -E.EPROTO, flags2: -1 },
    '--security-label with a guest kernel that does not offer it: EPROTO, as virtiofsd');
  t.same(init({ securityLabel: true }, (0xffffffff & ~FUSE_INIT_EXT) >>> 0, both), { error: -E.EPROTO, flags2: -1 },
    'nor without FUSE_INIT_EXT (flags2 does not count)');
});

t.test('decodeSecctx: what a block must look like', async (t) => {
  const parts = new Int32Array(4);
  const dec = (b: Uint8Array) => decodeSecctx(new DataView(b.buffer, b.byteOffset, b.length), 0, b.length, parts);
  const good = secctx('security.selinux');
  t.equal(dec(good), 1, 'one context');
  t.same([...parts], [16, 32, 33, 33 + LABEL.length], 'name and value where Linux puts them');
  t.equal(good.length % 8, 0, '8-byte aligned');
  t.equal(dec(encodeSecctx(null)), 0, 'nr_secctx 0: none');
});

t.test('each creating request labels its new node (extension and pre-6.4 trailer)', ROOT, async (t) => {
  const dir = t.testdir({});
  const c = setup(t, dir, { xattrmap: TRUSTED_MAP });
  const block = secctx('security.selinux');
  for (const [op, name, req] of creating(c, 1n, 'ext-')) {
    t.equal(c.raw(withExt(req, block)).error, 0, `${op} with the context as an extension`);
    t.equal(hostXattr(join(dir, name), HOST_NAME), LABEL, `${op}: the host node has ${HOST_NAME}`);
    t.equal(hostXattr(join(dir, name), 'security.selinux'), null, `${op}: not under the guest's own name`);
  }
  for (const [op, name, req] of creating(c, 1n, 'old-')) {
    t.equal(c.raw(withTrailer(req, block)).error, 0, `${op} with the context after the names (Linux 5.17-6.3)`);
    t.equal(hostXattr(join(dir, name), HOST_NAME), LABEL, `${op} (trailer): labelled`);
  }
  t.equal(lstatSync(join(dir, 'ext-l')).isSymbolicLink(), true, 'the symlink itself was labelled, not followed');
  // with the supplementary group record next to it, in either order
  const both = new Uint8Array([...encodeExtGroups([0]), ...block]);
  t.equal(c.raw(withExt(c.rb.mkdir(1n, 'with-groups', 0o755), both)).error, 0, 'after a groups record');
  t.equal(hostXattr(join(dir, 'with-groups'), HOST_NAME), LABEL);
  // nr_secctx 0 (no LSM in the guest labels it): created, nothing set
  for (const [op, name, req] of creating(c, 1n, 'none-')) {
    t.equal(c.raw(withExt(req, encodeSecctx(null))).error, 0, `${op} with an empty block`);
    t.equal(hostXattr(join(dir, name), HOST_NAME), null, `${op}: no label`);
  }
  // no block at all: as an empty one
  t.equal(c.raw(c.rb.mkdir(1n, 'no-block', 0o755)).error, 0, 'a MKDIR without a block');
  t.equal(hostXattr(join(dir, 'no-block'), HOST_NAME), null);
  // CREATE of an existing file (not O_EXCL) opens it and leaves its xattrs alone
  const again = c.raw(withExt(c.rb.create(1n, 'none-f', O_RDWR | O_CREAT, S_IFREG | 0o644), block));
  t.equal(again.error, 0, 'CREATE of an existing file');
  t.equal(hostXattr(join(dir, 'none-f'), HOST_NAME), null, 'an existing file is not relabelled');
});

t.test('without --xattrmap: security.selinux goes to the host as it is, other names are refused', ROOT, async (t) => {
  const dir = t.testdir({});
  const c = setup(t, dir);
  t.equal(c.raw(withExt(c.rb.mkdir(1n, 'd', 0o755), secctx(SELINUX))).error, 0, 'MKDIR');
  // a root test process (CAP_SYS_ADMIN) may store security.* on a host without SELinux; the confined
  // daemon may not (xattr-daemon.test.ts)
  t.equal(hostXattr(join(dir, 'd'), 'security.selinux'), LABEL, 'the host directory has security.selinux');
  for (const [op, name, req] of creating(c, 1n, 'cap-')) {
    t.equal(c.raw(withExt(req, secctx('security.capability', 'x'))).error, -E.EPERM,
      `${op} asking for security.capability: EPERM (the default policy)`);
    t.notOk(existsSync(join(dir, name)), `${op}: no node left behind`);
  }
  t.equal(c.raw(withExt(c.rb.mkdir(1n, 't', 0o755), secctx('trusted.x'))).error, -E.EPERM, 'trusted.*: EPERM');
  t.notOk(existsSync(join(dir, 't')));
});

t.test('a label the host refuses: its errno, and no node left behind', ROOT, async (t) => {
  const dir = t.testdir({});
  // user.* is refused by the host kernel on symlinks and special files (EPERM)
  const c = setup(t, dir, { xattrmap: ':map:security.selinux:user.virtiofs.: ' });
  const block = secctx('security.selinux');
  for (const [op, name, req] of creating(c, 1n, 'u-')) {
    const special = op === 'MKNOD' || op === 'SYMLINK';
    t.equal(c.raw(withExt(req, block)).error, special ? -E.EPERM : 0, `${op} under user.virtiofs.`);
    t.equal(lstatSync(join(dir, name), { throwIfNoEntry: false }) !== undefined, !special, special ? `${op}: removed again` : `${op}: created`);
    if (!special) t.equal(hostXattr(join(dir, name), 'user.virtiofs.security.selinux'), LABEL, `${op}: labelled`);
  }
  // an `unsupported` rule: EOPNOTSUPP
  const d2 = t.testdir({});
  const c2 = setup(t, d2, { xattrmap: '/unsupported/all/security.selinux/security.selinux/ /ok/all///' });
  for (const [op, name, req] of creating(c2, 1n, 'x-')) {
    t.equal(c2.raw(withExt(req, block)).error, -E.EOPNOTSUPP, `${op}: EOPNOTSUPP`);
    t.notOk(lstatSync(join(d2, name), { throwIfNoEntry: false }), `${op}: nothing left`);
  }
});

t.test('malformed security context blocks: EINVAL, nothing created', ROOT, async (t) => {
  const dir = t.testdir({});
  const c = setup(t, dir, { xattrmap: TRUSTED_MAP });
  const good = secctx('security.selinux', 'abc');
  const patch = (b: Uint8Array, f: (v: DataView) => void) => {
    const out = b.slice();
    f(new DataView(out.buffer));
    return out;
  };
  const nameEnd = 16 + 'security.selinux'.length;
  const cases: Array<[string, Uint8Array, boolean?]> = [
    ['header size beyond the block', patch(good, (v) => v.setUint32(0, good.length + 8, true)), false],
    ['header size short of the block', patch(good, (v) => v.setUint32(0, good.length - 8, true))],
    ['two contexts', patch(good, (v) => v.setUint32(4, 2, true))],
    ['a value size of 0', patch(good, (v) => v.setUint32(8, 0, true))],
    ['a value past the block', patch(good, (v) => v.setUint32(8, 100, true))],
    ['a value over XATTR_SIZE_MAX', patch(good, (v) => v.setUint32(8, 65537, true))],
    ['more than alignment padding after the value', patch(secctx('security.selinux', 'abcdefghij'),
      (v) => v.setUint32(8, 1, true))],
    ['a name without its NUL', patch(good, (v) => { for (let i = 16; i < v.byteLength; i++) v.setUint8(i, 0x61); })],
    ['an empty name', patch(good, (v) => v.setUint8(16, 0))],
    ['a header without its context', patch(new Uint8Array(8), (v) => { v.setUint32(0, 8, true); v.setUint32(4, 1, true); })],
  ];
  t.equal(new Uint8Array(good.buffer)[nameEnd], 0, 'the good block: the name NUL where expected');
  let i = 0;
  for (const [what, block, asTrailerToo] of cases) {
    for (const how of asTrailerToo === false ? ['ext'] : ['ext', 'trailer']) {
      const name = `bad${i++}`;
      const req = c.rb.mkdir(1n, name, 0o755);
      const r = c.raw(how === 'ext' ? withExt(req, block) : withTrailer(req, block));
      t.equal(r.error, -E.EINVAL, `${what} (${how})`);
      t.notOk(existsSync(join(dir, name)), `${what} (${how}): nothing created`);
    }
  }
  // a second security context record among the extensions
  t.equal(c.raw(withExt(c.rb.mkdir(1n, 'twice', 0o755), new Uint8Array([...good, ...good]))).error, -E.EINVAL,
    'two security context records');
  t.notOk(existsSync(join(dir, 'twice')));
  t.equal(c.raw(withExt(c.rb.mkdir(1n, 'fine', 0o755), good)).error, 0, 'a good block still works afterwards');
  t.equal(hostXattr(join(dir, 'fine'), HOST_NAME), 'abc');
});

t.test('without --security-label: no context is read, whatever follows the names', ROOT, async (t) => {
  const dir = t.testdir({});
  const fs = Passthrough.open(dir, resetTables(tables), { xattrPolicy: xattrPolicy(TRUSTED_MAP, false) });
  t.teardown(() => { fs.destroy(); native.close(fs.procFd); });
  const c = new FuseClient(new FuseServer(fs, { xattr: true }));
  const r = c.raw(c.rb.init(0xffffffff, FUSE_SECURITY_CTX2));
  t.equal(decodeInitOut(r.view, 0).flags2 & FUSE_SECURITY_CTX2, 0, 'not negotiated');
  t.equal(c.raw(withExt(c.rb.mkdir(1n, 'e', 0o755), secctx('security.selinux'))).error, 0, 'an extension: skipped');
  t.equal(c.raw(withTrailer(c.rb.mkdir(1n, 't', 0o755), new Uint8Array(8).fill(0xff))).error, 0,
    'trailing bytes: ignored, as before');
  t.equal(hostXattr(join(dir, 'e'), HOST_NAME), null, 'no label');
});

t.test('random security context blocks: an answer, never a crash, nothing left behind a refusal', ROOT, async (t) => {
  const dir = t.testdir({});
  const c = setup(t, dir, { xattrmap: TRUSTED_MAP });
  let seed = 0x5ec1abe1;
  const rnd = (n: number) => {
    seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return seed % n;
  };
  const good = secctx('security.selinux', 'abc');
  const seen = new Map<number, number>();
  for (let i = 0; i < 600; i++) {
    // a good block with a few bytes changed, or random bytes, of a length that is a multiple of 8
    const len = rnd(3) === 0 ? 8 * rnd(8) : good.length;
    const b = len === good.length ? good.slice() : new Uint8Array(len).map(() => rnd(256));
    for (let k = rnd(4); k > 0 && b.length > 0; k--) b[rnd(b.length)] = rnd(4) === 0 ? 0 : rnd(256);
    const name = `r${i}`;
    const req = c.rb.mkdir(1n, name, 0o755);
    const r = c.raw(rnd(2) === 0 ? withExt(req, b) : withTrailer(req, b)).error;
    seen.set(r, (seen.get(r) ?? 0) + 1);
    if (![0, -E.EINVAL, -E.EPERM, -E.ERANGE, -E.EOPNOTSUPP].includes(r)) t.fail(`${name}: unexpected ${r}`);
    if (r !== 0 && lstatSync(join(dir, name), { throwIfNoEntry: false }) !== undefined) t.fail(`${name}: left behind`);
  }
  t.ok((seen.get(0) ?? 0) > 0 && (seen.get(-E.EINVAL) ?? 0) > 0, `answers: ${JSON.stringify([...seen])}`);
});
