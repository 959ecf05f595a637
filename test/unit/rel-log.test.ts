/**
 * Log rate limiting: the limiter itself (bursts, the suppressed-count line, recovery after the
 * window, many keys) on an injected clock, and that requests a guest repeats (INIT, a request whose
 * handler throws, a malformed request) produce a bounded number of log lines from the FUSE server.
 */
import t from 'tap';
import { Errno as E } from '../../src/errors.js';
import { FuseServer } from '../../src/fuse/server.js';
import type { Ctx, Entry, FileSystem } from '../../src/fs/filesystem.js';
import { Logger, RateLimitedLog, RateLimitedLogger, RateLimiter, similarityKey } from '../../src/log.js';
import { FuseClient } from '../helpers/fuse-client.js';

function captured(level: 'info' | 'debug' = 'info'): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: new Logger(level, 'main', (_l, _lv, _th, msg) => lines.push(msg)), lines };
}

t.test('RateLimiter: a burst, then suppression, then the count with the next window', async (t) => {
  let now = 1000;
  const rl = new RateLimiter(3, 1000, () => now);
  t.same([rl.admit('a'), rl.admit('a'), rl.admit('a')], [0, 0, 0], 'the burst passes');
  t.equal(rl.admit('a'), -1, 'the fourth line in the window is dropped');
  t.equal(rl.admit('a'), -1);
  t.equal(rl.admit('b'), 0, 'another key has its own window');
  now += 999;
  t.equal(rl.admit('a'), -1, 'still inside the window');
  now += 1;
  t.equal(rl.admit('a'), 3, 'the next window starts with the count of the suppressed lines');
  t.equal(rl.admit('a'), 0, 'reported once');
  t.equal(rl.admit('a'), 0);
  t.equal(rl.admit('a'), -1, 'and a new burst');
  now += 5000;
  t.equal(rl.admit('a'), 1);
  now += 5000;
  t.equal(rl.admit('a'), 0, 'a quiet window reports nothing');
});

t.test('RateLimiter: keys are bounded; new keys past the bound share one window', async (t) => {
  let now = 0;
  const rl = new RateLimiter(2, 1000, () => now, 4);
  for (const k of ['a', 'b', 'c', 'd']) t.equal(rl.admit(k), 0);
  t.equal(rl.admit('e'), 0, 'first overflow key');
  t.equal(rl.admit('f'), 0, 'second overflow key: the shared window has a burst of 2');
  t.equal(rl.admit('g'), -1, 'third overflow key is suppressed');
  for (let i = 0; i < 1000; i++) rl.admit(`k${i}`);
  t.equal(rl.admit('zz'), -1, 'a thousand distinct keys do not get a thousand windows');
  now += 1000;
  t.ok(rl.admit('h') > 0, 'once windows expire, the overflow window reports its count');
  t.equal(rl.admit('i'), 0, 'expired, quiet keys are forgotten to make room');
});

t.test('RateLimitedLogger: similar messages share a window, the suppressed line, levels', async (t) => {
  let now = 0;
  const { log, lines } = captured();
  const rl = new RateLimitedLogger(log, new RateLimiter(2, 10_000, () => now));
  for (let i = 0; i < 100; i++) rl.error(`op 15 unique ${i}: Error: boom\n    at frame ${i}`);
  for (let i = 0; i < 100; i++) rl.info(`FUSE session 7.${i}, flags 0x${i.toString(16)}`);
  rl.debug('not logged at info');
  t.equal(lines.length, 4, 'two lines per kind');
  now = 10_000;
  rl.error('op 15 unique 1000: Error: boom');
  t.match(lines[4], /suppressed 98 similar messages/, 'the count comes first');
  t.match(lines[5], /unique 1000/);
  t.equal(similarityKey('info', 'a 12 b 0xff\nrest'), 'info a # b #');
  const child = rl.child('w1');
  t.ok(child instanceof RateLimitedLogger, 'children are limited too');
});

t.test('RateLimitedLog: one window for every message', async (t) => {
  let now = 0;
  const { log, lines } = captured();
  const rl = new RateLimitedLog(log, 3, 1000, () => now);
  for (let i = 0; i < 50; i++) rl.warn(`w ${i}`);
  t.equal(lines.length, 3);
  now = 1000;
  rl.error('e');
  t.same(lines.slice(3), ['... suppressed 47 similar messages (more than the limit in 1 s)', 'e']);
});

class ThrowingFs implements FileSystem {
  lookup(_c: Ctx, _p: number, _n: Uint8Array): Entry | number {
    throw new Error('bug in fs');
  }
  forget(): void {}
  getattr(): Uint8Array { return new Uint8Array(88); }
}

t.test('a guest repeating requests cannot flood the log through the FUSE server', async (t) => {
  const { log, lines } = captured('debug');
  const c = new FuseClient(new FuseServer(new ThrowingFs(), { log }));
  let failed = 0;
  for (let i = 0; i < 1000; i++) if (c.init().error !== 0) failed++;
  t.equal(failed, 0, 'every INIT is answered');
  const afterInit = lines.length;
  t.ok(afterInit <= 25, `1000 INITs: ${afterInit} log lines (at most 25)`);
  for (let i = 0; i < 1000; i++) c.lookup(1n, 'x');
  t.equal(c.lookup(1n, 'x').error, -E.EIO, 'a handler exception is still EIO');
  const afterThrow = lines.length - afterInit;
  t.ok(afterThrow <= 12, `1000 throwing requests: ${afterThrow} log lines (at most 12)`);
  t.match(lines[afterInit], /bug in fs/, 'the exception itself is logged');
  for (let i = 0; i < 1000; i++) c.init(6, 0);
  const afterBad = lines.length - afterInit - afterThrow;
  t.ok(afterBad <= 12, `1000 INITs of an unsupported major: ${afterBad} log lines (at most 12)`);
});
