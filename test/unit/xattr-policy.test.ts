// The xattr name policy end to end (FuseServer + Passthrough on a t.testdir(), the daemon as root):
// the default policy keeps guest names out of the host's trusted and security namespaces, an
// --xattrmap rule moves them into user.virtiofs., and --posix-acl serves ACLs the host kernel applies
// (mode update, FUSE_SETXATTR_EXT's kill-SGID). docs/xattr.md describes the policy.
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { FUSE_DONT_MASK, FUSE_POSIX_ACL, FUSE_SETXATTR_EXT, Opcode } from '../../src/abi/fuse.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { xattrPolicy } from '../../src/fs/xattrmap.js';
import { FuseServer } from '../../src/fuse/server.js';
import { Logger } from '../../src/log.js';
import { E, native } from '../../src/native.js';
import { FuseClient, type Reply, concat, cstr, le } from '../helpers/fuse-client.js';
import { realTables, resetTables } from '../helpers/real-tables.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Host-side xattr access (Node has none), on a real fd of the path. */
function withFd<T>(p: string, f: (fd: number) => T): T {
  const fd = fs.openSync(p, fs.lstatSync(p).isDirectory() ? fs.constants.O_RDONLY | fs.constants.O_DIRECTORY : fs.constants.O_RDONLY);
  try {
    return f(fd);
  } finally {
    fs.closeSync(fd);
  }
}
function hostGet(p: string, name: string): Uint8Array | number {
  return withFd(p, (fd) => {
    const buf = new Uint8Array(4096);
    const n = native.fgetxattr(fd, enc.encode(name), buf);
    return n < 0 ? n : buf.slice(0, n);
  });
}
function hostText(p: string, name: string): string | number {
  const v = hostGet(p, name);
  return typeof v === 'number' ? v : dec.decode(v);
}
function hostSet(p: string, name: string, value: string | Uint8Array): number {
  return withFd(p, (fd) => native.fsetxattr(fd, enc.encode(name), typeof value === 'string' ? enc.encode(value) : value, 0));
}
function hostList(p: string): string[] {
  return withFd(p, (fd) => {
    const buf = new Uint8Array(65536);
    const n = native.flistxattr(fd, buf);
    return dec.decode(buf.subarray(0, Math.max(0, n))).split('\0').filter((s) => s !== '');
  });
}

class XattrClient extends FuseClient {
  /** what INIT negotiated */
  initFlags = 0;
  setx(node: bigint, name: string, value: string | Uint8Array, flags = 0): Reply {
    const v = typeof value === 'string' ? enc.encode(value) : value;
    return this.call(Opcode.Setxattr, node, concat(le([['u32', v.length], ['u32', flags]]), cstr(name), v));
  }
  /** SETXATTR with the FUSE_SETXATTR_EXT struct (size, flags, setxattr_flags, padding) */
  setxExt(node: bigint, name: string, value: Uint8Array, setxattrFlags: number): Reply {
    return this.call(Opcode.Setxattr, node,
      concat(le([['u32', value.length], ['u32', 0], ['u32', setxattrFlags], ['u32', 0]]), cstr(name), value));
  }
  getx(node: bigint, name: string, size = 4096): Reply {
    return this.call(Opcode.Getxattr, node, concat(le([['u32', size], ['u32', 0]]), cstr(name)));
  }
  listx(node: bigint, size: number): Reply {
    return this.call(Opcode.Listxattr, node, le([['u32', size], ['u32', 0]]));
  }
  rmx(node: bigint, name: string): Reply {
    return this.call(Opcode.Removexattr, node, cstr(name));
  }
  names(node: bigint): string[] {
    const r = this.listx(node, 65536);
    if (r.error !== 0) throw new Error(`LISTXATTR: ${r.error}`);
    return dec.decode(r.data).split('\0').filter((s) => s !== '');
  }
  /** the size a size-0 LISTXATTR answers */
  listSize(node: bigint): number {
    const r = this.listx(node, 0);
    if (r.error !== 0) throw new Error(`LISTXATTR probe: ${r.error}`);
    return r.view.getUint32(0, true);
  }
}

// posix_acl_xattr (include/uapi/linux/posix_acl_xattr.h): u32 version 2, then {u16 tag, u16 perm, u32 id}
const ACL_USER_OBJ = 0x01;
const ACL_USER = 0x02;
const ACL_GROUP_OBJ = 0x04;
const ACL_MASK = 0x10;
const ACL_OTHER = 0x20;
const UNDEFINED_ID = 0xffffffff;
function aclValue(entries: [number, number, number?][]): Uint8Array {
  const b = new Uint8Array(4 + 8 * entries.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, 2, true);
  entries.forEach(([tag, perm, id], i) => {
    v.setUint16(4 + i * 8, tag, true);
    v.setUint16(6 + i * 8, perm, true);
    v.setUint32(8 + i * 8, id ?? UNDEFINED_ID, true);
  });
  return b;
}

const tables = await realTables();

interface MountOpts { xattrmap?: string; posixAcl?: boolean; policy?: false }
function mount(t: Test, share: string, o: MountOpts = {}): XattrClient {
  const pfs = Passthrough.open(share, resetTables(tables),
    o.policy === false ? {} : { xattrPolicy: xattrPolicy(o.xattrmap, o.posixAcl ?? false) });
  t.teardown(() => { pfs.destroy(); native.close(pfs.procFd); });
  const c = new XattrClient(new FuseServer(pfs, { cache: 'auto', xattr: true, posixAcl: o.posixAcl ?? false }));
  const init = c.init();
  if (init.error !== 0 || !init.init) throw new Error('INIT failed');
  c.initFlags = init.init.flags;
  return c;
}

/** Does the host file system under `dir` take trusted.*, security.* and ACL xattrs (as root)? */
function support(dir: string): string | null {
  const p = path.join(dir, '.probe');
  fs.writeFileSync(p, '');
  try {
    for (const n of ['user.probe', 'trusted.probe', 'security.probe']) {
      const r = hostSet(p, n, 'x');
      if (r < 0) return `setting ${n} under ${dir} failed: errno ${-r} (needs root and a file system with these namespaces)`;
    }
    return null;
  } finally {
    fs.unlinkSync(p);
  }
}

const skip = support(t.testdir({}));
if (skip) t.comment(`skipping: ${skip}`);

t.test('default policy: no trusted.* or security.* from the guest, trusted.* hidden', { skip: skip ?? false }, async (t) => {
  const share = t.testdir({ f: 'data' });
  const p = path.join(share, 'f');
  t.equal(hostSet(p, 'trusted.host-secret', 'overlay'), 0);
  t.equal(hostSet(p, 'security.host-label', 'label'), 0);
  t.equal(hostSet(p, 'user.plain', 'v'), 0);
  const c = mount(t, share);
  const f = c.entry(c.lookup(1n, 'f')).nodeid;

  // set/remove refused with EPERM, nothing reaches the host
  const cap = new Uint8Array(20);
  new DataView(cap.buffer).setUint32(0, 0x02000002, true); // VFS_CAP_REVISION_2, no capabilities
  t.equal(c.setx(f, 'security.capability', cap).error, -E.EPERM, 'security.capability: EPERM');
  t.equal(hostGet(p, 'security.capability'), -E.ENODATA, '... not on the host');
  t.equal(c.setx(f, 'trusted.foo', 'guest').error, -E.EPERM, 'trusted.*: EPERM');
  t.equal(hostGet(p, 'trusted.foo'), -E.ENODATA, '... not on the host');
  t.equal(c.setx(f, 'security.selinux', 'system_u:object_r:shadow_t:s0').error, -E.EPERM, 'an LSM label: EPERM');
  t.equal(c.rmx(f, 'trusted.host-secret').error, -E.EPERM, 'remove trusted.*: EPERM');
  t.equal(c.rmx(f, 'security.host-label').error, -E.EPERM, 'remove security.*: EPERM');
  t.equal(hostText(p, 'trusted.host-secret'), 'overlay', 'the host keeps its trusted.*');
  t.equal(hostText(p, 'security.host-label'), 'label', 'and its security.*');
  // but a file capability may be removed: the guest kernel does so before a write or a chown of the file
  const capOn = new Uint8Array(20);
  new DataView(capOn.buffer).setUint32(0, 0x02000001, true); // VFS_CAP_REVISION_2, effective
  new DataView(capOn.buffer).setUint32(4, 1 << 13, true); // permitted: CAP_NET_RAW
  t.equal(hostSet(p, 'security.capability', capOn), 0, 'a file capability on the host');
  t.same(c.getx(f, 'security.capability').data, capOn, 'the guest reads it');
  t.equal(c.rmx(f, 'security.capability').error, 0, 'remove security.capability: done');
  t.equal(hostGet(p, 'security.capability'), -E.ENODATA, '... gone on the host');
  t.equal(c.rmx(f, 'security.capability').error, -E.ENODATA, 'again: ENODATA from the host');
  // ... by root, the owner, or a caller who may write the file; never by another user
  fs.chownSync(p, 1234, 1234);
  fs.chmodSync(p, 0o644);
  const other = () => { c.uid = 4321; c.gid = 4321; };
  const reset = () => { c.uid = 0; c.gid = 0; };
  t.teardown(reset);
  t.equal(hostSet(p, 'security.capability', capOn), 0);
  other();
  t.equal(c.rmx(f, 'security.capability').error, -E.EPERM, 'another user (no write permission): EPERM');
  reset();
  t.same(hostGet(p, 'security.capability'), capOn, '... the capability stays');
  fs.chmodSync(p, 0o646);
  other();
  t.equal(c.rmx(f, 'security.capability').error, 0, 'a user who may write the file: done (a write would drop it too)');
  reset();
  t.equal(hostGet(p, 'security.capability'), -E.ENODATA);
  fs.chmodSync(p, 0o600);
  t.equal(hostSet(p, 'security.capability', capOn), 0);
  c.uid = 1234;
  c.gid = 1234;
  t.equal(c.rmx(f, 'security.capability').error, 0, 'the owner: done (a chown drops it too)');
  reset();
  t.equal(hostGet(p, 'security.capability'), -E.ENODATA);
  t.equal(hostSet(p, 'security.capability', capOn), 0);
  t.equal(c.rmx(f, 'security.capability').error, 0, 'root: done');
  fs.chownSync(p, 0, 0);
  fs.chmodSync(p, 0o644);
  t.equal(c.setx(f, 'system.nfs4_acl', 'x').error, -E.EPERM, 'other system.* names: EPERM');

  // reads: trusted.* absent, security.* readable
  t.equal(c.getx(f, 'trusted.host-secret').error, -E.ENODATA, 'get trusted.*: ENODATA');
  t.equal(c.getx(f, 'trusted.host-secret', 0).error, -E.ENODATA, '... its size too');
  t.equal(dec.decode(c.getx(f, 'security.host-label').data), 'label', 'get security.*: the host value');
  t.equal(c.getx(f, 'security.capability').error, -E.ENODATA, 'a missing security.* name: ENODATA');

  // the list: trusted.* hidden; the size probe is the filtered size
  t.same(c.names(f).sort(), ['security.host-label', 'user.plain']);
  t.equal(c.listSize(f), 'security.host-label\0user.plain\0'.length, 'size probe: the filtered list');
  t.equal(c.listx(f, c.listSize(f)).error, 0, 'a buffer of exactly the probed size');
  t.equal(c.listx(f, c.listSize(f) - 1).error, -E.ERANGE, 'one byte short: ERANGE');

  // user.* as before
  t.equal(c.setx(f, 'user.color', 'blue').error, 0);
  t.equal(hostText(p, 'user.color'), 'blue');
  t.equal(c.rmx(f, 'user.color').error, 0);

  // the POSIX ACL names without --posix-acl: EOPNOTSUPP, hidden
  t.equal(c.setx(f, 'system.posix_acl_access', aclValue([[ACL_USER_OBJ, 6], [ACL_GROUP_OBJ, 4], [ACL_OTHER, 4]])).error,
    -E.EOPNOTSUPP, 'system.posix_acl_access: EOPNOTSUPP');
  t.equal(c.getx(f, 'system.posix_acl_access').error, -E.EOPNOTSUPP);

  // a Passthrough built without a policy applies the same default
  const bare = mount(t, share, { policy: false });
  const bf = bare.entry(bare.lookup(1n, 'f')).nodeid;
  t.equal(bare.setx(bf, 'trusted.foo', 'x').error, -E.EPERM, 'no policy given: the default');
  t.notOk(bare.names(bf).includes('trusted.host-secret'));
});

t.test('a map rule: the guest\'s trusted.* lives in the host\'s user.virtiofs.*', { skip: skip ?? false }, async (t) => {
  const share = t.testdir({ f: 'data', d: {} });
  const p = path.join(share, 'f');
  t.equal(hostSet(p, 'trusted.host-secret', 'overlay'), 0);
  t.equal(hostSet(p, 'user.plain', 'v'), 0);
  const c = mount(t, share, { xattrmap: ':map:trusted.:user.virtiofs.:' });
  const f = c.entry(c.lookup(1n, 'f')).nodeid;

  t.equal(c.setx(f, 'trusted.foo', 'guest').error, 0, 'SETXATTR trusted.foo');
  t.equal(hostText(p, 'user.virtiofs.trusted.foo'), 'guest', 'stored as user.virtiofs.trusted.foo');
  t.equal(hostGet(p, 'trusted.foo'), -E.ENODATA, 'not as trusted.foo');
  t.equal(dec.decode(c.getx(f, 'trusted.foo').data), 'guest', 'read back as trusted.foo');
  t.equal(c.getx(f, 'trusted.host-secret').error, -E.ENODATA, "the host's own trusted.* is not reached");
  t.same(c.names(f).sort(), ['trusted.foo', 'user.plain'], 'listed as trusted.foo; the host trusted.* hidden');
  t.equal(c.listSize(f), 'trusted.foo\0user.plain\0'.length);
  t.equal(c.setx(f, 'user.virtiofs.trusted.foo', 'direct').error, -E.EPERM, 'the mapped names are not the guest\'s to use');
  t.equal(c.getx(f, 'user.virtiofs.trusted.foo').error, -E.ENODATA);
  t.equal(c.rmx(f, 'trusted.foo').error, 0, 'REMOVEXATTR trusted.foo');
  t.equal(hostGet(p, 'user.virtiofs.trusted.foo'), -E.ENODATA, 'gone on the host');
  t.equal(hostText(p, 'trusted.host-secret'), 'overlay');
  // the rest passes (the map's final ok rule)
  t.equal(c.setx(f, 'security.guest', 'x').error, 0, 'security.* passes under this map (its ok:all)');
  t.equal(hostText(p, 'security.guest'), 'x');

  // everything under user.virtiofs.: the guest's security.capability cannot give the host file one
  const all = mount(t, share, { xattrmap: ':map::user.virtiofs.:' });
  const a = all.entry(all.lookup(1n, 'd')).nodeid;
  const dp = path.join(share, 'd');
  t.equal(all.setx(a, 'security.capability', 'caps').error, 0);
  t.equal(hostText(dp, 'user.virtiofs.security.capability'), 'caps');
  t.equal(hostGet(dp, 'security.capability'), -E.ENODATA);
  t.same(all.names(a), ['security.capability']);
  t.same(hostList(dp), ['user.virtiofs.security.capability']);

  // unsupported and bad rules
  const u = mount(t, share, { xattrmap: '/unsupported/all/security.selinux/security.selinux/ /bad/client/user.no// /ok/all///' });
  const uf = u.entry(u.lookup(1n, 'f')).nodeid;
  t.equal(u.setx(uf, 'security.selinux', 'x').error, -E.EOPNOTSUPP, 'unsupported: EOPNOTSUPP');
  t.equal(u.getx(uf, 'security.selinux').error, -E.EOPNOTSUPP);
  t.equal(u.setx(uf, 'user.no', 'x').error, -E.EPERM, 'bad: EPERM');
  t.equal(u.getx(uf, 'user.no').error, -E.ENODATA, 'bad, get: ENODATA');
  t.equal(u.setx(uf, 'trusted.old', 'x').error, 0, ':ok:all::: passes trusted.* (the old behaviour)');
  t.equal(hostText(p, 'trusted.old'), 'x');
});

function aclSupport(dir: string): string | null {
  const p = path.join(dir, '.acl-probe');
  fs.writeFileSync(p, '');
  try {
    const r = hostSet(p, 'system.posix_acl_access', aclValue([[ACL_USER_OBJ, 6], [ACL_USER, 4, 1234], [ACL_GROUP_OBJ, 4], [ACL_MASK, 4], [ACL_OTHER, 0]]));
    return r < 0 ? `the file system under ${dir} takes no POSIX ACLs (errno ${-r})` : null;
  } finally {
    fs.unlinkSync(p);
  }
}
const aclSkip = skip ?? aclSupport(t.testdir({}));
if (aclSkip && !skip) t.comment(`skipping the ACL test: ${aclSkip}`);

t.test('--posix-acl: INIT flags, ACL round trip, the mode follows, kill-SGID', { skip: aclSkip ?? false }, async (t) => {
  const share = t.testdir({ f: 'data', d: {} });
  const p = path.join(share, 'f');
  fs.chmodSync(p, 0o644);
  const c = mount(t, share, { posixAcl: true });
  t.not(c.initFlags & FUSE_POSIX_ACL, 0, 'FUSE_POSIX_ACL negotiated');
  t.not(c.initFlags & FUSE_SETXATTR_EXT, 0, 'FUSE_SETXATTR_EXT negotiated');
  const f = c.entry(c.lookup(1n, 'f')).nodeid;

  const acl = aclValue([[ACL_USER_OBJ, 6], [ACL_USER, 4, 1234], [ACL_GROUP_OBJ, 4], [ACL_MASK, 6], [ACL_OTHER, 0]]);
  t.equal(c.setxExt(f, 'system.posix_acl_access', acl, 0).error, 0, 'SETXATTR system.posix_acl_access (setxattr_in ext)');
  t.same(hostGet(p, 'system.posix_acl_access'), acl, 'the host file has the ACL');
  t.same(c.getx(f, 'system.posix_acl_access').data, acl, 'GETXATTR returns it');
  t.equal(fs.statSync(p).mode & 0o7777, 0o660, 'the host kernel set the mode from it (group bits = mask)');
  t.equal(c.getattr(f).attr!.mode & 0o7777, 0o660, 'GETATTR shows the new mode');
  t.ok(c.names(f).includes('system.posix_acl_access'), 'listed');
  t.equal(c.getx(f, 'system.posix_acl_default').error, -E.ENODATA, 'a file has no default ACL');

  // a default ACL on a directory
  const d = c.entry(c.lookup(1n, 'd')).nodeid;
  const dacl = aclValue([[ACL_USER_OBJ, 7], [ACL_GROUP_OBJ, 5], [ACL_OTHER, 5]]);
  t.equal(c.setxExt(d, 'system.posix_acl_default', dacl, 0).error, 0, 'system.posix_acl_default on a directory');
  t.same(c.getx(d, 'system.posix_acl_default').data, dacl);
  t.equal(c.rmx(d, 'system.posix_acl_default').error, 0, 'removed');
  t.equal(hostGet(path.join(share, 'd'), 'system.posix_acl_default'), -E.ENODATA);

  // FUSE_SETXATTR_ACL_KILL_SGID: the caller may not keep the set-group-ID bit
  fs.chmodSync(p, 0o2664);
  t.equal(c.setxExt(f, 'system.posix_acl_access', acl, 0).error, 0, 'without the flag');
  t.equal(fs.statSync(p).mode & 0o7777, 0o2660, 'SGID kept (the daemon is root)');
  t.equal(c.setxExt(f, 'system.posix_acl_access', acl, 1).error, 0, 'with FUSE_SETXATTR_ACL_KILL_SGID');
  t.equal(fs.statSync(p).mode & 0o7777, 0o660, 'SGID cleared, the rest as the ACL says');
  t.same(hostGet(p, 'system.posix_acl_access'), acl, 'the ACL itself unchanged');
  t.equal(c.setxExt(f, 'system.posix_acl_access', acl, 2).error, -E.EINVAL, 'an unknown setxattr_flags bit: EINVAL');
  t.equal(c.setxExt(f, 'user.k', enc.encode('v'), 0).error, 0, 'every SETXATTR uses the ext struct');
  t.equal(hostText(p, 'user.k'), 'v');

  // the guest kernel takes only ENODATA as "no ACL": an unsupported rule's EOPNOTSUPP becomes ENODATA
  const u = mount(t, share, { posixAcl: true, xattrmap: '/unsupported/all/system.posix_acl_access/system.posix_acl_access/ /ok/all///' });
  const uf = u.entry(u.lookup(1n, 'f')).nodeid;
  t.equal(u.getx(uf, 'system.posix_acl_access').error, -E.ENODATA, 'EOPNOTSUPP for an ACL read: ENODATA');
  t.equal(u.setxExt(uf, 'system.posix_acl_access', acl, 0).error, -E.EOPNOTSUPP, 'a set still says EOPNOTSUPP');

  t.equal(mount(t, share).initFlags & (FUSE_POSIX_ACL | FUSE_SETXATTR_EXT), 0, 'neither flag without --posix-acl');
});

t.test('--posix-acl with a kernel that does not offer FUSE_POSIX_ACL: a warning, the old format', { skip: skip ?? false }, async (t) => {
  const share = t.testdir({ f: '' });
  const lines: string[] = [];
  const pfs = Passthrough.open(share, resetTables(tables), { xattrPolicy: xattrPolicy(undefined, true) });
  t.teardown(() => { pfs.destroy(); native.close(pfs.procFd); });
  const c = new XattrClient(new FuseServer(pfs, { xattr: true, posixAcl: true, log: new Logger('warn', 't', (l) => lines.push(l)) }));
  const init = c.init(undefined, undefined, 0xffffffff & ~FUSE_POSIX_ACL & ~FUSE_SETXATTR_EXT);
  t.equal(init.error, 0);
  t.equal(init.init!.flags & (FUSE_POSIX_ACL | FUSE_SETXATTR_EXT), 0, 'neither negotiated');
  t.match(lines.join('\n'), /--posix-acl: the guest kernel does not offer FUSE_POSIX_ACL/, 'the operator is told');
  const f = c.entry(c.lookup(1n, 'f')).nodeid;
  t.equal(c.setx(f, 'user.a', 'v').error, 0, 'SETXATTR in the 8-byte format');
});

// FUSE_DONT_MASK (with --posix-acl): the kernel sends the mode unmasked plus the caller's umask (the
// request builder sends 022); the daemon applies the umask only where the parent has no default ACL,
// where the host kernel gives the new entry the inherited ACL masked by the mode, as a local file system.
t.test('--posix-acl: FUSE_DONT_MASK, the umask applies only without a default ACL', { skip: aclSkip ?? false }, async (t) => {
  // the daemon's umask is 0 (src/daemon.ts): this process's own must not mask the modes either
  const oldUmask = process.umask(0);
  t.teardown(() => { process.umask(oldUmask); });
  const share = t.testdir({ inherit: {}, plain: {} });
  const inherit = path.join(share, 'inherit');
  t.equal(hostSet(inherit, 'system.posix_acl_default',
    aclValue([[ACL_USER_OBJ, 7], [ACL_USER, 7, 1100], [ACL_GROUP_OBJ, 5], [ACL_MASK, 7], [ACL_OTHER, 0]])), 0, 'a default ACL on inherit/');
  const c = mount(t, share, { posixAcl: true });
  t.not(c.initFlags & FUSE_DONT_MASK, 0, 'FUSE_DONT_MASK negotiated');
  const mode = (p: string) => fs.lstatSync(path.join(share, p)).mode & 0o7777;
  const di = c.entry(c.lookup(1n, 'inherit')).nodeid;
  const dp = c.entry(c.lookup(1n, 'plain')).nodeid;
  for (const [d, name] of [[dp, 'plain'], [di, 'inherit']] as const) {
    t.equal(c.mkdir(d, 'd', 0o777).error, 0, `MKDIR in ${name}`);
    t.equal(c.create(d, 'f', undefined, 0o100666).error, 0, `CREATE in ${name}`);
    t.equal(c.mknod(d, 'p', 0o010666).error, 0, `MKNOD (a FIFO) in ${name}`);
  }
  t.equal(mode('plain/d'), 0o755, 'no default ACL: mkdir 0777 under umask 022');
  t.equal(mode('plain/f'), 0o644, 'create 0666 under umask 022');
  t.equal(mode('plain/p'), 0o644, 'mknod 0666 under umask 022');
  t.equal(hostGet(path.join(share, 'plain/f'), 'system.posix_acl_access'), -E.ENODATA, 'and no ACL');
  t.equal(mode('inherit/d'), 0o770, 'a default ACL replaces the umask: rwx mask ∩ 0777, other from the ACL');
  t.equal(mode('inherit/f'), 0o660, 'create 0666: the mask is rw-');
  t.equal(mode('inherit/p'), 0o660, 'mknod likewise');
  t.same(hostGet(path.join(share, 'inherit/f'), 'system.posix_acl_access'),
    aclValue([[ACL_USER_OBJ, 6], [ACL_USER, 7, 1100], [ACL_GROUP_OBJ, 5], [ACL_MASK, 6], [ACL_OTHER, 0]]), 'the inherited ACL, masked by the mode');

  // without --posix-acl there is no FUSE_DONT_MASK: the kernel has masked the mode, it is used as given
  const share2 = t.testdir({ plain: {} });
  const n = mount(t, share2);
  t.equal(n.initFlags & FUSE_DONT_MASK, 0, 'no FUSE_DONT_MASK without --posix-acl');
  t.equal(n.mkdir(n.entry(n.lookup(1n, 'plain')).nodeid, 'd', 0o777).error, 0);
  t.equal(fs.lstatSync(path.join(share2, 'plain/d')).mode & 0o7777, 0o777, 'the mode as sent');
});
