/**
 * CPU use of a daemon (every thread of it and of its child processes), of QEMU and of the whole host,
 * sampled from /proc between two points in time. Both benches use it: guest-fio per job, with the
 * daemon's threads split by role, host-fuse per run, as CPU seconds per operation.
 */
import * as fs from 'node:fs';
import type { DaemonKind } from './daemon.js';

/**
 * The unit of utime/stime in /proc/PID/stat and of /proc/stat: USER_HZ, which the kernel ABI fixes at
 * 100 on x86-64 and arm64 whatever the kernel's internal CONFIG_HZ (the kernel converts; it is what
 * `getconf CLK_TCK` prints). CPU figures are therefore in 10 ms steps.
 */
export const USER_HZ = 100;

export interface ThreadStat {
  comm: string;
  /** utime + stime, in USER_HZ ticks */
  ticks: number;
}

/** One /proc/.../stat line. The comm field is in parentheses and may itself hold spaces or ')'. */
export function readStat(file: string): ThreadStat | null {
  try {
    const s = fs.readFileSync(file, 'latin1');
    const open = s.indexOf('(');
    const close = s.lastIndexOf(')');
    const f = s.slice(close + 2).split(' ');
    // fields after comm start at state (3); utime and stime are fields 14 and 15
    return { comm: s.slice(open + 1, close), ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return null;
  }
}

/** The process and its descendants: one implementation, the load tester's. */
export { processTree } from '../src/loadtest/cpu.js';
import { processTree } from '../src/loadtest/cpu.js';

/** Every thread of pid and its descendants: tid → stat. */
export function threadsOf(pid: number): Map<number, ThreadStat> {
  const out = new Map<number, ThreadStat>();
  for (const p of processTree(pid)) {
    let tids: string[] = [];
    try {
      tids = fs.readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tids) {
      const st = readStat(`/proc/${p}/task/${t}/stat`);
      if (st) out.set(Number(t), st);
    }
  }
  return out;
}

/** All CPUs of the host, in USER_HZ ticks since boot: busy (not idle or iowait) and total. */
export function hostCpuTicks(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'latin1').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** Pids of the processes whose command line (NUL-separated argv) satisfies `match`. */
export function findProcesses(match: (cmdline: string) => boolean): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (match(fs.readFileSync(`/proc/${d}/cmdline`, 'latin1'))) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** The QEMU process serving a socket (runGuest does not hand out its pid); not the timeout(1) wrapping it. */
export function findQemu(socketPath: string): number | null {
  return findProcesses((cmd) => cmd.includes('qemu-system') && cmd.includes(socketPath) && !cmd.startsWith('timeout'))[0] ?? null;
}

export interface ThreadCpu {
  tid: number;
  role: string;
  /** % of one core over the interval */
  pct: number;
}

export interface CpuSample {
  /** CPU used by everything else on the host (other guests, builds), % of one core */
  otherLoadPct: number;
  wallSec: number;
  /** whole daemon, % of one core */
  daemonPct: number;
  mainPct: number;
  workersPct: number;
  otherPct: number;
  threads: ThreadCpu[];
  qemuPct: number | null;
  /** all host CPUs busy, % of the whole machine */
  hostBusyPct: number;
}

/** CPU seconds a sample's daemon used over its interval. */
export function daemonCpuSeconds(s: CpuSample): number {
  return (s.daemonPct / 100) * s.wallSec;
}

/**
 * Samples a daemon's threads (and, given the socket QEMU connects to, QEMU's) between begin() and
 * end(). Thread roles: for ours 'main' (the pid), 'worker' (queue workers) or 'other'; for the
 * reference its thread names.
 */
export class CpuSampler {
  private readonly roles = new Map<number, string>();
  private start: { t: number; threads: Map<number, ThreadStat>; qemu: number | null; host: { busy: number; total: number } } | null = null;
  qemuPid: number | null = null;

  constructor(
    private readonly kind: DaemonKind,
    private readonly pid: number,
    private readonly qemuSocket?: string,
  ) {}

  /**
   * Our queue workers sleep in epoll_wait(2) (x86-64 syscall 232, or epoll_pwait 281) or, paused,
   * poll(2) (7); learn their tids while the daemon is idle. (The main thread's libuv loop also uses
   * epoll, but it is the pid.)
   */
  classify(): void {
    for (const [tid, st] of threadsOf(this.pid)) {
      // A worker that is serving or polling its rings when looked at is in no syscall: an 'other' of
      // ours is looked at again each time, so it is known as a worker once it is seen asleep.
      const known = this.roles.get(tid);
      if (known !== undefined && !(this.kind === 'ours' && known === 'other')) continue;
      if (tid === this.pid) {
        this.roles.set(tid, 'main');
        continue;
      }
      let role = this.kind === 'reference' ? st.comm : 'other';
      if (this.kind === 'ours') {
        try {
          const sc = fs.readFileSync(`/proc/${this.pid}/task/${tid}/syscall`, 'latin1').split(' ')[0];
          if (sc === '7' || sc === '232' || sc === '281') role = 'worker';
        } catch {
          /* not permitted: stays 'other' */
        }
      }
      this.roles.set(tid, role);
    }
    if (this.qemuSocket !== undefined) this.qemuPid ??= findQemu(this.qemuSocket);
  }

  begin(): void {
    this.classify();
    this.start = {
      t: performance.now(),
      threads: threadsOf(this.pid),
      qemu: this.qemuPid ? (readStat(`/proc/${this.qemuPid}/stat`)?.ticks ?? null) : null,
      host: hostCpuTicks(),
    };
  }

  /** CPU use since begin(), or null without a begin(). */
  end(): CpuSample | null {
    const s = this.start;
    if (!s) return null;
    this.start = null;
    const wallSec = (performance.now() - s.t) / 1000;
    const pct = (ticks: number) => (100 * ticks) / USER_HZ / wallSec;
    const threads: ThreadCpu[] = [];
    // per thread: one that started during the interval counts in full, one that ended drops out
    for (const [tid, st] of threadsOf(this.pid)) {
      const before = s.threads.get(tid)?.ticks ?? 0;
      const role = this.roles.get(tid) ?? (this.kind === 'reference' ? st.comm : 'other');
      threads.push({ tid, role, pct: pct(st.ticks - before) });
    }
    threads.sort((a, b) => b.pct - a.pct);
    const sum = (f: (t: ThreadCpu) => boolean) => threads.filter(f).reduce((a, t) => a + t.pct, 0);
    const q = this.qemuPid ? readStat(`/proc/${this.qemuPid}/stat`) : null;
    const host = hostCpuTicks();
    const qemuPct = q && s.qemu !== null ? pct(q.ticks - s.qemu) : null;
    const daemonPct = sum(() => true);
    const hostPct = pct(host.busy - s.host.busy); // all CPUs, in % of one core
    return {
      otherLoadPct: Math.max(0, hostPct - daemonPct - (qemuPct ?? 0)),
      wallSec,
      daemonPct,
      mainPct: sum((t) => t.role === 'main'),
      workersPct: sum((t) => t.role === 'worker'),
      otherPct: sum((t) => t.role !== 'main' && t.role !== 'worker'),
      threads: threads.filter((t) => t.pct >= 0.5),
      qemuPct,
      hostBusyPct: (100 * (host.busy - s.host.busy)) / Math.max(1, host.total - s.host.total),
    };
  }
}
