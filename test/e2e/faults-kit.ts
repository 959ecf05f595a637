/**
 * Shared pieces of the fault e2e tests (faults.test.ts, faults-limits.test.ts): what they need on the
 * host, a guest run the test can act in the middle of, the guest's shell helpers for talking to the
 * host through the share, and the checkpoint protocol that proves fsync'd writes reached the host.
 *
 * The guest and the host talk both ways: the guest prints `@@WAITFOR name@@` and polls for
 * `/mnt/ctl/name`, which the host creates once it has done its part (ConsoleWatch sees the line).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Test } from 'tap';
import { ConsoleWatch, type GuestResult, GUEST_PRELUDE, guestSkipReason, mountSkipReason, runGuest, which } from '../../harness/index.js';

export const MIB = 2 ** 20;

/**
 * Why these tests cannot run here (null if they can): a guest boot, and root to mount a tmpfs inside
 * the share. A missing piece fails the run under CI=true (.ci/run installs the packages and runs as root).
 */
export function faultSkip(t: Test, extra: Array<() => string | null> = []): string | false {
  let reason = guestSkipReason('ours') ?? mountSkipReason();
  for (const f of extra) reason ??= f();
  if (reason && process.env.CI === 'true') t.fail(`fault tests cannot run in CI: ${reason}`);
  return reason ?? false;
}

/** A FUSE file system to stop under the share: bindfs and /dev/fuse. */
export function bindfsSkipReason(): string | null {
  if (!which('bindfs')) return 'no bindfs (apt-get install bindfs)';
  if (!fs.existsSync('/dev/fuse')) return 'no /dev/fuse: FUSE mounts are not possible here';
  return null;
}

export function prlimitSkipReason(): string | null {
  return which('prlimit') ? null : 'no prlimit (apt-get install util-linux)';
}

/** Open descriptors of a process. */
export function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * Guest shell helpers on top of GUEST_PRELUDE:
 * - `await_host NAME [SECS]` prints `@@WAITFOR NAME@@` and waits (default 60 s) for the host's
 *   /mnt/ctl/NAME;
 * - `ckpt_writes FILE N` writes N 1 MiB chunks of fresh random data at their offsets in FILE, each
 *   with `dd conv=fsync`, and prints `@@CKPT i md5@@` for every chunk written and fsync'd;
 * - `bg_writer FILE` rewrites a 16 MiB file in a loop in the background (requests in flight at any time).
 */
export const FAULT_PRELUDE = `${GUEST_PRELUDE}
now_ms() { awk '{printf "%d", $1 * 1000}' /proc/uptime; }
await_host() {
  echo "@@WAITFOR $1@@"
  _w=0
  while [ ! -e "/mnt/ctl/$1" ]; do
    _w=$((_w+1)); [ $_w -gt $(( \${2:-60} * 5 )) ] && { echo "no host signal $1"; return 1; }
    sleep 0.2
  done
}
ckpt_writes() {
  _i=0
  while [ $_i -lt $2 ]; do
    head -c 1048576 /dev/urandom > /tmp/chunk
    if ! dd if=/tmp/chunk of="$1" bs=1048576 seek=$_i count=1 conv=notrunc,fsync 2>/tmp/dd.err; then
      echo "@@CKPT_ERR $_i $(tr '\\n' ' ' < /tmp/dd.err)@@"; return 1
    fi
    echo "@@CKPT $_i $(md5sum < /tmp/chunk | cut -d' ' -f1)@@"
    _i=$((_i+1))
  done
}
bg_writer() { ( while :; do dd if=/dev/zero of="$1" bs=65536 count=256 2>/dev/null; done ) & }
`;

export interface Checkpoint {
  index: number;
  md5: string;
}

/** The `@@CKPT i md5@@` lines seen so far. */
export function parseCheckpoints(output: string): Checkpoint[] {
  return [...output.matchAll(/@@CKPT (\d+) ([0-9a-f]{32})@@/g)].map((m) => ({ index: Number(m[1]), md5: m[2]! }));
}

/** Checkpoints whose 1 MiB chunk in `file` on the host does not have the md5 the guest printed. */
export function badCheckpoints(file: string, ckpts: Checkpoint[]): string[] {
  const data = fs.existsSync(file) ? fs.readFileSync(file) : Buffer.alloc(0);
  const bad: string[] = [];
  for (const c of ckpts) {
    const chunk = data.subarray(c.index * MIB, (c.index + 1) * MIB);
    const got = chunk.length === MIB ? createHash('md5').update(chunk).digest('hex') : `short (${chunk.length} bytes)`;
    if (got !== c.md5) bad.push(`chunk ${c.index}: guest fsync'd ${c.md5}, host has ${got}`);
  }
  return bad;
}

/** A guest run the test acts in: every console line goes to `watch`; `kill()` SIGKILLs QEMU. */
export interface LiveGuest {
  watch: ConsoleWatch;
  /** SIGKILL to QEMU (and its timeout(1) wrapper); the result's `aborted` carries the reason. */
  kill(reason: string): void;
  result: Promise<GuestResult>;
  /** Console so far (lines). */
  lines: string[];
}

export function startGuest(socketPath: string, script: string, timeoutSec: number): LiveGuest {
  const watch = new ConsoleWatch();
  const ac = new AbortController();
  const lines: string[] = [];
  const verbose = process.env.VIRTIOFSD_TS_E2E_VERBOSE === '1';
  const result = runGuest({
    socketPath,
    script,
    timeoutSec,
    signal: ac.signal,
    onLine: (l) => {
      lines.push(l);
      watch.feed(l);
      if (verbose) process.stderr.write(`# guest: ${l}\n`);
    },
  }).finally(() => watch.end());
  return { watch, kill: (reason) => ac.abort(reason), result, lines };
}

/** The host's answer to the guest's `await_host NAME`. */
export function signalGuest(share: string, name: string): void {
  fs.writeFileSync(path.join(share, 'ctl', name), '');
}

/** Resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** ms from now until `p` resolves (or the bound passes: then null). */
export async function timed<T>(p: Promise<T>, boundMs: number): Promise<{ value: T; ms: number } | null> {
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<null>((r) => {
    timer = setTimeout(() => r(null), boundMs);
  });
  const v = await Promise.race([p.then((value) => ({ value, ms: Date.now() - t0 })), bound]);
  clearTimeout(timer);
  return v;
}

/** Log lines matching `pattern` (for the report). */
export function logLines(logs: string, pattern: RegExp): string[] {
  return logs.split('\n').filter((l) => pattern.test(l));
}
