/**
 * What the vhost-user side has seen, for the metrics (src/metrics/collect.ts): connections, how they
 * ended, and the messages handled and rejected by request name. Counted on the main thread, where the
 * protocol runs; kept by the daemon for its lifetime, so a reconnecting frontend adds to the same counts.
 */
import { FrontendReq } from './message.js';

export class VhostUserStats {
  /** frontends adopted */
  connections = 0;
  /** frontends that went away (or were dropped) */
  disconnects = 0;
  /** connections refused because one is active */
  refusedConnections = 0;
  /** messages handled, by request name */
  readonly messages = new Map<string, number>();
  /** messages answered with a failure (protocol errors, unsupported requests), by request name */
  readonly rejected = new Map<string, number>();

  message(request: number, failed: boolean): void {
    const name = requestLabel(request);
    this.messages.set(name, (this.messages.get(name) ?? 0) + 1);
    if (failed) this.rejected.set(name, (this.rejected.get(name) ?? 0) + 1);
  }
}

/** A request's name, or "UNKNOWN" for a number the spec does not define (labels stay bounded). */
export function requestLabel(request: number): string {
  return FrontendReq[request] ?? 'UNKNOWN';
}
