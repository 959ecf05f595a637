/**
 * The sandbox's two halves (docs/sandbox.md).
 *
 * Capabilities and a new mount namespace belong to one thread, and Node runs several before any of our
 * code. So `--sandbox=namespace` starts over: the launcher (the process the operator started) clones a
 * child into new mount, pid, IPC and network namespaces, which execs the same command line; the
 * launcher then only waits for it and passes signals on. The child (pid 1 of its namespace) sets up
 * as usual, then enterSandbox() makes the shared directory its root and drops capabilities on every
 * thread. `--sandbox=chroot` needs no launcher: chroot moves every thread's root at once.
 */
import fs from 'node:fs';
import { errnoName, native, type SandboxFailure } from '../native.js';
import type { Logger } from '../log.js';
import { capMask } from './caps.js';

export type SandboxMode = 'namespace' | 'chroot' | 'none';

/** Set by the launcher for its child: the launcher's mount namespace (the inode of /proc/self/ns/mnt). */
export const OUTER_NS_ENV = 'VIRTIOFSD_TS_SANDBOX_OUTER_MNTNS';

// linux/sched.h
const CLONE_NEWNS = 0x00020000;
const CLONE_NEWIPC = 0x08000000;
const CLONE_NEWPID = 0x20000000;
const CLONE_NEWNET = 0x40000000;

/** The signals the launcher passes on to the daemon. */
const FORWARDED = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGQUIT'] as const;

function mntNs(): number {
  return fs.statSync('/proc/self/ns/mnt').ino;
}

/**
 * Is this process the launcher's child, in namespaces of its own? Checked, not taken from the
 * environment alone: pivot_root in the host's mount namespace would move the root of every process
 * there that shares it.
 */
export function isLaunched(): boolean {
  const outer = process.env[OUTER_NS_ENV];
  if (outer === undefined) return false;
  return process.pid === 1 && String(mntNs()) !== outer;
}

export interface LaunchOptions {
  /** also a network namespace of its own (not when metrics are served over TCP: they would be unreachable) */
  network: boolean;
  /** fds the daemon needs beyond stdio (--fd) */
  fds: number[];
  log: Logger;
}

/**
 * The launcher: runs the same command line in new namespaces and waits for it. Returns the exit code
 * to end with: the daemon's, or 128 + the signal that ended it.
 */
export async function runLauncher(o: LaunchOptions): Promise<number> {
  const script = process.argv[1];
  if (script === undefined) throw new Error('sandbox: cannot tell which script to run again');
  const argv = [process.execPath, ...process.execArgv, script, ...process.argv.slice(2)];
  const env = Object.entries(process.env)
    .filter(([k]) => k !== OUTER_NS_ENV && k !== 'VIRTIOFSD_TS_HOST_PID')
    .map(([k, v]) => `${k}=${v}`);
  env.push(`${OUTER_NS_ENV}=${mntNs()}`);
  const flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | (o.network ? CLONE_NEWNET : 0);
  const pid = native.sandboxSpawn(process.execPath, argv, env, flags, true, [0, 1, 2, ...o.fds]);
  if (pid < 0) {
    throw new Error(
      `sandbox: cannot create namespaces (clone: ${errnoName(-pid)})` +
        (-pid === 1 /* EPERM */ ? '; namespaces need root (or use --sandbox=chroot or --sandbox=none)' : ''),
    );
  }
  o.log.info(`sandbox: the daemon runs as pid ${pid} in new mount, pid, IPC${o.network ? ', network' : ''} namespaces`);
  const forward = (sig: NodeJS.Signals) => () => {
    try {
      process.kill(pid, sig);
    } catch {
      /* it has ended */
    }
  };
  const handlers = FORWARDED.map((sig) => [sig, forward(sig)] as const);
  for (const [sig, h] of handlers) process.on(sig, h);
  const st = await native.waitChild(pid);
  for (const [sig, h] of handlers) process.off(sig, h);
  if (st.errno !== undefined) throw new Error(`sandbox: cannot wait for the daemon (pid ${pid}): ${errnoName(st.errno)}`);
  if (st.signal !== undefined) {
    o.log.warn(`sandbox: the daemon (pid ${pid}) was ended by signal ${st.signal}`);
    return 128 + st.signal;
  }
  return st.code ?? 1;
}

function failed(what: string, f: SandboxFailure): Error {
  return new Error(`sandbox: ${what}: ${f.step}: ${errnoName(f.errno)}`);
}

/**
 * Confine this process: `dir` becomes the root of every thread (pivot_root in the launcher's child,
 * chroot otherwise), then every thread keeps only `caps` and gets no_new_privs. fds.root is the share's
 * fd opened before (it names the new root afterwards), fds.procSelf an fd of /proc/self/fd opened
 * before (/proc is out of reach afterwards). Throws if any step fails: the daemon
 * must not serve half confined.
 */
export function enterSandbox(mode: SandboxMode, dir: string, fds: { root: number; procSelf: number }, caps: readonly string[], log: Logger): void {
  if (mode === 'none') return;
  const procSelfFd = fds.procSelf;
  if (mode === 'namespace' && !isLaunched()) throw new Error('sandbox: not in the namespaces the launcher makes; refusing to pivot_root');
  const r = native.enterRoot(dir, mode === 'namespace', fds.root);
  if (r !== 0) throw failed(`cannot make ${dir} the root`, r);
  const { lo, hi } = capMask(caps);
  const n = native.dropCaps(procSelfFd, lo, hi);
  if (typeof n !== 'number') throw failed('cannot drop capabilities', n);
  log.info(
    `sandbox: ${mode === 'namespace' ? 'pivot_root' : 'chroot'} into ${dir}; ${n} threads keep ` +
      `${caps.length > 0 ? caps.join(',') : 'no capabilities'}; no_new_privs`,
  );
}
