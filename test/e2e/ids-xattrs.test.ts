/**
 * Id translation, the extended attribute policies and POSIX ACLs with a real guest (one boot, three
 * virtio-fs devices, each served by its own daemon of ours with its own configuration):
 *
 *   idmap  --translate-uid/--translate-gid rules (map, squash-guest, forbid-guest, host, squash-host)
 *          and --xattr with the default name policy (docs/operations.md "Id mapping", docs/xattr.md)
 *   xmap   --xattrmap with prefix/ok/bad/unsupported/map rules
 *   acl    --posix-acl: ACLs set in the guest land on the host, ACLs set on the host are enforced by
 *          the guest kernel, default ACLs are inherited with the mode a local file system gives
 *          (FUSE_DONT_MASK: the umask applies only where the parent has no default ACL), chmod
 *          updates the mask
 *
 * The guest runs test/e2e/guest/fsprobe.c's `--do` commands (busybox has no xattr or ACL applets),
 * as guest users of the test's /etc/passwd through busybox `su`; the host checks owners, modes,
 * xattrs and ACLs with node's fs and the addon. The xattr daemons keep CAP_SYS_ADMIN
 * (--modcaps=+sys_admin), so the host kernel would let them read and write trusted.* and any security.*
 * name: what the guest cannot do there is the name policy's refusal, nothing else.
 *
 * Needs root (files of several owners, trusted.* on the host) and a host file system with xattrs and
 * POSIX ACLs for the temporary directory. A missing piece skips, and fails under CI=true.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { type DaemonHandle, GUEST_PRELUDE, guestSkipReason, parseVals, runGuest, startDaemon } from '../../harness/index.js';
import { native } from '../../src/native.js';
import { checkGuestRun } from './guest-checks.js';
import { buildProbe } from './probe-kit.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

// ---- host-side xattrs and ACLs through the addon ----------------------------------------------

function withFd<T>(p: string, f: (fd: number) => T): T {
  const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    return f(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function setx(p: string, name: string, value: Uint8Array | string): void {
  const v = typeof value === 'string' ? enc.encode(value) : value;
  const r = withFd(p, (fd) => native.fsetxattr(fd, enc.encode(name), v, 0));
  if (r < 0) throw new Error(`fsetxattr ${p} ${name}: errno ${-r}`);
}

/** The value, or null when the host file has no such attribute. */
function getx(p: string, name: string): Uint8Array | null {
  return withFd(p, (fd) => {
    const out = new Uint8Array(65536);
    const n = native.fgetxattr(fd, enc.encode(name), out);
    if (n === -61 /* ENODATA */) return null;
    if (n < 0) throw new Error(`fgetxattr ${p} ${name}: errno ${-n}`);
    return out.slice(0, n);
  });
}

const getxs = (p: string, name: string): string | null => {
  const v = getx(p, name);
  return v === null ? null : dec.decode(v);
};

function listx(p: string): string[] {
  return withFd(p, (fd) => {
    const out = new Uint8Array(65536);
    const n = native.flistxattr(fd, out);
    if (n < 0) throw new Error(`flistxattr ${p}: errno ${-n}`);
    return dec.decode(out.subarray(0, n)).split('\0').filter((s) => s !== '');
  });
}

/** ACL text as fsprobe prints it ("u::rw-,u:1100:r--,g::r--,m::r--,o::---") ↔ the xattr bytes. */
const TAGS: ReadonlyArray<readonly [string, boolean, number]> = [
  ['u', false, 0x01], ['u', true, 0x02], ['g', false, 0x04], ['g', true, 0x08], ['m', false, 0x10], ['o', false, 0x20],
];

function aclBytes(text: string): Uint8Array {
  const ents = text.split(',').map((e) => {
    const [c, id, perm] = e.split(':') as [string, string, string];
    const tag = TAGS.find(([tc, named]) => tc === c && named === (id !== ''))![2];
    const p = (perm[0] === 'r' ? 4 : 0) | (perm[1] === 'w' ? 2 : 0) | (perm[2] === 'x' ? 1 : 0);
    return { tag, p, id: id === '' ? 0xffffffff : Number(id) };
  }).sort((a, b) => a.tag - b.tag || a.id - b.id);
  const b = Buffer.alloc(4 + ents.length * 8);
  b.writeUInt32LE(2, 0);
  ents.forEach((e, i) => {
    b.writeUInt16LE(e.tag, 4 + i * 8);
    b.writeUInt16LE(e.p, 6 + i * 8);
    b.writeUInt32LE(e.id, 8 + i * 8);
  });
  return b;
}

function aclText(v: Uint8Array | null): string | null {
  if (v === null) return null;
  const b = Buffer.from(v);
  const out: string[] = [];
  for (let at = 4; at + 8 <= b.length; at += 8) {
    const tag = b.readUInt16LE(at);
    const p = b.readUInt16LE(at + 2);
    const t = TAGS.find(([, , x]) => x === tag);
    const perm = `${p & 4 ? 'r' : '-'}${p & 2 ? 'w' : '-'}${p & 1 ? 'x' : '-'}`;
    out.push(`${t?.[0] ?? '?'}:${t?.[1] ? b.readUInt32LE(at + 4) : ''}:${perm}`);
  }
  return out.join(',');
}

const ACL_ACCESS = 'system.posix_acl_access';
const ACL_DEFAULT = 'system.posix_acl_default';
/** a valid VFS_CAP_REVISION_2 file capability (effective, permitted CAP_NET_RAW): the guest kernel checks the format */
const CAP_BLOB = '0100000200200000000000000000000000000000';

/** Can this host's temporary file system hold trusted.*, security.* and POSIX ACLs? */
function hostXattrSkip(): string | null {
  const dir = os.tmpdir();
  const f = fs.mkdtempSync(path.join(dir, 'vfsd-idx-probe-'));
  try {
    setx(f, 'trusted.probe', '1');
    setx(f, 'security.probe', '1');
    setx(f, ACL_ACCESS, aclBytes('u::rw-,u:1:r--,g::r--,m::r--,o::---'));
    return null;
  } catch (e) {
    return `the host file system of ${dir} lacks trusted/security xattrs or POSIX ACLs: ${(e as Error).message}`;
  } finally {
    fs.rmSync(f, { recursive: true, force: true });
  }
}

// ---- the run -----------------------------------------------------------------------------------

const probe = guestSkipReason('ours') ? null : buildProbe();
const skip =
  guestSkipReason('ours') ??
  (process.getuid?.() !== 0 ? 'needs root (files of several owners, trusted.* on the host)' : null) ??
  (typeof probe === 'object' && probe !== null ? probe.skip : null) ??
  hostXattrSkip();
if (skip && process.env.CI === 'true') t.fail(`the ids/xattrs guest test cannot run in CI: ${skip}`);

// guest users: a, b mapped (1000, 1001); s squashed (2000); f forbidden (uid 3000); r, q for the ACLs
const PASSWD = [
  'root:x:0:0:root:/:/bin/sh', 'a:x:1000:1000::/:/bin/sh', 'b:x:1001:1001::/:/bin/sh', 's:x:2000:2000::/:/bin/sh',
  'f:x:3000:1000::/:/bin/sh', 'g:x:1010:1000::/:/bin/sh', 'r:x:1100:1100::/:/bin/sh', 'q:x:1101:1101::/:/bin/sh', '',
].join('\n');
const GROUP = 'root:x:0:\na:x:1000:\nb:x:1001:\ns:x:2000:\nr:x:1100:\nq:x:1101:\nacl5000:x:5000:q\n';

const ID_ARGS = [
  '--translate-uid=map:1000:101000:10', '--translate-uid=squash-guest:2000:65534:10', '--translate-uid=forbid-guest:3000:1',
  '--translate-uid=host:50000:1500:1', '--translate-uid=squash-host:60000:7777:5', '--translate-uid=GUEST/1010/102010/5',
  '--translate-gid=map:1000:101000:10', '--translate-gid=squash-guest:2000:65534:10', '--translate-gid=host:50000:1500:1',
  '--xattr', '--modcaps=+sys_admin',
];
const XMAP = ':bad:all:user.secret.:user.secret.: :unsupported:all:user.nosup.:user.nosup.: :bad:client:security.:: '
  + ':map:trusted.:user.virtiofs.:';
const XMAP_ARGS = [`--xattrmap=${XMAP}`, '--modcaps=+sys_admin'];
const ACL_ARGS = ['--posix-acl'];

/** Every `--do` result the script prints: name → the guest command. `as U` runs it as guest user U (umask 022). */
const DO: ReadonlyArray<readonly [string, string]> = [
  // --- idmap: creation as mapped, squashed and forbidden users
  ['i_create_a', 'as a P create /mnt/i/open/a-file 666'],
  ['i_mkdir_a', 'as a P mkdir /mnt/i/open/a-dir 777'],
  ['i_stat_a', 'as a P stat /mnt/i/open/a-file'],
  ['i_create_s', 'as s P create /mnt/i/open/s-file 666'],
  ['i_stat_s', 'P stat /mnt/i/open/s-file'],
  ['i_write_s', 'as s P write /mnt/i/open/s-file'],
  ['i_create_g', 'as g P create /mnt/i/open/g-file 666'],
  ['i_stat_g', 'P stat /mnt/i/open/g-file'],
  ['i_create_f', 'as f P create /mnt/i/open/f-file 666'],
  ['i_mkdir_f', 'as f P mkdir /mnt/i/open/f-dir 777'],
  ['i_lookup_f', 'as f P stat /mnt/i/only-f'],
  // host owners as the guest sees them
  ['i_stat_mapped', 'P stat /mnt/i/host-mapped'],
  ['i_stat_host', 'P stat /mnt/i/host-hostrule'],
  ['i_stat_squash', 'P stat /mnt/i/host-squash'],
  ['i_stat_other', 'P stat /mnt/i/host-other'],
  // a directory listed before anything in it is looked up: the owners come in READDIRPLUS entries
  ['i_ls', "ls -ln /mnt/i/rdp | awk 'NF > 8 { printf \"%s=%s:%s,\", $9, $3, $4 }'"],
  // chown by guest root
  ['i_chown_map', 'P chown /mnt/i/open/c-map 1003 1004'],
  ['i_chown_map_stat', 'P stat /mnt/i/open/c-map'],
  ['i_chown_squash', 'P chown /mnt/i/open/c-squash 2001 2002'],
  ['i_chown_forbid', 'P chown /mnt/i/open/c-forbid 3000 0'],
  // the default xattr policy (as guest root)
  ['x_set_user', 'P setx /mnt/i/xf user.k v1'],
  ['x_get_user', 'P getx /mnt/i/xf user.k'],
  ['x_set_user2', 'P setx /mnt/i/xf user.gone v2'],
  ['x_rm_user', 'P rmx /mnt/i/xf user.gone'],
  ['x_set_cap', `P setx /mnt/i/xf security.capability hex:${CAP_BLOB}`],
  ['x_set_sec', 'P setx /mnt/i/xf security.other v'],
  ['x_set_trusted', 'P setx /mnt/i/xf trusted.t v'],
  ['x_list_host', 'P listx /mnt/i/xh'],
  ['x_get_sec', 'P getx /mnt/i/xh security.hs'],
  ['x_get_trusted', 'P getx /mnt/i/xh trusted.th'],
  ['x_rm_sec', 'P rmx /mnt/i/xh security.hs'],
  ['x_rm_trusted', 'P rmx /mnt/i/xh trusted.th'],
  ['x_user_owner', 'as a P setx /mnt/i/open/a-file user.mine m'],
  // host files with a file capability: the guest kernel reads it and removes it before a write or chown
  ['x_cap_visible', 'P getx /mnt/i/capw security.capability | wc -c'],
  ['x_cap_write', 'as a P write /mnt/i/capw'],
  ['x_cap_chown', 'P chown /mnt/i/capc 1001 1001'],
  ['x_cap_rm_user', 'as a P rmx /mnt/i/capr security.capability'],
  ['x_cap_rm_root', 'P rmx /mnt/i/capr security.capability'],
  // --- xattrmap
  ['m_list', 'P listx /mnt/x/h'],
  ['m_get_mapped', 'P getx /mnt/x/h trusted.m'],
  ['m_set_mapped', 'P setx /mnt/x/g trusted.new tv'],
  ['m_get_new', 'P getx /mnt/x/g trusted.new'],
  ['m_set_plain', 'P setx /mnt/x/g user.plain2 pv'],
  ['m_set_direct', 'P setx /mnt/x/g user.virtiofs.x v'],
  ['m_get_direct', 'P getx /mnt/x/h user.virtiofs.trusted.m'],
  ['m_get_secret', 'P getx /mnt/x/h user.secret.s'],
  ['m_set_secret', 'P setx /mnt/x/g user.secret.t v'],
  ['m_get_nosup', 'P getx /mnt/x/h user.nosup.n'],
  ['m_set_nosup', 'P setx /mnt/x/g user.nosup.a v'],
  ['m_get_sec', 'P getx /mnt/x/h security.hs'],
  ['m_set_cap', `P setx /mnt/x/g security.capability hex:${CAP_BLOB}`],
  ['m_set_rm', 'P setx /mnt/x/g trusted.rm v'],
  ['m_rm_mapped', 'P rmx /mnt/x/g trusted.rm'],
  ['m_list_g', 'P listx /mnt/x/g'],
  // --- POSIX ACLs
  ['a_read_named', 'as r P read /mnt/a/hostacl'],
  ['a_read_other', 'as q P read /mnt/a/hostacl'],
  ['a_getacl_host', 'P getacl /mnt/a/hostacl access'],
  ['a_setacl', 'P setacl /mnt/a/g access u::rw-,u:1101:rw-,g::r--,m::rw-,o::---'],
  ['a_stat_g', 'P stat /mnt/a/g'],
  ['a_getacl_g', 'P getacl /mnt/a/g access'],
  ['a_write_named', 'as q P write /mnt/a/g'],
  ['a_write_other', 'as r P write /mnt/a/g'],
  ['a_setacl_sgid', 'as r P setacl /mnt/a/sgid access u::rwx,g::rwx,o::---'],
  ['a_setacl_sgid_keep', 'as r P setacl /mnt/a/sgid-own access u::rwx,g::rwx,o::---'],
  ['a_mkdir_gdef', 'P mkdir /mnt/a/gdef 777'],
  ['a_setacl_gdef', 'P setacl /mnt/a/gdef default u::rwx,u:1101:rwx,g::r-x,m::rwx,o::r--'],
  ['a_create_gdef', 'P create /mnt/a/gdef/f 666'],
  ['a_write_gdef', 'as q P write /mnt/a/gdef/f'],
  ['a_grp_read', 'as q P read /mnt/a/agrp/f'],
  ['a_grp_create', 'as q P create /mnt/a/agrp/new 666'],
  ['a_inherit_create', 'as r P create /mnt/a/inherit/f 666'],
  ['a_inherit_mkdir', 'as r P mkdir /mnt/a/inherit/d 777'],
  ['a_inherit_stat_f', 'P stat /mnt/a/inherit/f'],
  ['a_inherit_stat_d', 'P stat /mnt/a/inherit/d'],
  ['a_inherit_getacl_f', 'P getacl /mnt/a/inherit/f access'],
  ['a_plain_create', 'as r P create /mnt/a/plain/f 666'],
  ['a_plain_mkdir', 'as r P mkdir /mnt/a/plain/d 777'],
  ['a_plain_create077', 'as077 r P create /mnt/a/plain/f077 666'],
  ['a_plain_stat_f', 'P stat /mnt/a/plain/f'],
  ['a_setacl_c', 'P setacl /mnt/a/c access u::rw-,u:1101:rw-,g::r--,m::rw-,o::---'],
  ['a_write_named_before', 'as q P write /mnt/a/c'],
  ['a_chmod', 'chmod 600 /mnt/a/c && echo ok'],
  ['a_chmod_getacl', 'P getacl /mnt/a/c access'],
  ['a_write_named_after', 'as q P write /mnt/a/c'],
];

const MOUNTS: ReadonlyArray<readonly [string, string]> = [['idmap', '/mnt/i'], ['xmap', '/mnt/x'], ['acl', '/mnt/a']];

const SCRIPT = `${GUEST_PRELUDE}
chmod 755 /fsprobe
P() { /fsprobe --do "$@"; }
as() { _u=$1; shift; su -s /bin/sh -c "umask 022; P() { /fsprobe --do \\"\\$@\\"; }; $*" "$_u"; }
as077() { _u=$1; shift; su -s /bin/sh -c "umask 077; P() { /fsprobe --do \\"\\$@\\"; }; $*" "$_u"; }
umask 022
${MOUNTS.map(([tag, dir]) => `mkdir -p ${dir}; step mount_${tag} mount -t virtiofs ${tag} ${dir}`).join('\n')}
${DO.map(([k, cmd]) => `val ${k} "$( ${cmd} 2>&1 | tr '\\n' ' ')"`).join('\n')}
${MOUNTS.map(([tag, dir]) => `step umount_${tag} umount ${dir}`).join('\n')}
finish
`;

const TITLE = 'id translation, xattr policies and POSIX ACLs seen from a guest and from the host';
t.test(TITLE, { skip: skip ?? false }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-idx-'));
  const si = path.join(dir, 'idmap');
  const sx = path.join(dir, 'xmap');
  const sa = path.join(dir, 'acl');
  const I = (p: string) => path.join(si, p);
  const X = (p: string) => path.join(sx, p);
  const A = (p: string) => path.join(sa, p);
  for (const d of [si, sx, sa]) {
    fs.mkdirSync(d);
    fs.chmodSync(d, 0o755);
  }
  const file = (p: string, uid: number, gid: number, mode: number) => {
    fs.writeFileSync(p, 'data\n');
    fs.chownSync(p, uid, gid);
    fs.chmodSync(p, mode);
  };
  // idmap
  fs.mkdirSync(I('open'));
  fs.chmodSync(I('open'), 0o777);
  file(I('only-f'), 0, 0, 0o644);
  file(I('host-mapped'), 101005, 101007, 0o644);
  file(I('host-hostrule'), 50000, 50000, 0o644);
  file(I('host-squash'), 60002, 60003, 0o644);
  file(I('host-other'), 4242, 4243, 0o644);
  for (const c of ['c-map', 'c-squash', 'c-forbid']) file(I(`open/${c}`), 0, 0, 0o644);
  fs.mkdirSync(I('rdp'));
  file(I('rdp/m1'), 101002, 101003, 0o644);
  file(I('rdp/h1'), 50000, 50000, 0o644);
  file(I('rdp/o1'), 4242, 4243, 0o644);
  file(I('xf'), 0, 0, 0o644);
  file(I('xh'), 0, 0, 0o644);
  for (const f of ['capw', 'capc', 'capr']) {
    file(I(f), 0, 0, f === 'capr' ? 0o644 : 0o666);
    setx(I(f), 'security.capability', Buffer.from(CAP_BLOB, 'hex'));
  }
  setx(I('xh'), 'user.h', '1');
  setx(I('xh'), 'security.hs', 'sec');
  setx(I('xh'), 'trusted.th', 't');
  // xmap
  file(X('h'), 0, 0, 0o644);
  file(X('g'), 0, 0, 0o644);
  setx(X('h'), 'user.plain', 'p');
  setx(X('h'), 'user.secret.s', 's');
  setx(X('h'), 'user.nosup.n', 'n');
  setx(X('h'), 'user.virtiofs.trusted.m', 'm');
  setx(X('h'), 'trusted.host', 't');
  setx(X('h'), 'security.hs', 'sec');
  // acl
  file(A('hostacl'), 0, 0, 0o640);
  setx(A('hostacl'), ACL_ACCESS, aclBytes('u::rw-,u:1100:r--,g::---,m::r--,o::---'));
  file(A('g'), 0, 0, 0o644);
  file(A('c'), 0, 0, 0o644);
  // set-group-ID files of r's: one in a group r is not in, one in its own group
  file(A('sgid'), 1100, 4321, 0o2750);
  file(A('sgid-own'), 1100, 1100, 0o2750);
  for (const d of ['inherit', 'plain']) {
    fs.mkdirSync(A(d));
    fs.chmodSync(A(d), 0o777);
  }
  // a directory only a named group's ACL entry opens, to q through its supplementary group 5000
  fs.mkdirSync(A('agrp'));
  fs.chmodSync(A('agrp'), 0o770);
  file(A('agrp/f'), 0, 0, 0o640);
  setx(A('agrp'), ACL_ACCESS, aclBytes('u::rwx,g::---,g:5000:rwx,m::rwx,o::---'));
  setx(A('agrp/f'), ACL_ACCESS, aclBytes('u::rw-,g::---,g:5000:r--,m::r--,o::---'));
  setx(A('inherit'), ACL_DEFAULT, aclBytes('u::rwx,u:1100:rwx,g::r-x,m::rwx,o::---'));

  const daemons: DaemonHandle[] = [];
  t.teardown(async () => {
    for (const d of daemons) await d.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const socks: Record<string, string> = {};
  for (const [tag, share, args] of [['idmap', si, ID_ARGS], ['xmap', sx, XMAP_ARGS], ['acl', sa, ACL_ARGS]] as const) {
    socks[tag] = path.join(dir, `${tag}.sock`);
    daemons.push(await startDaemon('ours', { sharedDir: share, socketPath: socks[tag]!, extraArgs: [...args] }));
  }
  const r = await runGuest({
    socketPath: socks.idmap!, tag: 'idmap', extraShares: [{ socketPath: socks.xmap!, tag: 'xmap' }, { socketPath: socks.acl!, tag: 'acl' }],
    script: SCRIPT, timeoutSec: 300,
    files: { 'etc/passwd': PASSWD, 'etc/group': GROUP, fsprobe: fs.readFileSync(probe as string) },
  });
  t.comment(`one boot, three daemons: ${r.durationMs} ms`);
  const steps = [...MOUNTS.map(([tag]) => `mount_${tag}`), ...MOUNTS.map(([tag]) => `umount_${tag}`)];
  if (!checkGuestRun(t, 'ids-xattrs', r, steps, daemons[0])) {
    t.comment(`xmap daemon:\n${daemons[1]!.logs().slice(-3000)}\nacl daemon:\n${daemons[2]!.logs().slice(-3000)}`);
    return;
  }
  for (const [i, d] of daemons.entries()) t.equal(d.exitCode(), undefined, `the ${MOUNTS[i]![0]} daemon is still running`);
  const v = parseVals(r.output);
  const is = (k: string, want: string, msg = 'as expected') => t.equal(v.get(k), want, `${k}: ${msg}`, { got: v.get(k) });
  const owner = (p: string) => {
    const s = fs.lstatSync(p);
    return `${s.uid}:${s.gid}:${(s.mode & 0o7777).toString(8)}`;
  };

  t.test('id translation', async (t) => {
    is('i_create_a', 'ok', 'mapped guest user 1000 creates a file');
    t.equal(owner(I('open/a-file')), '101000:101000:644', 'owned by the translated host ids');
    is('i_mkdir_a', 'ok', 'and a directory');
    t.equal(owner(I('open/a-dir')), '101000:101000:755');
    is('i_stat_a', '1000:1000:644', 'the guest sees its own ids back');
    is('i_create_s', 'ok', 'a squashed user creates');
    t.equal(owner(I('open/s-file')), '65534:65534:644', 'squash-guest: owned by the squash target');
    is('i_stat_s', '65534:65534:644', 'host 65534 has no host→guest rule: shown as is');
    is('i_write_s', 'E:EACCES', 'the squashed user does not own what it created: the guest kernel checks against 65534');
    is('i_create_g', 'ok', 'a user under a one-way guest: rule (spelt GUEST/…/…/…) creates');
    t.equal(owner(I('open/g-file')), '102010:101000:644', 'owned by the translated host uid');
    is('i_stat_g', '102010:1000:644', 'guest: is one way: the host uid comes back as it is (the gid by its map:)');
    is('i_create_f', 'E:EPERM', 'a forbidden guest uid cannot create');
    is('i_mkdir_f', 'E:EPERM', 'nor mkdir');
    t.notOk(fs.existsSync(I('open/f-file')) || fs.existsSync(I('open/f-dir')), 'nothing created on the host');
    is('i_lookup_f', 'E:EPERM', 'every request of a forbidden caller is refused, a lookup too');
    is('i_stat_mapped', '1005:1007:644', 'map: host 101005:101007 is guest 1005:1007');
    is('i_stat_host', '1500:1500:644', 'host rule: host 50000 is guest 1500');
    is('i_stat_squash', '7777:60003:644', 'squash-host: host uid 60002 shows as 7777 (the gid has no rule)');
    is('i_stat_other', '4242:4243:644', 'an id no rule covers passes unchanged');
    t.same((v.get('i_ls') ?? '').split(',').filter((x) => x !== '').sort(), ['h1=1500:1500', 'm1=1002:1003', 'o1=4242:4243'],
      'ls -ln of a fresh directory (READDIRPLUS) shows the translated owners');
    is('i_chown_map', 'ok', 'guest root chowns to mapped ids');
    t.equal(owner(I('open/c-map')), '101003:101004:644', 'chown lands as the translated host ids');
    is('i_chown_map_stat', '1003:1004:644', 'and reads back as the guest ids');
    is('i_chown_squash', 'ok', 'chown to squashed ids');
    t.equal(owner(I('open/c-squash')), '65534:65534:644', 'lands as the squash target');
    is('i_chown_forbid', 'E:EPERM', 'chown to a forbidden uid is refused');
    t.equal(owner(I('open/c-forbid')), '0:0:644', 'and changes nothing on the host');
  });

  t.test('the default xattr policy', async (t) => {
    is('x_set_user', 'ok', 'user.* can be set');
    t.equal(getxs(I('xf'), 'user.k'), 'v1', 'and is on the host');
    is('x_get_user', 'v1', 'and read back');
    is('x_rm_user', 'ok', 'user.* can be removed');
    t.equal(getx(I('xf'), 'user.gone'), null, 'removed on the host');
    is('x_set_cap', 'E:EPERM', 'security.capability cannot be set');
    is('x_set_sec', 'E:EPERM', 'no security.* name can');
    is('x_set_trusted', 'E:EPERM', 'trusted.* cannot be set');
    t.same(listx(I('xf')).sort(), ['user.k'], 'the host file got nothing but user.k');
    t.same((v.get('x_list_host') ?? '').split(',').sort(), ['security.hs', 'user.h'], 'the list shows user.* and security.*, hides trusted.*');
    is('x_get_sec', 'sec', 'security.* set on the host can be read');
    is('x_get_trusted', 'E:ENODATA', 'trusted.* reads as absent');
    is('x_rm_sec', 'E:EPERM', 'security.* cannot be removed');
    is('x_rm_trusted', 'E:EPERM', 'trusted.* cannot be removed');
    t.equal(getxs(I('xh'), 'security.hs'), 'sec', 'the host\'s security.* is intact');
    t.equal(getxs(I('xh'), 'trusted.th'), 't', 'the host\'s trusted.* is intact');
    is('x_user_owner', 'ok', 'a mapped guest user sets user.* on its own file');
    t.equal(getxs(I('open/a-file'), 'user.mine'), 'm');
    // a file capability only ever goes away: the guest kernel removes it before a write or a chown, as a
    // local file system does, and refusing that would fail the write or chown
    t.not(v.get('x_cap_visible'), '0', 'the guest reads the host file\'s security.capability');
    is('x_cap_write', 'ok', 'a guest user writes a file that has a capability on the host');
    t.equal(fs.readFileSync(I('capw'), 'utf8'), 'data\nx', 'the data is there');
    t.equal(getx(I('capw'), 'security.capability'), null, 'and the capability is gone');
    is('x_cap_chown', 'ok', 'guest root chowns such a file');
    t.equal(getx(I('capc'), 'security.capability'), null, 'the capability is gone');
    t.equal(owner(I('capc')), '101001:101001:666');
    // (the 6.1 guest kernel lets any user try: the daemon allows root, the owner and who may write)
    is('x_cap_rm_user', 'E:EPERM', 'a guest user who may not write the file cannot remove it');
    is('x_cap_rm_root', 'ok', 'guest root may (it only lowers privileges)');
    t.equal(getx(I('capr'), 'security.capability'), null, 'removed on the host');
  });

  t.test('--xattrmap', async (t) => {
    t.same((v.get('m_list') ?? '').split(',').sort(), ['security.hs', 'trusted.m', 'user.plain'],
      'listed: user.virtiofs.trusted.m as trusted.m, ok names as they are; secret, nosup and the host\'s trusted.* hidden');
    is('m_get_mapped', 'm', 'a mapped name reads the prefixed host attribute');
    is('m_set_mapped', 'ok', 'trusted.new is set');
    t.equal(getxs(X('g'), 'user.virtiofs.trusted.new'), 'tv', '... under the prefixed name on the host');
    t.equal(getx(X('g'), 'trusted.new'), null, '... and not as trusted.new');
    is('m_get_new', 'tv', 'and comes back under the guest\'s name');
    is('m_set_plain', 'ok', 'ok: user.plain2 passes');
    t.equal(getxs(X('g'), 'user.plain2'), 'pv', '... unchanged on the host');
    is('m_set_direct', 'E:EPERM', 'the mapped host names cannot be reached directly');
    is('m_get_direct', 'E:ENODATA', 'nor read directly');
    is('m_get_secret', 'E:ENODATA', 'bad: reads as absent');
    is('m_set_secret', 'E:EPERM', 'bad: refused');
    is('m_get_nosup', 'E:EOPNOTSUPP', 'unsupported: EOPNOTSUPP');
    is('m_set_nosup', 'E:EOPNOTSUPP', 'unsupported: EOPNOTSUPP');
    is('m_get_sec', 'E:ENODATA', 'bad client security.: the guest cannot read security.*');
    is('m_set_cap', 'E:EPERM', 'nor set security.capability');
    is('m_set_rm', 'ok');
    is('m_rm_mapped', 'ok', 'a mapped name is removed');
    t.equal(getx(X('g'), 'user.virtiofs.trusted.rm'), null, '... on the host');
    t.same(listx(X('g')).sort(), ['user.plain2', 'user.virtiofs.trusted.new'], 'the host file holds only what the rules allowed');
    t.same((v.get('m_list_g') ?? '').split(',').sort(), ['trusted.new', 'user.plain2'], 'the guest lists it back');
  });

  t.test('POSIX ACLs', async (t) => {
    t.match(daemons[2]!.logs(), /FUSE session 7\.\d+, flags 0x[0-9a-f]+/, 'the acl daemon logged its session');
    is('a_read_named', 'ok', 'a user named in the host ACL reads');
    is('a_read_other', 'E:EACCES', 'another user is denied by the guest kernel');
    is('a_getacl_host', 'u::rw-,u:1100:r--,g::---,m::r--,o::---', 'the guest reads the host ACL');
    is('a_setacl', 'ok', 'guest root sets an access ACL');
    t.equal(aclText(getx(A('g'), ACL_ACCESS)), 'u::rw-,u:1101:rw-,g::r--,m::rw-,o::---', 'it is the host file\'s ACL');
    t.equal(owner(A('g')), '0:0:660', 'the mode\'s group bits follow the mask');
    is('a_stat_g', '0:0:660', 'the guest sees the new mode');
    is('a_getacl_g', 'u::rw-,u:1101:rw-,g::r--,m::rw-,o::---');
    is('a_write_named', 'ok', 'the named user may now write');
    is('a_write_other', 'E:EACCES', 'others still may not');
    is('a_setacl_sgid', 'ok', 'the owner sets an ACL on its set-group-ID file of a group it is not in');
    t.equal(owner(A('sgid')), '1100:4321:770', 'FUSE_SETXATTR_ACL_KILL_SGID: the mode follows the ACL and loses set-group-ID');
    is('a_setacl_sgid_keep', 'ok');
    t.equal(owner(A('sgid-own')), '1100:1100:2770', 'in its own group the bit stays');
    is('a_setacl_gdef', 'ok', 'guest root sets a default ACL on a directory it made');
    t.equal(aclText(getx(A('gdef'), ACL_DEFAULT)), 'u::rwx,u:1101:rwx,g::r-x,m::rwx,o::r--', 'on the host');
    is('a_create_gdef', 'ok');
    t.equal(owner(A('gdef/f')), '0:0:664', 'a file created under it: 0666 ∩ the default ACL (umask 022 ignored)');
    t.equal(aclText(getx(A('gdef/f'), ACL_ACCESS)), 'u::rw-,u:1101:rwx,g::r-x,m::rw-,o::r--');
    is('a_write_gdef', 'ok', 'the user the default ACL names may write the new file');
    is('a_grp_read', 'ok', 'a named-group entry lets a member through its supplementary group read');
    // the guest kernel allows the create; the host, where the daemon creates as the caller's uid and
    // primary gid (the request carries no supplementary groups), does not
    is('a_grp_create', 'E:EACCES', 'creating in a directory only a supplementary group\'s ACL entry opens: EACCES (documented)');
    t.notOk(fs.existsSync(A('agrp/new')));
    is('a_inherit_create', 'ok');
    is('a_inherit_mkdir', 'ok');
    // a local file system: the default ACL replaces the umask; the mask is the default's masked by the mode asked for
    t.equal(owner(A('inherit/f')), '1100:1100:660', 'a file under a default ACL: mode 0666 ∩ the ACL, the umask ignored');
    t.equal(aclText(getx(A('inherit/f'), ACL_ACCESS)), 'u::rw-,u:1100:rwx,g::r-x,m::rw-,o::---', 'its access ACL is the inherited one');
    t.equal(getx(A('inherit/f'), ACL_DEFAULT), null, 'a file gets no default ACL');
    t.equal(owner(A('inherit/d')), '1100:1100:770', 'a directory: mode 0777 ∩ the ACL');
    t.equal(aclText(getx(A('inherit/d'), ACL_DEFAULT)), 'u::rwx,u:1100:rwx,g::r-x,m::rwx,o::---', 'and inherits the default ACL');
    t.equal(aclText(getx(A('inherit/d'), ACL_ACCESS)), 'u::rwx,u:1100:rwx,g::r-x,m::rwx,o::---');
    is('a_inherit_stat_f', '1100:1100:660', 'the guest sees the same');
    is('a_inherit_getacl_f', 'u::rw-,u:1100:rwx,g::r-x,m::rw-,o::---');
    t.equal(owner(A('plain/f')), '1100:1100:644', 'without a default ACL the umask (022) applies');
    t.equal(owner(A('plain/d')), '1100:1100:755');
    t.equal(owner(A('plain/f077')), '1100:1100:600', 'umask 077');
    t.equal(getx(A('plain/f'), ACL_ACCESS), null, 'and there is no ACL');
    is('a_plain_stat_f', '1100:1100:644');
    is('a_setacl_c', 'ok');
    is('a_write_named_before', 'ok', 'a named user writes through the mask rw-');
    is('a_chmod', 'ok', 'chmod 600 in the guest');
    t.equal(aclText(getx(A('c'), ACL_ACCESS)), 'u::rw-,u:1101:rw-,g::r--,m::---,o::---', 'updates the ACL mask on the host');
    t.equal(owner(A('c')), '0:0:600');
    is('a_chmod_getacl', 'u::rw-,u:1101:rw-,g::r--,m::---,o::---', 'the guest reads the new mask');
    is('a_write_named_after', 'E:EACCES', 'the named user lost write through the mask');
  });
});
