/**
 * Command-line entry: options, logging, signals, exit codes.
 * Exit codes: 0 clean shutdown (SIGTERM/SIGINT), 1 runtime failure, 2 bad options.
 */
import { createRequire } from 'node:module';
import { USAGE, parseArgs, resolveGroup, validateConfig } from './config.js';
import { UsageError } from './errors.js';
import { Daemon } from './daemon.js';
import { Logger, directStderr, hostPid } from './log.js';
import { native } from './native.js';
import { syslogSink } from './syslog.js';
import { UserNamespacesUnavailable, inUserNamespace, isLaunched, namespaceGidOf, runLauncher } from './sandbox/namespaces.js';

/** How long SIGTERM/SIGINT waits for in-flight requests before the daemon exits without them. */
const SHUTDOWN_GRACE_MS = 10_000;

function version(): string {
  const require = createRequire(import.meta.url);
  try {
    return (require('../../package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/**
 * The backend capabilities, as `--print-capabilities` prints them (vhost-user.rst "Backend program
 * conventions"): only what we have. `separate-options` tells a VMM manager (libvirt) that options go as
 * `--shared-dir=`, `--cache=`, ... rather than `-o`; `migrate-precopy` (device state migration) is not
 * offered: there is none.
 */
export const CAPABILITIES = { type: 'fs', features: ['separate-options'] } as const;

export async function main(argv: string[]): Promise<number> {
  // `virtiofsd-ts loadtest …` is the load tester, a vhost-user frontend (src/loadtest/), not the daemon.
  if (argv[0] === 'loadtest') return (await import('./loadtest/main.js')).main(argv.slice(1));
  let cfg: ReturnType<typeof parseArgs>;
  try {
    cfg = parseArgs(argv);
    if (cfg.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    if (cfg.version) {
      process.stdout.write(`virtiofsd-ts ${version()}\n`);
      return 0;
    }
    if (cfg.printCapabilities) {
      process.stdout.write(`${JSON.stringify(CAPABILITIES, null, 2)}\n`);
      return 0;
    }
    validateConfig(cfg);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`virtiofsd-ts: ${e.message}\nTry 'virtiofsd-ts --help' for more information.\n`);
      return e.exitCode;
    }
    throw e;
  }
  const log = new Logger(cfg.logLevel, 'main', cfg.syslog ? syslogSink(cfg.logFormat) : directStderr, cfg.logFormat);
  // --sandbox=namespace: this process only launches the daemon in new namespaces and waits for it
  // (src/sandbox/namespaces.ts); the daemon is the same command line run again there.
  // As a non-root user that is rootless mode: a user namespace as well (docs/sandbox.md).
  if (cfg.sandbox === 'namespace' && !isLaunched()) {
    const rootless = process.geteuid?.() !== 0;
    try {
      return await runLauncher({
        network: cfg.metricsAddress?.kind !== 'tcp',
        fds: cfg.fd !== undefined ? [cfg.fd] : [],
        user: rootless ? { uidMap: cfg.uidMap, gidMap: cfg.gidMap } : undefined,
        log,
      });
    } catch (e) {
      if (!(e instanceof UserNamespacesUnavailable)) {
        log.error((e as Error).message);
        return 1;
      }
      // Asked for (--sandbox, or maps that only exist in a user namespace): refused. The default: the
      // daemon runs unconfined in this process, said loudly (below, and here why).
      if (cfg.sandboxGiven || cfg.uidMap || cfg.gidMap) {
        const asked = cfg.sandboxGiven ? '--sandbox=namespace' : cfg.uidMap ? '--uid-map' : '--gid-map';
        log.error(`${asked}: rootless mode needs a user namespace: ${e.message}`);
        return 2;
      }
      log.warn(`${e.message}: falling back to --sandbox=none`);
      cfg.sandbox = 'none';
    }
  }
  // Rootless mode: --socket-group names a host group; the daemon chowns the socket in its user
  // namespace, where that group has the id the gid map gives it (if any).
  if (cfg.socketGroup !== undefined && isLaunched() && inUserNamespace()) {
    const host = resolveGroup(cfg.socketGroup);
    const inside = host === undefined ? undefined : namespaceGidOf(host);
    if (inside === undefined) {
      log.error(`--socket-group: group ${cfg.socketGroup} (host gid ${host}) is not mapped into the daemon's user namespace (rootless mode: see --gid-map)`);
      return 2;
    }
    cfg.socketGroup = String(inside);
  }
  for (const opt of cfg.ignored) {
    // Asking for lock forwarding and not getting it matters to shared-directory setups: say what it means.
    const locks = /^-o (posix_lock|flock)$/.test(opt)
      ? ': locks taken in the guest stay local to it and do not exclude other guests or host processes'
      : '';
    log.warn(`option ${opt} is accepted for compatibility and has no effect${locks}`);
  }
  log.info(`virtiofsd-ts ${version()} starting (pid ${hostPid()}${process.pid !== hostPid() ? ', 1 in its pid namespace' : ''}, node ${process.version})`);
  if (cfg.sandbox === 'none' && process.getuid?.() !== 0) {
    log.warn(
      `running as uid ${process.getuid?.()} with no sandbox: the daemon is not confined to the shared directory ` +
        'beyond its own path checks, and files are created as this user (the namespace sandbox needs root, or user namespaces for rootless mode)',
    );
  }
  // The daemon serves guests that outlive any one request: a bug in a callback must cost that
  // callback, not every guest's file system. Log it loudly and keep serving.
  let reporting = false;
  const internalError = (e: unknown): void => {
    if (reporting) return; // an error raised while logging one must not loop
    reporting = true;
    try {
      log.error(`internal error (continuing): ${(e as Error)?.stack ?? e}`);
    } finally {
      reporting = false;
    }
  };
  process.on('uncaughtException', internalError);
  process.on('unhandledRejection', internalError);
  // Whoever reads our output may go away (a log pipe closed, `| head`): EPIPE on stdout or stderr
  // is not the daemon's failure. Log lines are written with directStderr, which drops them then.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  const daemon = new Daemon(cfg, log, version());
  // A status line on demand (docs/operations.md), from before the socket exists: a signal sent as
  // soon as it appears must not be lost, and listening keeps Node from starting its inspector on
  // SIGUSR1, which a daemon must never do.
  process.on('SIGUSR1', () => log.info(daemon.status()));
  try {
    await daemon.start();
  } catch (e) {
    log.error(`startup failed: ${(e as Error).message}`);
    await daemon.stop().catch(() => undefined);
    return 1;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    let firstAt = 0;
    const onSignal = (sig: NodeJS.Signals): void => {
      // Under the sandbox's launcher one request often arrives twice: sent to the process group or
      // cgroup (a terminal's ^C, systemd, timeout(1)) and passed on by the launcher. A repeat within a
      // second is that; a later one is an operator who will not wait.
      if (stopping && Date.now() - firstAt < 1000) {
        log.debug(`${sig} again within a second: taken as the same request`);
        return;
      }
      if (stopping) {
        log.warn(`${sig} again: exiting now`);
        // not process.exit: it joins the worker threads, and one blocked in a system call never ends
        native.exitNow(1);
      }
      stopping = true;
      firstAt = Date.now();
      log.info(`${sig}: finishing in-flight requests and shutting down`);
      // A request blocked in the host file system (a hung NFS or FUSE mount) never finishes: the
      // shutdown gives in-flight requests SHUTDOWN_GRACE_MS, then exits without them.
      const deadline = setTimeout(() => {
        log.error(`shutdown: in-flight requests did not finish in ${SHUTDOWN_GRACE_MS / 1000} s (a worker is blocked in the host file system?); exiting without them`);
        native.exitNow(1);
      }, SHUTDOWN_GRACE_MS);
      daemon.stop().then(
        () => {
          clearTimeout(deadline);
          log.info('stopped');
          resolve(0);
        },
        (e) => {
          clearTimeout(deadline);
          log.error(`shutdown failed: ${(e as Error).stack ?? e}`);
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('SIGHUP', () => log.info('SIGHUP ignored'));
    process.on('SIGPIPE', () => undefined);
  });
}
