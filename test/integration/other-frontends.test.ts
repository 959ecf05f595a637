/**
 * What frontends other than QEMU 7.2 may do. A frontend whose kick and call eventfds are blocking (created without EFD_NONBLOCK: the vhost-user spec
 * does not ask for the flag; QEMU happens to set it). Several workers wait on the same kick fd, so one
 * may find the counter drained by another: the daemon must never sit in a blocking read of it, or the
 * device could not be reset on disconnect and SIGTERM would hang (docs/internals.md, "Facts the design
 * rests on"). Guest RAM in memfds made without MFD_ALLOW_SEALING: served, with one warning.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { parseReply, RequestBuilder } from '../../src/frontend/fuse-requests.js';
import { VirtioFsSession } from '../../src/frontend/virtio-fs-session.js';
import { type DaemonHandle, startDaemon } from '../../harness/index.js';

/** Our daemon on a fresh share holding one file `f`; both go at the end of the test. */
async function daemonOnShare(t: Test, args: string[]): Promise<{ sock: string; d: DaemonHandle }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-frontends-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const share = path.join(dir, 'share');
  fs.mkdirSync(share);
  fs.writeFileSync(path.join(share, 'f'), 'x');
  const sock = path.join(dir, 's.sock');
  const d = await startDaemon('ours', { sharedDir: share, socketPath: sock, extraArgs: args });
  t.teardown(() => d.stop(2000));
  return { sock, d };
}

t.test('blocking kick eventfds: served by several workers, reset on disconnect, SIGTERM exits', async (t) => {
  const { sock, d } = await daemonOnShare(t, ['--thread-pool-size=4']);
  for (let round = 1; round <= 2; round++) {
    const s = VirtioFsSession.open(sock, { blockingEventfds: true });
    const rb = new RequestBuilder();
    const within = <T>(p: Promise<T>, what: string): Promise<T> =>
      Promise.race([p, new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`${what}: no reply in 10 s`)), 10_000))]);
    t.equal(parseReply(await within(s.send(1, rb.init(), 4096), 'INIT')).error, 0, `round ${round}: INIT`);
    // Bursts of requests in flight, so that several workers wake for the same kicks.
    for (let burst = 0; burst < 20; burst++) {
      const replies = await within(Promise.all(Array.from({ length: 16 }, () => s.send(1, rb.lookup(1n, 'f'), 4096))), 'LOOKUP burst');
      if (!replies.every((r) => parseReply(r).error === 0)) t.fail(`round ${round}: a LOOKUP failed`);
    }
    t.pass(`round ${round}: 320 LOOKUPs answered`);
    s.close();
    const logs = await d.waitForLog(new RegExp(`(device reset; waiting for the next frontend[\\s\\S]*){${round}}`), 10_000);
    t.match(logs, /device reset; waiting for the next frontend/, `round ${round}: the device was reset after the disconnect`);
  }
  const t0 = Date.now();
  const st = await d.stop(10_000);
  t.equal(st.code, 0, 'SIGTERM: exit code 0');
  t.ok(Date.now() - t0 < 8000, `stopped in ${Date.now() - t0} ms, not killed`);
});

t.test('guest RAM that cannot be sealed: served, and the warning said once for all connections', async (t) => {
  const { sock, d } = await daemonOnShare(t, []);
  const ram = { guestPhysAddr: 1n << 32n, userspaceAddr: 0x7f00_0000_0000n, size: 64n << 20n, sealable: false, arenas: [{ offset: 0n, bytes: 64 << 20 }] };
  for (let round = 1; round <= 3; round++) {
    const s = VirtioFsSession.open(sock, { queueSize: 64, slotBytes: 65536, memory: { regions: [ram] } });
    const rb = new RequestBuilder();
    t.equal(parseReply(await s.send(1, rb.init(), 4096)).error, 0, `round ${round}: INIT`);
    t.equal(parseReply(await s.send(1, rb.lookup(1n, 'f'), 4096)).error, 0, `round ${round}: LOOKUP`);
    s.close();
    await d.waitForLog(new RegExp(`(device reset; waiting for the next frontend[\\s\\S]*){${round}}`), 10_000);
  }
  const warnings = d.logs().match(/cannot be sealed against shrinking/g) ?? [];
  t.equal(warnings.length, 1, 'one warning for three connections');
  t.match(d.logs(), /relies on the VMM never to truncate guest RAM/, 'saying what it means for the operator');
});
