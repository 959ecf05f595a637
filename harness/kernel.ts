/**
 * Guest kernel discovery: a bootable kernel is a /boot/vmlinuz-<kver> with its /lib/modules/<kver>
 * (the virtio-pci and virtiofs drivers are modules in Debian's kernels, so the initramfs needs them).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface KernelInfo {
  kver: string;
  vmlinuz: string;
  modulesDir: string;
}

/** Orders kernel versions like `6.1.0-56-amd64` < `6.12.95+deb12-amd64` (numeric fields as numbers). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((x) => (/^\d+$/.test(x) ? Number(x) : x));
  const pb = b.split(/[.-]/).map((x) => (/^\d+$/.test(x) ? Number(x) : x));
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i];
    const y = pb[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    return String(x) < String(y) ? -1 : 1;
  }
  return 0;
}

/** A kernel given as a version like `6.1.0-56-amd64` or a path to a vmlinuz-<kver>; null if absent. */
export function kernelInfo(spec: string): KernelInfo | null {
  const mk = (kver: string, vmlinuz: string): KernelInfo | null => {
    const modulesDir = path.join('/lib/modules', kver);
    return fs.existsSync(vmlinuz) && fs.existsSync(modulesDir) ? { kver, vmlinuz, modulesDir } : null;
  };
  if (spec.includes('/')) {
    const m = /vmlinuz-(.+)$/.exec(path.basename(spec));
    return m?.[1] ? mk(m[1], spec) : null;
  }
  return mk(spec, `/boot/vmlinuz-${spec}`);
}

/** Every bootable kernel in /boot (with its /lib/modules directory), newest first. */
export function listKernels(): KernelInfo[] {
  let names: string[] = [];
  try {
    names = fs.readdirSync('/boot').filter((n) => n.startsWith('vmlinuz-'));
  } catch {
    return [];
  }
  const kvers = names.map((n) => n.slice('vmlinuz-'.length)).sort(compareVersions).reverse();
  return kvers.map((k) => kernelInfo(k)).filter((k): k is KernelInfo => k !== null);
}

/**
 * The newest bootable kernel whose version is at least `min` (e.g. `6.11`, the first whose virtiofs
 * driver uses several request queues), or null.
 */
export function findKernelAtLeast(min: string): KernelInfo | null {
  return listKernels().find((k) => compareVersions(k.kver.split('-')[0]!.split('+')[0]!, min) >= 0) ?? null;
}

/**
 * The guest kernel: env VIRTIOFSD_TS_KERNEL (a kernel version like `6.1.0-56-amd64` or a path to a
 * vmlinuz-<kver>), else the newest 6.1 /boot/vmlinuz-*, else the newest one with modules. A second,
 * newer kernel (e.g. 6.12 from bookworm-backports, for multiqueue) does not change this default.
 */
export function findKernel(): KernelInfo | null {
  const env = process.env.VIRTIOFSD_TS_KERNEL;
  if (env) return kernelInfo(env);
  const all = listKernels();
  return all.find((k) => k.kver.startsWith('6.1.')) ?? all[0] ?? null;
}
