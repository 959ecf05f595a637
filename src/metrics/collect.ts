/**
 * The Prometheus registry (prom-client): every metric is read at scrape time from where the daemon
 * keeps it anyway. The workers' request counters are summed over their blocks (counters.ts); queue
 * depths are read from the queue table in shared memory; tables, guest memory and the vhost-user
 * counts come from the control plane. Nothing here runs per request. Names and labels:
 * docs/metrics.md (labels take bounded values only: opcode, errno, queue and worker numbers).
 */
import { opcodeName } from '../abi/fuse.js';
import { errnoName, native, selfStatusKib } from '../native.js';
import {
  BUCKETS, ERR_AT, ERRNO_SLOTS, LATENCY_BOUNDS, O, OP_AT, OP_STRIDE, OPCODE_SLOTS, Q, QUEUE_AT, QUEUE_SLOTS, QUEUE_STRIDE, W,
  WORKER_SLOTS,
} from './counters.js';
import { collectDefaultMetrics, Registry } from 'prom-client';

/** A queue as the control plane sees it at scrape time. */
export interface QueueSnapshot {
  index: number;
  size: number;
  /** chains popped and not yet answered */
  inFlight: number;
  /** chains the driver made available that no worker has popped yet */
  pending: number;
  broken: boolean;
}

/** The vhost-user side's counts (src/vhost/stats.ts keeps them; this layer sits below vhost). */
export interface VhostCounts {
  connections: number;
  disconnects: number;
  refusedConnections: number;
  /** messages handled / answered with a failure, by request name */
  messages: ReadonlyMap<string, number>;
  rejected: ReadonlyMap<string, number>;
}

/** Where the daemon's state is read from (src/daemon.ts fills it). */
export interface MetricsSources {
  counters: SharedArrayBuffer;
  workers: number;
  queues(): QueueSnapshot[];
  tables(): { inodes: number; inodesMax: number; handles: number; handlesMax: number };
  memory(): { bytes: number; regions: number; apertureHits: number; apertureMisses: number };
  vhost: VhostCounts;
  connected(): boolean;
  /** the info metrics' labels */
  build: Record<string, string>;
  config: Record<string, string>;
}

type Labels = Record<string, string | number>;
interface Sample {
  value: number;
  labels: Labels;
  metricName?: string;
}
type Kind = 'counter' | 'gauge' | 'histogram';

/** A metric whose samples a function computes at scrape time (prom-client's registry takes any get()). */
class ScrapeMetric {
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: Kind,
    private readonly read: () => Sample[],
  ) {}
  get(): { name: string; help: string; type: Kind; aggregator: string; values: Sample[] } {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.read() };
  }
  reset(): void {}
}

/** errno slot → its name (`ENOENT`); slot 0 = `other`. */
export function errnoLabel(e: number): string {
  return e === 0 ? 'other' : errnoName(e);
}

export const LE_LABELS = [...LATENCY_BOUNDS.map(String), '+Inf'];

/** Sums slot `i` over every worker's block. */
function summer(c: Float64Array, workers: number): (i: number) => number {
  return (i) => {
    let s = 0;
    for (let w = 0; w < workers; w++) s += c[w * WORKER_SLOTS + i]!;
    return s;
  };
}

export function buildRegistry(src: MetricsSources): Registry {
  const reg = new Registry();
  const c = new Float64Array(src.counters);
  const sum = summer(c, src.workers);
  const add = (name: string, help: string, type: Kind, read: () => Sample[]): void => {
    reg.registerMetric(new ScrapeMetric(name, help, type, read) as never);
  };
  const one = (value: number, labels: Labels = {}): Sample[] => [{ value, labels }];
  /** opcodes that have served at least one request: the only ones with series */
  const seenOps = (): number[] => {
    const ops: number[] = [];
    for (let op = 0; op < OPCODE_SLOTS; op++) if (sum(OP_AT + op * OP_STRIDE + O.REQUESTS) > 0) ops.push(op);
    return ops;
  };

  // ---- FUSE requests ----
  add('virtiofsd_fuse_requests_total', 'FUSE requests served, by opcode.', 'counter', () =>
    seenOps().map((op) => ({ value: sum(OP_AT + op * OP_STRIDE + O.REQUESTS), labels: { opcode: opcodeName(op) } })),
  );
  add('virtiofsd_fuse_errors_total', 'FUSE requests answered with an error, by opcode and errno.', 'counter', () => {
    const out: Sample[] = [];
    for (const op of seenOps()) {
      if (sum(OP_AT + op * OP_STRIDE + O.ERRORS) === 0) continue;
      for (let e = 0; e < ERRNO_SLOTS; e++) {
        const v = sum(ERR_AT + op * ERRNO_SLOTS + e);
        if (v > 0) out.push({ value: v, labels: { opcode: opcodeName(op), errno: errnoLabel(e) } });
      }
    }
    return out;
  });
  add(
    'virtiofsd_fuse_request_duration_seconds',
    'Time to serve a FUSE request in a worker, from taking it off the ring to its reply; observed for every request a worker finds after idling and 1 in 16 of those served back to back.',
    'histogram',
    () => {
      const out: Sample[] = [];
      for (const op of seenOps()) {
        const at = OP_AT + op * OP_STRIDE;
        const opcode = opcodeName(op);
        let cum = 0;
        for (let b = 0; b < BUCKETS; b++) {
          cum += sum(at + O.BUCKET0 + b);
          out.push({ metricName: 'virtiofsd_fuse_request_duration_seconds_bucket', value: cum, labels: { opcode, le: LE_LABELS[b]! } });
        }
        out.push({ metricName: 'virtiofsd_fuse_request_duration_seconds_sum', value: sum(at + O.SECONDS), labels: { opcode } });
        out.push({ metricName: 'virtiofsd_fuse_request_duration_seconds_count', value: cum, labels: { opcode } });
      }
      return out;
    },
  );
  add('virtiofsd_fuse_read_bytes_total', 'File data returned by READ requests.', 'counter', () => one(sum(W.READ_BYTES)));
  add('virtiofsd_fuse_write_bytes_total', 'File data written by WRITE requests.', 'counter', () => one(sum(W.WRITE_BYTES)));

  // ---- queues ----
  const perQueue = (slot: number): (() => Sample[]) => () => {
    const out: Sample[] = [];
    for (let q = 0; q < QUEUE_SLOTS; q++) {
      const v = sum(QUEUE_AT + q * QUEUE_STRIDE + slot);
      if (v > 0) out.push({ value: v, labels: { queue: String(q) } });
    }
    return out;
  };
  add('virtiofsd_queue_requests_total', 'Descriptor chains served, by virtqueue (0 is hiprio).', 'counter', perQueue(Q.REQUESTS));
  add('virtiofsd_queue_kicks_total', 'Worker wakeups by a virtqueue\'s kick eventfd.', 'counter', perQueue(Q.KICKS));
  add('virtiofsd_queue_notifications_total', 'Used-buffer notifications sent to the driver (call eventfd writes).', 'counter', perQueue(Q.NOTIFIES));
  add(
    'virtiofsd_queue_notifications_suppressed_total',
    'Notification decisions where the driver did not want one (EVENT_IDX or NO_INTERRUPT).',
    'counter',
    perQueue(Q.SUPPRESSED),
  );
  add('virtiofsd_queue_bad_chains_total', 'Descriptor chains returned unused because they broke the virtio rules.', 'counter', perQueue(Q.BAD_CHAINS));
  const snap = (f: (s: QueueSnapshot) => number): (() => Sample[]) => () => src.queues().map((s) => ({ value: f(s), labels: { queue: String(s.index) } }));
  add('virtiofsd_queue_in_flight', 'Chains taken off the ring and not answered yet.', 'gauge', snap((s) => s.inFlight));
  add('virtiofsd_queue_pending', 'Chains the driver made available that no worker has taken yet.', 'gauge', snap((s) => s.pending));
  add('virtiofsd_queue_size', 'Ring size (descriptors) of each running virtqueue.', 'gauge', snap((s) => s.size));
  add('virtiofsd_queue_broken', '1 for a virtqueue stopped because the driver corrupted it (until a device reset).', 'gauge', snap((s) => (s.broken ? 1 : 0)));

  // ---- workers ----
  const perWorker = (slot: number): (() => Sample[]) => () =>
    Array.from({ length: src.workers }, (_, w) => ({ value: c[w * WORKER_SLOTS + slot]!, labels: { worker: String(w) } }));
  add('virtiofsd_workers', 'Worker threads serving the virtqueues.', 'gauge', () => one(src.workers));
  add('virtiofsd_worker_busy_seconds_total', 'Seconds each worker spent serving requests.', 'counter', perWorker(W.BUSY_SECONDS));
  add('virtiofsd_worker_requests_total', 'Descriptor chains each worker served.', 'counter', perWorker(W.REQUESTS));
  add('virtiofsd_worker_wakeups_total', 'Times each worker woke from waiting for a kick.', 'counter', perWorker(W.WAKEUPS));
  add('virtiofsd_worker_poll_hits_total', 'Times polling the rings before sleeping found a request.', 'counter', perWorker(W.POLL_HITS));
  add('virtiofsd_worker_hand_ons_total', 'Times a slow request woke another worker for the requests behind it.', 'counter', perWorker(W.HAND_ONS));
  add('virtiofsd_worker_stall_takeovers_total', 'Times a worker served the rings because another was stuck in a request.', 'counter', perWorker(W.STALL_TAKEOVERS));

  // ---- tables, memory, vhost-user ----
  add('virtiofsd_inodes', 'Inodes the guest holds (each an O_PATH descriptor).', 'gauge', () => one(src.tables().inodes));
  add('virtiofsd_inodes_max', 'Capacity of the inode table.', 'gauge', () => one(src.tables().inodesMax));
  add('virtiofsd_handles', 'Open file and directory handles.', 'gauge', () => one(src.tables().handles));
  add('virtiofsd_handles_max', 'Capacity of the handle table.', 'gauge', () => one(src.tables().handlesMax));
  add('virtiofsd_guest_memory_bytes', 'Guest RAM mapped from the frontend.', 'gauge', () => one(src.memory().bytes));
  add('virtiofsd_guest_memory_regions', 'Guest memory regions mapped.', 'gauge', () => one(src.memory().regions));
  add('virtiofsd_guest_memory_aperture_lookups_total', 'Guest memory reached through apertures, by result.', 'counter', () => {
    const m = src.memory();
    return [
      { value: m.apertureHits, labels: { result: 'hit' } },
      { value: m.apertureMisses, labels: { result: 'miss' } },
    ];
  });
  const v = src.vhost;
  add('virtiofsd_vhost_user_connected', '1 while a vhost-user frontend is connected.', 'gauge', () => one(src.connected() ? 1 : 0));
  add('virtiofsd_vhost_user_connections_total', 'vhost-user frontends accepted.', 'counter', () => one(v.connections));
  add('virtiofsd_vhost_user_disconnects_total', 'vhost-user frontends that went away or were dropped.', 'counter', () => one(v.disconnects));
  add('virtiofsd_vhost_user_refused_connections_total', 'Connections refused because a frontend was already connected.', 'counter', () => one(v.refusedConnections));
  const byRequest = (m: ReadonlyMap<string, number>): (() => Sample[]) => () => [...m].map(([request, value]) => ({ value, labels: { request } }));
  add('virtiofsd_vhost_user_messages_total', 'vhost-user messages handled, by request.', 'counter', byRequest(v.messages));
  add('virtiofsd_vhost_user_rejected_messages_total', 'vhost-user messages answered with a failure, by request.', 'counter', byRequest(v.rejected));

  add('virtiofsd_build_info', 'The daemon\'s version and runtime (value 1).', 'gauge', () => one(1, src.build));
  add('virtiofsd_config_info', 'The configuration the daemon serves with (value 1).', 'gauge', () => one(1, src.config));
  collectDefaultMetrics({ register: reg });
  // Three of prom-client's defaults are gauges named *_total, which `promtool check metrics` rejects
  // (the _total suffix is for counters); the per-type gauges without the suffix carry the same figures.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    reg.removeSingleMetric(name);
  }
  // prom-client reads these from /proc/self by path, which has none inside the sandbox (the root is the
  // shared directory): the same series, read through the addon's /proc/self/fd fd instead.
  for (const name of ['process_open_fds', 'process_resident_memory_bytes', 'process_virtual_memory_bytes', 'process_heap_bytes']) {
    reg.removeSingleMetric(name);
  }
  add('process_open_fds', 'Number of open file descriptors.', 'gauge', () => {
    const n = native.procFdCount();
    return n < 0 ? [] : one(n);
  });
  const statusKib = (field: string): Sample[] => {
    const kib = selfStatusKib(field);
    return kib < 0 ? [] : one(kib * 1024);
  };
  add('process_resident_memory_bytes', 'Resident memory size in bytes.', 'gauge', () => statusKib('VmRSS'));
  add('process_virtual_memory_bytes', 'Virtual memory size in bytes.', 'gauge', () => statusKib('VmSize'));
  add('process_heap_bytes', 'Process heap size in bytes.', 'gauge', () => statusKib('VmData'));
  return reg;
}
