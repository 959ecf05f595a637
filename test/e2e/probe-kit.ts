// The guest-side probe (test/e2e/guest/fsprobe.c): compiled on the host with `gcc -static -O2` and
// cached next to the base initramfs, keyed by the hash of its source and the compiler version.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { defaultCacheDir, repoRoot, which } from '../../harness/index.js';

export const PROBE_SRC = path.join(repoRoot(), 'test', 'e2e', 'guest', 'fsprobe.c');

/** Compile (or reuse) the static probe. Returns its path, or `{skip}` with the reason. */
export function buildProbe(): string | { skip: string } {
  const gcc = process.env.CC ?? 'gcc';
  if (!which(gcc)) return { skip: `no C compiler (${gcc}; apt-get install gcc libc6-dev)` };
  const src = fs.readFileSync(PROBE_SRC);
  const ver = spawnSync(gcc, ['--version'], { encoding: 'utf8' }).stdout ?? '';
  const key = createHash('sha256').update(src).update(ver).digest('hex').slice(0, 16);
  const dir = defaultCacheDir();
  const out = path.join(dir, `fsprobe-${key}`);
  if (fs.existsSync(out)) return out;
  fs.mkdirSync(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const r = spawnSync(gcc, ['-static', '-O2', '-Wall', '-o', tmp, PROBE_SRC], { encoding: 'utf8' });
  if (r.status !== 0) {
    fs.rmSync(tmp, { force: true });
    const err = `${r.stderr ?? ''}${r.error?.message ?? ''}`;
    if (/cannot find -lc|libc\.a|crt1\.o|No such file/.test(err)) {
      return { skip: `gcc -static cannot link (static libc missing; apt-get install libc6-dev): ${err.trim().split('\n').at(-1)}` };
    }
    throw new Error(`compiling ${PROBE_SRC} failed:\n${err}`);
  }
  fs.renameSync(tmp, out);
  return out;
}
