/**
 * The daemon: composes the layers on the main thread (control plane) and starts the worker pool.
 *   shared WebAssembly.Memory ── AS module (main's instance) ── GuestMemory / VirtioFsDevice
 *   WorkerPool (piscina) ── worker.ts in each thread: QueueRunner + FuseServer + Passthrough
 *   VhostUserListener ── Connection ── FrontendReqHandler ── VirtioFsDevice
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Config, resolveGroup } from './config.js';
import type { Logger } from './log.js';
import { errnoName, native, selfStatusKib } from './native.js';
import type { WorkerInit } from './worker-init.js';
import { describeFault, GuestMemoryFaults } from './memory/faults.js';
import { MAX_MEM_SLOTS, sharedBuffer } from './memory/guest-memory.js';
import { windowMiB } from './memory/window.js';
import { Passthrough } from './fs/passthrough.js';
import { VirtioFsDevice } from './virtio/device.js';
import { WorkerPool } from './virtio/pool.js';
import { type VqExports, createSharedMemory, guestTableOf, loadVirtqueueModule } from './virtio/wasm.js';
import { VhostUserListener } from './vhost/listener.js';
import { VhostUserStats } from './vhost/stats.js';
import { buildRegistry, type QueueSnapshot } from './metrics/collect.js';
import { counterBuffer } from './metrics/counters.js';
import { MetricsServer } from './metrics/http.js';
import { enterSandbox } from './sandbox/namespaces.js';
import { sealSyslogPath } from './syslog.js';
import { installSeccomp } from './sandbox/seccomp.js';

/**
 * Queues offered (GET_QUEUE_NUM): the hiprio queue and up to 15 request queues, so QEMU's
 * `vhost-user-fs-pci,num-request-queues=N` works; a queue runs only once the frontend sets it up.
 */
export const DEFAULT_NUM_QUEUES = 16;

/** What we ask for RLIMIT_NOFILE unless --rlimit-nofile says otherwise (the inode table holds 2^20). */
export const DEFAULT_RLIMIT_NOFILE = 1_000_000;

export class Daemon {
  private listener: VhostUserListener | null = null;
  private pool: WorkerPool | null = null;
  private fs: Passthrough | null = null;
  private faults: GuestMemoryFaults | null = null;
  /** main's instance of the AS module: the inode and handle tables live in its shared memory */
  private vq: VqExports | null = null;
  private device: VirtioFsDevice | null = null;
  private metrics: MetricsServer | null = null;
  private readonly vhostStats = new VhostUserStats();
  /** between the end of start() and the beginning of stop(): what /healthz and /readyz report */
  private serving = false;

  constructor(
    private readonly cfg: Config,
    readonly log: Logger,
    private readonly version = 'unknown',
  ) {}

  async start(): Promise<void> {
    const { cfg, log } = this;
    // Modes come from the guest's requests as they are; the kernel already applied the guest's umask.
    process.umask(0);
    // Every inode the guest holds is an open O_PATH fd (and every open file one more).
    // --rlimit-nofile=N sets the limit to N (0: leaves it as it is), as the reference daemon does;
    // without it the limit is raised as far as we may.
    const want = cfg.rlimitNofile;
    const nofile =
      want === undefined
        ? native.raiseNofile(DEFAULT_RLIMIT_NOFILE)
        : want === 0
          ? native.raiseNofile(1) // never lowers: this only reads the limit in force
          : native.setNofile(want);
    if (nofile < 0) throw new Error(`--rlimit-nofile=${want ?? DEFAULT_RLIMIT_NOFILE}: cannot set the open-file limit: ${errnoName(-nofile)}`);
    else if (nofile < 65536) log.warn(`open-file limit is ${nofile}: a guest that keeps many files cached may see ENFILE`);
    else log.debug(`open-file limit ${nofile}`);
    const memory = createSharedMemory();
    const vq = await loadVirtqueueModule(memory);
    this.vq = vq;
    native.setWindow(sharedBuffer(memory), guestTableOf(vq.layout));

    const dir = path.resolve(cfg.sharedDir!);
    // The session owner's passthrough opens the root (node id 1 in the shared inode table) and
    // /proc/self/fd; each worker builds its own on the same tables and fd.
    this.fs = Passthrough.open(dir, vq);
    // The addon names fds by their /proc/self/fd links through this fd from now on (/proc has no path
    // inside the sandbox).
    native.setProcFd(this.fs.procFd);
    vq.handleInit();

    // The request counters exist only when they are served: without --metrics-address workers neither
    // time nor count requests (docs/metrics.md).
    let counters: SharedArrayBuffer | null = null;
    if (cfg.metricsAddress) {
      counters = counterBuffer(cfg.threadPoolSize);
      // Listening comes before the workers start, so that a bad address fails the start at once.
      this.metrics = new MetricsServer(cfg.metricsAddress, this.registry(memory, vq, counters), {
        serving: () => this.serving,
        connected: () => this.listener?.connected ?? false,
      }, log);
      await this.metrics.listen();
    }

    const init: WorkerInit = {
      procFdDir: this.fs.procFd,
      cache: cfg.cache,
      writeback: cfg.writeback,
      readdirplus: cfg.readdirplus,
      allowDevices: cfg.deviceNodes,
      allowDirectIo: cfg.allowDirectIo,
      xattr: cfg.xattr,
      xattrmap: cfg.xattrmap, posixAcl: cfg.posixAcl,
      securityLabel: cfg.securityLabel, allowMmap: cfg.allowMmap,
      timeout: cfg.timeout,
      syslog: cfg.syslog,
      announceSubmounts: cfg.announceSubmounts,
      readOnly: cfg.readOnly,
      sandboxed: cfg.sandbox !== 'none',
      translateUid: cfg.translateUid,
      translateGid: cfg.translateGid,
      logLevel: cfg.logLevel,
      logFormat: cfg.logFormat,
      counters,
    };
    const here = path.dirname(fileURLToPath(import.meta.url));
    // A test knob (docs/testing.md): how long a pause waits for a request blocked in the file system.
    const pauseTimeoutMs = Number(process.env.VIRTIOFSD_TS_PAUSE_TIMEOUT_MS) || undefined;
    if (pauseTimeoutMs) log.warn(`VIRTIOFSD_TS_PAUSE_TIMEOUT_MS=${pauseTimeoutMs}: pauses give up after ${pauseTimeoutMs} ms`);
    this.pool = new WorkerPool(vq, memory, {
      size: cfg.threadPoolSize,
      filename: path.join(here, 'worker.js'),
      workerData: { init },
      log,
      pauseTimeoutMs,
      // inside the sandbox no new thread can load its code: one started now stands by for a worker that dies
      spares: cfg.sandbox === 'none' ? 0 : 1,
      newThreads: cfg.sandbox === 'none',
      onNoWorkers: () => {
        log.error('no worker thread is left: exiting, so that the frontend sees the backend gone rather than a hang');
        native.exitNow(1);
      },
    });
    await this.pool.start();
    // A test knob (docs/testing.md): serve every guest through apertures, however small.
    const forceApertures = process.env.VIRTIOFSD_TS_APERTURES === 'always';
    if (forceApertures) log.warn('VIRTIOFSD_TS_APERTURES=always: guest memory is reached through apertures whatever its size');
    const device = new VirtioFsDevice(vq, memory, this.pool, DEFAULT_NUM_QUEUES, log, { forceApertures });
    this.device = device;
    // The guest's inodes and open files die with its connection (the next boot starts from FUSE_INIT).
    device.resetHooks.push(() => {
      vq.inodeDropAll();
      for (let fd = vq.inodeDrainNext(); fd >= 0; fd = vq.inodeDrainNext()) native.close(fd);
      for (let fd = vq.handleDrainNext(); fd >= 0; fd = vq.handleDrainNext()) native.close(fd);
    });
    // A frontend that truncates guest RAM it shares makes our next access to it raise SIGBUS: survive
    // it and drop that frontend instead (docs/internals.md, "Guest RAM that shrinks").
    // A fault reported after its memory is gone (a late one of a connection already dropped, or the
    // frontend replaced the table since) must not end the connection that holds the window now.
    this.faults = GuestMemoryFaults.guard(memory, vq.layout, (f) => {
      const where = describeFault(device.memory, f.offset);
      const what = `${where.text}; ${f.pages} page(s) faulted`;
      if (where.owned) this.listener?.memoryFault(what);
      else if (this.listener?.connected) log.warn(`guest memory fault in memory no longer mapped (the frontend truncated it, then replaced it): ${what}`);
      else log.debug(`guest memory fault after its connection was closed: ${what}`);
    });
    const socketGid = cfg.socketGroup !== undefined ? resolveGroup(cfg.socketGroup) : undefined;
    this.listener = new VhostUserListener(device, { socketPath: cfg.socketPath, fd: cfg.fd, socketGid, log, stats: this.vhostStats });
    this.listener.listen();
    // Everything the daemon reaches by path is open by now: confine it (src/sandbox/).
    enterSandbox(cfg.sandbox, dir, { root: this.fs.rootFd, procSelf: this.fs.procFd }, cfg.caps, log);
    if (cfg.sandbox !== 'none') sealSyslogPath();
    log.info(
      `serving ${dir} (cache=${cfg.cache}, writeback=${cfg.writeback ? 'on' : 'off'}, xattr=${cfg.xattr ? 'on' : 'off'}, ` +
        `${cfg.readOnly ? 'readonly, ' : ''}${cfg.threadPoolSize} worker threads)`,
    );
    const L = vq.layout;
    log.info(
      `guest memory: any size, up to ${MAX_MEM_SLOTS} regions; resident in the ${windowMiB(L)} MiB ` +
        `window when it fits, beyond that reached through ${L.APERTURE_SLOT_SIZE >> 20} MiB apertures (docs/operations.md)`,
    );
    this.serving = true;
    if (cfg.socketPath) {
      log.info(
        `attach a guest with: qemu-system-x86_64 ... -object memory-backend-memfd,id=mem,size=<RAM>,share=on -numa node,memdev=mem ` +
          `-chardev socket,id=vfs,path=${path.resolve(cfg.socketPath)} -device vhost-user-fs-pci,chardev=vfs,tag=<tag>` +
          ` ; in the guest: mount -t virtiofs <tag> /mnt`,
      );
    }
    // Last: everything the daemon loads and every thread it starts exists now (docs/seccomp.md).
    installSeccomp(cfg.seccomp, log);
  }

  /**
   * One line for SIGUSR1 (docs/operations.md): what the tables hold, whether a frontend is connected,
   * and the process's resident memory and open descriptors, so that a soak or an operator can watch
   * for leaks without a debugger. The counts are read while workers may be changing them: a snapshot.
   */
  status(): string {
    const inodes = this.vq?.inodeCount() ?? 0;
    const handles = this.vq?.handleCount() ?? 0;
    const sessions = this.listener?.connected ? 1 : 0;
    return `status: inodes=${inodes} handles=${handles} sessions=${sessions} rss_kib=${rssKib()} fds=${openFds()}`;
  }

  /** SIGTERM/SIGINT: stop accepting, finish in-flight requests, release everything. */
  async stop(): Promise<void> {
    this.serving = false;
    await this.listener?.close();
    this.listener = null;
    this.faults?.stop();
    this.faults = null;
    await this.pool?.stop();
    this.pool = null;
    if (this.fs) native.setProcFd(-1);
    this.fs?.close();
    this.fs = null;
    await this.metrics?.close();
    this.metrics = null;
  }

  /** The metrics registry over this daemon's state (src/metrics/collect.ts); every source is read at scrape time. */
  private registry(memory: WebAssembly.Memory, vq: VqExports, counters: SharedArrayBuffer) {
    const { cfg } = this;
    const L = vq.layout;
    const qwords = new Uint32Array(sharedBuffer(memory), L.QUEUE_BASE, (L.MAX_QUEUES * L.QUEUE_STRIDE) >>> 2);
    const field = (q: number, off: number): number => qwords[(q * L.QUEUE_STRIDE + off) >>> 2]!;
    return buildRegistry({
      counters,
      workers: cfg.threadPoolSize,
      queues: (): QueueSnapshot[] =>
        (this.device?.activeQueues() ?? []).map((q) => ({
          index: q,
          size: field(q, L.Q_SIZE),
          inFlight: (field(q, L.Q_LAST_AVAIL) - field(q, L.Q_NEXT_USED)) & 0xffff,
          pending: vq.queuePending(q),
          broken: field(q, L.Q_BROKEN) !== 0,
        })),
      tables: () => ({ inodes: vq.inodeCount(), inodesMax: L.INODE_MAX, handles: vq.handleCount(), handlesMax: L.HANDLE_MAX }),
      memory: () => {
        const m = this.device?.memory;
        if (!m) return { bytes: 0, regions: 0, apertureHits: 0, apertureMisses: 0 };
        const a = m.apertureStats();
        return { bytes: Number(m.totalBytes), regions: m.mapped.length, apertureHits: Number(a.hits), apertureMisses: Number(a.misses) };
      },
      vhost: this.vhostStats,
      connected: () => this.listener?.connected ?? false,
      build: { version: this.version, node_version: process.version },
      config: {
        cache: cfg.cache,
        writeback: String(cfg.writeback),
        xattr: String(cfg.xattr),
        readdirplus: String(cfg.readdirplus),
        announce_submounts: String(cfg.announceSubmounts),
        allow_direct_io: String(cfg.allowDirectIo),
        read_only: String(cfg.readOnly),
        thread_pool_size: String(cfg.threadPoolSize),
      },
    });
  }
}

/** VmRSS of this process in KiB (/proc/self/status, through the addon: it works in the sandbox); -1 without /proc. */
function rssKib(): number {
  return selfStatusKib('VmRSS');
}

/** Open descriptors of this process; -1 without /proc. */
function openFds(): number {
  const n = native.procFdCount();
  return n < 0 ? -1 : n;
}
