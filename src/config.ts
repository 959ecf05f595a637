/**
 * Command-line options, compatible with virtiofsd: the Rust daemon's long options and the QEMU 7.2 C
 * daemon's `-o opt[,opt]` spelling. Parsing is pure (no I/O) so it can be tested as a table; the
 * checks that touch the file system are in validateConfig().
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UNIX_PATH_MAX } from './abi/unix.js';
import { UsageError } from './errors.js';
import type { CacheMode } from './fuse/cache-policy.js';
import { type LogFormat, type LogLevel, isLogLevel } from './log.js';
import { type MetricsAddress, parseMetricsAddress } from './metrics/address.js';
import { native } from './native.js';
import { SECCOMP_MODES, type SeccompMode } from './sandbox/seccomp.js';
import { type NamespaceIdMap, idMapsOf, parseIdRule, parseNamespaceIdMap } from './fs/idmap.js';
import { parseXattrMap } from './fs/xattrmap.js';
import { DEFAULT_CAPS, applyModcaps } from './sandbox/caps.js';
import { type SandboxMode, isLaunched } from './sandbox/namespaces.js';


export interface Config {
  socketPath?: string;
  fd?: number;
  sharedDir?: string;
  cache: CacheMode;
  threadPoolSize: number;
  logLevel: LogLevel;
  writeback: boolean;
  xattr: boolean;
  /** --xattrmap rules (src/fs/xattrmap.ts; docs/xattr.md): checked at parse time, compiled per worker; implies xattr */
  xattrmap?: string;
  /** --posix-acl: negotiate FUSE_POSIX_ACL and serve the ACL xattrs; implies xattr */
  posixAcl: boolean;
  readdirplus: boolean;
  announceSubmounts: boolean;
  /** Export the share read-only (--readonly): every request that would change it answers EROFS. */
  readOnly: boolean;
  /** Let the guest create block/char device nodes (as virtiofsd does); --no-device-nodes refuses. */
  deviceNodes: boolean;
  /** Keep the guest's O_DIRECT on host files (--allow-direct-io, -o allow_direct_io). */
  allowDirectIo: boolean;
  /** --security-label (-o security_label): label new nodes with the guest's security context; implies xattr */
  securityLabel: boolean;
  /** --allow-mmap: negotiate FUSE_DIRECT_IO_ALLOW_MMAP (shared mmap with cache=never/metadata) */
  allowMmap: boolean;
  socketGroup?: string;
  rlimitNofile?: number;
  /** entry/attr validity in seconds, overriding the cache mode's (-o timeout=, as virtiofsd) */
  timeout?: number;
  /** log to the local syslog socket instead of stderr (--syslog) */
  syslog: boolean;
  /** stderr log lines as text (default) or one JSON object each (--log-format=json) */
  logFormat: LogFormat;
  /** where /metrics, /healthz and /readyz are served (--metrics-address); off when absent */
  metricsAddress?: MetricsAddress;
  /** --translate-uid rules, in order (src/fs/idmap.ts); checked at parse time, parsed again per worker */
  translateUid: string[];
  /** --translate-gid rules */
  translateGid: string[];
  /** --seccomp: the system call filter installed once the daemon serves (docs/seccomp.md) */
  seccomp: SeccompMode;
  /** --uid-map / --gid-map: the maps of the daemon's user namespace in rootless mode (newuidmap/newgidmap) */
  uidMap?: NamespaceIdMap;
  gidMap?: NamespaceIdMap;
  /** --sandbox: namespaces + pivot_root (default), chroot, or none (docs/sandbox.md) */
  sandbox: SandboxMode;
  /** whether --sandbox was given (where user namespaces are unavailable a non-root default falls back to none, an explicit one is refused) */
  sandboxGiven: boolean;
  /** the capabilities every thread keeps once confined (DEFAULT_CAPS changed by --modcaps) */
  caps: string[];
  printCapabilities: boolean;
  help: boolean;
  version: boolean;
  /** Accepted for compatibility, with no effect here; logged at startup. */
  ignored: string[];
}

export const MAX_THREAD_POOL_SIZE = 32;

export function defaultThreadPoolSize(): number {
  return Math.max(2, Math.min(8, os.availableParallelism?.() ?? os.cpus().length));
}

export const USAGE = `Usage: virtiofsd-ts --socket-path=PATH --shared-dir=DIR [options]
       virtiofsd-ts --socket-path=PATH -o source=DIR[,cache=auto] [options]

A vhost-user-fs backend: serves DIR to a virtual machine over virtio-fs.

Options:
  --socket-path=PATH       vhost-user socket to listen on (alias: --socket)
  --fd=N                   serve an already listening socket inherited as fd N
  --shared-dir=DIR         directory to share (also -o source=DIR)
  --cache=MODE             never|none|metadata|auto|always (default auto; also -o cache=)
  --socket-group=GROUP     make the socket group-accessible (0660) to GROUP (a name or a number);
                           by default only the owner may connect (0600)
  --thread-pool-size=N     worker threads serving requests, 1..${MAX_THREAD_POOL_SIZE} (default: cores, 2..8)
  --log-level=LEVEL        off|error|warn|info|debug|trace (default info; also -o log_level=)
  --writeback              enable the guest's writeback cache (also -o writeback)
  --no-readdirplus         disable READDIRPLUS (also -o no_readdirplus)
  --xattr                  serve extended attributes (also -o xattr; off by default, -o no_xattr).
                           Without --xattrmap the guest may use user.*, read security.*, nothing else
                           (docs/xattr.md)
  --xattrmap=RULES         map and filter xattr names, virtiofsd's rules, e.g. ':map::user.virtiofs.:'
                           (also -o xattrmap=; implies --xattr; ':ok:all:::' lets every name through)
  --posix-acl              POSIX ACLs: the guest kernel enforces them, system.posix_acl_* are served
                           (also -o posix_acl; implies --xattr; not with --translate-uid/-gid)
  --allow-direct-io        pass the guest's O_DIRECT on to host files (also -o allow_direct_io);
                           by default host I/O goes through the host page cache
  --security-label         SELinux guests: a new file, directory, node or symlink gets the security
                           context the guest sends (FUSE_SECURITY_CTX) as an xattr, through --xattrmap
                           if given (also -o security_label; implies --xattr; docs/xattr.md)
  --allow-mmap             with --cache=never or metadata, let the guest map files shared (MAP_SHARED;
                           FUSE_DIRECT_IO_ALLOW_MMAP, guest Linux 6.6 or later). Only when no one else
                           changes the shared directory
  --readonly               export the share read-only: the guest can read it, every change fails
                           with EROFS (write, create, remove, rename, chmod, touch, setxattr ...)
  --no-device-nodes        refuse guest mknod of block/char devices (EPERM). The daemon never opens
                           device nodes either way; this keeps them out of the host directory.
  --rlimit-nofile=N        set the open-file limit to N (0: leave it unchanged; default: raise it to
                           1000000, or the hard limit)
  -o timeout=SECONDS       how long the guest may cache names and attributes (fractions allowed),
                           instead of the cache mode's (never 0, auto 1, metadata/always 86400)
  --translate-uid=RULE     translate uids between guest and host; repeatable, one rule each:
                           map:G:H:N                     guest G.. <-> host H.., N ids, both ways
                           guest:G:H:N                   guest G.. -> host H.. (callers, chown only)
                           host:H:G:N                    host H.. -> guest G.. (attributes only)
                           squash-guest:G:H:N            guest G..G+N-1 -> host H
                           squash-host:H:G:N             host H..H+N-1 -> guest G
                           forbid-guest:G:N              guest G..G+N-1 refused (EPERM)
                           ids no rule covers pass unchanged
  --translate-gid=RULE     the same for gids
  --print-capabilities     print the vhost-user backend capabilities (JSON) and exit
  --announce-submounts     let the guest mount directories that are mount points on the host
                           separately (their own st_dev; also -o announce_submounts); on by default,
                           as in virtiofsd 1.x: --no-announce-submounts, -o no_announce_submounts
  --syslog                 log to syslog (/dev/log, facility daemon) instead of stderr
  --log-format=FORMAT      text|json: json writes one object per line (time, level, thread, msg, ...)
  --metrics-address=ADDR   serve Prometheus metrics (/metrics), /healthz and /readyz over HTTP on
                           HOST:PORT ([::1]:PORT for IPv6) or unix:PATH; off unless given
  -d, --debug              same as --log-level=debug
  -f                       run in the foreground (always the case; accepted for compatibility)
  -h, --help               this text
  -V, --version            version
Confinement (docs/sandbox.md):
  --sandbox=MODE           namespace (default): the daemon runs in new mount, pid, IPC and network
                           namespaces with the shared directory as its root; as a non-root user in a
                           user namespace too (rootless mode; where the host forbids that, a non-root
                           user without --sandbox runs unconfined, with a warning); chroot: chroot
                           into it (root only); none: unconfined
  --uid-map=MAP            rootless mode: the uids of the daemon's user namespace, MAP = :0:HOST:COUNT:
                           (namespace ids 0.. are host ids HOST..; any delimiter but a letter or
                           digit), set with newuidmap (/etc/subuid); default: the user's own uid as 0
  --gid-map=MAP            the same for gids (newgidmap, /etc/subgid). Both are refused as root
  --modcaps=+CAP,-CAP      change the capabilities kept once confined (default: chown,dac_override,
                           dac_read_search,fowner,fsetid,setgid,setuid,mknod,setfcap; also ':'-separated)
  --seccomp=ACTION         kill|log|trap|none: what a system call outside the daemon's allowlist
                           does (kill the process, log it and let it run, print it and die of
                           SIGSYS); default kill (docs/seccomp.md)
Accepted for compatibility with virtiofsd: --killpriv-v2 (always on here); without effect here:
  --inode-file-handles, --preserve-noatime, -o flock|no_flock|posix_lock|no_posix_lock.
Not supported yet (refused): --no-killpriv-v2.
`;

function parseCache(v: string, where: string): CacheMode {
  switch (v) {
    case 'none':
    case 'never':
      return 'never';
    case 'metadata':
    case 'auto':
    case 'always':
      return v;
    default:
      throw new UsageError(`${where}: invalid cache mode '${v}' (never|none|metadata|auto|always)`);
  }
}

function parseInt10(v: string, name: string, min: number, max: number): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`${name}: '${v}' is not a number`);
  const n = Number(v);
  if (n < min || n > max) throw new UsageError(`${name}: ${n} is out of range ${min}..${max}`);
  return n;
}

/** Long options that take a value, with their handler. */
type Setter = (c: Config, v: string) => void;
const VALUED: Record<string, Setter> = {
  'socket-path': (c, v) => { c.socketPath = nonEmpty(v, '--socket-path'); },
  socket: (c, v) => { c.socketPath = nonEmpty(v, '--socket'); },
  fd: (c, v) => { c.fd = parseInt10(v, '--fd', 0, 1 << 20); },
  'shared-dir': (c, v) => { c.sharedDir = nonEmpty(v, '--shared-dir'); },
  cache: (c, v) => { c.cache = parseCache(v, '--cache'); },
  'thread-pool-size': (c, v) => { c.threadPoolSize = parseInt10(v, '--thread-pool-size', 1, MAX_THREAD_POOL_SIZE); },
  'log-level': (c, v) => {
    if (!isLogLevel(v)) throw new UsageError(`--log-level: invalid level '${v}' (off|error|warn|info|debug|trace)`);
    c.logLevel = v;
  },
  'log-format': (c, v) => { oneOf(v, ['text', 'json'], '--log-format'); c.logFormat = v as LogFormat; },
  'metrics-address': (c, v) => { c.metricsAddress = parseMetricsAddress(v); },
  'socket-group': (c, v) => { c.socketGroup = nonEmpty(v, '--socket-group'); },
  'rlimit-nofile': (c, v) => { c.rlimitNofile = parseInt10(v, '--rlimit-nofile', 0, 1 << 30); },
  sandbox: (c, v) => { c.sandbox = sandboxMode(v, '--sandbox'); c.sandboxGiven = true; },
  seccomp: (c, v) => { oneOf(v, [...SECCOMP_MODES], '--seccomp'); c.seccomp = v as SeccompMode; },
  modcaps: (c, v) => { c.caps = applyModcaps(v, c.caps); },
  'inode-file-handles': (c, v) => { oneOf(v, ['never', 'prefer', 'mandatory'], '--inode-file-handles'); c.ignored.push('--inode-file-handles'); },
  'translate-uid': (c, v) => { parseIdRule(v, '--translate-uid'); c.translateUid.push(v); },
  'translate-gid': (c, v) => { parseIdRule(v, '--translate-gid'); c.translateGid.push(v); },
  'uid-map': (c, v) => {
    if (c.uidMap) throw new UsageError('--uid-map: given twice');
    c.uidMap = parseNamespaceIdMap(v, '--uid-map');
  },
  'gid-map': (c, v) => {
    if (c.gidMap) throw new UsageError('--gid-map: given twice');
    c.gidMap = parseNamespaceIdMap(v, '--gid-map');
  },
  xattrmap: (c, v) => { setXattrMap(c, v, '--xattrmap'); },
  tag: (c) => { c.ignored.push('--tag'); },
};

const FLAGS: Record<string, (c: Config) => void> = {
  writeback: (c) => { c.writeback = true; },
  'no-writeback': (c) => { c.writeback = false; },
  readdirplus: (c) => { c.readdirplus = true; },
  'no-readdirplus': (c) => { c.readdirplus = false; },
  'no-device-nodes': (c) => { c.deviceNodes = false; },
  readonly: (c) => { c.readOnly = true; },
  'print-capabilities': (c) => { c.printCapabilities = true; },
  help: (c) => { c.help = true; },
  version: (c) => { c.version = true; },
  debug: (c) => { c.logLevel = 'debug'; },
  xattr: (c) => { c.xattr = true; },
  'posix-acl': (c) => { c.posixAcl = true; },
  'no-posix-acl': (c) => { c.posixAcl = false; },
  'announce-submounts': (c) => { c.announceSubmounts = true; },
  'no-announce-submounts': (c) => { c.announceSubmounts = false; },
  syslog: (c) => { c.syslog = true; },
  'killpriv-v2': () => {},
  'no-killpriv-v2': () => { throw noKillprivOff('--no-killpriv-v2'); },
  'allow-direct-io': (c) => { c.allowDirectIo = true; },
  'security-label': (c) => { c.securityLabel = true; },
  'allow-mmap': (c) => { c.allowMmap = true; },
  'preserve-noatime': (c) => { c.ignored.push('--preserve-noatime'); },
  foreground: () => {},
};

/** `-o` options of QEMU 7.2's virtiofsd. */
function applyDashO(c: Config, list: string): void {
  for (const item of list.split(',')) {
    if (item === '') continue;
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    const val = eq < 0 ? undefined : item.slice(eq + 1);
    const need = (): string => {
      if (val === undefined || val === '') throw new UsageError(`-o ${key}: needs a value`);
      return val;
    };
    const noVal = (): void => {
      if (val !== undefined) throw new UsageError(`-o ${key}: takes no value`);
    };
    switch (key) {
      case 'source': c.sharedDir = need(); break;
      case 'cache': c.cache = parseCache(need(), '-o cache'); break;
      case 'log_level': VALUED['log-level']!(c, need()); break;
      case 'thread_pool_size': VALUED['thread-pool-size']!(c, need()); break;
      case 'writeback': noVal(); c.writeback = true; break;
      case 'no_writeback': noVal(); c.writeback = false; break;
      case 'readdirplus': noVal(); c.readdirplus = true; break;
      case 'no_readdirplus': noVal(); c.readdirplus = false; break;
      case 'xattr': noVal(); c.xattr = true; break;
      case 'no_xattr': noVal(); c.xattr = false; break;
      case 'posix_acl': noVal(); c.posixAcl = true; break;
      case 'no_posix_acl': noVal(); c.posixAcl = false; break;
      // (the rules may hold ',' only in a later -o: this list was split at ',' already)
      case 'xattrmap': setXattrMap(c, need(), '-o xattrmap'); break;
      case 'security_label': noVal(); c.securityLabel = true; break;
      case 'no_security_label': noVal(); c.securityLabel = false; break;
      case 'allow_direct_io': noVal(); c.allowDirectIo = true; break;
      case 'no_allow_direct_io': noVal(); c.allowDirectIo = false; break;
      case 'announce_submounts': noVal(); c.announceSubmounts = true; break;
      case 'no_announce_submounts': noVal(); c.announceSubmounts = false; break;
      // locks stay in the guest: what no_flock/no_posix_lock ask for, so only the positive ones are noted
      case 'no_flock': case 'no_posix_lock': noVal(); break;
      // killpriv_v2 is always negotiated (the caller's identity: set-id bits cleared on write, truncate, chown)
      case 'killpriv_v2': noVal(); break;
      case 'no_killpriv_v2': throw noKillprivOff('-o no_killpriv_v2');
      case 'flock': case 'posix_lock':
      case 'norace': case 'writeback_cache':
        noVal(); c.ignored.push(`-o ${key}`); break;
      case 'timeout': c.timeout = parseTimeout(need()); break;
      case 'sandbox': c.sandbox = sandboxMode(need(), '-o sandbox'); c.sandboxGiven = true; break;
      case 'modcaps': c.caps = applyModcaps(need(), c.caps, '-o modcaps'); break;
      case 'max_idle_threads':
        need(); c.ignored.push(`-o ${key}`); break;
      default:
        throw new UsageError(`-o: unknown option '${key}'`);
    }
  }
}

/** Seconds, fractions allowed (virtiofsd takes a double), up to a year. */
function parseTimeout(v: string): number {
  const n = /^\d+(\.\d+)?$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isFinite(n) || n > 366 * 86400) throw new UsageError(`-o timeout: invalid value '${v}' (seconds, 0..31622400)`);
  return n;
}

/** --xattrmap: the rules are checked now (a UsageError names the bad rule), compiled by each worker. */
function setXattrMap(c: Config, v: string, where: string): void {
  parseXattrMap(v, where);
  c.xattrmap = v;
}

function nonEmpty(v: string, name: string): string {
  if (v === '') throw new UsageError(`${name}: needs a value`);
  return v;
}

function noKillprivOff(opt: string): UsageError {
  return new UsageError(`${opt}: killpriv_v2 is always on here (set-user-ID and set-group-ID bits are cleared as the kernel would); it cannot be turned off`);
}

function sandboxMode(v: string, name: string): SandboxMode {
  oneOf(v, ['namespace', 'chroot', 'none'], name);
  return v as SandboxMode;
}

function oneOf(v: string, allowed: string[], name: string): void {
  if (!allowed.includes(v)) throw new UsageError(`${name}: invalid value '${v}' (${allowed.join('|')})`);
}

export function parseArgs(argv: string[]): Config {
  const c: Config = {
    cache: 'auto',
    threadPoolSize: defaultThreadPoolSize(),
    logLevel: 'info',
    writeback: false,
    xattr: false,
    posixAcl: false,
    readdirplus: true,
    // on, as in virtiofsd 1.x: inode numbers of different host file systems cannot collide in the guest
    announceSubmounts: true,
    readOnly: false,
    deviceNodes: true,
    allowDirectIo: false,
    securityLabel: false,
    allowMmap: false,
    syslog: false,
    logFormat: 'text',
    seccomp: 'kill',
    translateUid: [],
    translateGid: [],
    sandbox: 'namespace',
    sandboxGiven: false,
    caps: [...DEFAULT_CAPS],
    printCapabilities: false,
    help: false,
    version: false,
    ignored: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-o') {
      const v = argv[++i];
      if (v === undefined) throw new UsageError('-o: needs an option list');
      applyDashO(c, v);
      continue;
    }
    if (a.startsWith('-o') && a.length > 2 && !a.startsWith('--')) {
      applyDashO(c, a.slice(2));
      continue;
    }
    if (a === '-h') { c.help = true; continue; }
    if (a === '-V') { c.version = true; continue; }
    if (a === '-d') { c.logLevel = 'debug'; continue; }
    if (a === '-f') continue;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const setter = VALUED[name];
      if (setter) {
        let v: string | undefined = eq < 0 ? undefined : a.slice(eq + 1);
        if (v === undefined) {
          v = argv[++i];
          if (v === undefined) throw new UsageError(`--${name}: needs a value`);
        }
        setter(c, v);
        continue;
      }
      const flag = FLAGS[name];
      if (flag) {
        if (eq >= 0) throw new UsageError(`--${name}: takes no value`);
        flag(c);
        continue;
      }
      throw new UsageError(`unknown option '${a}'`);
    }
    throw new UsageError(`unexpected argument '${a}'`);
  }
  if (c.help || c.version || c.printCapabilities) return c;
  if (c.socketPath === undefined && c.fd === undefined) throw new UsageError('one of --socket-path or --fd is required');
  if (c.socketPath !== undefined && c.fd !== undefined) throw new UsageError('--socket-path and --fd are mutually exclusive');
  if (c.sharedDir === undefined) throw new UsageError('--shared-dir (or -o source=DIR) is required');
  // the whole rule set: overlaps between rules of one option show only together
  idMapsOf(c.translateUid, c.translateGid);
  // as virtiofsd: these need the xattr opcodes, and ACL entries hold host ids no rule would translate
  if (c.xattrmap !== undefined || c.posixAcl || c.securityLabel) c.xattr = true;
  if (c.posixAcl && (c.translateUid.length > 0 || c.translateGid.length > 0)) {
    throw new UsageError('--posix-acl: not with --translate-uid/--translate-gid (the ids inside ACLs would not be translated)');
  }
  for (const [opt, m] of [['--uid-map', c.uidMap], ['--gid-map', c.gidMap]] as const) {
    if (m === undefined) continue;
    if (c.sandbox !== 'namespace') {
      throw new UsageError(`${opt}: only with --sandbox=namespace (the maps are those of the daemon's user namespace, rootless mode)`);
    }
    // the daemon is uid/gid 0 of its user namespace (the launcher's child switches to 0 before exec)
    if (m.namespaceId !== 0) {
      throw new UsageError(`${opt}: the map must start at namespace id 0 (the daemon runs as 0 in its user namespace), e.g. ':0:100000:65536:'`);
    }
  }
  return c;
}

/** Checks against the file system. Throws UsageError (exit 2) with a message an operator can act on. */
export function validateConfig(c: Config): void {
  // chroot needs root; a non-root user gets namespace as rootless mode (a user namespace, src/cli.ts and
  // src/sandbox/namespaces.ts), and the id maps are that mode's: as root they are refused, as virtiofsd
  // does (root needs no user namespace; --translate-uid/--translate-gid translate ids).
  const root = process.geteuid?.() === 0;
  if (c.sandbox === 'chroot' && !root) {
    throw new UsageError('--sandbox=chroot: needs root; as a non-root user use --sandbox=namespace (rootless mode, a user namespace; the default) or --sandbox=none');
  }
  if ((c.uidMap || c.gidMap) && root && !isLaunched()) {
    throw new UsageError(
      `${c.uidMap ? '--uid-map' : '--gid-map'}: only for a non-root user (rootless mode, a user namespace); as root use --translate-uid/--translate-gid`,
    );
  }
  const dir = c.sharedDir!;
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (e) {
    throw new UsageError(`shared directory ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!st.isDirectory()) throw new UsageError(`shared directory ${dir}: not a directory`);
  if (c.socketPath !== undefined) {
    const parent = path.dirname(path.resolve(c.socketPath));
    if (!fs.existsSync(parent)) throw new UsageError(`socket path ${c.socketPath}: directory ${parent} does not exist`);
    if (Buffer.byteLength(path.resolve(c.socketPath)) > UNIX_PATH_MAX && Buffer.byteLength(c.socketPath) > UNIX_PATH_MAX) {
      throw new UsageError(`socket path ${c.socketPath}: longer than the ${UNIX_PATH_MAX} bytes a Unix socket address holds`);
    }
    try {
      const s = fs.lstatSync(c.socketPath);
      if (!s.isSocket()) throw new UsageError(`socket path ${c.socketPath}: exists and is not a socket; refusing to replace it`);
    } catch (e) {
      if (e instanceof UsageError) throw e;
    }
  }
  if (c.socketGroup !== undefined && resolveGroup(c.socketGroup) === undefined) {
    throw new UsageError(`--socket-group: no group '${c.socketGroup}'`);
  }
  if (c.fd !== undefined) {
    try {
      fs.fstatSync(c.fd);
    } catch {
      throw new UsageError(`--fd=${c.fd}: not an open file descriptor`);
    }
    if (native.isListeningUnixStream(c.fd) !== 1) {
      throw new UsageError(`--fd=${c.fd}: not a listening Unix stream socket (bind and listen it before passing it on)`);
    }
  }
}

/** A group name (from /etc/group) or number → gid. */
export function resolveGroup(g: string): number | undefined {
  if (/^\d+$/.test(g)) return Number(g);
  try {
    for (const line of fs.readFileSync('/etc/group', 'utf8').split('\n')) {
      const [name, , gid] = line.split(':');
      if (name === g && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
    }
  } catch {
    /* no /etc/group: only numbers work */
  }
  return undefined;
}
