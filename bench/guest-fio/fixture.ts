/** The share each daemon serves, and how the daemon holds its files open (is the host side O_DIRECT?). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { processTree } from '../../harness/index.js';
import { C } from '../../src/native.js';

const MiB = 1 << 20;

/** A fresh share: fio/read.dat and fio/write.dat (sizeMiB each, non-zero data, on disk), meta/. */
export function makeFixture(root: string, sizeMiB: number): string {
  const share = path.join(root, 'share');
  fs.mkdirSync(path.join(share, 'fio'), { recursive: true });
  fs.mkdirSync(path.join(share, 'meta'), { recursive: true });
  const block = Buffer.alloc(MiB);
  let x = 0x9e3779b9;
  for (let i = 0; i < MiB; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    block.writeUInt32LE(x >>> 0, i);
  }
  for (const name of ['read.dat', 'write.dat']) {
    const fd = fs.openSync(path.join(share, 'fio', name), 'w');
    for (let i = 0; i < sizeMiB; i++) {
      block.writeUInt32LE(i, 0); // no two MiB alike
      fs.writeSync(fd, block);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
  }
  return share;
}

export interface FixtureFd {
  file: string;
  /** open(2) flags in octal, from /proc/PID/fdinfo */
  flags: string;
  direct: boolean;
}

/** The daemon's open fds on the fio fixture files, with their flags (/proc/PID/fdinfo, the host's O_* bits). */
export function fixtureFds(pid: number): FixtureFd[] {
  const out: FixtureFd[] = [];
  for (const p of processTree(pid)) {
    let fds: string[] = [];
    try {
      fds = fs.readdirSync(`/proc/${p}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const target = fs.readlinkSync(`/proc/${p}/fd/${fd}`);
        if (!/\/fio\/(read|write)\.dat$/.test(target)) continue;
        const m = /^flags:\s+([0-7]+)/m.exec(fs.readFileSync(`/proc/${p}/fdinfo/${fd}`, 'latin1'));
        if (!m?.[1]) continue;
        const flags = parseInt(m[1], 8);
        if ((flags & C.O_PATH) !== 0) continue; // O_PATH inode fds
        out.push({ file: path.basename(target), flags: m[1], direct: (flags & C.O_DIRECT) !== 0 });
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return out;
}
