/**
 * `npm run bench [-- <benchmark> [options]]`: dispatches to one benchmark (the default is guest-fio).
 * `--help` here or after a benchmark's name prints its usage; a bad option prints a message and the
 * usage and exits 2; a failing run prints its error and exits 1.
 */
import { fileURLToPath } from 'node:url';
import { UsageError } from '../src/errors.js';

const USAGE = `usage: npm run bench -- [<benchmark>] [options]     (see bench/README.md)

benchmarks:
  (none)         both: host, then guest-fio
  host           the load tester, no guest: every workload, the reference daemon against ours (--compare)
  guest-fio      a TCG guest runs fio and a metadata loop against the reference daemon and ours
  prof-summary   summarise V8 .cpuprofile files (self/total time per function)
  gc             garbage collections while our daemon serves 1M requests (does the request path allocate?)

npm run bench -- <benchmark> --help     that benchmark's options`;

interface Bench {
  main(args: string[]): Promise<number>;
  USAGE: string;
}

const BENCHES: Record<string, () => Promise<Bench>> = {
  'guest-fio': async () => {
    const [m, u] = await Promise.all([import('./guest-fio/main.js'), import('./guest-fio/options.js')]);
    return { main: m.main, USAGE: u.USAGE };
  },
  host: async () => import('./host.js'),
  'prof-summary': async () => import('./cpuprofile.js'),
  gc: async () => import('./gc.js'),
};

export async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === 'help' || first === '--help' || first === '-h') {
    console.log(USAGE);
    return 0;
  }
  if (first === undefined) {
    // The whole benchmark: the host side (seconds per workload), then the guests (minutes).
    const host = await (await BENCHES.host!()).main([]);
    const guest = await (await BENCHES['guest-fio']!()).main([]);
    return host !== 0 ? host : guest;
  }
  const named = !first.startsWith('-');
  const name = named ? first : 'guest-fio';
  const args = named ? rest : argv;
  const load = BENCHES[name];
  if (!load) {
    console.error(`unknown benchmark ${name}\n\n${USAGE}`);
    return 2;
  }
  const bench = await load();
  try {
    return await bench.main(args);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`${name}: ${e.message}\n\n${bench.USAGE}`);
      return 2;
    }
    throw e;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).then(
    (rc) => process.exit(rc),
    (e: unknown) => {
      // A failed run (no fio, a daemon that did not start...): the message says what; the stack only on request.
      const verbose = Boolean(process.env.BENCH_VERBOSE);
      console.error(`bench: ${e instanceof Error ? ((verbose ? e.stack : undefined) ?? e.message) : String(e)}`);
      process.exit(1);
    },
  );
}
