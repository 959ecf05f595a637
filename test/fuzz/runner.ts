/**
 * The fuzz loop shared by `npm run fuzz` (run.ts) and the bounded tap run (targets.test.ts): every
 * target's fast-check property is checked in chunks of about a second, the targets taking turns until
 * the time is up; chunk k of a run with seed S uses seed S + k, so the seed printed with a failure
 * replays it as the first chunk of `--seed`. A failure is shrunk by fast-check and stops its target.
 */
import fs from 'node:fs';
import fc from 'fast-check';

/** What a target counts; `cases` goes up once per generated input (shrinking runs included). */
export interface Counter {
  cases: number;
}

export interface FuzzTarget {
  name: string;
  /** a property over one generated case; it returns false or throws on a broken invariant */
  property: fc.IProperty<never> | fc.IAsyncProperty<never>;
  counter: Counter;
  /** after the run: temporary files, fds */
  close?(): void | Promise<void>;
}

/** A target is made on demand: setting one up has a cost (a temp share, wasm memories). */
export interface TargetDef {
  name: string;
  what: string;
  make(): Promise<FuzzTarget>;
}

export interface Outcome {
  target: string;
  cases: number;
  seconds: number;
  failures: number;
  /** the replay seed, the shrunk counterexample and the error, for a failure */
  failure?: { seed: number; counterexample: string; error: string };
}

export interface RunOptions {
  /** total time, shared among the targets */
  ms: number;
  seed: number;
  /** ms per chunk (default 1000) */
  chunkMs?: number;
  /** live lines every this many ms (default 5000; 0: none) */
  liveMs?: number;
  out?: (line: string) => void;
}

export async function runTargets(defs: TargetDef[], o: RunOptions): Promise<Outcome[]> {
  const out = o.out ?? ((l: string) => process.stderr.write(`${l}\n`));
  const chunkMs = o.chunkMs ?? Math.min(1000, Math.max(100, o.ms / defs.length / 3));
  const targets: FuzzTarget[] = [];
  for (const d of defs) targets.push(await d.make());
  const outcomes: Outcome[] = targets.map((t) => ({ target: t.name, cases: 0, seconds: 0, failures: 0 }));
  const start = Date.now();
  const deadline = start + o.ms;
  let nextLive = start + (o.liveMs ?? 5000);
  let chunk = 0;
  try {
    while (Date.now() < deadline && outcomes.some((x) => x.failures === 0)) {
      for (const [i, t] of targets.entries()) {
        const oc = outcomes[i]!;
        if (oc.failures > 0) continue;
        const left = deadline - Date.now();
        if (left <= 0) break;
        const seed = (o.seed + chunk++) | 0;
        const t0 = performance.now();
        const before = t.counter.cases;
        const d: fc.RunDetails<unknown> = await fc.check(t.property as fc.IAsyncProperty<unknown>, {
          seed, numRuns: 1 << 30, interruptAfterTimeLimit: Math.min(chunkMs, left), markInterruptAsFailure: false,
        });
        oc.seconds += (performance.now() - t0) / 1000;
        oc.cases += t.counter.cases - before;
        if (d.failed) {
          oc.failures++;
          oc.failure = {
            seed,
            counterexample: d.counterexample ? fc.stringify(d.counterexample) : '(none)',
            error: d.errorInstance instanceof Error ? d.errorInstance.message : String(d.errorInstance ?? 'property returned false'),
          };
          out(`FAIL ${t.name} (seed ${seed}, ${d.numShrinks} shrinks): ${oc.failure.error}\n  counterexample: ${oc.failure.counterexample}\n` +
            `  replay: npm run fuzz -- --target=${t.name} --seed=${seed}`);
        }
      }
      if ((o.liveMs ?? 5000) > 0 && Date.now() >= nextLive) {
        nextLive += o.liveMs ?? 5000;
        const el = Math.round((Date.now() - start) / 1000);
        for (const oc of outcomes) out(`[${el} s] ${live(oc)}`);
      }
    }
  } finally {
    for (const t of targets) await t.close?.();
  }
  return outcomes;
}

function rate(oc: Outcome): number {
  return oc.seconds > 0 ? Math.round(oc.cases / oc.seconds) : 0;
}

function live(oc: Outcome): string {
  return `${oc.target}: ${oc.cases} cases, ${rate(oc)} cases/s, ${oc.failures} failures`;
}

export function formatOutcomes(outcomes: Outcome[]): string {
  const head = ['target', 'cases', 'cases/s', 'failures'];
  const rows = outcomes.map((x) => [x.target, String(x.cases), String(rate(x)), String(x.failures)]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

/** The process's open fds and what each is, for the targets' leak checks (a leak's message names the file). */
export function openFds(): Map<string, string> {
  const m = new Map<string, string>();
  for (const f of fs.readdirSync('/proc/self/fd')) {
    try {
      m.set(f, fs.readlinkSync(`/proc/self/fd/${f}`));
    } catch {
      /* the directory's own fd, closed by now */
    }
  }
  return m;
}
