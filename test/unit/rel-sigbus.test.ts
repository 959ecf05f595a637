/**
 * The addon's SIGBUS handler (native/src/sigbus.cc, docs/internals.md "Guest RAM that shrinks"): an
 * access to a truncated memfd mapped inside the guarded range of a shared wasm memory reads zeros,
 * whether JS, WASM or a store makes it, and is counted and signalled on the eventfd; every other SIGBUS
 * still goes where it went before (a JS listener installed earlier, or death by SIGBUS). The cases that
 * must kill run in a child process.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { native } from '../../src/native.js';

const PAGE = 4096;
const GUARD_OFF = 1 << 20;
const GUARD_LEN = 16 << 20;

/** (module (import "e" "m" (memory 1 65536 shared)) (func (export "ld") (param i32) (result i32) local.get 0 i32.load)) */
const LOAD_WASM = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 6, 1, 96, 1, 127, 1, 127, 2, 11, 1, 1, 101, 1, 109, 2, 3, 1, 128, 128, 4, 3, 2, 1, 0, 7, 6, 1, 2, 108, 100,
  0, 0, 10, 9, 1, 7, 0, 32, 0, 40, 2, 0, 11,
]);

t.test('faults inside the guarded range read zeros, are counted and signalled', async (t) => {
  const memory = new WebAssembly.Memory({ initial: 65536, maximum: 65536, shared: true });
  const buf = memory.buffer as unknown as SharedArrayBuffer;
  const u8 = new Uint8Array(buf);
  t.equal(native.sigbusGuard(buf, GUARD_OFF + 1, PAGE), -native.constants.errno.EINVAL, 'an unaligned range is refused');
  t.equal(native.sigbusGuard(buf, buf.byteLength - PAGE, 2 * PAGE), -native.constants.errno.EINVAL, 'a range past the buffer is refused');
  const efd = native.sigbusGuard(buf, GUARD_OFF, GUARD_LEN);
  t.ok(efd >= 0, 'guarded');
  t.equal(native.sigbusGuard(buf, GUARD_OFF, GUARD_LEN), efd, 'the same eventfd on every call');
  const before = native.sigbusFaults().count;

  const fd = native.memfdCreate('rel-sigbus', 16 * PAGE, true);
  t.ok(fd >= 0, 'an unsealable memfd');
  t.teardown(() => {
    native.unmapFixed(buf, GUARD_OFF, 16 * PAGE);
    native.close(fd);
  });
  t.equal(native.mapFixed(buf, GUARD_OFF, 16 * PAGE, fd, 0), 0, 'mapped into the guarded range');
  for (let p = 0; p < 16; p++) u8[GUARD_OFF + p * PAGE] = 0xa5;
  t.equal(native.sealShrink(fd), -native.constants.errno.EPERM, 'it cannot be sealed');
  fs.ftruncateSync(fd, 2 * PAGE);

  t.equal(u8[GUARD_OFF + PAGE], 0xa5, 'a page that is still there keeps its bytes');
  t.equal(u8[GUARD_OFF + 5 * PAGE + 7], 0, 'a JS load from a lost page reads 0');
  let f = native.sigbusFaults();
  t.equal(f.count, before + 1, 'counted');
  t.equal(f.offset, GUARD_OFF + 5 * PAGE + 7, 'at the faulting address (offset in the buffer)');
  t.ok(native.eventfdRead(efd) >= 1, 'the eventfd was written');

  const ld = new WebAssembly.Instance(new WebAssembly.Module(LOAD_WASM), { e: { m: memory } }).exports.ld as (a: number) => number;
  t.equal(ld(GUARD_OFF + 9 * PAGE + 64), 0, 'a WASM load from a lost page reads 0');
  f = native.sigbusFaults();
  t.equal(f.count, before + 2, 'counted');
  t.equal(f.offset, GUARD_OFF + 9 * PAGE + 64, 'at its address');

  u8[GUARD_OFF + 12 * PAGE] = 0x3c;
  t.equal(u8[GUARD_OFF + 12 * PAGE], 0x3c, 'a store to a lost page lands in private memory');
  t.equal(native.sigbusFaults().count, before + 3, 'counted once');
  t.equal(u8[GUARD_OFF + 5 * PAGE + 7], 0, 'a page replaced once faults no more');
  t.equal(native.sigbusFaults().count, before + 3, 'not counted again');
  t.equal(fs.fstatSync(fd).size, 2 * PAGE, 'the file itself is left alone');
});

/** Runs `body` in a fresh node (ES module, `native` imported) and returns its exit status and output. */
function child(body: string): { status: number | null; signal: NodeJS.Signals | null; out: string } {
  const nativeUrl = pathToFileURL(new URL('../../src/native.js', import.meta.url).pathname).href;
  const script = `import fs from 'node:fs'; import { native } from '${nativeUrl}';\n${body}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, signal: r.signal, out: `${r.stdout}${r.stderr}` };
}

const GUARDED = `
const memory = new WebAssembly.Memory({ initial: 256, maximum: 256, shared: true });
if (native.sigbusGuard(memory.buffer, 65536, 65536) < 0) throw new Error('guard');
`;

t.test('a fault outside the guarded range still kills the process with SIGBUS', async (t) => {
  const r = child(`${GUARDED}
const other = new WebAssembly.Memory({ initial: 16, maximum: 16, shared: true });
const fd = native.memfdCreate('outside', 4 * 4096, true);
if (native.mapFixed(other.buffer, 0, 4 * 4096, fd, 0) !== 0) throw new Error('map');
fs.ftruncateSync(fd, 0);
console.log('read', new Uint8Array(other.buffer)[4096]);
console.log('survived');`);
  t.equal(r.signal, 'SIGBUS', `died of SIGBUS (${r.out.trim()})`);
  t.notMatch(r.out, /survived/);
});

t.test('a SIGBUS sent with kill is not taken for a fault', async (t) => {
  const r = child(`${GUARDED}
process.kill(process.pid, 'SIGBUS');
setTimeout(() => console.log('survived'), 500);`);
  t.equal(r.signal, 'SIGBUS', 'died of it');
  t.notMatch(r.out, /survived/);
});

t.test('a handler installed before the guard still gets the signals that are not ours', async (t) => {
  const r = child(`process.on('SIGBUS', () => { console.log('earlier handler'); process.exit(3); });
${GUARDED}
const fd = native.memfdCreate('inside', 4096, true);
if (native.mapFixed(memory.buffer, 65536, 4096, fd, 0) !== 0) throw new Error('map');
fs.ftruncateSync(fd, 0);
console.log('inside reads', new Uint8Array(memory.buffer)[65536 + 8]);
process.kill(process.pid, 'SIGBUS');
setTimeout(() => console.log('not forwarded'), 2000);`);
  t.match(r.out, /inside reads 0/, 'a fault inside the range is still ours');
  t.match(r.out, /earlier handler/, 'kill(SIGBUS) reached the earlier (libuv/JS) handler');
  t.equal(r.status, 3, 'which decided the outcome');
});
