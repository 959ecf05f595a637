/**
 * Command-line plumbing shared by the benchmarks: `--key=value` splitting, the usage error every
 * bad option becomes (the daemon's UsageError from src/errors.ts; bench/run.ts prints its message
 * and exits 2, never a stack trace), and the `--help` check.
 */
import { UsageError } from '../src/errors.js';

/** `--key=value` → [key, value]; `--flag` → [flag, '']. */
export function splitOption(a: string): [string, string] {
  const eq = a.indexOf('=');
  return eq < 0 ? [a, ''] : [a.slice(0, eq), a.slice(eq + 1)];
}

export function wantsHelp(args: string[]): boolean {
  return args.some((a) => a === '--help' || a === '-h' || a === 'help');
}

/** A finite positive number, or a UsageError naming the option. */
export function positive(name: string, v: string): number {
  const x = Number(v);
  if (v === '' || !Number.isFinite(x) || x <= 0) throw new UsageError(`--${name} must be a positive number, not '${v}'`);
  return x;
}

/** A positive integer, or a UsageError naming the option. */
export function positiveInt(name: string, v: string): number {
  const x = Number(v);
  if (v === '' || !Number.isInteger(x) || x < 1) throw new UsageError(`--${name} must be a positive integer, not '${v}'`);
  return x;
}

/** A finite number ≥ 0, or a UsageError naming the option. */
export function nonNegative(name: string, v: string): number {
  const x = Number(v);
  if (v === '' || !Number.isFinite(x) || x < 0) throw new UsageError(`--${name} must be a number ≥ 0, not '${v}'`);
  return x;
}
