/**
 * The sandbox's two halves (docs/sandbox.md).
 *
 * Capabilities and a new mount namespace belong to one thread, and Node runs several before any of our
 * code. So `--sandbox=namespace` starts over: the launcher (the process the operator started) clones a
 * child into new mount, pid, IPC and network namespaces, which execs the same command line; the
 * launcher then only waits for it and passes signals on. The child (pid 1 of its namespace) sets up
 * as usual, then enterSandbox() makes the shared directory its root and drops capabilities on every
 * thread. `--sandbox=chroot` needs no launcher: chroot moves every thread's root at once.
 *
 * Rootless mode (a non-root user, `--sandbox=namespace`): the child gets a new user namespace too, in
 * which it is uid 0 with capabilities over its own namespaces only. The launcher writes its id maps
 * (its own uid and gid as 0, or --uid-map/--gid-map through newuidmap/newgidmap) before the child may
 * go on: until then the child waits on the pipe it learns its pid from (native/src/sandbox.cc).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { errnoName, native, type SandboxFailure } from '../native.js';
import type { Logger } from '../log.js';
import type { IdMapRange } from '../abi/userns.js';
import { capMask } from './caps.js';

export type SandboxMode = 'namespace' | 'chroot' | 'none';

/** Set by the launcher for its child: the launcher's mount namespace (the inode of /proc/self/ns/mnt). */
export const OUTER_NS_ENV = 'VIRTIOFSD_TS_SANDBOX_OUTER_MNTNS';

// linux/sched.h
const CLONE_NEWNS = 0x00020000;
const CLONE_NEWIPC = 0x08000000;
const CLONE_NEWPID = 0x20000000;
const CLONE_NEWNET = 0x40000000;
const CLONE_NEWUSER = 0x10000000;

const EPERM = 1;
const EINVAL = 22;
const ENOSPC = 28;
const EUSERS = 87;

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

/**
 * Is this process in a user namespace other than the initial one? The initial namespace's uid_map is
 * the identity over every id ("0 0 4294967295").
 */
export function inUserNamespace(): boolean {
  try {
    return fs.readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/).join(' ') !== '0 0 4294967295';
  } catch {
    return false;
  }
}

/**
 * The id a host gid has in this process's user namespace (/proc/self/gid_map: "inside outside count"
 * lines), or undefined when it is not mapped.
 */
export function namespaceGidOf(hostGid: number): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/gid_map', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.trim().split('\n')) {
    const [inside, outside, count] = line.trim().split(/\s+/).map(Number);
    if (inside === undefined || outside === undefined || count === undefined) continue;
    if (hostGid >= outside && hostGid < outside + count) return inside + (hostGid - outside);
  }
  return undefined;
}

/** Rootless mode: the id maps of the daemon's user namespace (the caller's own id as 0 when absent). */
export interface UserNamespaceMaps {
  uidMap?: IdMapRange;
  gidMap?: IdMapRange;
}

/**
 * The kernel refuses a new user namespace to this user (unprivileged user namespaces are off:
 * user.max_user_namespaces = 0, kernel.unprivileged_userns_clone = 0, or a security module's policy).
 * The caller decides: fall back to no sandbox, or refuse to start.
 */
export class UserNamespacesUnavailable extends Error {}

export interface LaunchOptions {
  /** also a network namespace of its own (not when metrics are served over TCP: they would be unreachable) */
  network: boolean;
  /** fds the daemon needs beyond stdio (--fd) */
  fds: number[];
  /** rootless mode: a new user namespace as well, with these maps */
  user?: UserNamespaceMaps;
  log: Logger;
}

/** "0 → 1000 (1 id)" */
function describeMap(m: IdMapRange): string {
  return `${m.namespaceId}${m.count > 1 ? `..${m.namespaceId + m.count - 1}` : ''} → ${m.hostId}${m.count > 1 ? `..${m.hostId + m.count - 1}` : ''}`;
}

/**
 * Write the child's uid_map and gid_map (user_namespaces(7)). The caller's own id as 0 is written
 * directly (a process may map its own effective id in a namespace it created; for gids only once
 * setgroups is "deny", so the daemon can never shed or take supplementary groups); a map given with
 * --uid-map/--gid-map goes through the setuid helpers newuidmap/newgidmap, which allow what
 * /etc/subuid and /etc/subgid grant this user. Throws with what went wrong.
 */
function writeIdMaps(pid: number, maps: UserNamespaceMaps): { uid: string; gid: string } {
  const euid = process.geteuid?.() ?? 0;
  const egid = process.getegid?.() ?? 0;
  const helper = (tool: 'newuidmap' | 'newgidmap', m: IdMapRange): void => {
    const r = spawnSync(tool, [String(pid), String(m.namespaceId), String(m.hostId), String(m.count)], { encoding: 'utf8', timeout: 10_000 });
    const opt = tool === 'newuidmap' ? '--uid-map' : '--gid-map';
    if (r.error) {
      const code = (r.error as NodeJS.ErrnoException).code;
      throw new Error(
        `sandbox: ${opt} needs ${tool}, which cannot run: ${code === 'ENOENT' ? `${tool} is not installed (Debian: the uidmap package)` : r.error.message}`,
      );
    }
    if (r.status !== 0) {
      throw new Error(
        `sandbox: ${opt}: ${tool} ${pid} ${m.namespaceId} ${m.hostId} ${m.count} failed (${r.status === null ? `signal ${r.signal}` : `exit ${r.status}`})` +
          `: ${r.stderr.trim() || 'no message'} (does ${tool === 'newuidmap' ? '/etc/subuid' : '/etc/subgid'} grant this user that range?)`,
      );
    }
  };
  const write = (file: string, text: string): void => {
    try {
      fs.writeFileSync(`/proc/${pid}/${file}`, text);
    } catch (e) {
      throw new Error(`sandbox: cannot write /proc/${pid}/${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  const uid = maps.uidMap ?? { namespaceId: 0, hostId: euid, count: 1 };
  const gid = maps.gidMap ?? { namespaceId: 0, hostId: egid, count: 1 };
  if (maps.uidMap) helper('newuidmap', maps.uidMap);
  else write('uid_map', `0 ${euid} 1\n`);
  if (maps.gidMap) helper('newgidmap', maps.gidMap);
  else {
    write('setgroups', 'deny');
    write('gid_map', `0 ${egid} 1\n`);
  }
  return { uid: describeMap(uid), gid: describeMap(gid) };
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
  const flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | (o.network ? CLONE_NEWNET : 0) | (o.user ? CLONE_NEWUSER : 0);
  const keep = [0, 1, 2, ...o.fds];
  const names = `${o.user ? 'user, ' : ''}mount, pid, IPC${o.network ? ', network' : ''}`;
  let pid: number;
  if (o.user) {
    const r = native.sandboxSpawn(process.execPath, argv, env, flags, true, keep, true);
    if (typeof r === 'number') {
      const e = -r;
      // EPERM: unprivileged user namespaces are switched off (a sysctl or a security module); ENOSPC,
      // EUSERS: user.max_user_namespaces (0, or this user's count reached); EINVAL: a kernel without them
      if (e === EPERM || e === ENOSPC || e === EUSERS || e === EINVAL) {
        throw new UserNamespacesUnavailable(
          `sandbox: this user may not create a user namespace (clone: ${errnoName(e)}; unprivileged user namespaces are ` +
            `switched off here: see the sysctls user.max_user_namespaces and kernel.unprivileged_userns_clone, or an LSM policy)`,
        );
      }
      throw new Error(`sandbox: cannot create namespaces (clone: ${errnoName(e)})`);
    }
    pid = r.pid;
    let maps: { uid: string; gid: string };
    try {
      maps = writeIdMaps(pid, o.user);
    } catch (e) {
      // the child exits when its end of the pipe closes without the go-ahead: never serve half set up
      fs.closeSync(r.gate);
      await native.waitChild(pid);
      throw e;
    }
    fs.writeSync(r.gate, 'G');
    fs.closeSync(r.gate);
    o.log.info(`sandbox: rootless: the daemon runs as pid ${pid} in new ${names} namespaces; uid map ${maps.uid}, gid map ${maps.gid}`);
  } else {
    pid = native.sandboxSpawn(process.execPath, argv, env, flags, true, keep, false);
    if (pid < 0) {
      throw new Error(
        `sandbox: cannot create namespaces (clone: ${errnoName(-pid)})` +
          (-pid === EPERM ? '; namespaces need root (or use --sandbox=chroot or --sandbox=none)' : ''),
      );
    }
    o.log.info(`sandbox: the daemon runs as pid ${pid} in new ${names} namespaces`);
  }
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
  if (inUserNamespace()) {
    // (said once, here: /proc is out of reach afterwards)
    const map = (f: string): string => {
      try {
        return fs.readFileSync(`/proc/self/${f}`, 'utf8').trim().split('\n').map((l) => l.trim().split(/\s+/).join(' ')).join(', ');
      } catch {
        return '?';
      }
    };
    log.info(
      `sandbox: in a user namespace (uid_map ${map('uid_map')}; gid_map ${map('gid_map')}; setgroups ${map('setgroups')}): ` +
        'a guest request that creates or changes files as an unmapped uid or gid fails with EPERM, and host files of ' +
        'unmapped owners show as the overflow id (65534, nobody)',
    );
  }
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
