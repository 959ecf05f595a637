// Summarise V8 .cpuprofile files (written by `node --cpu-prof`, one per thread): self and total time
// per function, busiest first. Used by `guest-fio --profile` and `npm run bench -- prof-summary DIR`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { positiveInt, splitOption, wantsHelp } from './cli.js';
import { UsageError } from '../src/errors.js';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface FunctionTime {
  fn: string;
  selfMs: number;
  totalMs: number;
}

export interface ProfileSummary {
  file: string;
  wallMs: number;
  /** Sampled time not in (idle): what the thread was busy with. */
  busyMs: number;
  idleMs: number;
  top: FunctionTime[];
}

function label(cf: CallFrame): string {
  const name = cf.functionName || '(anonymous)';
  if (!cf.url) return name;
  const file = cf.url.replace(/^file:\/\//, '').replace(/^.*\/(dist|node_modules)\//, '$1/');
  return `${name} ${file}:${cf.lineNumber + 1}`;
}

export function summarise(file: string, top = 25): ProfileSummary {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  let idleUs = 0;
  let allUs = 0;
  for (let i = 0; i < samples.length; i++) {
    // timeDeltas[i] is the time before sample i; charge the interval to the sample that follows it.
    const us = Math.max(0, deltas[i + 1] ?? 0);
    const id = samples[i]!;
    const node = byId.get(id);
    if (!node) continue;
    allUs += us;
    const l = label(node.callFrame);
    if (node.callFrame.functionName === '(idle)') idleUs += us;
    self.set(l, (self.get(l) ?? 0) + us);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cl = label(byId.get(cur)!.callFrame);
      if (seen.has(cl)) continue;
      seen.add(cl);
      total.set(cl, (total.get(cl) ?? 0) + us);
    }
  }
  const rows: FunctionTime[] = [...self.entries()]
    .map(([fn, s]) => ({ fn, selfMs: s / 1000, totalMs: (total.get(fn) ?? s) / 1000 }))
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, top);
  return {
    file,
    wallMs: (p.endTime - p.startTime) / 1000,
    busyMs: (allUs - idleUs) / 1000,
    idleMs: idleUs / 1000,
    top: rows,
  };
}

export function profileFiles(dirOrFile: string): string[] {
  if (fs.statSync(dirOrFile).isFile()) return [dirOrFile];
  return fs
    .readdirSync(dirOrFile)
    .filter((f) => f.endsWith('.cpuprofile'))
    .sort()
    .map((f) => path.join(dirOrFile, f));
}

export function formatSummary(s: ProfileSummary): string {
  const lines = [
    `${path.basename(s.file)}: wall ${(s.wallMs / 1000).toFixed(1)} s, busy ${(s.busyMs / 1000).toFixed(2)} s, idle ${(s.idleMs / 1000).toFixed(2)} s`,
  ];
  for (const r of s.top) {
    if (r.selfMs < 1) continue;
    const pct = s.busyMs > 0 && !r.fn.startsWith('(idle)') ? `${((100 * r.selfMs) / s.busyMs).toFixed(1).padStart(5)}%` : '      ';
    lines.push(`  ${r.selfMs.toFixed(0).padStart(8)} ms self ${pct}  ${r.totalMs.toFixed(0).padStart(8)} ms total  ${r.fn}`);
  }
  return lines.join('\n');
}

export const USAGE = `usage: npm run bench -- prof-summary <dir-or-.cpuprofile> [--top=N]

Prints, per .cpuprofile file (one per thread of a node --cpu-prof run), the N functions with the most
self time (default 25), with their total time.`;

export async function main(args: string[]): Promise<number> {
  if (wantsHelp(args)) {
    console.log(USAGE);
    return 0;
  }
  let top = 25;
  const targets: string[] = [];
  for (const a of args) {
    const [k, v] = splitOption(a);
    if (k === '--top') top = positiveInt('top', v);
    else if (a.startsWith('-')) throw new UsageError(`unknown option ${a}`);
    else targets.push(a);
  }
  const target = targets[0];
  if (target === undefined || targets.length > 1) throw new UsageError('give one directory or .cpuprofile file');
  if (!fs.existsSync(target)) throw new UsageError(`${target} does not exist`);
  for (const f of profileFiles(target)) console.log(`${formatSummary(summarise(f, top))}\n`);
  return 0;
}
