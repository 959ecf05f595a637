import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parseArgs, validateConfig } from '../../src/config.js';
import { UsageError } from '../../src/errors.js';
import { native } from '../../src/native.js';

t.test('virtiofsd spellings are accepted', async (t) => {
  const table: Array<[string[], Partial<ReturnType<typeof parseArgs>>]> = [
    [['--socket-path=/s', '--shared-dir=/d'], { socketPath: '/s', sharedDir: '/d', cache: 'auto' }],
    [['--socket-path', '/s', '--shared-dir', '/d', '--cache', 'never'], { socketPath: '/s', cache: 'never' }],
    [['--socket=/s', '-o', 'source=/d,cache=none'], { socketPath: '/s', sharedDir: '/d', cache: 'never' }],
    [['--socket-path=/s', '-o', 'source=/d', '-o', 'cache=always'], { sharedDir: '/d', cache: 'always' }],
    [['--socket-path=/s', '-osource=/d,cache=metadata,writeback'], { sharedDir: '/d', cache: 'metadata', writeback: true }],
    [['--fd=3', '--shared-dir=/d', '--thread-pool-size=4', '--log-level=debug'], { fd: 3, threadPoolSize: 4, logLevel: 'debug' }],
    [['--socket-path=/s', '--shared-dir=/d', '-d', '-f'], { logLevel: 'debug' }],
    [['--socket-path=/s', '--shared-dir=/d', '--no-readdirplus'], { readdirplus: false, deviceNodes: true }],
    [['--socket-path=/s', '--shared-dir=/d', '--no-device-nodes'], { deviceNodes: false }],
    [['--socket-path=/s', '--shared-dir=/d'], { allowDirectIo: false }],
    [['--socket-path=/s', '--shared-dir=/d', '--allow-direct-io'], { allowDirectIo: true }],
    [['--socket-path=/s', '-o', 'source=/d,allow_direct_io'], { allowDirectIo: true }],
    [['--socket-path=/s', '-o', 'source=/d,no_readdirplus,log_level=warn,flock,timeout=5'], { readdirplus: false, logLevel: 'warn', timeout: 5 }],
    [['--socket-path=/s', '-o', 'source=/d,timeout=0.25'], { timeout: 0.25 }],
    [['--socket-path=/s', '-o', 'source=/d,timeout=0'], { timeout: 0 }],
    [['--socket-path=/s', '--shared-dir=/d', '--sandbox=none', '--seccomp=none'], {}],
    [['--socket-path=/s', '--shared-dir=/d'], { xattr: false, syslog: false }],
    [['--socket-path=/s', '--shared-dir=/d', '--syslog'], { syslog: true }],
    [['--socket-path=/s', '--shared-dir=/d'], { announceSubmounts: true }],
    [['--socket-path=/s', '--shared-dir=/d', '--no-announce-submounts'], { announceSubmounts: false }],
    [['--socket-path=/s', '-o', 'source=/d,no_announce_submounts'], { announceSubmounts: false }],
    [['--socket-path=/s', '--shared-dir=/d', '--announce-submounts'], { announceSubmounts: true, ignored: [] }],
    [['--socket-path=/s', '-o', 'source=/d,announce_submounts'], { announceSubmounts: true, ignored: [] }],
    [['--socket-path=/s', '-o', 'source=/d,posix_lock,no_flock'], { announceSubmounts: true, ignored: ['-o posix_lock'] }],
    [['--socket-path=/s', '--shared-dir=/d', '--xattr'], { xattr: true }],
    [['--socket-path=/s', '-o', 'source=/d,xattr'], { sharedDir: '/d', xattr: true }],
    [['--socket-path=/s', '-o', 'source=/d,xattr', '-o', 'no_xattr'], { xattr: false }],
    [['--socket-path=/s', '-o', 'no_xattr', '--xattr', '--shared-dir=/d'], { xattr: true }],
    // --security-label implies --xattr (as virtiofsd); -o security_label|no_security_label as virtiofsd's -o
    [['--socket-path=/s', '--shared-dir=/d'], { securityLabel: false, allowMmap: false }],
    [['--socket-path=/s', '--shared-dir=/d', '--security-label'], { securityLabel: true, xattr: true }],
    [['--socket-path=/s', '-o', 'source=/d,security_label'], { securityLabel: true, xattr: true }],
    [['--socket-path=/s', '-o', 'source=/d,security_label,no_security_label'], { securityLabel: false, xattr: false }],
    [['--socket-path=/s', '--shared-dir=/d', '--allow-mmap', '--cache=never'], { allowMmap: true, cache: 'never' }],
    [['--print-capabilities'], { printCapabilities: true }],
    [['--help'], { help: true }],
    [['-V'], { version: true }],
  ];
  for (const [argv, want] of table) t.match(parseArgs(argv), want, argv.join(' '));
  t.same(parseArgs(['--socket-path=/s', '--shared-dir=/d', '--preserve-noatime']).ignored, ['--preserve-noatime'], 'no-effect options are recorded for a log line');
  const locks = parseArgs(['--socket-path=/s', '-o', 'source=/d,posix_lock,no_flock,no_posix_lock,flock']);
  t.same(locks.ignored, ['-o posix_lock', '-o flock'], 'lock options asking for forwarding are noted; the no_ ones are what we do');
  t.equal(locks.announceSubmounts, true, 'lock options do not touch other settings');
});

t.test('bad options are usage errors (exit code 2) with a message naming the problem', async (t) => {
  const table: Array<[string[], RegExp]> = [
    [['--shared-dir=/d'], /--socket-path or --fd/],
    [['--socket-path=/s'], /--shared-dir/],
    [['--socket-path=/s', '--fd=3', '--shared-dir=/d'], /mutually exclusive/],
    [['--socket-path=/s', '--shared-dir=/d', '--cache=sometimes'], /invalid cache mode 'sometimes'/],
    [['--socket-path=/s', '-o', 'source=/d,cache=bogus'], /invalid cache mode/],
    [['--socket-path=/s', '--shared-dir=/d', '--thread-pool-size=0'], /out of range/],
    [['--socket-path=/s', '--shared-dir=/d', '--thread-pool-size=99'], /out of range/],
    [['--socket-path=/s', '--shared-dir=/d', '--thread-pool-size=two'], /not a number/],
    [['--socket-path=/s', '--shared-dir=/d', '--log-level=loud'], /invalid level/],
    [['--socket-path=/s', '--shared-dir=/d', '--frobnicate'], /unknown option '--frobnicate'/],
    [['--socket-path=/s', '-o', 'source=/d,frob'], /unknown option 'frob'/],
    // virtiofsd has --allow-mmap only, no -o spelling
    [['--socket-path=/s', '-o', 'source=/d,allow_mmap'], /unknown option 'allow_mmap'/],
    [['--socket-path=/s', '--shared-dir=/d', '--security-label=yes'], /--security-label: takes no value/],
    [['--socket-path=/s', '-o', 'source=/d,security_label=1'], /-o security_label: takes no value/],
    [['--socket-path=/s', '-o', 'source='], /needs a value/],
    [['--socket-path=/s', '-o'], /needs an option list/],
    [['--socket-path'], /needs a value/],
    [['--socket-path=/s', '--shared-dir=/d', 'extra'], /unexpected argument/],
    [['--socket-path=/s', '--shared-dir=/d', '--xattr=yes'], /takes no value/],
    [['--socket-path=/s', '-o', 'source=/d,xattr=1'], /takes no value/],
    [['--socket-path=/s', '--shared-dir=/d', '--posix-acl', '--translate-uid=map:0:1000:1'], /--posix-acl: not with --translate-uid/],
    [['--socket-path=/s', '--shared-dir=/d', '--xattrmap=:map::'], /--xattrmap: rule 1 ':map::': incomplete/],
    [['--socket-path=/s', '--shared-dir=/d', '--writeback=yes'], /takes no value/],
    [['--socket-path=/s', '--shared-dir=/d', '--sandbox=jail'], /invalid value 'jail'/],
    [['--socket-path=/s', '-o', 'source=/d,timeout=-1'], /-o timeout: invalid value '-1'/],
    [['--socket-path=/s', '-o', 'source=/d,timeout=1e9'], /-o timeout: invalid value/],
    [['--socket-path=/s', '-o', 'source=/d,timeout=soon'], /-o timeout: invalid value/],
    [['--socket-path=/s', '-o', 'source=/d,timeout='], /needs a value/],
  ];
  for (const [argv, re] of table) {
    t.throws(() => parseArgs(argv), { name: 'UsageError', exitCode: 2, message: re }, argv.join(' '));
  }
});

t.test('validateConfig checks the file system', async (t) => {
  // Not t.testdir(): its path grows with the checkout's, and a socket address holds only 107 bytes.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-cfg-'));
  fs.mkdirSync(path.join(dir, 'share'));
  fs.writeFileSync(path.join(dir, 'file'), 'x');
  const ok = parseArgs([`--socket-path=${path.join(dir, 'vfsd.sock')}`, `--shared-dir=${path.join(dir, 'share')}`]);
  t.doesNotThrow(() => validateConfig(ok), 'a directory and a fresh socket path');
  t.throws(() => validateConfig({ ...ok, sharedDir: path.join(dir, 'missing') }), UsageError, 'missing shared dir');
  t.throws(() => validateConfig({ ...ok, sharedDir: path.join(dir, 'file') }), /not a directory/);
  t.throws(() => validateConfig({ ...ok, socketPath: path.join(dir, 'nodir', 's.sock') }), /does not exist/);
  t.throws(() => validateConfig({ ...ok, socketPath: path.join(dir, 'file') }), /not a socket/, 'never replaces a regular file');
  t.throws(() => validateConfig({ ...ok, socketPath: undefined, fd: 987654 }), /not an open file descriptor/);
  // --fd must be a listening Unix stream socket: not a file, not a connected socket
  const fileFd = fs.openSync(path.join(dir, 'file'), 'r');
  t.throws(() => validateConfig({ ...ok, socketPath: undefined, fd: fileFd }), /--fd=\d+: not a listening Unix stream socket/, 'a regular file');
  fs.closeSync(fileFd);
  const lsock = path.join(dir, 'l.sock');
  const lfd = native.listenUnix(lsock, 4);
  t.ok(lfd >= 0);
  t.doesNotThrow(() => validateConfig({ ...ok, socketPath: undefined, fd: lfd }), 'a listening socket');
  const cfd = native.connectUnix(lsock);
  t.ok(cfd >= 0);
  t.throws(() => validateConfig({ ...ok, socketPath: undefined, fd: cfd }), /not a listening Unix stream socket/, 'a connected socket');
  native.close(cfd);
  native.close(lfd);
  t.throws(() => validateConfig({ ...ok, socketPath: path.join(os.tmpdir(), 'x'.repeat(120)) }), /107 bytes/);
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('--metrics-address and --log-format', async (t) => {
  const base = ['--socket-path=/s', '--shared-dir=/d'];
  const addr = (v: string) => parseArgs([...base, `--metrics-address=${v}`]).metricsAddress;
  t.equal(parseArgs(base).metricsAddress, undefined, 'off unless given');
  t.same(addr('127.0.0.1:9100'), { kind: 'tcp', host: '127.0.0.1', port: 9100 });
  t.same(addr(':9100'), { kind: 'tcp', host: '', port: 9100 }, 'every address');
  t.same(addr('[::1]:9100'), { kind: 'tcp', host: '::1', port: 9100 }, 'IPv6 in brackets');
  t.same(addr('localhost:0'), { kind: 'tcp', host: 'localhost', port: 0 }, 'port 0: the kernel chooses');
  t.same(addr('unix:/run/vfsd-metrics.sock'), { kind: 'unix', path: '/run/vfsd-metrics.sock' });
  for (const bad of ['9100', '127.0.0.1', '127.0.0.1:65536', '::1:9100', 'host:port', 'unix:', `unix:/${'x'.repeat(120)}`]) {
    t.throws(() => addr(bad), { name: 'UsageError', message: /--metrics-address/ }, bad);
  }
  t.equal(parseArgs(base).logFormat, 'text');
  t.equal(parseArgs([...base, '--log-format=json']).logFormat, 'json');
  t.throws(() => parseArgs([...base, '--log-format=xml']), { name: 'UsageError', message: /--log-format: invalid value 'xml'/ });
});
