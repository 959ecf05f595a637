/**
 * The two vhost-user-fs backends the tests and benches run: ours (bin/virtiofsd-ts.js under this
 * node) and the reference, QEMU 7.2's C virtiofsd. Spawn, wait for the listening socket, stop.
 *
 * The reference serves one connection and exits when QEMU disconnects: start a fresh one (the stale
 * socket file is removed first) for every boot. It leaves xattrs off unless given `-o xattr`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REFERENCE_DAEMON, repoRoot } from './locations.js';

export type DaemonKind = 'ours' | 'reference';

export interface StartDaemonOptions {
  sharedDir: string;
  socketPath: string;
  /** Appended to the command line. For 'reference' default is `-o cache=auto` unless given. */
  extraArgs?: string[];
  /** Replace the default argument spelling entirely (socket and dir are not added). */
  args?: string[];
  /** For 'ours': node flags before the script (e.g. --cpu-prof, which NODE_OPTIONS refuses). */
  nodeArgs?: string[];
  /** For 'ours': another checkout's bin/virtiofsd-ts.js (a baseline build to compare with). */
  bin?: string;
  socketTimeoutMs?: number;
  /** Run as this uid/gid (the caller must be root): a non-root daemon, e.g. rootless mode (docs/sandbox.md). */
  uid?: number;
  gid?: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface DaemonHandle {
  kind: DaemonKind;
  child: ChildProcess;
  /**
   * The process that serves: for ours under the namespace sandbox (the default as root) the launcher's
   * child, where fds, memory, capabilities and signals are to be looked at; otherwise the spawned one.
   */
  pid: number;
  /** the spawned process (the launcher under the sandbox): stop() signals it, and it passes signals on */
  spawnedPid: number;
  socketPath: string;
  /** stdout + stderr so far. */
  logs(): string;
  /**
   * Resolves with the logs once they match `pattern`, or with what there is after `timeoutMs`. A line
   * the daemon has written may not have reached our pipe reader yet (the socket can appear first).
   */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves when the process exits. */
  exited: Promise<ExitStatus>;
  exitCode(): number | null | undefined; // undefined while running
  /** SIGTERM, wait up to `graceMs`, then SIGKILL. Returns the exit status. */
  stop(graceMs?: number): Promise<ExitStatus>;
}

export function daemonCommand(kind: DaemonKind, o: StartDaemonOptions): { cmd: string; args: string[] } {
  if (kind === 'ours') {
    const bin = o.bin ?? path.join(repoRoot(), 'bin', 'virtiofsd-ts.js');
    const args = o.args ?? [`--socket-path=${o.socketPath}`, `--shared-dir=${o.sharedDir}`, ...(o.extraArgs ?? [])];
    return { cmd: process.execPath, args: [...(o.nodeArgs ?? []), bin, ...args] };
  }
  const extra = o.extraArgs ?? [];
  const hasCache = extra.some((a) => a.startsWith('cache=') || a.includes('cache='));
  const args = o.args ?? [
    `--socket-path=${o.socketPath}`,
    '-o',
    `source=${o.sharedDir}`,
    ...(hasCache ? [] : ['-o', 'cache=auto']),
    ...extra,
  ];
  return { cmd: REFERENCE_DAEMON, args };
}

/** Spawns the daemon and resolves once its socket exists (QEMU or a session can connect). */
export async function startDaemon(kind: DaemonKind, o: StartDaemonOptions): Promise<DaemonHandle> {
  fs.rmSync(o.socketPath, { force: true });
  const { cmd, args } = daemonCommand(kind, o);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], uid: o.uid, gid: o.gid });
  let log = '';
  child.stdout!.on('data', (c: Buffer) => (log += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  let status: ExitStatus | undefined;
  const exited = new Promise<ExitStatus>((resolve) => {
    child.on('exit', (code, signal) => {
      status = { code, signal };
      resolve(status);
    });
    child.on('error', (err) => {
      log += `spawn error: ${err.message}\n`;
      status = { code: -1, signal: null };
      resolve(status);
    });
  });
  const handle: DaemonHandle = {
    kind,
    child,
    pid: child.pid ?? -1,
    spawnedPid: child.pid ?? -1,
    socketPath: o.socketPath,
    logs: () => log,
    async waitForLog(pattern, timeoutMs = 5000) {
      const until = Date.now() + timeoutMs;
      while (!pattern.test(log) && status === undefined && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 20));
      }
      return log;
    },
    exited,
    exitCode: () => (status ? status.code : undefined),
    async stop(graceMs = 10000) {
      if (status) return status;
      child.kill('SIGTERM');
      const t = setTimeout(() => {
        if (!status) child.kill('SIGKILL');
      }, graceMs);
      const s = await exited;
      clearTimeout(t);
      return s;
    },
  };
  const deadline = Date.now() + (o.socketTimeoutMs ?? 15000);
  for (;;) {
    if (status) {
      throw new Error(
        `${kind} daemon exited (code ${status.code}, signal ${status.signal}) before creating ${o.socketPath}:\n${log}`,
      );
    }
    let listening = false;
    try {
      listening = fs.statSync(o.socketPath).isSocket();
    } catch {
      /* not yet */
    }
    if (listening) {
      if (kind === 'ours' && o.bin === undefined) {
        // The socket appears just before the daemon confines itself and says it serves: wait for that,
        // so that what a test then looks at (capabilities, the root, fds) is the steady state.
        await handle.waitForLog(/\] serving /, 10_000);
        handle.pid = servingChild(handle.spawnedPid) ?? handle.spawnedPid;
      }
      return handle;
    }
    if (Date.now() > deadline) {
      await handle.stop(2000);
      throw new Error(`${kind} daemon did not create ${o.socketPath} in time:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The launcher's child (the daemon under the namespace sandbox), if pid has one. */
export function servingChild(pid: number): number | null {
  try {
    const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return kids === '' ? null : Number(kids.split(/\s+/)[0]);
  } catch {
    return null;
  }
}
