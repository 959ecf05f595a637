/**
 * One workload against one backend: start it (or connect), set the guest up, make the fixture, run
 * the driver threads through warm-up and the measured interval, then check what was written, give
 * back what was looked up and opened, and stop the backend. Returns the result or why there is none.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { native } from '../native.js';
import { type BackendSpec, type RunningBackend, startBackend } from './backend.js';
import { TreeCpu, selfCpuNs } from './cpu.js';
import { MainFuse, prepareFixture } from './fixture.js';
import { LoadGuest } from './guest.js';
import { Histogram } from './histogram.js';
import {
  COUNTER_STRIDE, CTL_ABORT, CTL_PHASE, C_BYTES, C_DONE, C_SECONDS, C_ERRORS, C_OPS, C_READ_DATA, C_REQUESTS, C_SENT, C_VERIFIED,
  C_WRITE_DATA, OPCODE_SLOTS, type OpKindName,
  PHASE_MEASURE, PHASE_STOP, PHASE_WARMUP, type ThreadPlan, type ThreadReport, type WorkloadName,
} from './plan.js';
import type { Progress } from './progress.js';
import type { TimelineSample, WireTotals, WorkloadResult } from './report-types.js';
import { opcodeName } from '../abi/fuse.js';
import { directDescsNeeded, writeShapes } from './steps.js';

export interface RunOptions {
  bs: number;
  depth: number;
  queues: number;
  threads: number;
  queueSize: number;
  /** measured seconds (when ops is 0) */
  durationS: number;
  /** operations to measure (0: run for durationS) */
  ops: number;
  warmupS: number;
  entries: number;
  fileBytes: number;
  /** mixed: [kind, weight] */
  mix: Array<[OpKindName, number]>;
  timeoutMs: number;
  /** the share for backends the tester starts */
  share: string;
  /** take indirect descriptors / EVENT_IDX when the backend offers them */
  indirect: boolean;
  eventIdx: boolean;
}

export type RunOutcome = { ok: true; result: WorkloadResult } | { ok: false; reason: string };

let runCounter = 0;

export async function runWorkload(
  workload: WorkloadName, spec: BackendSpec, o: RunOptions, progress: Progress, round?: number,
): Promise<RunOutcome> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-loadtest-'));
  let backend: RunningBackend | undefined;
  let guest: LoadGuest | undefined;
  let failed = true;
  const label = `${workload} ${spec.label}${round ? ` r${round}` : ''}`;
  try {
    backend = await startBackend(spec, dir, o.share);
    const slotBytes = Math.max(16384, align(o.bs, 4096) + 8192);
    guest = await LoadGuest.open(backend.socket, {
      requestQueues: o.queues,
      queueSize: o.queueSize,
      depth: o.depth,
      slotBytes,
      directDescs: directDescsNeeded(o.bs),
      replyTimeoutMs: o.timeoutMs,
      indirect: o.indirect,
      eventIdx: o.eventIdx,
    });
    const g = guest;
    writeShapes(g.vq, g.memory, o.bs, g.negotiated.indirect);
    const fuse = new MainFuse(g, o.timeoutMs);
    fuse.init();
    const kinds: OpKindName[] = workload === 'mixed' ? o.mix.map(([k]) => k) : [workload];
    if (kinds.some((k) => k.startsWith('write')) && o.bs > fuse.maxWrite) {
      return { ok: false, reason: `--bs=${o.bs} is more than the backend's max_write (${fuse.maxWrite})` };
    }
    const scratchName = `scratch-${process.pid}-${++runCounter}`;
    const fx = prepareFixture(fuse, { fileBytes: o.fileBytes, entries: o.entries, scratchName }, Math.min(fuse.maxWrite, slotBytes - 4096, 1 << 20));
    const outcome = await drive(workload, kinds, g, fx, o, progress, label, backend, spec.label, round);
    if (!outcome.ok) return outcome;
    // Read back what the write workloads wrote last, then give back lookups and handles.
    const failure = afterwards(fuse, fx, outcome.reports, outcome.writeSeed, o.bs, scratchName);
    if (failure) return { ok: false, reason: failure };
    addSent(outcome.result.sent, fuse);
    failed = false;
    return { ok: true, result: outcome.result };
  } catch (e) {
    const why = backend?.exitReason();
    const msg = (e as Error).message;
    return { ok: false, reason: why ? `the backend ${why} (${msg})${backend?.tail() ? `:\n${backend.tail()}` : ''}` : msg };
  } finally {
    guest?.close();
    // A backend that failed the run (stopped answering: SIGTERM may not reach it) gets a short grace.
    await backend?.stop(failed ? 1000 : 5000);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The main thread's requests (setup, checks, teardown) added to the driver threads' in `sent`. */
function addSent(sent: WireTotals, f: MainFuse): void {
  for (const [op, n] of f.sent) {
    const name = opcodeName(op);
    sent.requests_by_opcode[name] = (sent.requests_by_opcode[name] ?? 0) + n;
  }
  sent.read_bytes += f.readData;
  sent.write_bytes += f.writeData;
}

interface Driven {
  ok: true;
  result: WorkloadResult;
  reports: ThreadReport[];
  writeSeed: number;
}

async function drive(
  workload: WorkloadName, kinds: OpKindName[], g: LoadGuest, fixture: ThreadPlan['fixture'], o: RunOptions,
  progress: Progress, label: string, backend: RunningBackend, backendLabel: string, round: number | undefined,
): Promise<Driven | { ok: false; reason: string }> {
  const ctlBuf = new SharedArrayBuffer(16);
  const ctl = new Int32Array(ctlBuf);
  const countersBuf = new SharedArrayBuffer(o.threads * COUNTER_STRIDE * 8);
  const counters = new Float64Array(countersBuf);
  const hists = Array.from({ length: o.threads }, () => new SharedArrayBuffer(Histogram.bytes()));
  const writeSeed = (Math.random() * 0xfffffff0 + 1) >>> 0;
  const weights: number[] = [];
  let acc = 0;
  for (const k of kinds) {
    acc += workload === 'mixed' ? (o.mix.find(([m]) => m === k)?.[1] ?? 1) : 1;
    weights.push(acc);
  }
  const workers: Worker[] = [];
  const reports: Array<ThreadReport | undefined> = [];
  let abortReason: string | undefined;
  const abort = (why: string): void => {
    abortReason ??= why;
    Atomics.store(ctl, CTL_ABORT, 1);
  };
  const finished: Array<Promise<void>> = [];
  const ready: Array<Promise<void>> = [];
  for (let t = 0; t < o.threads; t++) {
    const plan: ThreadPlan = {
      thread: t,
      memory: g.memory,
      queues: g.queues.filter((q) => q.index > 0 && (q.index - 1) % o.threads === t),
      kinds,
      weights,
      bs: o.bs,
      writeSeed,
      fixture,
      opsQuota: o.ops > 0 ? Math.ceil(o.ops / o.threads) : 0,
      timeoutMs: o.timeoutMs,
      ctl: ctlBuf,
      counters: countersBuf,
      histogram: hists[t]!,
      viewBytes: g.win + g.ramBytes,
    };
    const w = new Worker(new URL('./driver.js', import.meta.url), { workerData: plan });
    workers.push(w);
    let onReady!: () => void;
    ready.push(new Promise<void>((r) => (onReady = r)));
    finished.push(
      new Promise<void>((resolve) => {
        w.on('message', (m: ThreadReport | { ready: true }) => {
          if ('ready' in m) return onReady();
          reports[t] = m;
          if (m.failure) abort(m.failure);
        });
        w.on('error', (e) => {
          abort(`driver thread ${t} failed: ${e.message}`);
          onReady();
          resolve();
        });
        w.on('exit', () => {
          onReady();
          resolve();
        });
      }),
    );
  }
  // A backend that dies closes the vhost-user socket: the socket turns readable (EOF) at once.
  const watch = native.watchFd(g.fe.fd, () => abort(backend.exitReason() ? `the backend ${backend.exitReason()}` : 'the backend closed the vhost-user connection'));
  void backend.exited.then((why) => abort(`the backend ${why}`));
  await Promise.all(ready);
  // A backend someone else started: the process that listens on the socket (SO_PEERCRED).
  const peer = native.peerPid(g.fe.fd);
  const pid = backend.pid ?? (peer > 0 ? peer : undefined);
  const cpu = pid !== undefined ? new TreeCpu(pid) : undefined;
  const sampleMs = Math.min(1000, Math.max(100, (o.durationS * 1000) / 20));
  const timeline: TimelineSample[] = [];
  const sum = (k: number): number => {
    let s = 0;
    for (let t = 0; t < o.threads; t++) s += counters[t * COUNTER_STRIDE + k]!;
    return s;
  };
  const liveHist = (): Histogram => {
    const h = new Histogram();
    for (const b of hists) {
      const c = new Float64Array(b);
      for (let i = 0; i < c.length; i++) h.counts[i]! += c[i]!;
    }
    return h;
  };
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  Atomics.store(ctl, CTL_PHASE, o.warmupS > 0 ? PHASE_WARMUP : PHASE_MEASURE);
  Atomics.notify(ctl, CTL_PHASE);
  if (o.warmupS > 0) {
    const end = performance.now() + o.warmupS * 1000;
    while (performance.now() < end && !abortReason) {
      progress.update(label, 'warm-up', 0, 0, 0, 0, 0);
      await sleep(Math.min(100, end - performance.now()));
    }
    Atomics.store(ctl, CTL_PHASE, PHASE_MEASURE);
  }
  const t0 = performance.now();
  const cpu0 = cpu?.sample() ?? 0;
  const self0 = selfCpuNs();
  let lastT = t0;
  let lastOps = 0;
  let lastBytes = 0;
  const allDone = (): boolean => {
    for (let t = 0; t < o.threads; t++) if (counters[t * COUNTER_STRIDE + C_DONE] !== 1) return false;
    return true;
  };
  for (;;) {
    await sleep(Math.min(sampleMs, 100));
    const now = performance.now();
    if (abortReason) break;
    const elapsed = (now - t0) / 1000;
    if (now - lastT >= sampleMs - 1) {
      const ops = sum(C_OPS);
      const bytes = sum(C_BYTES);
      const dt = (now - lastT) / 1000;
      timeline.push({ t: round3(elapsed), ops_per_s: (ops - lastOps) / dt, mib_per_s: (bytes - lastBytes) / dt / 1048576 });
      lastT = now;
      lastOps = ops;
      lastBytes = bytes;
      progress.update(label, 'run', elapsed, ops / elapsed, bytes / elapsed / 1048576, liveHist().quantileNs(0.99) / 1000, sum(C_ERRORS));
    }
    if (o.ops > 0 ? allDone() : elapsed >= o.durationS) break;
  }
  const cpu1 = cpu?.sample() ?? 0;
  const self1 = selfCpuNs();
  Atomics.store(ctl, CTL_PHASE, PHASE_STOP);
  // The threads drain what is in flight; a backend that stopped answering makes them give up after timeoutMs.
  const drained = await Promise.race([Promise.all(finished).then(() => true), sleep(o.timeoutMs + 3000).then(() => false)]);
  watch.stop();
  if (!drained) {
    abort(`the driver threads did not finish within ${(o.timeoutMs + 3000) / 1000} s of the end`);
    await Promise.all(workers.map((w) => w.terminate()));
  }
  progress.done();
  if (abortReason) return { ok: false, reason: abortReason };
  const done = reports.filter((r): r is ThreadReport => r !== undefined);
  if (done.length !== o.threads) return { ok: false, reason: 'a driver thread ended without a report' };
  // Each thread timed its own measured interval; the counters and histograms are final now.
  const ops = sum(C_OPS);
  const requests = sum(C_REQUESTS);
  const errors = sum(C_ERRORS);
  const verified = sum(C_VERIFIED);
  let opsPerS = 0;
  let bytesPerS = 0;
  let seconds = 0;
  for (let t = 0; t < o.threads; t++) {
    const s = counters[t * COUNTER_STRIDE + C_SECONDS]!;
    if (s <= 0) continue;
    opsPerS += counters[t * COUNTER_STRIDE + C_OPS]! / s;
    bytesPerS += counters[t * COUNTER_STRIDE + C_BYTES]! / s;
    seconds = Math.max(seconds, s);
  }
  const hist = liveHist();
  hist.maxNs = Math.max(...done.map((r) => r.maxNs));
  const errnos: Record<string, number> = {};
  for (const r of done) for (const [k, v] of Object.entries(r.errnos)) errnos[k] = (errnos[k] ?? 0) + v;
  const perOp = (ns: number): number => (ops > 0 ? round3(ns / 1000 / ops) : 0);
  const us = (ns: number): number => round3(ns / 1000);
  const result: WorkloadResult = {
    kind: 'result',
    workload,
    backend: backendLabel,
    ...(round !== undefined ? { round } : {}),
    depth: o.depth,
    queues: o.queues,
    threads: o.threads,
    bs: o.bs,
    ops,
    requests,
    seconds: round3(seconds),
    ops_per_s: round3(opsPerS),
    mib_per_s: round3(bytesPerS / 1048576),
    min_us: us(hist.minNs()),
    mean_us: us(hist.meanNs()),
    p50_us: us(hist.quantileNs(0.5)),
    p90_us: us(hist.quantileNs(0.9)),
    p99_us: us(hist.quantileNs(0.99)),
    p999_us: us(hist.quantileNs(0.999)),
    max_us: us(hist.maxNs),
    errors,
    errors_by_errno: errnos,
    backend_cpu_us_per_op: cpu ? perOp(cpu1 - cpu0) : null,
    client_cpu_us_per_op: perOp(self1 - self0),
    verified_bytes: verified,
    timeline,
    latency_histogram: hist.bucketsUs(),
    // the driver threads' part; the setup and teardown requests are added once the run is over
    sent: {
      requests_by_opcode: Object.fromEntries(
        Array.from({ length: OPCODE_SLOTS }, (_, op) => [opcodeName(op), sum(C_SENT + op)] as const).filter(([, n]) => n > 0),
      ),
      read_bytes: sum(C_READ_DATA),
      write_bytes: sum(C_WRITE_DATA),
    },
  };
  return { ok: true, result, reports: done, writeSeed };
}

/** The read-back of the last writes, then FORGET and RELEASE of what the run holds. */
function afterwards(f: MainFuse, fx: ReturnType<typeof prepareFixture>, reports: ThreadReport[], writeSeed: number, bs: number, scratchName: string): string | undefined {
  const offs = [...new Set(reports.flatMap((r) => r.written))];
  for (const off of offs) {
    const bad = f.checkPattern(fx.wfile, fx.wfileFh, off, bs, writeSeed);
    if (bad >= 0) return `the data read back after the WRITEs differs at byte ${off + bad} of the file`;
  }
  const counts = new Map<number, { node: [number, number]; n: number }>();
  for (const r of reports) {
    for (const [i, lo, hi, n] of r.lookups) {
      const c = counts.get(i);
      if (c) c.n += n;
      else counts.set(i, { node: [lo, hi], n });
    }
  }
  for (const { node, n } of counts.values()) f.forget(node, n);
  f.release(fx.file, fx.fileFh);
  f.release(fx.wfile, fx.wfileFh);
  f.rmdir(fx.top, scratchName);
  for (const node of f.looked) f.forget(node, 1);
  return undefined;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function align(v: number, a: number): number {
  return Math.ceil(v / a) * a;
}
