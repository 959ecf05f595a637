/**
 * Where things are: the repository root, the cache for built initramfs images, the binaries the
 * harness runs (each overridable by an environment variable, see docs/testing.md) and a PATH lookup.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (the directory with our package.json), found from this file upwards. */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        const name = (JSON.parse(fs.readFileSync(pj, 'utf8')) as { name?: string }).name;
        if (name === 'virtiofsd-ts') return dir;
      } catch {
        /* keep looking */
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('repository root (package.json of virtiofsd-ts) not found');
    dir = up;
  }
}

/** The C virtiofsd that QEMU 7.2 ships (Debian 12: package qemu-system-x86), the side-by-side reference. */
export const REFERENCE_DAEMON = process.env.VIRTIOFSD_TS_REFERENCE ?? '/usr/lib/qemu/virtiofsd';
export const QEMU = process.env.VIRTIOFSD_TS_QEMU ?? 'qemu-system-x86_64';
/** QEMU's firmware and ROM directory (`-L`), for a QEMU unpacked outside /usr (VIRTIOFSD_TS_QEMU_DATA). */
export const QEMU_DATA_DIR = process.env.VIRTIOFSD_TS_QEMU_DATA;

/**
 * A second QEMU for the e2e suite: QEMU 10 from bookworm-backports, unpacked (not installed: installing
 * it would replace 7.2 and with it the reference daemon) by .ci/run into the cache, or at
 * VIRTIOFSD_TS_QEMU10 (the unpacked root, holding usr/bin and usr/share/qemu). Null when absent.
 */
export function qemu10(): { bin: string; dataDir: string } | null {
  const root = process.env.VIRTIOFSD_TS_QEMU10 ?? path.join(defaultCacheDir(), 'qemu-10', 'root');
  const bin = path.join(root, 'usr', 'bin', 'qemu-system-x86_64');
  const dataDir = path.join(root, 'usr', 'share', 'qemu');
  return fs.existsSync(bin) && fs.existsSync(dataDir) ? { bin, dataDir } : null;
}

/** The absolute path of `cmd` found in PATH (or `cmd` itself if it has a slash and exists), else null. */
export function which(cmd: string): string | null {
  if (cmd.includes('/')) return fs.existsSync(cmd) ? cmd : null;
  for (const d of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = path.join(d, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

/** The static busybox the guest's userspace is made of (env VIRTIOFSD_TS_BUSYBOX, else Debian's busybox-static). */
export function busyboxPath(): string | null {
  for (const p of [process.env.VIRTIOFSD_TS_BUSYBOX, '/bin/busybox', '/usr/bin/busybox']) {
    if (p && fs.existsSync(p)) return p;
  }
  return null;
}

/** Built images are cached under node_modules/.cache (outside git, wiped with node_modules). */
export function defaultCacheDir(): string {
  try {
    const d = path.join(repoRoot(), 'node_modules', '.cache', 'virtiofsd-ts');
    fs.mkdirSync(d, { recursive: true });
    return d;
  } catch {
    return path.join(os.tmpdir(), 'virtiofsd-ts-cache');
  }
}
