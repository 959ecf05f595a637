/**
 * What the control plane hands each worker thread (piscina `workerData`): the shared memory and the
 * settings the worker's file system and FUSE server are built with. Plain data, structured-cloned
 * into every thread; shared by src/daemon.ts (which fills it) and src/worker.ts (which reads it).
 */
import type { Config } from './config.js';

/** The per-daemon settings every worker starts with. */
export interface WorkerInit {
  procFdDir: number;
  cache: Config['cache'];
  writeback: boolean;
  readdirplus: boolean;
  allowDevices: boolean;
  allowDirectIo: boolean;
  /** serve extended attributes (--xattr, -o xattr) */
  xattr: boolean;
  /** --xattrmap rules (checked by the control plane; each worker compiles them), absent: the default policy */
  xattrmap?: string;
  /** --posix-acl */
  posixAcl: boolean;
  /** --security-label: negotiate FUSE_SECURITY_CTX and label new nodes */
  securityLabel: boolean;
  /** --allow-mmap: negotiate FUSE_DIRECT_IO_ALLOW_MMAP */
  allowMmap: boolean;
  /** entry/attr validity override in seconds (-o timeout=) */
  timeout?: number;
  /** log to syslog (--syslog) */
  syslog: boolean;
  /** --announce-submounts */
  announceSubmounts: boolean;
  /** --readonly: every request that would change the share answers EROFS */
  readOnly: boolean;
  /** the daemon confines itself once the workers are up (src/sandbox/): nothing is reached by path after */
  sandboxed: boolean;
  /** --translate-uid / --translate-gid rules (checked by the control plane; each worker builds its tables) */
  translateUid: string[];
  translateGid: string[];
  logLevel: Config['logLevel'];
  logFormat: Config['logFormat'];
  /**
   * The request counters (src/metrics/counters.ts), a block per worker, when metrics are served
   * (--metrics-address); null: the worker neither times nor counts requests by opcode.
   */
  counters: SharedArrayBuffer | null;
}

/** piscina's workerData for src/worker.ts (the pool adds `memory`). */
export interface WorkerData {
  memory: WebAssembly.Memory;
  init: WorkerInit;
}
