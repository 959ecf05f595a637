/**
 * Capabilities by name (linux/capability.h numbering), the set the file server keeps, and --modcaps.
 */
import { UsageError } from '../errors.js';

/** capability number by name, without the cap_ prefix */
export const CAP: Readonly<Record<string, number>> = {
  chown: 0, dac_override: 1, dac_read_search: 2, fowner: 3, fsetid: 4, kill: 5, setgid: 6, setuid: 7,
  setpcap: 8, linux_immutable: 9, net_bind_service: 10, net_broadcast: 11, net_admin: 12, net_raw: 13,
  ipc_lock: 14, ipc_owner: 15, sys_module: 16, sys_rawio: 17, sys_chroot: 18, sys_ptrace: 19, sys_pacct: 20,
  sys_admin: 21, sys_boot: 22, sys_nice: 23, sys_resource: 24, sys_time: 25, sys_tty_config: 26, mknod: 27,
  lease: 28, audit_write: 29, audit_control: 30, setfcap: 31, mac_override: 32, mac_admin: 33, syslog: 34,
  wake_alarm: 35, block_suspend: 36, audit_read: 37, perfmon: 38, bpf: 39, checkpoint_restore: 40,
};

/**
 * What a file server needs, and no more (the reference daemon's default set): chown and the set-id
 * calls to act as the guest's users, DAC overrides for a root guest, fowner/fsetid for modes and times
 * of others' files, mknod for device nodes, setfcap for security.capability.
 */
export const DEFAULT_CAPS: readonly string[] = [
  'chown', 'dac_override', 'dac_read_search', 'fowner', 'fsetid', 'setgid', 'setuid', 'mknod', 'setfcap',
];

function capName(raw: string, opt: string): string {
  const n = raw.trim().toLowerCase().replace(/^cap_/, '');
  if (!(n in CAP)) throw new UsageError(`${opt}: unknown capability '${raw}' (names as in capabilities(7), e.g. sys_admin or CAP_SYS_ADMIN)`);
  return n;
}

/**
 * --modcaps=+cap,-cap (also ':'-separated, as the reference daemon writes it): the kept set from the
 * default with each + added and each - removed, in order.
 */
export function applyModcaps(spec: string, base: readonly string[] = DEFAULT_CAPS, opt = '--modcaps'): string[] {
  const set = new Set(base);
  const items = spec.split(/[,:]/).filter((s) => s.trim() !== '');
  if (items.length === 0) throw new UsageError(`${opt}: empty (expected e.g. +sys_admin,-mknod)`);
  for (const item of items) {
    const t = item.trim();
    const sign = t[0];
    if (sign !== '+' && sign !== '-') throw new UsageError(`${opt}: '${t}': each capability starts with + (keep) or - (drop)`);
    const n = capName(t.slice(1), opt);
    if (sign === '+') set.add(n);
    else set.delete(n);
  }
  return [...set].sort((a, b) => CAP[a]! - CAP[b]!);
}

/** The set as capset's two 32-bit words. */
export function capMask(names: readonly string[]): { lo: number; hi: number } {
  let lo = 0;
  let hi = 0;
  for (const n of names) {
    const c = CAP[n]!;
    if (c < 32) lo = (lo | (1 << c)) >>> 0;
    else hi = (hi | (1 << (c - 32))) >>> 0;
  }
  return { lo, hi };
}
