// `npm run bench [-- <benchmark> [options]]`: dispatches to one benchmark. The default is guest-fio.
//
//   guest-fio [--only=reference|ours] [--jobs=a,b] [--runtime=S] [--size=MiB] [--meta-files=N]
//             [--ioengine=psync|libaio] [--profile] [--ours-args="--thread-pool-size=4 ..."]
//   host-fuse [--ops=N] [--depth=1,4] [--workloads=...] [--only=...]   FUSE loops without a guest
//   prof-summary <dir-or-.cpuprofile> [--top=N]      summarise V8 CPU profiles (self time per function)
import { fileURLToPath } from 'node:url';

const usage = `usage: npm run bench -- [guest-fio|host-fuse|prof-summary] [options]   (see bench/README.md)`;

export async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  const name = first && !first.startsWith('-') ? first : 'guest-fio';
  const args = first && !first.startsWith('-') ? rest : argv;
  switch (name) {
    case 'guest-fio':
      return (await import('./guest-fio.js')).main(args);
    case 'host-fuse':
      return (await import('./host-fuse.js')).main(args);
    case 'prof-summary':
      return (await import('./cpuprofile.js')).main(args);
    case 'help':
    case '--help':
      console.log(usage);
      return 0;
    default:
      console.error(`unknown benchmark ${name}\n${usage}`);
      return 2;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).then(
    (rc) => process.exit(rc),
    (e: unknown) => {
      console.error(e instanceof Error ? (e.stack ?? e.message) : e);
      process.exit(1);
    },
  );
}
