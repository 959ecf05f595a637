/**
 * The base initramfs every guest boots: static busybox with its applet links, the modules virtiofs
 * over virtio-pci needs (Debian's 6.1 kernel builds virtio_pci, fuse and virtiofs as modules),
 * decompressed so busybox's insmod can load them, and an /init that mounts the pseudo file systems,
 * loads the modules, runs /test.sh (added per run by qemu.ts) and powers off. Built once per kernel
 * and set of inputs, cached in defaultCacheDir().
 *
 * /init prints the console markers console.ts parses: `@@BOOTED uptime=S@@` once the modules are
 * loaded, `@@EXIT rc=N@@` after /test.sh. The exit code of QEMU says nothing about the guest; these
 * markers are the only way the host learns what happened.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { S_IFCHR, S_IFLNK, S_IFREG } from '../src/abi/stat.js';
import { type CpioEntry, cpioDirMaker, cpioNewc } from './cpio.js';
import { findKernel, type KernelInfo } from './kernel.js';
import { busyboxPath, defaultCacheDir } from './locations.js';

/**
 * Module files (relative to /lib/modules/<kver>) needed for virtiofs over virtio-pci, in load order
 * (virtio, virtio_ring, virtio_pci_*_dev, virtio_pci, fuse, virtiofs on 6.1), as modprobe resolves them.
 */
export function virtiofsModules(k: KernelInfo): string[] {
  const order: string[] = [];
  for (const mod of ['virtio_pci', 'virtiofs']) {
    const r = spawnSync('modprobe', ['-S', k.kver, '--show-depends', mod], { encoding: 'utf8' });
    if (r.status !== 0) {
      // built in: modprobe prints "builtin virtiofs" with status 0; any other failure is fatal
      throw new Error(`modprobe -S ${k.kver} --show-depends ${mod} failed: ${r.stderr}`);
    }
    for (const line of r.stdout.split('\n')) {
      const m = /^insmod\s+(\S+)/.exec(line.trim());
      if (!m?.[1]) continue;
      const rel = path.relative(k.modulesDir, m[1]);
      if (!order.includes(rel)) order.push(rel);
    }
  }
  return order;
}

/** A module file's ELF content: busybox's insmod does not decompress `.ko.xz/.zst/.gz`. */
function decompressModule(file: string): Buffer {
  const tool = file.endsWith('.xz') ? 'xz' : file.endsWith('.zst') ? 'zstd' : file.endsWith('.gz') ? 'gzip' : null;
  if (!tool) return fs.readFileSync(file);
  const r = spawnSync(tool, ['-dc', file], { maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`${tool} -dc ${file} failed: ${String(r.stderr)}`);
  return r.stdout;
}

function initScript(modules: string[]): string {
  return `#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /tmp /mnt /run
mount -t tmpfs tmpfs /tmp
echo 0 > /proc/sys/kernel/printk 2>/dev/null
for m in ${modules.map((m) => `/lib/modules/${m.replace(/\.(xz|zst|gz)$/, '')}`).join(' ')}; do
  insmod "$m" || echo "@@INSMOD FAILED $m@@"
done
echo "@@BOOTED uptime=$(cut -d' ' -f1 /proc/uptime)@@"
cd /
sh /test.sh
rc=$?
sync
echo "@@EXIT rc=$rc@@"
poweroff -f
sleep 5
echo o > /proc/sysrq-trigger
`;
}

/**
 * Build (or reuse) the base initramfs for the detected kernel: busybox + applet links, the
 * virtiofs modules (decompressed), /init. Returns the path of the cached newc archive.
 */
export function buildBaseInitramfs(cacheDir: string = defaultCacheDir(), kernel?: KernelInfo): string {
  const k = kernel ?? findKernel();
  if (!k) throw new Error('no guest kernel found');
  const bb = busyboxPath();
  if (!bb) throw new Error('no static busybox found');
  const modules = virtiofsModules(k);
  const busybox = fs.readFileSync(bb);
  const init = initScript(modules);
  // Key: kernel version + hash of the inputs that matter, so a new busybox or /init rebuilds.
  const h = createHash('sha256').update(busybox).update(init);
  for (const m of modules) h.update(m).update(String(fs.statSync(path.join(k.modulesDir, m)).mtimeMs));
  const key = `${k.kver}-${h.digest('hex').slice(0, 12)}`;
  fs.mkdirSync(cacheDir, { recursive: true });
  const out = path.join(cacheDir, `base-initramfs-${key}.cpio`);
  if (fs.existsSync(out)) return out;

  const entries: CpioEntry[] = [];
  const dir = cpioDirMaker(entries);
  for (const d of ['bin', 'sbin', 'dev', 'proc', 'sys', 'tmp', 'mnt', 'run', 'etc', 'lib/modules']) dir(d);
  // The console and null before devtmpfs is mounted: /init's own output needs them.
  entries.push({ name: 'dev/console', mode: S_IFCHR | 0o600, rdevMajor: 5, rdevMinor: 1 });
  entries.push({ name: 'dev/null', mode: S_IFCHR | 0o666, rdevMajor: 1, rdevMinor: 3 });
  entries.push({ name: 'bin/busybox', mode: S_IFREG | 0o755, data: busybox });
  const list = spawnSync(bb, ['--list'], { encoding: 'utf8' });
  if (list.status !== 0) throw new Error(`${bb} --list failed`);
  for (const applet of list.stdout.split('\n').map((s) => s.trim())) {
    if (!applet || applet === 'busybox' || applet.includes('/')) continue;
    entries.push({ name: `bin/${applet}`, mode: S_IFLNK | 0o777, data: Buffer.from('busybox') });
  }
  for (const m of modules) {
    const dst = `lib/modules/${m.replace(/\.(xz|zst|gz)$/, '')}`;
    dir(path.dirname(dst));
    entries.push({ name: dst, mode: S_IFREG | 0o644, data: decompressModule(path.join(k.modulesDir, m)) });
  }
  entries.push({ name: 'init', mode: S_IFREG | 0o755, data: Buffer.from(init) });
  const tmp = `${out}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, cpioNewc(entries));
  fs.renameSync(tmp, out);
  return out;
}
