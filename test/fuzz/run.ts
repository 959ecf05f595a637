/**
 * `npm run fuzz -- --minutes N [--seed S] [--target NAME]`: runs the fuzz targets (targets.ts) in
 * turn until the time is up, a live line per target every 5 s, a table at the end. Exit 1 on a
 * failure (its seed, shrunk counterexample and replay command are printed), 2 on bad options.
 * docs/testing.md "Fuzzing".
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatOutcomes, runTargets } from './runner.js';
import { TARGETS } from './targets.js';

const USAGE = `usage: npm run fuzz -- [--minutes=N] [--seed=S] [--target=NAME[,NAME...]]

Runs property-based fuzzing (fast-check) of the daemon's guest- and frontend-facing parsers until the
time is up, the targets taking turns about a second at a time.

  --minutes=N      total time, shared by the targets (default 1; fractions allowed)
  --seed=S         the first chunk's seed (default: random); a failure prints the seed to replay it
  --target=NAMES   only these (comma-separated; repeatable)
  -h, --help       this text

targets:
${TARGETS.map((t) => `  ${t.name.padEnd(12)} ${t.what}`).join('\n')}

Exit status: 0 no failure, 1 a failure (seed and minimal counterexample printed), 2 bad options.
`;

interface Options {
  minutes: number;
  seed: number;
  targets: string[];
}

class Usage extends Error {}

export function parseOptions(argv: string[]): Options | 'help' {
  const o: Options = { minutes: 1, seed: Math.floor(Math.random() * 0x7fffffff), targets: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') return 'help';
    const m = /^--([a-z]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Usage(`unexpected argument '${a}'`);
    const v = m[2] ?? argv[++i];
    switch (m[1]) {
      case 'minutes': {
        const n = Number(v);
        if (v === undefined || v === '' || !Number.isFinite(n) || n <= 0) throw new Usage(`--minutes needs a number > 0, not '${v ?? ''}'`);
        o.minutes = n;
        break;
      }
      case 'seed':
        if (v === undefined || !/^-?\d+$/.test(v) || Math.abs(Number(v)) > 0x7fffffff) throw new Usage(`--seed needs a 32-bit integer, not '${v ?? ''}'`);
        o.seed = Number(v);
        break;
      case 'target':
        for (const n of (v ?? '').split(',')) {
          if (!TARGETS.some((t) => t.name === n)) throw new Usage(`unknown target '${n}' (${TARGETS.map((t) => t.name).join(', ')})`);
          o.targets.push(n);
        }
        break;
      default:
        throw new Usage(`unknown option ${a}`);
    }
  }
  return o;
}

export async function main(argv: string[]): Promise<number> {
  let o: Options;
  try {
    const p = parseOptions(argv);
    if (p === 'help') {
      process.stdout.write(USAGE);
      return 0;
    }
    o = p;
  } catch (e) {
    if (!(e instanceof Usage)) throw e;
    process.stderr.write(`fuzz: ${e.message}\nTry 'npm run fuzz -- --help'.\n`);
    return 2;
  }
  const defs = o.targets.length ? TARGETS.filter((t) => o.targets.includes(t.name)) : TARGETS;
  process.stderr.write(`fuzz: ${defs.map((t) => t.name).join(', ')} for ${o.minutes} min, seed ${o.seed}\n`);
  const outcomes = await runTargets(defs, { ms: o.minutes * 60_000, seed: o.seed });
  process.stdout.write(`\n${formatOutcomes(outcomes)}\n`);
  const failed = outcomes.filter((x) => x.failures > 0);
  for (const f of failed) {
    process.stdout.write(`\nFAILED ${f.target}: ${f.failure!.error}\n  seed ${f.failure!.seed}\n  counterexample: ${f.failure!.counterexample}\n` +
      `  replay: npm run fuzz -- --target=${f.target} --seed=${f.failure!.seed}\n`);
  }
  return failed.length > 0 ? 1 : 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  process.exitCode = await main(process.argv.slice(2));
}
