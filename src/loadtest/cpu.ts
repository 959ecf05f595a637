/**
 * CPU time of a process tree and of this process, from /proc at nanosecond resolution: the first field
 * of /proc/PID/task/TID/schedstat is the thread's run time in ns. A thread that exits takes its
 * schedstat with it, so each process's figure is the larger of its live threads' sum and its
 * /proc/PID/stat utime+stime (which keeps exited threads' time, in clock ticks).
 */
import fs from 'node:fs';

/** USER_HZ: /proc/PID/stat counts clock ticks of 10 ms on Linux (sysconf(_SC_CLK_TCK) = 100). */
const NS_PER_TICK = 10_000_000;

function read(path: string): string | undefined {
  try {
    return fs.readFileSync(path, 'latin1');
  } catch {
    return undefined;
  }
}

/** CPU ns of one process (all its threads, live and exited), or undefined if it is gone. */
export function processCpuNs(pid: number): number | undefined {
  const stat = read(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // fields after the ")" that ends comm: state is field 3, utime 14, stime 15
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]);
  let sched = 0;
  let tids: string[] = [];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    /* gone */
  }
  for (const tid of tids) {
    const s = read(`/proc/${pid}/task/${tid}/schedstat`);
    if (s !== undefined) sched += Number(s.split(' ')[0]);
  }
  return Math.max(sched, Number.isFinite(ticks) ? ticks * NS_PER_TICK : 0);
}

/** The process and its descendants (a backend started through a wrapper), each once. */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length && out.length < 1024; i++) {
    let tids: string[] = [];
    try {
      tids = fs.readdirSync(`/proc/${out[i]}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      const c = read(`/proc/${out[i]}/task/${tid}/children`);
      if (c) for (const x of c.trim().split(/\s+/)) if (x && !out.includes(Number(x))) out.push(Number(x));
    }
  }
  return out;
}

/** CPU ns of a process tree; each process keeps its own running figure so one that exits is not lost. */
export class TreeCpu {
  private readonly last = new Map<number, number>();
  constructor(readonly pid: number) {}

  /** Total CPU ns of the tree so far (processes seen earlier that have exited keep their last value). */
  sample(): number {
    for (const p of processTree(this.pid)) {
      const ns = processCpuNs(p);
      if (ns !== undefined) this.last.set(p, ns);
    }
    let sum = 0;
    for (const v of this.last.values()) sum += v;
    return sum;
  }
}

/** CPU ns of this process (every thread: the main thread and the driver threads). */
export function selfCpuNs(): number {
  return processCpuNs(process.pid) ?? process.cpuUsage().user * 1000 + process.cpuUsage().system * 1000;
}
