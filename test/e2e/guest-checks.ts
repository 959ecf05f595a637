// Checks every e2e guest run shares.
import type { Test } from 'tap';
import { type DaemonHandle, type GuestResult, parseSteps } from '../../harness/index.js';

/**
 * The standard checks of one guest run: it finished before the timeout, printed its exit code, exited
 * 0, and every expected `step` passed; the console tail, QEMU's stderr and the daemon's log tail are
 * attached to a failure. Returns false when the guest never reported an exit code (nothing more to check).
 */
export function checkGuestRun(t: Test, name: string, r: GuestResult, expectSteps: string[], daemon?: DaemonHandle): boolean {
  const diag = {
    console: r.output.split('\n').slice(-80).join('\n'),
    qemuStderr: r.stderr,
    daemonLogs: daemon?.logs().split('\n').slice(-40).join('\n'),
  };
  if (r.aborted !== undefined) {
    t.fail(`${name}: guest stopped early: ${r.aborted}`, diag);
    return false;
  }
  t.notOk(r.timedOut, `${name}: guest finished before the timeout`, r.timedOut ? diag : {});
  if (r.rc === null) {
    t.fail(`${name}: guest did not report an exit code (qemu exit ${r.qemuExitCode})`, diag);
    return false;
  }
  t.equal(r.rc, 0, `${name}: guest script exit code`, r.rc === 0 ? {} : diag);
  const steps = parseSteps(r.output);
  for (const s of expectSteps) {
    const st = steps.get(s);
    t.ok(st?.ok, `${name}: guest step ${s}`, st?.ok ? {} : { step: st ?? 'missing', ...diag });
  }
  return true;
}
