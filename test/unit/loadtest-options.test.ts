/**
 * `virtiofsd-ts loadtest` command line (src/loadtest/options.ts, backend.ts): every option's good and
 * bad values, each refusal a UsageError naming what is wrong; the backend command splitting (quotes,
 * backslashes) and the two named backends; and the compare table's arithmetic (src/loadtest/table.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { UsageError } from '../../src/errors.js';
import { REFERENCE_VIRTIOFSD, backendFromCommand, splitWords } from '../../src/loadtest/backend.js';
import { parseMix, parseOptions, parseSize } from '../../src/loadtest/options.js';
import { OP_KINDS, WORKLOADS } from '../../src/loadtest/plan.js';
import type { WorkloadResult } from '../../src/loadtest/report-types.js';
import { compareRows } from '../../src/loadtest/table.js';
import { packageRoot } from '../../src/package-root.js';

const CMD = 'virtiofsd --socket-path={socket} -o source={share}';
const B = `--backend=${CMD}`;

/** fn must throw a UsageError whose message matches `m`. */
function usage(t: Test, fn: () => unknown, m: RegExp, what: string): void {
  try {
    fn();
    t.fail(`${what}: no error`);
  } catch (e) {
    t.ok(e instanceof UsageError, `${what}: a UsageError (${(e as Error).name})`);
    t.match((e as Error).message, m, `${what}: says why`);
  }
}

t.test('defaults', async (t) => {
  const o = parseOptions([B]);
  t.same(o.backends, [{ label: CMD, argv: ['virtiofsd', '--socket-path={socket}', '-o', 'source={share}'] }]);
  t.equal(o.compare, false);
  t.equal(o.rounds, 3);
  t.equal(o.share, undefined);
  t.same(o.workloads, [...WORKLOADS], 'every workload');
  t.same(o.mix, [['read-rand', 4], ['write-rand', 2], ['getattr', 2], ['lookup', 2]]);
  t.equal(o.durationS, 10);
  t.equal(o.ops, 0);
  t.ok(o.warmupS > 0 && o.warmupS <= 2, `warm-up ${o.warmupS} s: some, at most 2 s`);
  t.equal(o.bs, 4096);
  t.equal(o.depth, 16);
  t.equal(o.queues, 1);
  t.equal(o.threads, 1);
  t.equal(o.queueSize, 128);
  t.equal(o.entries, 1000);
  t.equal(o.fileBytes, 64 << 20);
  t.equal(o.timeoutMs, 10_000);
  t.equal(o.quiet, false);
  t.equal(o.help, false);
  t.equal(o.json, undefined);
  t.equal(o.html, undefined);
});

t.test('every option, in --key=value and --key value forms', async (t) => {
  const values: Array<[string, string, (o: ReturnType<typeof parseOptions>) => unknown, unknown]> = [
    ['rounds', '5', (o) => o.rounds, 5],
    ['share', '/srv/share', (o) => o.share, '/srv/share'],
    ['workloads', 'getattr,read-seq', (o) => o.workloads, ['getattr', 'read-seq']],
    ['workload', 'lookup', (o) => o.workloads, ['lookup']],
    ['workloads', 'all', (o) => o.workloads, [...WORKLOADS]],
    ['mix', 'getattr:3,lookup', (o) => o.mix, [['getattr', 3], ['lookup', 1]]],
    ['duration', '2.5', (o) => o.durationS, 2.5],
    ['ops', '1000', (o) => o.ops, 1000],
    ['warmup', '0.5', (o) => o.warmupS, 0.5],
    ['bs', '64k', (o) => o.bs, 65536],
    ['depth', '64', (o) => o.depth, 64],
    ['queues', '4', (o) => o.queues, 4],
    ['queue-size', '1024', (o) => o.queueSize, 1024],
    ['entries', '50', (o) => o.entries, 50],
    ['file-size', '1G', (o) => o.fileBytes, 1 << 30],
    ['timeout', '2.5', (o) => o.timeoutMs, 2500],
    ['json', '-', (o) => o.json, '-'],
    ['html', '/tmp/r.html', (o) => o.html, '/tmp/r.html'],
  ];
  for (const [key, v, get, want] of values) {
    t.same(get(parseOptions([B, `--${key}=${v}`])), want, `--${key}=${v}`);
    t.same(get(parseOptions([`--${key}`, v, B])), want, `--${key} ${v}`);
  }
  t.equal(parseOptions([B, '--quiet']).quiet, true, '--quiet takes no value');
  t.equal(parseOptions(['--quiet', B]).backends.length, 1, '--quiet does not eat the next argument');
  const spaced = parseOptions(['--backend', CMD]);
  t.same(spaced.backends, parseOptions([B]).backends, '--backend CMD');
  t.equal(parseOptions([B, '--threads=2', '--queues=2']).threads, 2);
  t.same(parseOptions([B, '--mix=getattr:1', '--mix=lookup:2']).mix, [['lookup', 2]], 'a later option wins');
});

t.test('--help: no backend needed, other checks skipped', async (t) => {
  t.equal(parseOptions(['--help']).help, true);
  t.equal(parseOptions(['-h']).help, true);
  t.equal(parseOptions(['--depth=500', '-h']).help, true, 'cross-option checks are not run for --help');
});

t.test('backends: --socket-path, --backend-pid, --compare', async (t) => {
  t.same(parseOptions(['--socket-path=/run/fs.sock']).backends, [{ label: '/run/fs.sock', socket: '/run/fs.sock' }]);
  t.same(parseOptions(['--socket-path', '/run/fs.sock', '--backend-pid', '1234']).backends, [{ label: '/run/fs.sock', socket: '/run/fs.sock', pid: 1234 }]);
  const c = parseOptions(['--compare', 'ours', 'reference']);
  t.equal(c.compare, true);
  t.same(c.backends.map((b) => b.label), ['ours', 'reference']);
  const c2 = parseOptions(['--compare=ours', CMD, '--rounds=2']);
  t.same(c2.backends.map((b) => b.label), ['ours', CMD], '--compare=A B');
  t.equal(c2.rounds, 2);
  t.same(parseOptions(['--compare', CMD, 'ours', '--quiet']).backends.map((b) => b.label), [CMD, 'ours'], 'options after the pair');
  t.same(parseOptions([B, '--backend=reference']).backends.map((b) => b.label), [CMD, 'reference'], 'several --backend run one after the other');
});

t.test('bad options: each a UsageError that says why', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [[B, '--frobnicate=1'], /unknown option --frobnicate/],
    [[B, '--frobnicate', 'x'], /unknown option --frobnicate/],
    [[B, 'stray'], /unexpected argument 'stray'/],
    [[B, '-x'], /unexpected argument '-x'/],
    [[B, '--depth'], /--depth needs a value/],
    [['--backend'], /--backend needs a value/],
    [[], /say which backend/],
    [['--quiet', '--rounds=2'], /say which backend/],
    [['--compare', 'ours'], /--compare needs two backends/],
    [['--compare'], /--compare needs two backends/],
    [['--compare=ours'], /--compare needs two backends/],
    [['--compare', 'ours', 'reference', B], /--compare takes the two backends/],
    [['--compare', 'ours', 'reference', '--socket-path=/s'], /--compare takes the two backends/],
    [[B, '--bs=1000'], /--bs must be a multiple of 512/],
    [[B, '--bs=768', '--file-size=3M'], /--bs must be a multiple of 512 from 512 to 1M, not 768/],
    [[B, '--bs=256'], /--bs must be a multiple of 512 from 512 to 1M, not 256/],
    [[B, '--bs=2M'], /--bs must be a multiple of 512 from 512 to 1M/],
    [[B, '--bs=1049088'], /--bs must be a multiple of 512/],
    [[B, '--bs=0'], /--bs must be a multiple of 512/],
    [[B, '--bs=4kb'], /--bs must be a size/],
    [[B, '--bs=-4k'], /--bs must be a size/],
    [[B, '--bs=1.5k'], /--bs must be a size/],
    [[B, '--bs='], /--bs must be a size/],
    [[B, '--depth=200'], /--depth=200 is more than --queue-size=128/],
    [[B, '--depth=0'], /--depth must be an integer from 1/],
    [[B, '--depth=2.5'], /--depth must be an integer/],
    [[B, '--depth=4097'], /--depth must be an integer from 1 to 4096/],
    [[B, '--queue-size=100'], /--queue-size must be a power of two, not 100/],
    [[B, '--queue-size=1'], /--queue-size must be an integer from 2/],
    [[B, '--queue-size=65536'], /--queue-size must be an integer from 2 to 32768/],
    [[B, '--threads=2'], /--threads=2 is more than --queues=1/],
    [[B, '--queues=2', '--threads=3'], /--threads=3 is more than --queues=2/],
    [[B, '--queues=0'], /--queues must be an integer from 1/],
    [[B, '--queues=63'], /--queues must be an integer from 1 to 62/],
    [[B, '--rounds=0'], /--rounds must be an integer/],
    [[B, '--ops=0'], /--ops must be an integer/],
    [[B, '--entries=x'], /--entries must be an integer/],
    [['--socket-path=/s', '--backend-pid=0'], /--backend-pid must be an integer/],
    [[B, '--duration=0.05'], /--duration must be a number of seconds ≥ 0.1/],
    [[B, '--duration=abc'], /--duration must be a number of seconds/],
    [[B, '--duration='], /--duration must be a number of seconds/],
    [[B, '--duration=Infinity'], /--duration must be a number of seconds/],
    [[B, '--duration=86401'], /--duration must be a number of seconds/],
    [[B, '--warmup=-1'], /--warmup must be a number of seconds ≥ 0/],
    [[B, '--timeout=0.1'], /--timeout must be a number of seconds ≥ 0.5/],
    [[B, '--workloads=read-seq,bogus'], /unknown workload 'bogus'/],
    [[B, '--workloads='], /unknown workload ''/],
    [[B, '--mix=bogus:1'], /--mix: unknown kind 'bogus'/],
    [[B, '--mix=mixed:1'], /--mix: unknown kind 'mixed'/],
    [[B, '--mix=getattr:0'], /--mix weight must be an integer from 1 to 1000/],
    [[B, '--file-size=6k', '--bs=4k'], /--file-size must be a multiple of --bs/],
    [[B, '--file-size=4k'], /--file-size must be a multiple of --bs and at least two blocks/],
    [['--backend=virtiofsd --shared-dir=/x'], /--backend command has no \{socket\}/],
    [['--backend=virtiofsd "--socket-path={socket}'], /unterminated " quote/],
    [["--backend=virtiofsd '--socket-path={socket}"], /unterminated ' quote/],
    [['--backend='], /--backend needs a command/],
    [['--backend=   '], /--backend needs a command/],
    [['--compare', 'ours', 'virtiofsd -o x'], /--backend command has no \{socket\}/],
  ];
  for (const [argv, m] of cases) usage(t, () => parseOptions(argv), m, JSON.stringify(argv));
});

t.test('limits that are just inside', async (t) => {
  t.equal(parseOptions([B, '--bs=512']).bs, 512);
  t.equal(parseOptions([B, '--bs=1M']).bs, 1 << 20);
  t.equal(parseOptions([B, '--bs=1536', '--file-size=3M']).bs, 1536, 'any multiple of 512 (with a file size it divides)');
  t.equal(parseOptions([B, '--depth=128']).depth, 128, '--depth = --queue-size');
  t.equal(parseOptions([B, '--depth=256', '--queue-size=256']).depth, 256);
  t.equal(parseOptions([B, '--queue-size=2', '--depth=2']).queueSize, 2);
  t.equal(parseOptions([B, '--queue-size=32768']).queueSize, 32768);
  t.equal(parseOptions([B, '--queues=62', '--threads=62']).threads, 62);
  t.equal(parseOptions([B, '--file-size=8k', '--bs=4k']).fileBytes, 8192, 'two blocks');
  t.equal(parseOptions([B, '--duration=0.1']).durationS, 0.1);
  t.equal(parseOptions([B, '--mix=getattr:1000']).mix[0]![1], 1000);
});

t.test('--warmup default: part of the duration, growing with it up to 2 s, 0 with --ops; explicit wins', async (t) => {
  // The fraction of the duration is a tuning choice (USAGE states it); these hold whatever it is.
  const w = (d: number): number => parseOptions([B, `--duration=${d}`]).warmupS;
  const ds = [0.1, 0.5, 1, 2, 5, 10, 15, 20, 60, 3600];
  t.ok(ds.every((d) => w(d) > 0 && w(d) <= 2), `in (0, 2] for ${ds.join(', ')} s: ${ds.map(w).join(', ')}`);
  t.ok(ds.every((d, i) => i === 0 || w(d) >= w(ds[i - 1]!)), 'never shorter for a longer run');
  t.equal(w(20), 2, '20 s: the 2 s cap');
  t.equal(w(3600), 2, 'capped at 2 s');
  t.ok(w(0.1) < 2, 'a short run gets less');
  t.equal(parseOptions([B, '--ops=100']).warmupS, 0, '--ops: no warm-up');
  t.equal(parseOptions([B, '--ops=100', '--warmup=1']).warmupS, 1, 'explicit with --ops');
  t.equal(parseOptions([B, '--warmup=0']).warmupS, 0, 'explicit 0');
  t.equal(parseOptions([B, '--warmup=0', '--duration=60']).warmupS, 0, 'explicit 0, order does not matter');
  t.equal(parseOptions([B, '--warmup=7', '--duration=5']).warmupS, 7, 'explicit beyond the cap');
});

t.test('parseSize and parseMix', async (t) => {
  t.equal(parseSize('bs', '65536'), 65536);
  t.equal(parseSize('bs', '4k'), 4096);
  t.equal(parseSize('bs', '4K'), 4096);
  t.equal(parseSize('bs', '1m'), 1 << 20);
  t.equal(parseSize('bs', '2G'), 2 * 2 ** 30);
  t.equal(parseSize('bs', ' 8k '), 8192, 'surrounding blanks');
  t.equal(parseSize('bs', '0'), 0, 'zero is a size (the callers bound it)');
  for (const bad of ['', 'k', '4 k', '4kk', '4t', '0x10', '1e3', '-1', '+4']) {
    usage(t, () => parseSize('file-size', bad), new RegExp(`--file-size must be a size like 4096, 4k or 1M, not '${bad.replace('+', '\\+')}'`), `parseSize '${bad}'`);
  }
  t.same(parseMix('read-rand'), [['read-rand', 1]], 'weight defaults to 1');
  t.same(parseMix('read-seq:2,write-seq:3,getattr'), [['read-seq', 2], ['write-seq', 3], ['getattr', 1]]);
  t.same(parseMix(OP_KINDS.join(',')).map(([k]) => k), [...OP_KINDS], 'every op kind is accepted');
  usage(t, () => parseMix(''), /--mix: unknown kind ''/, 'empty mix');
  usage(t, () => parseMix('getattr,'), /--mix: unknown kind ''/, 'trailing comma');
  usage(t, () => parseMix('getattr:'), /--mix weight must be an integer/, 'empty weight');
  usage(t, () => parseMix('getattr:1.5'), /--mix weight must be an integer/, 'fractional weight');
  usage(t, () => parseMix('getattr:1001'), /--mix weight must be an integer from 1 to 1000/, 'weight too large');
  usage(t, () => parseMix('Getattr:1'), /--mix: unknown kind 'Getattr'/, 'kinds are case-sensitive');
});

t.test('splitWords: blanks, quotes and backslashes as a shell splits them, no expansions', async (t) => {
  const cases: Array<[string, string[]]> = [
    ['a b  c', ['a', 'b', 'c']],
    ['  lead and trail  ', ['lead', 'and', 'trail']],
    ['tab\there\nnewline', ['tab', 'here', 'newline']],
    ['', []],
    ['   ', []],
    ["'a b' c", ['a b', 'c']],
    ['"a b" c', ['a b', 'c']],
    ['a"b c"d', ['ab cd']],
    ["x '' y", ['x', '', 'y']],
    ['x "" y', ['x', '', 'y']],
    ["''", ['']],
    ['a\\ b', ['a b']],
    ['a\\\\b', ['a\\b']],
    ['\\"q\\"', ['"q"']],
    ["\\'", ["'"]],
    ['"say \\"hi\\""', ['say "hi"']],
    ['"back\\\\slash"', ['back\\slash']],
    ['"\\$HOME \\`x\\`"', ['$HOME `x`']],
    ['"a\\nb"', ['a\\nb']],
    ["'a\\nb'", ['a\\nb']],
    ["'single \\' x", ['single \\', 'x']],
    ["'it'\\''s'", ["it's"]],
    ['"$HOME" $PATH *.c ~ a|b;c', ['$HOME', '$PATH', '*.c', '~', 'a|b;c']],
    ['"{socket}" --x={share}', ['{socket}', '--x={share}']],
    ['trailing\\', ['trailing\\']],
    ['"a \'b\' c"', ["a 'b' c"]],
    ["'a \"b\" c'", ['a "b" c']],
  ];
  for (const [cmd, want] of cases) t.same(splitWords(cmd), want, JSON.stringify(cmd));
  for (const bad of ["'open", '"open', 'a "b', "a 'b", '"a\\"']) {
    usage(t, () => splitWords(bad), /unterminated ['"] quote in backend command/, `unterminated: ${JSON.stringify(bad)}`);
  }
});

t.test('backendFromCommand: ours, reference, a command with {socket}', async (t) => {
  const ours = backendFromCommand('ours');
  t.equal(ours.label, 'ours');
  const bin = path.join(packageRoot(), 'bin', 'virtiofsd-ts.js');
  t.same(ours.argv, [process.execPath, bin, '--socket-path={socket}', '--shared-dir={share}'], 'this node, this package\'s daemon');
  t.ok(fs.existsSync(bin), 'the daemon script exists');
  t.same(backendFromCommand('  ours \n'), ours, 'names are trimmed');
  const ref = backendFromCommand('reference');
  t.same(ref, { label: 'reference', argv: [REFERENCE_VIRTIOFSD, '--socket-path={socket}', '-o', 'source={share}', '-o', 'cache=auto'] });
  t.equal(REFERENCE_VIRTIOFSD, '/usr/lib/qemu/virtiofsd');
  const cmd = "/opt/vfsd --socket-path={socket} --shared-dir '{share}' --label 'my backend'";
  t.same(backendFromCommand(cmd), {
    label: cmd,
    argv: ['/opt/vfsd', '--socket-path={socket}', '--shared-dir', '{share}', '--label', 'my backend'],
  });
  t.same(backendFromCommand('sh -c "exec vfsd --socket={socket}"').argv, ['sh', '-c', 'exec vfsd --socket={socket}'], '{socket} inside a quoted word');
  t.equal(backendFromCommand('vfsd {socket}').argv!.length, 2, 'a bare {socket} word');
  t.equal(backendFromCommand('oursx {socket}').label, 'oursx {socket}', 'only the exact name is special');
  usage(t, () => backendFromCommand('Ours'), /has no \{socket\}/, "'Ours' is not 'ours'");
  usage(t, () => backendFromCommand('vfsd {sock}'), /has no \{socket\}/, 'a misspelt placeholder');
  usage(t, () => backendFromCommand(''), /--backend needs a command/, 'empty');
});

function result(workload: string, backend: string, round: number | undefined, ops: number, p99 = 100, cpu: number | null = 5): WorkloadResult {
  return {
    kind: 'result', workload, backend, ...(round === undefined ? {} : { round }), depth: 16, queues: 1, threads: 1, bs: 4096,
    ops: ops * 10, requests: ops * 10, seconds: 10, ops_per_s: ops, mib_per_s: 0, min_us: 1, mean_us: 50, p50_us: 40, p90_us: 80,
    p99_us: p99, p999_us: p99 * 2, max_us: p99 * 3, errors: 0, errors_by_errno: {}, backend_cpu_us_per_op: cpu,
    client_cpu_us_per_op: 3, verified_bytes: 0, timeline: [], latency_histogram: [],
    sent: { requests_by_opcode: {}, read_bytes: 0, write_bytes: 0 },
  };
}

t.test('compareRows: per-round ratios B/A, their median and spread', async (t) => {
  const rs = [
    result('getattr', 'A', 1, 1000, 100, 10),
    result('getattr', 'B', 1, 1500, 60, 8),
    // round 2 in the other order, as the runner alternates
    result('getattr', 'B', 2, 1800, 50, 7),
    result('getattr', 'A', 2, 2000, 90, 12),
    result('getattr', 'A', 3, 1000, 120, null),
    result('getattr', 'B', 3, 3000, 40, null),
    result('getattr', 'C', 1, 99999),
  ];
  const rows = compareRows(rs, 'A', 'B');
  t.equal(rows.length, 1);
  const r = rows[0]!;
  t.equal(r.kind, 'compare');
  t.equal(r.workload, 'getattr');
  t.equal(r.a, 'A');
  t.equal(r.b, 'B');
  t.equal(r.rounds, 3);
  // ratios 1.5, 0.9, 3: median 1.5 (not the ratio of the medians 1800/1000 = 1.8)
  t.equal(r.ratio, 1.5, 'median of the per-round ratios');
  t.equal(r.ratio_min, 0.9);
  t.equal(r.ratio_max, 3);
  t.equal(r.a_ops_per_s, 1000, 'median ops/s of A');
  t.equal(r.b_ops_per_s, 1800, 'median ops/s of B');
  t.equal(r.a_p99_us, 100);
  t.equal(r.b_p99_us, 50);
  t.equal(r.a_backend_cpu_us_per_op, 11, 'CPU median over the rounds that have one (10, 12)');
  t.equal(r.b_backend_cpu_us_per_op, 7.5);
});

t.test('compareRows: rounds paired by number; a missing round; several workloads', async (t) => {
  const rs = [
    result('read-seq', 'A', 1, 100),
    result('read-seq', 'A', 2, 100),
    result('read-seq', 'A', 3, 100),
    result('read-seq', 'B', 3, 300),
    result('read-seq', 'B', 1, 150),
    // B has no round 2 (it failed)
    result('lookup', 'A', 1, 1000, 100, null),
    result('lookup', 'B', 2, 500, 100, null),
    result('write-seq', 'A', 1, 0),
    result('write-seq', 'B', 1, 100),
    result('readdir', 'A', 1, 3),
    result('readdir', 'B', 1, 1),
    result('readdir', 'A', 2, 3),
    result('readdir', 'B', 2, 2),
  ];
  const rows = compareRows(rs, 'A', 'B');
  t.same(rows.map((r) => r.workload), ['read-seq', 'readdir'], 'in first-seen order; a workload with no common round, or A at 0 ops/s, has no row');
  const rseq = rows[0]!;
  t.equal(rseq.rounds, 2, 'only rounds both produced');
  t.equal(rseq.ratio, 2.25, 'median of 1.5 and 3: the mean of the middle two');
  t.equal(rseq.ratio_min, 1.5);
  t.equal(rseq.ratio_max, 3);
  const rd = rows[1]!;
  t.equal(rd.ratio, 0.5, 'ratios 1/3 and 2/3, median 0.5');
  t.equal(rd.ratio_min, 0.333, 'rounded to three places');
  t.equal(rd.ratio_max, 0.667);
  t.equal(rd.a_backend_cpu_us_per_op, 5);
  const swapped = compareRows(rs, 'B', 'A');
  t.equal(swapped[0]!.ratio_min, 0.333, 'A against B: the reciprocals');
  t.equal(swapped[0]!.ratio_max, 0.667);
  t.same(compareRows([], 'A', 'B'), [], 'no results, no rows');
  t.same(compareRows(rs, 'A', 'nobody'), [], 'an unknown backend, no rows');
  const noCpu = compareRows([result('lookup', 'A', 1, 10, 1, null), result('lookup', 'B', 1, 10, 1, null)], 'A', 'B')[0]!;
  t.equal(noCpu.a_backend_cpu_us_per_op, null, 'no CPU figure: null, not 0');
  t.equal(noCpu.ratio, 1);
});

t.test('fixed after review: same backend twice, default file size, strict numbers and flags, paired medians', async (t) => {
  const same = parseOptions(['--compare', 'ours', 'ours']);
  t.same(same.backends.map((b) => b.label), ['ours (A)', 'ours (B)'], 'the same backend twice gets two labels');
  t.same(same.backends[0]!.argv, same.backends[1]!.argv, 'and the same command');
  t.equal(parseOptions([B, '--bs=1536']).fileBytes % 1536, 0, 'the default file size is made a whole number of blocks');
  usage(t, () => parseOptions([B, '--bs=1536', '--file-size=64M']), /--file-size must be a multiple of --bs/, 'a size the user gave is checked');
  usage(t, () => parseOptions([B, '--verbose']), /unknown option --verbose/, 'an unknown last option');
  usage(t, () => parseOptions([B, '--depth=0x10']), /--depth must be an integer/, 'hex');
  usage(t, () => parseOptions([B, '--depth=1e1']), /--depth must be an integer/, 'exponent');
  usage(t, () => parseOptions([B, '--quiet=no']), /--quiet takes no value/, 'a flag with a value');
  // A has rounds 1-3, B only round 1: everything comes from round 1
  const rows = compareRows([result('getattr', 'A', 1, 100), result('getattr', 'A', 2, 10000), result('getattr', 'A', 3, 10000), result('getattr', 'B', 1, 100)], 'A', 'B');
  t.equal(rows[0]!.rounds, 1);
  t.equal(rows[0]!.a_ops_per_s, 100, 'A median over the paired round only');
  t.equal(rows[0]!.ratio, 1);
});
