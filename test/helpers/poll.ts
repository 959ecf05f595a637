/**
 * Waiting for an observable condition instead of sleeping a fixed time: a fixed sleep either wastes
 * time or, on a busy machine, is too short and the test checks before the event happened.
 */

/** Polls `cond` every `everyMs` until it is true or `ms` have passed; returns its last value. */
export async function until(cond: () => boolean, ms = 5000, everyMs = 10): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (cond()) return true;
    if (Date.now() >= deadline) return cond();
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

function count(text: string, re: RegExp): number {
  return text.match(new RegExp(re.source, 'g'))?.length ?? 0;
}

/**
 * The daemon (run with --log-level=info) has reset the device after every frontend it adopted:
 * a disconnect has no reply, its end is the "device reset" log line (src/vhost/listener.ts).
 * The log comes through a pipe and lags: with `opened` (connections made so far), it also waits
 * until the daemon has logged each of them as adopted or rejected, so a line still in the pipe
 * cannot make the counts agree too early.
 */
export function frontendsGone(logs: () => string, opened = 0, ms = 5000): Promise<boolean> {
  return until(() => {
    const l = logs();
    const adopted = count(l, /vhost-user frontend connected/);
    if (adopted + count(l, /rejected a second vhost-user connection/) < opened) return false;
    return adopted === count(l, /device reset; waiting for the next frontend/);
  }, ms);
}
