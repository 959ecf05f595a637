/**
 * Booting a guest under QEMU against a vhost-user-fs backend and collecting what it printed.
 *
 * Why the command line looks as it does (QEMU 7.2 on Debian 12, measured on 2-core hosts):
 * - `-accel tcg,thread=multi -cpu max`: no KVM. Where /dev/kvm exists it may be a nested, paravirtual
 *   one under which a stock kernel does not get past decompression in minutes; TCG reaches the
 *   virtiofs mount in about 2.5 s and a boot plus a minute of fio takes about 2 minutes.
 * - `-object memory-backend-memfd,share=on` + `-numa node,memdev=mem`: vhost-user needs guest RAM the
 *   backend can map; QEMU refuses a vhost-user device without shared RAM. (`-m 2048M` and `size=2048M`
 *   must agree; a bare `size=` number would be bytes.)
 * - `-chardev socket,path=...`: QEMU connects to the backend's socket, so the daemon is started first
 *   and the socket file waited for (daemon.ts).
 * - `vhost-user-fs-pci,queue-size=1024`: a large queue, so the guest can keep many requests in flight.
 * - `-append console=ttyS0 quiet panic=-1`, `-serial stdio`: the console is our only channel (see
 *   console.ts); on a panic the guest reboots at once, and `-no-reboot` turns that into QEMU exiting.
 * - everything runs under `timeout -k 10 <secs>` (coreutils) plus our own SIGKILL backstop, so a
 *   hung guest cannot hang the suite.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { S_IFREG } from '../src/abi/stat.js';
import { BOOTED_MARKER, exitCode, LineSplitter } from './console.js';
import { type CpioEntry, cpioNewc } from './cpio.js';
import { buildBaseInitramfs } from './initramfs.js';
import { findKernel, kernelInfo, type KernelInfo } from './kernel.js';
import { defaultCacheDir, QEMU, QEMU_DATA_DIR } from './locations.js';

export interface RunGuestOptions {
  socketPath: string;
  /** The body of /test.sh (run by busybox sh; the script mounts the share itself). */
  script: string;
  tag?: string;
  /** Guest RAM at boot, in MiB (default 2048): `-m` and the backend's size. */
  memMiB?: number;
  /**
   * Room for memory hot-plug: `-m <memMiB>M,slots=<memSlots>,maxmem=<maxMemMiB>M`. pc-dimm devices
   * added over QMP (qmp.ts) then fill the slots; both must be given for either to take effect.
   */
  memSlots?: number;
  maxMemMiB?: number;
  /** A QMP monitor on this unix socket (`-qmp unix:PATH,server=on,wait=off`); connect with QmpClient. */
  qmpSocket?: string;
  /** Appended to the kernel command line, e.g. `memhp_default_state=online`. */
  kernelArgs?: string[];
  /**
   * Aborting kills QEMU at once (a test that already knows the run is lost, e.g. the daemon refused
   * the guest's memory, need not wait for the timeout); the result's `aborted` carries the reason.
   */
  signal?: AbortSignal;
  timeoutSec?: number;
  cpus?: number;
  /** Called for every console line (CR stripped) as it arrives. */
  onLine?: (line: string) => void;
  cacheDir?: string;
  /** Extra files for the per-run archive: path (no leading /) → content. */
  files?: Record<string, string | Buffer>;
  extraQemuArgs?: string[];
  /** Let a guest `reboot` restart the VM in the same QEMU (default false: QEMU exits, -no-reboot). */
  allowReboot?: boolean;
  /** The kernel to boot: a KernelInfo, a version (`6.12.95+deb12-amd64`) or a vmlinuz path (default findKernel()). */
  kernel?: KernelInfo | string;
  /** Extra vhost-user-fs-pci properties, e.g. `num-request-queues=4`. */
  deviceProps?: string[];
  /** More vhost-user-fs devices, each on its own backend socket (chardev char1, char2…), after the first. */
  extraShares?: ReadonlyArray<{ socketPath: string; tag: string }>;
  /**
   * The guest RAM backend object, without id and size (default `memory-backend-memfd,share=on`), e.g.
   * `memory-backend-file,mem-path=/dev/hugepages,share=on` for hugetlbfs-backed RAM.
   */
  memBackend?: string;
}

export interface GuestResult {
  /** rc of /test.sh from the @@EXIT@@ marker, or null if the marker never appeared. */
  rc: number | null;
  output: string;
  durationMs: number;
  /** ms from spawn to the @@BOOTED@@ marker (modules loaded), or null. */
  bootMs: number | null;
  qemuExitCode: number | null;
  qemuSignal: NodeJS.Signals | null;
  timedOut: boolean;
  stderr: string;
  /** Set when the first boot panicked before userspace (earlyGuestPanic) and this is the retry: its console tail. */
  retriedAfter?: string;
  /** Set when RunGuestOptions.signal killed the guest: the abort reason. */
  aborted?: string;
}

/** The `timeout` + QEMU argument vector for one boot. */
export function qemuArgs(opts: RunGuestOptions, k: KernelInfo, initrd: string, timeoutSec: number): string[] {
  const mem = opts.memMiB ?? 2048;
  const tag = opts.tag ?? 'myfs';
  return [
    '-k',
    '10',
    String(timeoutSec),
    QEMU,
    ...(QEMU_DATA_DIR ? ['-L', QEMU_DATA_DIR] : []),
    '-machine', 'q35',
    '-accel', 'tcg,thread=multi',
    '-cpu', 'max',
    '-smp', String(opts.cpus ?? 2),
    '-m', opts.memSlots && opts.maxMemMiB ? `${mem}M,slots=${opts.memSlots},maxmem=${opts.maxMemMiB}M` : `${mem}M`,
    '-object', `${opts.memBackend ?? 'memory-backend-memfd,share=on'},id=mem,size=${mem}M`,
    '-numa', 'node,memdev=mem',
    '-chardev', `socket,id=char0,path=${opts.socketPath}`,
    '-device', ['vhost-user-fs-pci', 'queue-size=1024', 'chardev=char0', `tag=${tag}`, ...(opts.deviceProps ?? [])].join(','),
    ...(opts.extraShares ?? []).flatMap((x, i) => [
      '-chardev', `socket,id=char${i + 1},path=${x.socketPath}`,
      '-device', `vhost-user-fs-pci,queue-size=1024,chardev=char${i + 1},tag=${x.tag}`,
    ]),
    '-kernel', k.vmlinuz,
    '-initrd', initrd,
    '-append', ['console=ttyS0 quiet panic=-1', ...(opts.kernelArgs ?? [])].join(' '),
    '-nodefaults', '-display', 'none', '-serial', 'stdio', '-monitor', 'none',
    ...(opts.qmpSocket ? ['-qmp', `unix:${opts.qmpSocket},server=on,wait=off`] : []),
    ...(opts.allowReboot ? [] : ['-no-reboot']),
    ...(opts.extraQemuArgs ?? []),
  ];
}

/**
 * Boots the guest with the base initramfs plus a per-run archive holding /test.sh and `files`, and
 * resolves when QEMU exits (the guest powers off after /test.sh, or the timeout kills it).
 */
export async function runGuest(opts: RunGuestOptions): Promise<GuestResult> {
  const k = opts.kernel === undefined ? findKernel() : typeof opts.kernel === 'string' ? kernelInfo(opts.kernel) : opts.kernel;
  if (!k) throw new Error(`no guest kernel found${typeof opts.kernel === 'string' ? ` (${opts.kernel})` : ''}`);
  const timeoutSec = opts.timeoutSec ?? 120;
  const base = buildBaseInitramfs(opts.cacheDir ?? defaultCacheDir(), k);

  const entries: CpioEntry[] = [
    { name: 'test.sh', mode: S_IFREG | 0o755, data: Buffer.from(opts.script) },
  ];
  for (const [name, content] of Object.entries(opts.files ?? {})) {
    entries.push({ name, mode: S_IFREG | 0o644, data: Buffer.isBuffer(content) ? content : Buffer.from(content) });
  }
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-guest-'));
  const initrd = path.join(runDir, 'initrd.cpio');
  fs.writeFileSync(initrd, Buffer.concat([fs.readFileSync(base), cpioNewc(entries)]));
  const args = qemuArgs(opts, k, initrd, timeoutSec);
  try {
    const first = await bootOnce(args, opts, timeoutSec);
    // A guest kernel that panics before userspace (before @@BOOTED, with no virtio-fs/FUSE frame in
    // the trace) never reached our device: an emulation flake (seen: an int3 text-patching Oops in
    // sched_clock_cpu under multi-threaded TCG with the 6.12 kernel). Boot once more if the daemon is
    // still listening; the result says so.
    if (first.aborted !== undefined || !earlyGuestPanic(first) || !fs.existsSync(opts.socketPath)) return first;
    process.stderr.write('# the guest kernel panicked before userspace (not in virtio-fs/FUSE code): booting it once more\n');
    const second = await bootOnce(args, opts, timeoutSec);
    return { ...second, retriedAfter: first.output.slice(first.output.indexOf('Kernel panic') - 2000) };
  } finally {
    fs.rmSync(runDir, { recursive: true, force: true });
  }
}

/** The guest kernel panicked before userspace, and not in virtio-fs or FUSE code. */
export function earlyGuestPanic(r: GuestResult): boolean {
  if (r.bootMs !== null || r.rc !== null || !/Kernel panic/.test(r.output)) return false;
  return !/virtio_fs|virtiofs|fuse_/i.test(r.output);
}

async function bootOnce(args: string[], opts: RunGuestOptions, timeoutSec: number): Promise<GuestResult> {
  const start = Date.now();
  // detached: its own process group, so the backstop can kill timeout(1) and QEMU together
  const child = spawn('timeout', args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  let output = '';
  let stderr = '';
  let bootMs: number | null = null;
  const lines = new LineSplitter((line) => {
    if (bootMs === null && line.includes(BOOTED_MARKER)) bootMs = Date.now() - start;
    opts.onLine?.(line);
  });
  child.stdout!.on('data', (chunk: Buffer) => {
    const s = chunk.toString('latin1');
    output += s;
    lines.push(s);
  });
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const killGroup = (): void => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  };
  // Our own backstop in case `timeout` itself misbehaves: kill the whole process group.
  const backstop = setTimeout(killGroup, (timeoutSec + 20) * 1000);
  if (opts.signal?.aborted) killGroup();
  opts.signal?.addEventListener('abort', killGroup);
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (c, s) => resolve({ code: c, signal: s }));
  });
  clearTimeout(backstop);
  opts.signal?.removeEventListener('abort', killGroup);
  const aborted = opts.signal?.aborted ? String(opts.signal.reason) : undefined;
  lines.flush();
  const clean = output.replace(/\r/g, '');
  return {
    rc: exitCode(clean),
    output: clean,
    durationMs: Date.now() - start,
    bootMs,
    qemuExitCode: code,
    qemuSignal: signal,
    // timeout(1) exits 124 when the command timed out (137 when it had to SIGKILL)
    timedOut: aborted === undefined && (code === 124 || code === 137 || signal === 'SIGKILL'),
    stderr,
    ...(aborted !== undefined ? { aborted } : {}),
  };
}
