// --readonly end to end through a real daemon process: the option travels config → WorkerInit → each
// worker's FuseServer (two workers), the startup line says so, and requests through guest memory get
// EROFS for writes while reads work; the share is unchanged. Without the option the same writes work.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { FATTR_MODE, Opcode } from '../../src/abi/fuse.js';
import { cstr, u32s } from '../../src/frontend/fuse-requests.js';
import { type Call, type HostileEnv, fuseSession, startHostile } from '../fuzz/hostile-kit.js';

const EROFS = 30;
const O_RDONLY = 0;
const O_RDWR = 2;
const W_OK = 2;
const R_OK = 4;
const dec = new TextDecoder();

/** names, sizes, mtimes and ctimes under the share */
function listing(env: HostileEnv): string[] {
  return fs.readdirSync(env.share, { recursive: true, encoding: 'utf8' }).sort().map((rel) => {
    const st = fs.lstatSync(path.join(env.share, rel), { bigint: true });
    return `${rel} ${st.mode.toString(8)} ${st.size} ${st.mtimeNs} ${st.ctimeNs}`;
  });
}

/** The node id in an entry reply. */
async function lookup(call: Call, rb: { lookup(p: bigint, n: string): Uint8Array }, name: string): Promise<bigint> {
  const r = await call(rb.lookup(1n, name));
  if (r.error !== 0) throw new Error(`LOOKUP ${name}: ${r.error}`);
  return r.view.getBigUint64(0, true);
}

t.test('with --readonly', async (t) => {
  const env = await startHostile(t, ['--readonly']);
  t.match(await env.daemon.waitForLog(/serving [^\n]*readonly/), /serving [^\n]*readonly/, 'the startup line says so');
  const before = listing(env);
  const { s, rb, call } = await fuseSession(env);
  t.teardown(() => s.close());
  const file = await lookup(call, rb, 'hello.txt');
  // several of each, so both workers serve some
  for (let i = 0; i < 4; i++) {
    t.equal((await call(rb.mkdir(1n, `d${i}`))).error, -EROFS, `MKDIR ${i}`);
    t.equal((await call(rb.unlink(1n, 'hello.txt'))).error, -EROFS, `UNLINK ${i}`);
    t.equal((await call(rb.setattr(file, { valid: FATTR_MODE, mode: 0o100600 }))).error, -EROFS, `SETATTR ${i}`);
    t.equal((await call(rb.open(file, O_RDWR))).error, -EROFS, `OPEN O_RDWR ${i}`);
    t.equal((await call(rb.access(file, W_OK))).error, -EROFS, `ACCESS W_OK ${i}`);
    t.equal((await call(rb.build(Opcode.Setxattr, file, u32s(1, 0), cstr('user.k'), new Uint8Array([1])))).error, -EROFS,
      `SETXATTR ${i} (EROFS even with xattrs off)`);
  }
  t.equal((await call(rb.access(file, R_OK))).error, 0, 'ACCESS R_OK');
  const o = await call(rb.open(file, O_RDONLY));
  t.equal(o.error, 0, 'OPEN O_RDONLY');
  const fh = o.view.getBigUint64(0, true);
  const r = await call(rb.read(file, fh, 0n, 100));
  t.equal(dec.decode(r.data), 'hello from the host\n', 'READ through guest memory');
  t.equal((await call(rb.release(file, fh))).error, 0, 'RELEASE');
  t.same(listing(env), before, 'the share is unchanged');
});

t.test('without --readonly: the same writes work', async (t) => {
  const env = await startHostile(t);
  t.notMatch(await env.daemon.waitForLog(/serving [^\n]*worker threads/), /serving [^\n]*readonly/, 'the startup line does not say readonly');
  const { s, rb, call } = await fuseSession(env);
  t.teardown(() => s.close());
  const file = await lookup(call, rb, 'hello.txt');
  t.equal((await call(rb.mkdir(1n, 'd0'))).error, 0, 'MKDIR');
  t.equal((await call(rb.open(file, O_RDWR))).error, 0, 'OPEN O_RDWR');
  t.equal((await call(rb.access(file, W_OK))).error, 0, 'ACCESS W_OK');
  t.equal((await call(rb.unlink(1n, 'hello.txt'))).error, 0, 'UNLINK');
  t.ok(fs.existsSync(path.join(env.share, 'd0')), 'the directory is on the host');
});
