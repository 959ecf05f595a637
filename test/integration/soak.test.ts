// The soak's machinery (test/soak/): a ~20 s run end to end against our daemon, its options, and its
// checker on synthetic series that must fail. The 30-minute soak itself is `npm run soak`.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { packageRoot } from '../../src/package-root.js';
import { DEFAULT_BOUNDS, type Sample, judge, parseStatus } from '../soak/check.js';

const runner = path.join(packageRoot(), 'dist', 'test', 'soak', 'run.js');
// Without tap's loaders (NODE_OPTIONS): they would slow every process the soak starts.
const env = { ...process.env, NODE_OPTIONS: '' };
const soak = (args: string[], timeout = 90_000) =>
  spawnSync(process.execPath, [runner, ...args], { encoding: 'utf8', timeout, env });

t.test('a short soak runs every workload, samples the daemon and passes', async (t) => {
  const t0 = Date.now();
  const r = soak(['--minutes=0.35', '--slice=3', '--sample-every=5', '--warmup=5', '--file-size=1M']);
  t.equal(r.status, 0, `exit 0\n${r.stdout}\n${r.stderr.slice(-2000)}`);
  t.match(r.stdout, /soak: PASS/);
  for (const fig of ['rss KiB', 'fds', 'inodes', 'handles']) {
    t.match(r.stdout, new RegExp(`^${fig}\\s+\\d+\\s+\\d+\\s+\\d+\\s+\\d+\\s+[+-]?\\d+$`, 'm'), `table row ${fig}`);
  }
  // The status line was parsed: the start saw the root inode only, and a sample under load saw more.
  t.match(r.stderr, /\[0:00\] start: rss [\d.]+ MiB, fds \d+, inodes 1, handles 0/);
  const loaded = [...r.stderr.matchAll(/sample: .*inodes (\d+), handles (\d+)/g)];
  t.ok(loaded.length >= 2, `${loaded.length} samples during the run`);
  for (const w of ['mixed', 'create-unlink', 'open-close', 'readdir']) {
    t.match(r.stderr, new RegExp(`slice \\d+ ${w}: [1-9]\\d* ops, 0 errors`), `${w} ran`);
  }
  t.ok(Date.now() - t0 < 60_000, `took ${Date.now() - t0} ms`);
});

t.test('options: --help, and bad ones exit 2', async (t) => {
  const h = soak(['--help']);
  t.equal(h.status, 0);
  t.match(h.stdout, /max\(64 MiB, 25 %\)/, 'the bound is stated');
  for (const bad of [['--minutes=0'], ['--minutes=abc'], ['--slice'], ['--nope'], ['stray'], ['--workloads=a,,b'], ['--file-size=lots']]) {
    const r = soak(bad);
    t.equal(r.status, 2, `${bad.join(' ')}: ${r.stderr.trim()}`);
    t.match(r.stderr, /^soak: /);
  }
});

t.test('parseStatus reads the last status line of a log', async (t) => {
  const log = '2026-01-01T00:00:00.000Z INFO  [main] status: inodes=3 handles=1 sessions=1 rss_kib=90000 fds=40\n' +
    'other\n2026-01-01T00:00:01.000Z INFO  [main] status: inodes=1 handles=0 sessions=0 rss_kib=91000 fds=34\n';
  t.same(parseStatus(log), { inodes: 1, handles: 0, sessions: 0, rssKib: 91000, fds: 34 });
  t.equal(parseStatus('no status here\n'), undefined);
});

/** A 30-minute series: idle start, load every minute, idle end; `f` alters sample i. */
function series(f: (s: Sample, i: number) => void = () => undefined): Sample[] {
  const out: Sample[] = [{ t: 0, phase: 'start', rssKib: 80_000, fds: 34, inodes: 1, handles: 0, sessions: 0 }];
  for (let m = 1; m <= 30; m++) out.push({ t: m * 60, phase: 'load', rssKib: 100_000, fds: 60, inodes: 20, handles: 4, sessions: 1 });
  out.push({ t: 1810, phase: 'end', rssKib: 101_000, fds: 34, inodes: 1, handles: 0, sessions: 0 });
  out.forEach(f);
  return out;
}

t.test('the checker passes a flat series and fails each kind of leak', async (t) => {
  const ok = judge(series());
  t.same(ok.failures, [], 'flat series passes');
  t.equal(ok.rows[0]!.growth, 1000, 'RSS growth is counted from the warm-up sample');
  // Growth under 64 MiB passes; a steady climb of 3 MiB a minute (87 MiB) fails.
  t.same(judge(series((s, i) => { s.rssKib += i * 2048; })).failures, [], '2 MiB a minute: 60 MiB, within the bound');
  const climb = judge(series((s, i) => { s.rssKib += i * 3072; }));
  t.equal(climb.failures.length, 1);
  t.match(climb.failures[0], /RSS grew by .* more than the 64\.0 MiB allowed/);
  // For a large daemon the 25 % bound applies: 400 MiB -> +90 MiB passes, +110 MiB fails.
  t.same(judge(series((s) => { if (s.t >= 60) s.rssKib = 400 * 1024 + (s.t > 1000 ? 90 * 1024 : 0); })).failures, []);
  t.equal(judge(series((s) => { if (s.t >= 60) s.rssKib = 400 * 1024 + (s.t > 1000 ? 110 * 1024 : 0); })).failures.length, 1);
  // A growth in the first minute is the warm-up's, not a leak.
  t.same(judge(series((s) => { if (s.phase === 'start') s.rssKib = 10_000; })).failures, []);
  // A spike after the warm-up counts even if RSS comes back down by the end.
  t.equal(judge(series((s) => { if (s.t === 900) s.rssKib += 70 * 1024; })).failures.length, 1);
  const leaks: Array<[keyof Sample, RegExp]> = [['fds', /^fds: 35 once/], ['inodes', /^inodes: 2 once/], ['handles', /^handles: 1 once/], ['sessions', /still connected/]];
  for (const [k, re] of leaks) {
    const v = judge(series((s) => { if (s.phase === 'end') (s[k] as number) += 1; }));
    t.equal(v.failures.length, 1, `${k} leak fails`);
    t.match(v.failures[0], re);
  }
  t.match(judge(series().slice(0, -1)).failures[0], /no start or no end/, 'a run without its end sample fails');
  t.equal(DEFAULT_BOUNDS.rssGrowthKib, 64 * 1024);
});
