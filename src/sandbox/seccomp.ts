/**
 * --seccomp: the system call filter (native/src/seccomp.cc, docs/seccomp.md), installed on every thread
 * of the process once the daemon serves. The modes are virtiofsd's: `kill` ends the process on a call
 * outside the list, `log` lets it run and the kernel logs it (audit `type=1326`), `trap` writes the
 * call's number to stderr and ends the process with SIGSYS, `none` installs nothing.
 */
import type { Logger } from '../log.js';
import { errnoName, native } from '../native.js';

export type SeccompMode = 'kill' | 'log' | 'trap' | 'none';

export const SECCOMP_MODES: readonly SeccompMode[] = ['kill', 'log', 'trap', 'none'];

/** The addon's numbers for the modes (seccompInstall). */
const MODE_NUMBER: Record<Exclude<SeccompMode, 'none'>, number> = { kill: 1, log: 2, trap: 3 };

const WHAT: Record<Exclude<SeccompMode, 'none'>, string> = {
  kill: 'a call outside the allowlist kills the process',
  log: 'a call outside the allowlist is logged by the kernel (audit type=1326) and runs',
  trap: 'a call outside the allowlist is written to stderr and the process dies of SIGSYS',
};

/**
 * Installs the filter for `mode` on every thread (a no-op for `none`). Throws when it cannot: the
 * daemon must not go on serving without the confinement it was asked for.
 */
export function installSeccomp(mode: SeccompMode, log: Logger): void {
  if (mode === 'none') return;
  const r = native.seccompInstall(MODE_NUMBER[mode]);
  if (r < 0) throw new Error(`--seccomp=${mode}: cannot install the system call filter: ${errnoName(-r)}`);
  log.info(`seccomp filter installed on every thread (--seccomp=${mode}): ${WHAT[mode]} (docs/seccomp.md)`);
}
