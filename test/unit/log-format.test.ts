/**
 * Log line formats (--log-format): the text line as it always was, one JSON object per line with time,
 * level, thread, the context fields and msg, context fields from Logger.with in both formats, disabled
 * levels that do no work, and rate limiting kept across `with`. Then the FUSE server on the real
 * passthrough: normal requests, answered or failed with an ordinary errno, log nothing at info or above.
 */
import t from 'tap';
import { FuseServer } from '../../src/fuse/server.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { type LogFormat, type LogLevel, Logger, RateLimitedLog, RateLimitedLogger, RateLimiter } from '../../src/log.js';
import { native } from '../../src/native.js';
import { FuseClient } from '../helpers/fuse-client.js';
import { realTables, resetTables } from '../helpers/real-tables.js';

interface Written {
  line: string;
  level: LogLevel;
  tag: string;
  msg: string;
}

function capture(format: LogFormat, level: LogLevel = 'info', thread = 'main'): { log: Logger; out: Written[] } {
  const out: Written[] = [];
  return { log: new Logger(level, thread, (line, lv, tag, msg) => out.push({ line, level: lv, tag, msg }), format), out };
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

function parsed(w: Written | undefined): Record<string, unknown> {
  if (w === undefined) throw new Error('no line written');
  if (!w.line.endsWith('\n') || w.line.indexOf('\n') !== w.line.length - 1) throw new Error(`not one line: ${JSON.stringify(w.line)}`);
  return JSON.parse(w.line) as Record<string, unknown>;
}

t.test('text: the line is unchanged (time, padded level, [thread], message)', async (t) => {
  const { log, out } = capture('text', 'trace', 'w3');
  log.info('hello');
  log.error('bad');
  log.trace('fine');
  t.match(out[0]!.line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO {2}\[w3\] hello\n$/);
  t.match(out[1]!.line, / ERROR \[w3\] bad\n$/);
  t.match(out[2]!.line, / TRACE \[w3\] fine\n$/);
  t.same(out.map((w) => [w.level, w.tag, w.msg]), [['info', 'w3', 'hello'], ['error', 'w3', 'bad'], ['trace', 'w3', 'fine']], 'the sink gets the parts');
  const lines: string[] = [];
  new Logger('info', 'main', (line) => lines.push(line)).warn('x');
  t.match(lines[0], /^\S+Z WARN {2}\[main\] x\n$/, 'text is the default format');
});

t.test('json: one object per line with time, level, thread, msg', async (t) => {
  const { log, out } = capture('json', 'debug', 'w0');
  log.info('hello "world"');
  log.warn('a stack\n    at frame 1\n    at frame 2');
  log.debug('d');
  t.equal(out.length, 3);
  const a = parsed(out[0]);
  t.same(Object.keys(a), ['time', 'level', 'thread', 'msg'], 'the fields, in order');
  t.match(a.time, ISO, 'time is ISO-8601');
  t.ok(Math.abs(Date.parse(a.time as string) - Date.now()) < 5000, 'and now');
  t.same([a.level, a.thread, a.msg], ['info', 'w0', 'hello "world"']);
  const b = parsed(out[1]);
  t.equal(b.msg, 'a stack\n    at frame 1\n    at frame 2', 'a multi-line message is one object, its newlines kept');
  t.equal(b.level, 'warn');
  t.equal(parsed(out[2]).level, 'debug');
  t.equal(out[1]!.msg, 'a stack\n    at frame 1\n    at frame 2', 'the sink gets the raw message');
});

t.test('with: context fields as JSON keys and as a text suffix to the thread', async (t) => {
  const j = capture('json');
  const conn = j.log.with({ conn: 3 });
  const q = conn.with({ queue: 1 });
  conn.info('c');
  q.error('q');
  j.log.info('plain');
  const c = parsed(j.out[0]);
  t.same(c, { time: c.time, level: 'info', thread: 'main', conn: 3, msg: 'c' }, 'conn is a number key');
  const qq = parsed(j.out[1]);
  t.same([qq.conn, qq.queue, qq.msg], [3, 1, 'q'], 'fields add up');
  t.equal(Object.keys(qq).at(-1), 'msg', 'msg comes last');
  t.notOk('conn' in parsed(j.out[2]), 'the logger it came from is unchanged');
  t.equal(j.out[1]!.tag, 'main conn=3 queue=1', 'sinks (syslog) get the fields in the tag');

  const x = capture('text');
  x.log.with({ conn: 3 }).info('c');
  x.log.with({ conn: 3 }).with({ queue: 1 }).with({ conn: 4 }).info('q');
  x.log.with({ peer: 'a b' }).info('s');
  x.log.child('w1').with({ conn: 2 }).info('w');
  x.log.with({ conn: 2 }).child('w1').info('w');
  t.match(x.out[0]!.line, /^\S+Z INFO {2}\[main conn=3\] c\n$/);
  t.match(x.out[1]!.line, /\[main conn=4 queue=1\] q\n$/, 'a key given again takes the new value, in place');
  t.match(x.out[2]!.line, /\[main peer="a b"\] s\n$/, 'a value with a space is quoted');
  t.match(x.out[3]!.line, /\[w1 conn=2\] w\n$/);
  t.match(x.out[4]!.line, /\[w1 conn=2\] w\n$/, 'child keeps the fields');
  t.throws(() => x.log.with({ msg: 1 }), /not allowed/, 'a field may not shadow msg');
  t.throws(() => x.log.with({ 'a b': 1 }), /not allowed/, 'keys are identifiers');
});

t.test('a disabled level writes nothing and formats nothing', async (t) => {
  for (const format of ['text', 'json'] as const) {
    const { log, out } = capture(format, 'warn');
    const ctx = log.with({ conn: 1 });
    const iso = Date.prototype.toISOString;
    const stringify = JSON.stringify;
    let work = 0;
    Date.prototype.toISOString = function (this: Date) {
      work++;
      return iso.call(this);
    };
    JSON.stringify = ((...a: Parameters<typeof stringify>) => {
      work++;
      return stringify(...a);
    }) as typeof JSON.stringify;
    try {
      for (let i = 0; i < 100; i++) {
        ctx.info('i');
        ctx.debug('d');
        ctx.trace('t');
        log.info('i');
      }
    } finally {
      Date.prototype.toISOString = iso;
      JSON.stringify = stringify;
    }
    t.equal(out.length, 0, `${format}: nothing written`);
    t.equal(work, 0, `${format}: no time taken, nothing stringified`);
    ctx.warn('w');
    t.equal(out.length, 1, `${format}: an enabled level writes`);
    const off = capture(format, 'off');
    off.log.error('e');
    off.log.with({ conn: 1 }).error('e');
    t.equal(off.out.length, 0, `${format}: off writes nothing`);
  }
});

t.test('rate limiting holds across with and child', async (t) => {
  let now = 0;
  const { log, out } = capture('json');
  const rl = new RateLimitedLogger(log, new RateLimiter(2, 10_000, () => now));
  const a = rl.with({ conn: 1 });
  const b = rl.with({ conn: 2 }).child('w1');
  t.ok(a instanceof RateLimitedLogger && b instanceof RateLimitedLogger, 'with and child stay limited');
  for (let i = 0; i < 50; i++) {
    a.warn(`bad chain ${i}`);
    b.warn(`bad chain ${i}`);
  }
  t.equal(out.length, 2, 'one window for similar lines whatever their context');
  t.same(out.map((w) => parsed(w).conn), [1, 2], 'the admitted lines carry their fields');
  now = 10_000;
  a.warn('bad chain 99');
  const s = parsed(out[2]);
  t.match(s.msg, /suppressed 98 similar messages/, 'the suppressed count comes next');
  t.equal(s.conn, 1, 'with the fields of the logger that wrote it');
  t.equal(parsed(out[3]).msg, 'bad chain 99');

  now = 0;
  const r = capture('text');
  const rlog = new RateLimitedLog(r.log, 3, 1000, () => now);
  const q1 = rlog.with({ queue: 1 });
  const q2 = rlog.with({ queue: 2 });
  for (let i = 0; i < 20; i++) {
    q1.warn(`w ${i}`);
    q2.error(`e ${i}`);
  }
  t.equal(r.out.length, 3, 'RateLimitedLog.with shares the window');
  t.match(r.out[0]!.line, /\[main queue=1\] w 0\n$/);
  t.match(r.out[1]!.line, /\[main queue=2\] e 0\n$/);
});

t.test('the FUSE server on the passthrough logs nothing at info or above for normal requests', async (t) => {
  const tables = await realTables();
  const dir = t.testdir({ sub: { 'f.txt': 'hello' } });
  const fs = Passthrough.open(dir, resetTables(tables), {});
  t.teardown(() => {
    fs.destroy();
    native.close(fs.procFd);
  });
  const { log, out } = capture('json', 'info');
  const c = new FuseClient(new FuseServer(fs, { cache: 'auto', log }));
  t.equal(c.init().error, 0);
  const afterInit = out.length;
  let errors = 0;
  for (let i = 0; i < 200; i++) {
    const sub = c.lookup(1n, 'sub');
    const node = c.entry(sub).nodeid;
    const f = c.entry(c.lookup(node, 'f.txt')).nodeid;
    c.getattr(f);
    const o = c.open(f);
    c.read(f, o.fh!, 0, 4096);
    c.release(f, o.fh!);
    const miss = c.lookup(node, `missing-${i}`); // ENOENT, answered as a negative entry (nodeid 0)
    if (miss.error !== 0 || c.entry(miss).nodeid === 0n) errors++;
    if (c.mkdir(1n, 'sub').error !== 0) errors++; // EEXIST
    if (c.unlink(node, `missing-${i}`).error !== 0) errors++; // ENOENT
    if (c.rmdir(1n, 'sub').error !== 0) errors++; // ENOTEMPTY
    c.forget(f, 1n);
    c.forget(node, 1n);
  }
  t.equal(errors, 800, 'the ordinary errnos were answered');
  t.same(out.slice(afterInit).map((w) => w.msg), [], '2400 requests: no line at info or above');
});
