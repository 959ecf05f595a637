// The long-running fuzzer's targets (targets.ts), each for FUZZ_MS (default 2500 ms), and its loop:
// a failing property is caught, shrunk and reported with a seed that replays it; the CLI's options.
// Run: npx tap dist/test/fuzz/targets.test.js ; the long run is `npm run fuzz -- --minutes N`.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import fc from 'fast-check';
import t from 'tap';
import { packageRoot } from '../../src/package-root.js';
import { type Counter, type TargetDef, formatOutcomes, runTargets } from './runner.js';
import { parseOptions } from './run.js';
import { TARGETS } from './targets.js';

const MS = Number(process.env.FUZZ_MS ?? 2500);

t.test('every target runs clean for a few seconds', async (t) => {
  const lines: string[] = [];
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 0x7fffffff);
  const outcomes = await runTargets(TARGETS, { ms: MS * TARGETS.length, seed, out: (l) => lines.push(l), liveMs: 0 });
  t.comment(`seed ${seed}\n${formatOutcomes(outcomes)}`);
  for (const o of outcomes) {
    t.equal(o.failures, 0, `${o.target}: no failure${o.failure ? `: ${o.failure.error} ${o.failure.counterexample} (seed ${o.failure.seed})` : ''}`);
    t.ok(o.cases >= 50, `${o.target}: ${o.cases} cases`);
  }
  t.same(outcomes.map((o) => o.target), TARGETS.map((d) => d.name));
});

/** A target whose invariant breaks for inputs of 1000 and more. */
function failing(counter: Counter): TargetDef {
  return {
    name: 'selftest',
    what: '',
    make: async () => ({
      name: 'selftest',
      counter,
      property: fc.property(fc.integer({ min: 0, max: 1 << 20 }), (x) => {
        counter.cases++;
        if (x >= 1000) throw new Error(`${x} is too large`);
        return true;
      }) as never,
    }),
  };
}

t.test('a failure is shrunk, reported with its seed, and the seed replays it', async (t) => {
  const lines: string[] = [];
  const [o] = await runTargets([failing({ cases: 0 })], { ms: 2000, seed: 7, out: (l) => lines.push(l), liveMs: 0 });
  t.equal(o!.failures, 1);
  t.equal(o!.failure!.counterexample, '[1000]', 'shrunk to the smallest failing input');
  t.match(o!.failure!.error, /1000 is too large/);
  t.match(lines.join('\n'), new RegExp(`FAIL selftest \\(seed ${o!.failure!.seed}.*\\n  counterexample: \\[1000\\]\\n  replay: npm run fuzz -- --target=selftest --seed=${o!.failure!.seed}`));
  const [again] = await runTargets([failing({ cases: 0 })], { ms: 2000, seed: o!.failure!.seed, out: () => undefined, liveMs: 0 });
  t.equal(again!.failure?.seed, o!.failure!.seed, 'the printed seed fails again in the first chunk');
  t.match(formatOutcomes([o!]), /^target\s+cases\s+cases\/s\s+failures\nselftest\s+\d+\s+\d+\s+1$/);
});

t.test('the CLI: --help, and bad options exit 2', async (t) => {
  const run = (args: string[]) => spawnSync(process.execPath, [path.join(packageRoot(), 'dist', 'test', 'fuzz', 'run.js'), ...args], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  const h = run(['--help']);
  t.equal(h.status, 0);
  for (const d of TARGETS) t.match(h.stdout, d.name);
  const r = run(['--target=nope']);
  t.equal(r.status, 2, r.stderr.trim());
  t.match(r.stderr, /^fuzz: unknown target 'nope'/);
  for (const bad of [['--minutes=0'], ['--minutes=x'], ['--seed=abc'], ['--seed=99999999999'], ['--frobnicate'], ['extra'], ['--minutes']]) {
    t.throws(() => parseOptions(bad), { name: 'Error' }, bad.join(' '));
  }
  t.same(parseOptions(['--minutes=0.5', '--seed=-3', '--target=fuse,vhost', '--target', 'queue-pop']), { minutes: 0.5, seed: -3, targets: ['fuse', 'vhost', 'queue-pop'] });
});
