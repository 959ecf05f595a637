/**
 * Host memory of a guest run, sampled from /proc: the resident set of QEMU and of a daemon (with its
 * children), and the host's MemAvailable. Guest RAM is a memfd: a page counts in QEMU's RssShmem once
 * the guest touched it (and in a daemon's once the daemon did), and in the host's Shmem only once.
 */
import * as fs from 'node:fs';
import { processTree } from './proc-cpu.js';

export interface RssKiB {
  rss: number;
  anon: number;
  shmem: number;
}

/** VmRSS, RssAnon and RssShmem of one process (kB as /proc prints them), or null when it is gone. */
export function readRss(pid: number): RssKiB | null {
  let s: string;
  try {
    s = fs.readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return null;
  }
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? 0);
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), shmem: kb('RssShmem') };
}

/** A field of /proc/meminfo in kB (e.g. MemAvailable), or null. */
export function hostMeminfoKiB(field: string): number | null {
  const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(fs.readFileSync('/proc/meminfo', 'latin1'));
  return m ? Number(m[1]) : null;
}

/**
 * Samples the summed RSS of named process trees every `intervalMs` and keeps each one's peak, and the
 * lowest host MemAvailable seen. `targets` is asked on every sample (QEMU's pid appears only after
 * the boot started); a name whose pid list is empty is skipped for that sample.
 */
export class RssSampler {
  readonly peaks = new Map<string, RssKiB>();
  minAvailableKiB = Number.POSITIVE_INFINITY;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly targets: () => Record<string, number | null | undefined>,
    private readonly intervalMs = 500,
  ) {}

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  sample(): void {
    for (const [name, pid] of Object.entries(this.targets())) {
      if (!pid) continue;
      const sum: RssKiB = { rss: 0, anon: 0, shmem: 0 };
      let any = false;
      for (const p of processTree(pid)) {
        const r = readRss(p);
        if (!r) continue;
        any = true;
        sum.rss += r.rss;
        sum.anon += r.anon;
        sum.shmem += r.shmem;
      }
      if (!any) continue;
      const peak = this.peaks.get(name);
      if (!peak || sum.rss > peak.rss) this.peaks.set(name, sum);
    }
    const avail = hostMeminfoKiB('MemAvailable');
    if (avail !== null) this.minAvailableKiB = Math.min(this.minAvailableKiB, avail);
  }

  /** "qemu 1.2 GiB (shmem 1.0 GiB), daemon ..." */
  summary(): string {
    const g = (kib: number) => `${(kib / 1048576).toFixed(2)} GiB`;
    const parts = [...this.peaks].map(([n, p]) => `${n} peak RSS ${g(p.rss)} (shmem ${g(p.shmem)}, anon ${g(p.anon)})`);
    if (Number.isFinite(this.minAvailableKiB)) parts.push(`host MemAvailable low ${g(this.minAvailableKiB)}`);
    return parts.join('; ');
  }
}
