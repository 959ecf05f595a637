/**
 * The live line while a workload runs. A terminal gets one line rewritten in place (at most ten times a
 * second); a pipe or file gets a plain line every few seconds, so a log stays readable.
 */
export class Progress {
  private lastPrint = 0;
  private shown = false;

  constructor(
    private readonly out: NodeJS.WriteStream | { write(s: string): boolean; isTTY?: boolean },
    private readonly quiet = false,
    private readonly pipeEveryMs = 3000,
  ) {}

  private get tty(): boolean {
    return this.out.isTTY === true;
  }

  update(label: string, phase: 'warm-up' | 'run', seconds: number, opsPerS: number, mibPerS: number, p99Us: number, errors: number): void {
    if (this.quiet) return;
    const now = Date.now();
    if (now - this.lastPrint < (this.tty ? 100 : this.pipeEveryMs)) return;
    this.lastPrint = now;
    const line =
      phase === 'warm-up'
        ? `[${label}] warming up`
        : `[${label}] ${seconds.toFixed(1)} s  ${fmt(opsPerS)} ops/s  ${mibPerS.toFixed(1)} MiB/s  p99 ${fmt(p99Us)} µs  errors ${errors}`;
    if (this.tty) {
      this.out.write(`\r\x1b[K${line}`);
      this.shown = true;
    } else {
      this.out.write(`${line}\n`);
    }
  }

  /** Ends the live line (a terminal's is cleared). */
  done(): void {
    if (this.tty && this.shown) this.out.write('\r\x1b[K');
    this.shown = false;
    this.lastPrint = 0;
  }

  note(msg: string): void {
    if (this.quiet) return;
    this.done();
    this.out.write(`${msg}\n`);
  }
}

/** 12345.6 → "12,346"; small numbers keep a decimal. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return '-';
  if (Math.abs(x) >= 100) return Math.round(x).toLocaleString('en-US');
  return x.toFixed(1);
}
