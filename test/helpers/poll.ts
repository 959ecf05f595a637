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
