/**
 * host: the host-side benchmark, our daemon against the reference with no guest: `virtiofsd-ts loadtest
 * --compare reference ours` over every workload (src/loadtest/). Options after `host` are the load
 * tester's and override these defaults; the ratio column is ours / reference, with its spread across
 * rounds.
 */
import { main as loadtest } from '../src/loadtest/main.js';

export const USAGE = `usage: npm run bench -- host [loadtest options]     (see bench/README.md)

Runs: virtiofsd-ts loadtest --compare reference ours --rounds=3 --duration=5 --depth=16 [your options]
Any loadtest option may be given (--workloads, --bs, --depth, --queues, --threads, --json, --html...);
'virtiofsd-ts loadtest --help' lists them. --compare "CMD_A" "CMD_B" replaces the two backends.`;

export const DEFAULTS = ['--rounds=3', '--duration=5', '--depth=16'];

export function main(args: string[]): Promise<number> {
  const backends = args.includes('--compare') ? [] : ['--compare', 'reference', 'ours'];
  // later options win in the load tester's parser, so the user's come last
  return loadtest([...backends, ...DEFAULTS, ...args]);
}
