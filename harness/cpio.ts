/**
 * A newc ("070701") cpio writer, the format the kernel unpacks an initramfs from. Our own rather than
 * cpio(1), so device nodes and ownership (root) do not depend on the host user running the tests.
 * Archives are padded to 512 bytes, so several can be concatenated into one initrd (the kernel
 * unpacks each in turn): a cached base image plus a small per-run archive.
 */
import { S_IFDIR, S_IFMT } from '../src/abi/stat.js';

export interface CpioEntry {
  name: string; // without leading '/'
  mode: number; // including the file type bits
  data?: Buffer; // regular files; symlink target for links
  rdevMajor?: number;
  rdevMinor?: number;
}

/**
 * Returns dir(path): appends a directory entry (0755) for `path` and each of its parents, once each,
 * to `entries`, so the archive holds every directory before the files in it.
 */
export function cpioDirMaker(entries: CpioEntry[]): (d: string) => void {
  const dirs = new Set<string>();
  return (d: string) => {
    const segs = d.split('/');
    for (let i = 1; i <= segs.length; i++) {
      const p = segs.slice(0, i).join('/');
      if (p && p !== '.' && !dirs.has(p)) {
        dirs.add(p);
        entries.push({ name: p, mode: S_IFDIR | 0o755 });
      }
    }
  };
}

export function cpioNewc(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  const push = (b: Buffer) => {
    parts.push(b);
    offset += b.length;
  };
  const pad4 = () => {
    const n = (4 - (offset % 4)) % 4;
    if (n) push(Buffer.alloc(n));
  };
  const hex = (n: number) => (n >>> 0).toString(16).padStart(8, '0');
  let ino = 1;
  const mtime = 0; // reproducible
  const one = (e: CpioEntry) => {
    const data = e.data ?? Buffer.alloc(0);
    const nameBuf = Buffer.from(`${e.name}\0`);
    const header =
      '070701' +
      hex(ino++) +
      hex(e.mode) +
      hex(0) + // uid
      hex(0) + // gid
      hex((e.mode & S_IFMT) === S_IFDIR ? 2 : 1) +
      hex(mtime) +
      hex(data.length) +
      hex(0) + // devmajor
      hex(0) + // devminor
      hex(e.rdevMajor ?? 0) +
      hex(e.rdevMinor ?? 0) +
      hex(nameBuf.length) +
      hex(0); // check
    push(Buffer.from(header, 'ascii'));
    push(nameBuf);
    pad4();
    if (data.length) {
      push(data);
      pad4();
    }
  };
  for (const e of entries) one(e);
  one({ name: 'TRAILER!!!', mode: 0 });
  // Pad the archive to 512 bytes so another archive can be appended cleanly.
  const n = (512 - (offset % 512)) % 512;
  if (n) push(Buffer.alloc(n));
  return Buffer.concat(parts);
}
