// --xattrmap (src/fs/xattrmap.ts): the parser as a table (every rule kind, every malformed input and its
// message), both directions of the compiled map, virtiofsd's documented examples, the default policy
// and the POSIX ACL guard, and the command line (src/config.ts) that takes the rules.
import t from 'tap';
import { parseArgs } from '../../src/config.js';
import {
  DefaultXattrPolicy, NoPosixAcl, XATTR_DENIED, XATTR_HIDDEN, XATTR_UNSUPPORTED, XattrMap, type XattrPolicy,
  parseXattrMap, xattrPolicy,
} from '../../src/fs/xattrmap.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** toHost as text: the host name, 'DENIED' or 'UNSUPPORTED' */
function host(p: XattrPolicy, name: string, write = true, remove = false): string {
  const r = p.toHost(enc.encode(name), write, remove);
  if (r === XATTR_DENIED) return 'DENIED';
  if (r === XATTR_UNSUPPORTED) return 'UNSUPPORTED';
  if (typeof r === 'number') throw new Error(`unexpected ${r}`);
  return dec.decode(r);
}
/** toGuest as text: the name the guest lists, or 'HIDDEN' */
function guest(p: XattrPolicy, hostName: string): string {
  const b = enc.encode(hostName);
  const r = p.toGuest(b);
  return r === XATTR_HIDDEN ? 'HIDDEN' : dec.decode(b.subarray(r));
}

t.test('the parser: every rule kind, any separator, whitespace between rules', async (t) => {
  const table: [string, string][] = [
    [':prefix:client:trusted.:user.virtiofs.:', ':prefix:client:trusted.:user.virtiofs.:'],
    [':prefix:all::user.virtiofs.::bad:all:::', ':prefix:all::user.virtiofs.: :bad:all:::'],
    [':ok:all:::', ':ok:all:::'],
    [':bad:server::security.:', ':bad:server::security.:'],
    ['/unsupported/all/security.selinux/security.selinux//ok/all///', ':unsupported:all:security.selinux:security.selinux: :ok:all:::'],
    [':map:trusted.:user.virtiofs.:', ':prefix:all:trusted.:user.virtiofs.: :bad:server::trusted.: :bad:client:user.virtiofs.:: :ok:all:::'],
    [':map::user.virtiofs.:', ':prefix:all::user.virtiofs.: :bad:all:::'],
    ['  :ok:client:user.:: \n\t /bad/all/// ', ':ok:client:user.:: :bad:all:::'],
    [':prefix:all:trusted.:user.virtiofs.: /prefix/all/trusted./user.virtiofs./',
      ':prefix:all:trusted.:user.virtiofs.: :prefix:all:trusted.:user.virtiofs.:'],
    ['xokxallxxx', ':ok:all:::'],
  ];
  for (const [text, rules] of table) t.equal(new XattrMap(parseXattrMap(text)).describe(), rules, text);
});

t.test('the parser: each malformed input names its rule and what is wrong', async (t) => {
  const table: [string, RegExp][] = [
    ['', /^--xattrmap: no rules \(e\.g\. --xattrmap=:ok:all::: lets every name through\)$/],
    ['   \n ', /no rules/],
    [':prefix:client:hi', /^--xattrmap: rule 1 ':prefix:client:hi': incomplete, no ':' after its key \(a rule is :type:scope:key:prepend:\)$/],
    [':prefix:client:trusted.:user.vm.', /rule 1 .*incomplete, no ':' after its prepend/],
    [':ok:all::', /rule 1 .*incomplete, no ':' after its prepend/],
    [':ok', /rule 1 ':ok': incomplete, no ':' after its type/],
    [':', /rule 1 ':': incomplete, no ':' after its type/],
    [':ok:all::: :bad:client:', /rule 2 ':bad:client:': incomplete, no ':' after its key/],
    [':TOMATOPIRATE:trusted.:virtiofs.user.:', /^--xattrmap: rule 1: unknown type 'TOMATOPIRATE' \(prefix\|ok\|bad\|unsupported\|map; the first character, ':', is the separator\)$/],
    ['/prefix/helloworld///', /^--xattrmap: rule 1: unknown scope 'helloworld' \(client\|server\|all\)$/],
    [':ok:all::::bad:both:::', /rule 2: unknown scope 'both'/],
    [':ok:ALL:::', /unknown scope 'ALL'/],
    [':map:trusted.:virtiofs.user.::map:trusted.:virtiofs.user.:', /^--xattrmap: rule 1: a map rule must be the last rule$/],
    [':map::user.virtiofs.: :ok:all:::', /rule 1: a map rule must be the last rule/],
    [':map:trusted.:', /rule 1 ':map:trusted.:': incomplete, no ':' after its prepend/],
    [':ok:all:::x', /rule 2 'x': incomplete, no 'x' after its type/],
  ];
  for (const [text, re] of table) t.throws(() => parseXattrMap(text), { name: 'UsageError', exitCode: 2, message: re }, JSON.stringify(text));
  t.throws(() => parseXattrMap(':ok', '-o xattrmap'), { message: /^-o xattrmap: rule 1/ }, 'the option name as given');
});

t.test('client → host: first match wins; prefix, ok, bad, unsupported; no match is denied', async (t) => {
  const m = XattrMap.parse(':bad:client:user.virtiofs.:: :unsupported:all:security.selinux:: ' +
    ':prefix:client:trusted.:user.virtiofs.: :ok:client:user.:: :ok:server:::');
  t.equal(host(m, 'trusted.overlay.opaque'), 'user.virtiofs.trusted.overlay.opaque', 'prefix');
  t.equal(host(m, 'trusted.x', false), 'user.virtiofs.trusted.x', 'the same for a get');
  t.equal(host(m, 'user.virtiofs.trusted.x'), 'DENIED', 'bad: the guest cannot reach the mapped names directly');
  t.equal(host(m, 'security.selinux'), 'UNSUPPORTED', 'unsupported');
  t.equal(host(m, 'security.selinuxx'), 'UNSUPPORTED', 'keys are prefixes');
  t.equal(host(m, 'user.color'), 'user.color', 'ok');
  t.equal(host(m, 'security.capability'), 'DENIED', 'no client rule matches: denied (the server-only ok does not count)');
  t.equal(host(m, 'user'), 'DENIED', 'a name shorter than a key does not match it');
  const name = enc.encode('user.same');
  t.equal(m.toHost(name, true), name, 'ok passes the caller\'s own bytes (no copy)');
  // a prefixed name longer than the scratch is still built whole (the host answers ERANGE for it)
  const long = XattrMap.parse(`:prefix:all::${'p'.repeat(400)}:`);
  const r = long.toHost(enc.encode(`user.${'n'.repeat(200)}`), true);
  t.ok(r instanceof Uint8Array && r.length === 605, 'a 605-byte host name');
});

t.test('host → guest: prefixes stripped, bad and unsupported hidden, no match hidden', async (t) => {
  const m = XattrMap.parse('/prefix/all/trusted./user.virtiofs./ /bad/server//trusted./ /bad/client/user.virtiofs.// ' +
    '/unsupported/server//security.selinux/ /ok/server//user./');
  t.equal(guest(m, 'user.virtiofs.trusted.foo'), 'trusted.foo', 'prefix stripped');
  t.equal(guest(m, 'trusted.host-secret'), 'HIDDEN', 'bad');
  t.equal(guest(m, 'security.selinux'), 'HIDDEN', 'unsupported');
  t.equal(guest(m, 'user.color'), 'user.color', 'ok');
  t.equal(guest(m, 'security.capability'), 'HIDDEN', 'no server rule matches: hidden');
});

t.test("virtiofsd's documented examples", async (t) => {
  // 1) everything under user.virtiofs. on the host; the host's own names hidden
  const ex1 = XattrMap.parse(':prefix:all::user.virtiofs.::bad:all:::');
  t.equal(host(ex1, 'security.capability'), 'user.virtiofs.security.capability');
  t.equal(host(ex1, 'user.x'), 'user.virtiofs.user.x');
  t.equal(guest(ex1, 'user.virtiofs.trusted.a'), 'trusted.a');
  t.equal(guest(ex1, 'user.host'), 'HIDDEN');
  t.equal(guest(ex1, 'security.selinux'), 'HIDDEN');
  // 2) trusted. prefixed, the rest through
  const ex2 = XattrMap.parse(`/prefix/all/trusted./user.virtiofs./
    /bad/server//trusted./
    /bad/client/user.virtiofs.//
    /ok/all///`);
  t.equal(host(ex2, 'trusted.a'), 'user.virtiofs.trusted.a');
  t.equal(host(ex2, 'user.virtiofs.a'), 'DENIED');
  t.equal(host(ex2, 'security.selinux'), 'security.selinux');
  t.equal(guest(ex2, 'user.virtiofs.trusted.a'), 'trusted.a');
  t.equal(guest(ex2, 'trusted.a'), 'HIDDEN');
  t.equal(guest(ex2, 'user.b'), 'user.b');
  // 3) security.selinux unsupported, the rest through
  const ex3 = XattrMap.parse('/unsupported/all/security.selinux/security.selinux//ok/all///');
  t.equal(host(ex3, 'security.selinux'), 'UNSUPPORTED');
  t.equal(guest(ex3, 'security.selinux'), 'HIDDEN');
  t.equal(host(ex3, 'trusted.x'), 'trusted.x');
  // the map shorthand is the same as example 2
  const map = XattrMap.parse(':map:trusted.:user.virtiofs.:');
  for (const n of ['trusted.a', 'user.virtiofs.a', 'security.selinux', 'user.b']) t.equal(host(map, n), host(ex2, n), `map: ${n}`);
  for (const n of ['user.virtiofs.trusted.a', 'trusted.a', 'user.b']) t.equal(guest(map, n), guest(ex2, n), `map: list ${n}`);
  // docs/xattr.md: security.* refused, trusted.* moved, the rest through
  const doc = XattrMap.parse(':bad:client:security.:: :map:trusted.:user.virtiofs.:');
  t.equal(host(doc, 'security.capability'), 'DENIED');
  t.equal(host(doc, 'security.selinux', false), 'DENIED');
  t.equal(host(doc, 'trusted.a'), 'user.virtiofs.trusted.a');
  t.equal(host(doc, 'user.a'), 'user.a');
  // ok:all restores the unrestricted behaviour
  const all = XattrMap.parse(':ok:all:::');
  t.equal(host(all, 'trusted.x'), 'trusted.x');
  t.equal(host(all, 'security.capability'), 'security.capability');
  t.equal(guest(all, 'trusted.x'), 'trusted.x');
});

t.test('the default policy (no --xattrmap)', async (t) => {
  const d = new DefaultXattrPolicy();
  t.equal(host(d, 'user.a'), 'user.a', 'user.*: set');
  t.equal(host(d, 'user.a', false), 'user.a', 'user.*: get');
  t.equal(host(d, 'security.capability'), 'DENIED', 'security.capability: no set/remove');
  t.equal(host(d, 'security.capability', false), 'security.capability', '... but readable');
  t.equal(host(d, 'security.capability', true, true), 'security.capability', '... and removable (only lowers privileges)');
  t.equal(host(d, 'security.capabilityx', true, true), 'DENIED', '... that name exactly');
  t.equal(host(d, 'security.selinux', true, true), 'DENIED', 'no other security.* name removable');
  t.equal(host(xattrPolicy(undefined, false), 'security.capability', true, true), 'security.capability',
    'through the no-ACL wrapper too');
  t.equal(host(d, 'security.selinux'), 'DENIED', 'no LSM label from the guest');
  t.equal(host(d, 'trusted.overlay.opaque'), 'DENIED', 'trusted.*: no set');
  t.equal(host(d, 'trusted.overlay.opaque', false), 'DENIED', 'trusted.*: no get');
  t.equal(host(d, 'system.nfs4_acl'), 'DENIED', 'other system.* names');
  t.equal(host(d, 'xfsroot.x', false), 'DENIED', 'unknown namespaces');
  t.equal(guest(d, 'user.a'), 'user.a');
  t.equal(guest(d, 'security.selinux'), 'security.selinux');
  t.equal(guest(d, 'trusted.a'), 'HIDDEN');
  t.equal(guest(d, 'system.nfs4_acl'), 'HIDDEN');
});

t.test('the POSIX ACL names: refused and hidden without --posix-acl, before any map', async (t) => {
  const acl = 'system.posix_acl_access';
  const dacl = 'system.posix_acl_default';
  const off = xattrPolicy(undefined, false);
  t.equal(host(off, acl), 'UNSUPPORTED');
  t.equal(host(off, dacl, false), 'UNSUPPORTED');
  t.equal(guest(off, acl), 'HIDDEN');
  t.equal(host(off, 'system.posix_acl_accessx'), 'DENIED', 'only the exact names');
  const on = xattrPolicy(undefined, true);
  t.equal(host(on, acl), acl);
  t.equal(host(on, dacl, false), dacl);
  t.equal(guest(on, acl), acl);
  t.equal(guest(on, dacl), dacl);
  t.equal(host(on, 'trusted.a'), 'DENIED', 'the default policy still applies to the rest');
  // with a map: blocked before it without --posix-acl (even :ok:all:::), mapped like any name with it
  t.equal(host(xattrPolicy(':ok:all:::', false), acl), 'UNSUPPORTED');
  t.equal(guest(xattrPolicy(':ok:all:::', false), acl), 'HIDDEN');
  t.equal(guest(xattrPolicy(':map::user.virtiofs.:', false), `user.virtiofs.${acl}`), 'HIDDEN', 'the name the guest would see decides');
  t.equal(host(xattrPolicy(':map::user.virtiofs.:', true), acl), `user.virtiofs.${acl}`);
  t.equal(guest(xattrPolicy(':map::user.virtiofs.:', true), `user.virtiofs.${acl}`), acl);
  t.ok(xattrPolicy(undefined, false) instanceof NoPosixAcl);
  t.ok(xattrPolicy(undefined, true) instanceof DefaultXattrPolicy, 'with --posix-acl: no wrapper');
});

t.test('the command line', async (t) => {
  const base = ['--socket-path=/s', '--shared-dir=/d'];
  const ok: [string[], Record<string, unknown>][] = [
    [[], { xattr: false, posixAcl: false, xattrmap: undefined }],
    [['--xattrmap=:ok:all:::'], { xattr: true, xattrmap: ':ok:all:::' }],
    [['--xattrmap', ':map::user.virtiofs.:'], { xattr: true, xattrmap: ':map::user.virtiofs.:' }],
    [['-o', 'xattrmap=/prefix/all/trusted./user.virtiofs./ /ok/all///'], { xattr: true, xattrmap: '/prefix/all/trusted./user.virtiofs./ /ok/all///' }],
    [['--posix-acl'], { xattr: true, posixAcl: true }],
    [['-o', 'posix_acl'], { xattr: true, posixAcl: true }],
    [['-o', 'posix_acl,no_posix_acl'], { xattr: false, posixAcl: false }],
    [['--posix-acl', '--no-posix-acl', '--xattr'], { xattr: true, posixAcl: false }],
  ];
  for (const [argv, want] of ok) t.match(parseArgs([...base, ...argv]), want, argv.join(' ') || '(none)');
  const bad: [string[], RegExp][] = [
    [['--xattrmap=:ok:all::'], /^--xattrmap: rule 1 ':ok:all::': incomplete/],
    [['-o', 'xattrmap=:bad:nowhere:::'], /^-o xattrmap: rule 1: unknown scope 'nowhere'/],
    [['-o', 'xattrmap'], /-o xattrmap: needs a value/],
    [['--posix-acl=yes'], /takes no value/],
    [['-o', 'posix_acl=1'], /takes no value/],
    [['--posix-acl', '--translate-gid=map:0:100:10'], /--posix-acl: not with --translate-uid\/--translate-gid/],
  ];
  for (const [argv, re] of bad) t.throws(() => parseArgs([...base, ...argv]), { name: 'UsageError', exitCode: 2, message: re }, argv.join(' '));
});
