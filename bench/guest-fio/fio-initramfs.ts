/**
 * The guest's fio: the host's fio binary, every shared library `ldd` lists for it and the dynamic
 * loader, at the same paths, in an archive appended to the harness's base initramfs.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildBaseInitramfs, type CpioEntry, cpioDirMaker, cpioNewc, defaultCacheDir, findKernel, kernelInfo } from '../../harness/index.js';
import { S_IFREG } from '../../src/abi/stat.js';

export interface FioFiles {
  /** host path → guest path (the same) */
  files: string[];
  libDirs: string[];
}

export function fioFiles(): FioFiles {
  const fio = spawnSync('sh', ['-c', 'command -v fio'], { encoding: 'utf8' }).stdout.trim();
  if (!fio) throw new Error('fio not found on the host (apt-get install fio)');
  const r = spawnSync('ldd', [fio], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ldd ${fio} failed: ${r.stderr}`);
  const files = [fio];
  for (const line of r.stdout.split('\n')) {
    // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1] && !files.includes(m[1])) files.push(m[1]);
    if (/=>\s+not found/.test(line)) throw new Error(`fio needs a library that is missing: ${line.trim()}`);
  }
  const libDirs = [...new Set(files.slice(1).map((f) => path.dirname(f)))];
  return { files, libDirs };
}

function fioExtension(ff: FioFiles): Buffer {
  const entries: CpioEntry[] = [];
  const dir = cpioDirMaker(entries);
  for (const f of ff.files) {
    const rel = f.replace(/^\/+/, '');
    dir(path.dirname(rel));
    // Symlinks are dereferenced: the guest gets the file's content at the path the loader asks for.
    entries.push({ name: rel, mode: S_IFREG | 0o755, data: fs.readFileSync(fs.realpathSync(f)) });
  }
  return cpioNewc(entries);
}

/**
 * The base initramfs with the fio extension appended, placed where `runGuest({cacheDir})` looks for
 * its base image (runGuest has no option for an extra archive): `buildBaseInitramfs(dir)` names the
 * file; we keep the pristine copy beside it and rewrite the combined one when either input changes.
 */
export function prepareInitramfs(cacheDir: string, ff: FioFiles, kernel: string | null): string {
  const k = kernel === null ? findKernel() : kernelInfo(kernel);
  if (!k) throw new Error(`no guest kernel${kernel === null ? '' : ` ${kernel}`}`);
  const pristine = buildBaseInitramfs(defaultCacheDir(), k);
  const target = buildBaseInitramfs(cacheDir, k); // creates it (pristine) the first time
  const h = createHash('sha256').update(path.basename(pristine));
  for (const f of ff.files) h.update(f).update(String(fs.statSync(fs.realpathSync(f)).mtimeMs));
  const key = h.digest('hex').slice(0, 16);
  const stamp = `${target}.fio-stamp`;
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === key) return target;
  const tmp = `${target}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, Buffer.concat([fs.readFileSync(pristine), fioExtension(ff)]));
  fs.renameSync(tmp, target);
  fs.writeFileSync(stamp, key);
  return target;
}
