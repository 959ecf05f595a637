import vm from 'node:vm';
import t from 'tap';
import {
  DeviceError, Errno, ErrorCode, FrontendError, MemoryError, UsageError, VhostUserProtocolError, VirtiofsdError,
  errnoFromException, isErr,
} from '../../src/errors.js';

// The table operators and tests rely on: class → stable code, name, default errno. A code is never
// reworded (logs and alerts match on it); changing one here must be a deliberate, CHANGELOG-worthy act.
const TABLE: Array<[new (m: string, errno?: number) => VirtiofsdError, string, string, number]> = [
  [UsageError, 'VIRTIOFSD_USAGE', 'UsageError', Errno.EINVAL],
  [VhostUserProtocolError, 'VIRTIOFSD_VHOST_PROTOCOL', 'VhostUserProtocolError', Errno.EINVAL],
  [DeviceError, 'VIRTIOFSD_DEVICE', 'DeviceError', Errno.EINVAL],
  [MemoryError, 'VIRTIOFSD_MEMORY', 'MemoryError', Errno.EINVAL],
  [FrontendError, 'VIRTIOFSD_FRONTEND', 'FrontendError', Errno.EPROTO],
];

t.test('every error class: stable code, name, errno, message, one base', async (t) => {
  for (const [Cls, code, name, errno] of TABLE) {
    const e = new Cls('something went wrong');
    t.equal(e.code, code, `${name}.code`);
    t.equal(e.name, name);
    t.equal(e.errno, errno, `${name} default errno`);
    t.equal(e.message, 'something went wrong');
    t.ok(e instanceof Cls);
    t.ok(e instanceof VirtiofsdError, `${name} is a VirtiofsdError`);
    t.ok(e instanceof Error);
    t.match(String(e.stack), new RegExp(`^${name}: something went wrong`), 'stack starts with name: message');
    const withErrno = new Cls('x', Errno.ENOSPC);
    t.equal(withErrno.errno, Errno.ENOSPC, `${name} keeps the errno it is given`);
  }
  t.same(Object.values(ErrorCode).sort(), TABLE.map((r) => r[1]).sort(), 'the table covers every code');
  t.equal(new Set(Object.values(ErrorCode)).size, TABLE.length, 'codes are unique');
  t.equal(new UsageError('bad option').exitCode, 2, 'usage errors exit with 2');
});

t.test('subclasses do not match each other; foreign errors are not ours', async (t) => {
  t.notOk(new DeviceError('d') instanceof MemoryError);
  t.notOk(new MemoryError('m') instanceof VhostUserProtocolError);
  t.notOk(new Error('plain') instanceof VirtiofsdError);
  t.notOk((null as unknown) instanceof VirtiofsdError);
  t.notOk(({ code: 'VIRTIOFSD_USAGE' } as unknown) instanceof VirtiofsdError, 'a look-alike without the brand');
});

t.test('the brand holds across realms (another copy of the module, another context)', async (t) => {
  // An error made in another V8 context: a different Error constructor, the same registered symbol.
  const foreign = vm.runInNewContext(`
    const e = new Error('from elsewhere');
    Object.defineProperty(e, Symbol.for('virtiofsd-ts.error'), { value: true });
    e;
  `) as unknown;
  t.notOk(foreign instanceof Error, 'not an Error of this realm');
  t.ok(foreign instanceof VirtiofsdError, 'but branded as ours');
});

t.test('errno helpers', async (t) => {
  t.ok(isErr(-Errno.ENOENT));
  t.notOk(isErr(0));
  t.notOk(isErr(3));
  t.notOk(isErr('-2'));
  t.equal(errnoFromException({ errno: -Errno.EACCES }), -Errno.EACCES, 'node:fs errors carry a negative errno');
  t.equal(errnoFromException(new Error('bug')), -Errno.EIO, 'anything else is EIO');
  t.equal(errnoFromException({ errno: -5000 }), -Errno.EIO, 'out of range is EIO');
  t.equal(errnoFromException(null), -Errno.EIO);
});

t.test('Errno values are the Linux (asm-generic) numbers', async (t) => {
  // A few anchors from asm-generic/errno-base.h and errno.h; the full table is checked against the
  // native addon's table (the C headers' values) in abi-drift.
  t.equal(Errno.EPERM, 1);
  t.equal(Errno.EINVAL, 22);
  t.equal(Errno.ENOSYS, 38);
  t.equal(Errno.ENODATA, 61);
  t.equal(Errno.EOPNOTSUPP, 95);
  t.equal(Errno.ESTALE, 116);
});
