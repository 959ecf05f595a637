/**
 * Shared pieces of the guest-memory e2e tests (large-guest, memory-hotplug): which daemon they run
 * against, a guest run checked step by step, and multi-GiB pseudo-random files written and hashed on
 * the host (the guest moves them through the share; the host compares checksums).
 *
 * VIRTIOFSD_TS_E2E_DAEMON=reference runs them against QEMU's C virtiofsd, as a cross-check of the
 * tests themselves; the default is our daemon.
 */
import { createHash, randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import type { Test } from 'tap';
import {
  type DaemonHandle,
  type DaemonKind,
  guestSkipReason,
  parseVals,
} from '../../harness/index.js';

export const KIND: DaemonKind = process.env.VIRTIOFSD_TS_E2E_DAEMON === 'reference' ? 'reference' : 'ours';

export const GIB = 2 ** 30;
export const MIB = 2 ** 20;
const CHUNK = 16 * MIB;

/**
 * Why the guest tests cannot run here, or false. A missing package fails under CI=true instead of
 * skipping (.ci/run installs them): a skipped suite there would hide a broken setup.
 */
export function guestTestSkip(t: Test): string | false {
  const reason = guestSkipReason(KIND);
  if (reason && process.env.CI === 'true') t.fail(`guest tests cannot run in CI: ${reason}`);
  return reason ?? false;
}

/**
 * Writes `bytes` of pseudo-random data (fresh random 16 MiB chunks, so a block landing at the wrong
 * offset is caught) and returns its sha256.
 */
export function writeRandomFile(file: string, bytes: number): string {
  const h = createHash('sha256');
  const buf = Buffer.alloc(CHUNK);
  const fd = fs.openSync(file, 'w');
  try {
    for (let done = 0; done < bytes; ) {
      const n = Math.min(CHUNK, bytes - done);
      const b = randomFillSync(buf.subarray(0, n));
      fs.writeSync(fd, b);
      h.update(b);
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

export function sha256File(file: string): string {
  const h = createHash('sha256');
  const buf = Buffer.alloc(CHUNK);
  const fd = fs.openSync(file, 'r');
  try {
    for (let n = fs.readSync(fd, buf); n > 0; n = fs.readSync(fd, buf)) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

export const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');


/**
 * Aborts a guest run (RunGuestOptions.signal) as soon as the daemon logs that it refused a memory
 * table message: the guest's I/O then hangs until the timeout, minutes under TCG, for nothing.
 */
export function abortOnMemoryRefusal(daemon: DaemonHandle): { signal: AbortSignal; stop(): void } {
  const ac = new AbortController();
  const timer = setInterval(() => {
    const m = /(SET_MEM_TABLE|ADD_MEM_REG)[^\n]*(rejected|failed)[^\n]*/.exec(daemon.logs());
    if (m) ac.abort(`the ${daemon.kind} daemon refused the guest memory: ${m[0]}`);
  }, 250);
  return { signal: ac.signal, stop: () => clearInterval(timer) };
}

/**
 * "boot 4.3 s, mount 0.1 s, ..." from the guest's `stamp NAME` uptimes (GUEST_MEMORY_FNS): each
 * name's time since the previous one; the first since the kernel started.
 */
export function stepTimes(output: string, names: string[]): string {
  const vals = parseVals(output);
  let prev = 0;
  const parts: string[] = [];
  for (const n of names) {
    const v = vals.get(`t_${n}`);
    if (v === undefined) continue;
    parts.push(`${n} ${(Number(v) - prev).toFixed(1)} s`);
    prev = Number(v);
  }
  return parts.join(', ');
}

export const gib = (bytes: number | bigint) => `${(Number(bytes) / GIB).toFixed(2)} GiB`;

/**
 * Our daemon's aperture report for the guest that just went (logged when the frontend disconnects:
 * "guest memory apertures: N hits, M misses (R% hits)"), or null if none came within `ms`.
 */
export async function apertureReport(daemon: DaemonHandle, ms = 10_000): Promise<{ hits: number; misses: number; rate: number } | null> {
  const m = /guest memory apertures: (\d+) hits, (\d+) misses \(([\d.]+)% hits\)/.exec(
    await daemon.waitForLog(/guest memory apertures: \d+ hits/, ms),
  );
  return m ? { hits: Number(m[1]), misses: Number(m[2]), rate: Number(m[3]) } : null;
}
