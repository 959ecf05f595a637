// --translate-uid/--translate-gid rules (src/fs/idmap.ts): parsing, the overlap and overflow checks,
// the tables in both directions; --uid-map/--gid-map parsing; the options as parseArgs takes them.
import t from 'tap';
import { parseArgs } from '../../src/config.js';
import { FORBIDDEN, IdMap, idMapsOf, parseIdRule, parseNamespaceIdMap } from '../../src/fs/idmap.js';

const U = '--translate-uid';

t.test('every rule kind parses', async (t) => {
  t.same(parseIdRule('guest:1000:2000:10', U), { kind: 'guest', from: 1000, to: 2000, count: 10 });
  t.same(parseIdRule('map:1000:2000:10', U), { kind: 'map', from: 1000, to: 2000, count: 10 });
  // virtiofsd's spelling rules: the name in any case, any separator that cannot be part of a name
  t.same(parseIdRule('MAP/1000/2000/10', U), { kind: 'map', from: 1000, to: 2000, count: 10 }, 'MAP/…/…/…');
  t.same(parseIdRule('Squash-Guest.0.1000.5', U), { kind: 'squash-guest', from: 0, to: 1000, count: 5 }, 'Squash-Guest.…');
  t.same(parseIdRule('forbid-guest,3,4', U), { kind: 'forbid-guest', from: 3, count: 4 });
  t.same(parseIdRule('host:5:6:7', U), { kind: 'host', from: 5, to: 6, count: 7 });
  t.same(parseIdRule('squash-guest:0:1000:4294967295', U), { kind: 'squash-guest', from: 0, to: 1000, count: 4294967295 });
  t.same(parseIdRule('squash-host:0:65534:100', U), { kind: 'squash-host', from: 0, to: 65534, count: 100 });
  t.same(parseIdRule('forbid-guest:0:1', U), { kind: 'forbid-guest', from: 0, count: 1 });
  t.same(parseIdRule('guest:4294967295:0:1', U), { kind: 'guest', from: 4294967295, to: 0, count: 1 }, 'the last u32');
  t.same(parseIdRule('squash-guest:1:4294967295:4294967295', U).kind, 'squash-guest', 'a squash range may end at 2^32');
  t.same(parseIdRule('forbid-guest:1:4294967295', U).count, 4294967295, 'so may a forbidden one');
});

t.test('malformed rules are usage errors naming the option and the value', async (t) => {
  const bad: Array<[string, RegExp]> = [
    ['', /unknown rule ''/],
    ['mapp:1:2:3', /--translate-uid 'mapp:1:2:3': unknown rule 'mapp'/],
    ['guest:1:2', /expected guest:FROM:TO:COUNT/],
    ['map:1:2:3:4', /expected map:FROM:TO:COUNT/],
    ['forbid-guest:1:2:3', /expected forbid-guest:FROM:COUNT/],
    ['guest:x:2:3', /'x' is not a number/],
    ['guest:-1:2:3', /'-1' is not a number/],
    ['guest:1: 2:3', /' 2' is not a number/],
    ['guest:1::3', /'' is not a number/],
    ['guest:4294967296:0:1', /4294967296 is not a 32-bit id/],
    ['host:1:2:12345678901', /'12345678901' is not a number/],
    ['guest:1:2:0', /count must be at least 1/],
    ['forbid-guest:5:0', /count must be at least 1/],
    ['guest:4294967295:0:2', /4294967295\+2 goes past 2\^32/],
    ['guest:0:4294967295:2', /4294967295\+2 goes past 2\^32/],
    ['host:0:4294967000:1000', /goes past 2\^32/],
    ['squash-host:4294967000:0:1000', /goes past 2\^32/],
    ['forbid-guest:2:4294967295', /2\+4294967295 goes past 2\^32/],
    ['forbid-guest:4294967295:2', /goes past 2\^32/],
  ];
  for (const [spec, re] of bad) {
    t.throws(() => parseIdRule(spec, U), { name: 'UsageError', exitCode: 2, message: re }, spec);
  }
});

t.test('ranges of one direction must not overlap; the two directions are separate', async (t) => {
  const clash: Array<[string[], RegExp]> = [
    [['map:0:1000:10', 'map:9:5000:1'], /guest-to-host 'map:9:5000:1': ids \[9, 10\) overlap \[0, 10\) of 'map:0:1000:10'/],
    [['map:10:1000:10', 'forbid-guest:0:11'], /guest-to-host 'forbid-guest:0:11': ids \[0, 11\) overlap \[10, 20\)/],
    [['forbid-guest:0:1000', 'squash-guest:999:5:1'], /guest-to-host/],
    [['squash-guest:5:0:10', 'guest:0:100:100'], /guest-to-host 'guest:0:100:100'.*overlap \[5, 15\)/],
    [['map:0:1000:10', 'host:1005:7:1'], /host-to-guest 'host:1005:7:1': ids \[1005, 1006\) overlap \[1000, 1010\)/],
    [['host:0:0:100', 'squash-host:50:1:1'], /host-to-guest/],
    [['map:0:1000:10', 'map:100:1000:1'], /host-to-guest 'map:100:1000:1'/],
    [['guest:0:1000:10', 'map:5:7:1'], /guest-to-host 'map:5:7:1'/],
  ];
  for (const [specs, re] of clash) {
    t.throws(() => IdMap.parse(specs, U), { name: 'UsageError', message: re }, specs.join(' '));
  }
  // adjacent ranges, a range in each direction over the same ids, and the workaround the Rust
  // daemon's users write (forbid all but a few ids)
  const ok = [
    ['map:0:1000:10', 'map:10:2000:10'],
    ['map:10:1000:10', 'forbid-guest:0:10', 'forbid-guest:20:4294967276'],
    ['squash-guest:0:1000:100', 'host:0:0:100', 'host:1000:0:1'],
    ['forbid-guest:0:1000', 'map:1000:1000:1', 'forbid-guest:1001:999', 'map:2000:2000:1', 'forbid-guest:2001:4294965294'],
    // guest: is one way (guest→host): its host ids are free for a host: rule of their own
    ['guest:0:1000:10', 'host:1000:0:10'],
    ['guest:0:1000:1', 'guest:1:1000:1', 'host:1000:0:1'],
  ];
  for (const specs of ok) t.doesNotThrow(() => IdMap.parse(specs, U), specs.join(' '));
});

t.test('translation in both directions', async (t) => {
  const m = IdMap.parse([
    'map:1000:100000:1000', // guest 1000..1999 <-> host 100000..100999
    'squash-guest:5000:65534:100', // guest 5000..5099 -> host 65534
    'forbid-guest:0:1', // guest root refused
    'host:0:3000:1', // host root shows as guest 3000
    'squash-host:200000:4000:10', // host 200000..200009 show as guest 4000
  ], U);
  const g2h: Array<[number, number]> = [
    [0, FORBIDDEN], [1, 1], [999, 999], [1000, 100000], [1001, 100001], [1999, 100999], [2000, 2000],
    [4999, 4999], [5000, 65534], [5099, 65534], [5100, 5100], [4294967295, 4294967295],
  ];
  for (const [g, h] of g2h) t.equal(m.guestToHost(g), h, `guest ${g} -> host ${h}`);
  const h2g: Array<[number, number]> = [
    [0, 3000], [1, 1], [65534, 65534], [99999, 99999], [100000, 1000], [100999, 1999], [101000, 101000],
    [200000, 4000], [200009, 4000], [200010, 200010], [4294967295, 4294967295],
  ];
  for (const [h, g] of h2g) t.equal(m.hostToGuest(h), g, `host ${h} -> guest ${g}`);
  t.notOk(m.empty);
  t.ok(new IdMap().empty, 'no rules');
  t.equal(new IdMap().guestToHost(7), 7, 'no rules: unchanged');
  t.equal(new IdMap().hostToGuest(0), 0);

  // many rules, out of order: the lookup is a search over sorted ranges
  const specs = Array.from({ length: 50 }, (_, i) => `map:${(49 - i) * 10}:${100000 + (49 - i) * 10}:5`);
  const many = IdMap.parse(specs, U);
  for (let g = 0; g < 510; g++) {
    const want = g % 10 < 5 && g < 500 ? 100000 + g : g;
    if (many.guestToHost(g) !== want) t.fail(`guest ${g}: ${many.guestToHost(g)} != ${want}`);
    if (many.hostToGuest(want) !== g && want !== g) t.fail(`host ${want} back: ${many.hostToGuest(want)}`);
  }
  t.pass('50 rules, 510 ids both ways');
});

t.test('guest: and host: are one way each, map: both', async (t) => {
  const g = IdMap.parse(['guest:1000:101000:10'], U);
  t.equal(g.guestToHost(1003), 101003, 'guest: guest 1003 -> host 101003');
  t.equal(g.hostToGuest(101003), 101003, 'but host 101003 is shown as it is (no host->guest rule)');
  const h = IdMap.parse(['host:101000:1000:10'], U);
  t.equal(h.hostToGuest(101003), 1003, 'host: host 101003 -> guest 1003');
  t.equal(h.guestToHost(1003), 1003, 'but guest 1003 is host 1003');
  const m = IdMap.parse(['map:1000:101000:10'], U);
  t.same([m.guestToHost(1003), m.hostToGuest(101003)], [101003, 1003], 'map: both');
  const both = IdMap.parse(['guest:1000:101000:10', 'host:101000:1000:10'], U);
  t.same([both.guestToHost(1003), both.hostToGuest(101003)], [101003, 1003], 'guest: + host: = map:');
});

t.test('idMapsOf: null without rules, both tables with any', async (t) => {
  t.equal(idMapsOf([], []), null);
  const ids = idMapsOf(['map:1:2:1'], []);
  t.equal(ids?.uid.guestToHost(1), 2);
  t.ok(ids?.gid.empty);
  t.throws(() => idMapsOf([], ['map:1:2:1', 'map:1:3:1']), { message: /^--translate-gid guest-to-host/ });
});

t.test('--uid-map/--gid-map: the user-namespace syntax', async (t) => {
  t.same(parseNamespaceIdMap(':0:100000:65536:', '--uid-map'), { namespaceId: 0, hostId: 100000, count: 65536 });
  t.same(parseNamespaceIdMap('/1000/1000/1/', '--gid-map'), { namespaceId: 1000, hostId: 1000, count: 1 }, 'any delimiter');
  const bad: Array<[string, RegExp]> = [
    ['', /expected :NAMESPACE_ID:HOST_ID:COUNT:/],
    ['0:1:2', /expected :NAMESPACE_ID/],
    [':0:1:2', /expected :NAMESPACE_ID:HOST_ID:COUNT: \(three numbers/],
    [':0:1:2:3:', /three numbers/],
    [':0/1:2:', /three numbers/],
    [':0:x:2:', /'x' is not a number/],
    [':0:1:0:', /count must be at least 1/],
    [':0:4294967295:2:', /goes past 2\^32/],
    ['x0x1x2x', /expected :NAMESPACE_ID/],
    ['_0_1_2:', /three numbers/],
  ];
  for (const [spec, re] of bad) {
    t.throws(() => parseNamespaceIdMap(spec, '--uid-map'), { name: 'UsageError', message: re }, spec);
  }
});

t.test('the options on the command line', async (t) => {
  const base = ['--socket-path=/s', '--shared-dir=/d'];
  const c = parseArgs([...base, '--translate-uid=map:1000:2000:1', '--translate-uid', 'forbid-guest:0:1',
    '--translate-gid=squash-guest:0:100:4294967295']);
  t.same(c.translateUid, ['map:1000:2000:1', 'forbid-guest:0:1'], 'repeatable, in order');
  t.same(c.translateGid, ['squash-guest:0:100:4294967295']);
  t.same(parseArgs(base).translateUid, [], 'none by default');
  const usage = (argv: string[], re: RegExp) =>
    t.throws(() => parseArgs([...base, ...argv]), { name: 'UsageError', exitCode: 2, message: re }, argv.join(' '));
  usage(['--translate-uid=guest:1:2'], /--translate-uid 'guest:1:2': expected guest:FROM:TO:COUNT/);
  usage(['--translate-gid=nope:1:2:3'], /--translate-gid 'nope:1:2:3': unknown rule/);
  usage(['--translate-uid=map:0:1000:10', '--translate-uid=map:5:0:1'], /--translate-uid guest-to-host 'map:5:0:1'.*overlap/);
  usage(['--translate-uid'], /--translate-uid: needs a value/);
  // the rootless mode's maps (docs/sandbox.md): the user namespace's, so only with --sandbox=namespace,
  // and from namespace id 0 (the daemon is 0 there); as root they are refused by validateConfig
  t.same(parseArgs([...base, '--uid-map=:0:100000:65536:', '--gid-map=/0/100000/65536/']).gidMap, { namespaceId: 0, hostId: 100000, count: 65536 });
  usage(['--uid-map=:0:100000:65536:', '--sandbox=none'], /--uid-map: only with --sandbox=namespace/);
  usage(['--gid-map=:0:100000:65536:', '--sandbox=chroot'], /--gid-map: only with --sandbox=namespace/);
  usage(['--uid-map=:1000:1000:1:'], /--uid-map: the map must start at namespace id 0/);
  usage(['--uid-map=0:1:2'], /--uid-map '0:1:2': expected/);
  usage(['--uid-map=:0:1:1:', '--uid-map=:0:1:1:'], /--uid-map: given twice/);
});
