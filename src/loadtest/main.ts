/**
 * `virtiofsd-ts loadtest`: runs each workload against each backend (with --compare: both backends,
 * alternating which goes first, for several rounds), prints a live line while it runs and a table at
 * the end, and writes the JSON and HTML reports.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { renderHtml } from './html.js';
import { type LoadtestOptions, USAGE, parseOptions } from './options.js';
import { Progress } from './progress.js';
import type { CompareRow, Report, WorkloadResult } from './report-types.js';
import { runWorkload } from './run.js';
import { compareRows, formatCompare, formatResults } from './table.js';

export async function main(argv: string[]): Promise<number> {
  let o: LoadtestOptions;
  try {
    o = parseOptions(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`virtiofsd-ts loadtest: ${e.message}\nTry 'virtiofsd-ts loadtest --help' for more information.\n`);
      return 2;
    }
    throw e;
  }
  if (o.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const progress = new Progress(process.stderr, o.quiet);
  const ownShare = o.share === undefined && o.backends.some((b) => b.argv);
  const share = o.share ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-loadtest-share-'));
  let interrupted = false;
  const onSignal = (): void => {
    interrupted = true;
    progress.note('interrupted: finishing the current run');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const report: Report = {
    started: new Date().toISOString(),
    argv: ['loadtest', ...argv],
    host: { cpus: os.cpus().length, kernel: os.release(), node: process.version },
    results: [],
    compare: [],
    failures: [],
  };
  try {
    const rounds = o.compare ? o.rounds : 1;
    for (const workload of o.workloads) {
      for (let r = 1; r <= rounds && !interrupted; r++) {
        // Alternate which backend goes first, so a machine that warms up or slows down does not favour one.
        const order = o.compare && r % 2 === 0 ? [...o.backends].reverse() : o.backends;
        for (const b of order) {
          if (interrupted) break;
          const outcome = await runWorkload(workload, b, { ...o, share }, progress, o.compare ? r : undefined);
          if (outcome.ok) {
            report.results.push(outcome.result);
            if (!o.compare) progress.note(formatResults([outcome.result], true));
          } else {
            const f = { workload, backend: b.label, ...(o.compare ? { round: r } : {}), reason: outcome.reason };
            report.failures.push(f);
            progress.note(`${workload} on ${b.label}${o.compare ? ` (round ${r})` : ''}: NO RESULT: ${outcome.reason}`);
          }
        }
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (ownShare) fs.rmSync(share, { recursive: true, force: true });
  }
  if (o.compare) report.compare = compareRows(report.results, o.backends[0]!.label, o.backends[1]!.label);
  process.stdout.write(`\n${formatResults(report.results)}\n`);
  if (report.compare.length > 0) process.stdout.write(`\n${formatCompare(report.compare)}\n`);
  if (report.failures.length > 0) {
    process.stdout.write(`\nno result for:\n${report.failures.map((f) => `  ${f.workload} on ${f.backend}${f.round ? ` (round ${f.round})` : ''}: ${f.reason}`).join('\n')}\n`);
  }
  if (o.json) writeJson(o.json, report.results, report.compare);
  if (o.html) {
    fs.writeFileSync(o.html, renderHtml(report));
  }
  return report.failures.length > 0 || interrupted ? 1 : 0;
}

function writeJson(file: string, results: WorkloadResult[], compare: CompareRow[]): void {
  const lines = [...results, ...compare].map((x) => `${JSON.stringify(x)}\n`).join('');
  if (file === '-') process.stdout.write(lines);
  else fs.writeFileSync(file, lines);
}
