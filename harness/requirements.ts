/**
 * What a guest boot needs on the host, as a skip reason for tests and a refusal for benches. On
 * Debian 12: `apt-get install qemu-system-x86 linux-image-amd64 busybox-static cpio kmod` (fio and
 * attr for the workloads); see docs/testing.md.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { DaemonKind } from './daemon.js';
import { findKernel } from './kernel.js';
import { busyboxPath, QEMU, REFERENCE_DAEMON, which } from './locations.js';

/**
 * Why a guest cannot be booted here (for `t.skip`), or null if everything is present.
 * `kind` adds the daemon's own requirement.
 */
export function guestSkipReason(kind?: DaemonKind): string | null {
  const missing: string[] = [];
  if (!which(QEMU)) missing.push(`QEMU binary (${QEMU}; apt-get install qemu-system-x86)`);
  if (!which('timeout')) missing.push('timeout (coreutils)');
  if (!findKernel()) {
    missing.push(
      `guest kernel (/boot/vmlinuz-* with /lib/modules/<kver>, or VIRTIOFSD_TS_KERNEL; apt-get install linux-image-amd64)`,
    );
  }
  const bb = busyboxPath();
  if (!bb) missing.push('static busybox (apt-get install busybox-static)');
  else {
    // A dynamic busybox has no libc in the initramfs: /init would not start.
    const r = spawnSync('file', ['-L', bb], { encoding: 'utf8' });
    if (r.status === 0 && /dynamically linked/.test(r.stdout)) {
      missing.push(`a STATIC busybox (${bb} is dynamically linked; apt-get install busybox-static)`);
    }
  }
  if (!which('modprobe')) missing.push('modprobe (apt-get install kmod)');
  if (kind === 'reference' && !fs.existsSync(REFERENCE_DAEMON)) {
    missing.push(`reference daemon ${REFERENCE_DAEMON} (apt-get install qemu-system-x86 7.2)`);
  }
  return missing.length ? `missing: ${missing.join('; ')}` : null;
}

/** Can this process mount a tmpfs (root, and a sandbox that allows mount(2))? */
export function mountSkipReason(): string | null {
  if (process.getuid?.() !== 0) return 'needs root to mount a tmpfs inside the share';
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-mountprobe-'));
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'vfsd-probe', d], { encoding: 'utf8' });
  if (m.status === 0) spawnSync('umount', [d]);
  fs.rmdirSync(d);
  return m.status === 0 ? null : `cannot mount a tmpfs: ${(m.stderr || m.error?.message || '').trim()}`;
}
