// Comparative functional test: the guest-side probe (test/e2e/guest/fsprobe.c, ~50 independent POSIX
// checks) runs in a real guest once against the reference daemon (QEMU 7.2's C virtiofsd) and once
// against ours, each on a fresh copy of the same fixture tree, both with cache=auto.
//
// Asserted: every step the reference passes also passes on ours (one assertion per step), and the
// files the probe leaves for the host (hc-*) are right on the host for ours. Steps both fail, or only
// ours passes, are reported as comments. Without the reference daemon, ours is checked against an
// explicit expected set (EXPECTED_FAIL below, each with its reason).
//
// The probe is compiled on the host with `gcc -static -O2` and cached next to the base initramfs,
// keyed by the hash of its source and the compiler version. Two guest boots in total.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  GUEST_PRELUDE,
  REFERENCE_DAEMON,
  guestSkipReason,
  parseSteps,
  parseVals,
  runGuest,
  startDaemon,
  type DaemonHandle,
  type DaemonKind,
  type GuestResult,
} from '../../harness/index.js';
import { native } from '../../src/native.js';
import { buildProbe } from './probe-kit.js';

const TAG = 'vfsfunc';
const GIB = 1024 * 1024 * 1024;
const USER_ID = 1000;

/**
 * Steps the probe may fail on a correct daemon here (Linux 6.1 guest, QEMU 7.2), with the reason.
 * Used as the expectation when the reference daemon is missing; with the reference present they are
 * only reported.
 */
const EXPECTED_FAIL: Record<string, string> = {
  o_tmpfile: 'the Linux 6.1 FUSE client has no O_TMPFILE (FUSE_TMPFILE arrived in 6.8): EOPNOTSUPP',
};

/**
 * Steps a variant's guest kernel fails on either daemon (asserted to fail on ours too: a change of
 * behaviour here is news), with the reason.
 */
const VARIANT_EXPECTED_FAIL: Record<string, Record<string, string>> = {
  '-writeback': {
    offsets_around_4g:
      'with the writeback cache the data written at 4 GiB is still in the guest\'s page cache when lseek(SEEK_DATA) goes to the host (the FUSE client does not flush before FUSE_LSEEK): ENXIO',
  },
};

/**
 * Steps where ours deliberately differs from the reference (reported, not asserted), with the reason.
 */
const POLICY_DIFF: Record<string, string> = {};

type Steps = Map<string, { ok: boolean; detail: string }>;

// ---------------------------------------------------------------------------------------------
// The probe binary


// ---------------------------------------------------------------------------------------------
// Fixture, guest script

const FIXTURE_DATA = Buffer.from(Array.from({ length: 300000 }, (_, i) => (i * 13 + 5) & 0xff));
const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');

function makeFixture(dir: string): void {
  fs.mkdirSync(path.join(dir, 'fixture', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'fixture', 'data.bin'), FIXTURE_DATA);
  fs.writeFileSync(path.join(dir, 'fixture', 'sub', 'note.txt'), 'fixture note\n');
  fs.symlinkSync('sub/note.txt', path.join(dir, 'fixture', 'link'));
}

const script = (probeArgs: string) => `
step mount mount -t virtiofs ${TAG} /mnt
grep -q " /mnt virtiofs " /proc/mounts || { echo "share not mounted"; finish; }
step fixture_read expect_eq "$(md5sum /mnt/fixture/data.bin | cut -d' ' -f1)" "${md5(FIXTURE_DATA)}"
step fixture_symlink expect_eq "$(cat /mnt/fixture/link)" "fixture note"
chmod 755 /fsprobe
/fsprobe /mnt/probe${probeArgs}
val probe_rc $?
cd /
step umount umount /mnt
# the probe's own failures are compared by the host, not counted here
FAILS=0
finish
`;

// ---------------------------------------------------------------------------------------------
// Host-side checks of the files the probe left (hc-*)

interface HostCheck {
  name: string;
  ok: boolean;
  detail?: string;
}

const pat = (i: number) => (i * 7 + 3) & 0xff;

function hostChecks(share: string, output: string): HostCheck[] {
  const vals = parseVals(output);
  const P = (p: string) => path.join(share, 'probe', p);
  const out: HostCheck[] = [];
  const check = (name: string, f: () => true | string) => {
    try {
      const r = f();
      out.push(r === true ? { name, ok: true } : { name, ok: false, detail: r });
    } catch (e) {
      out.push({ name, ok: false, detail: (e as Error).message });
    }
  };
  check('hc-pattern.bin content', () => {
    const b = fs.readFileSync(P('hc-pattern.bin'));
    if (b.length !== (1 << 20) + 123) return `size ${b.length}`;
    for (let i = 0; i < b.length; i++) if (b[i] !== pat(i)) return `byte ${i} is ${b[i]}`;
    return true;
  });
  check('hc-sparse: 5 GiB sparse file', () => {
    const st = fs.statSync(P('hc-sparse'));
    if (st.size !== 5 * GIB + 3) return `size ${st.size}`;
    if (st.blocks > 64) return `not sparse on the host: ${st.blocks} blocks`;
    const fd = fs.openSync(P('hc-sparse'), 'r');
    const b = Buffer.alloc(3);
    fs.readSync(fd, b, 0, 3, 5 * GIB);
    fs.closeSync(fd);
    return b.toString() === 'END' || `tail ${JSON.stringify(b.toString())}`;
  });
  check('hc-renamed: rename', () =>
    (fs.readFileSync(P('hc-renamed'), 'utf8') === 'renamed' && !fs.existsSync(P('hc-rename-src'))) || 'wrong');
  check('hc-ex-a/b: RENAME_EXCHANGE', () =>
    (fs.readFileSync(P('hc-ex-a'), 'utf8') === 'B' && fs.readFileSync(P('hc-ex-b'), 'utf8') === 'A') || 'not exchanged');
  check('hc-link-a/b: hard link', () => {
    const a = fs.statSync(P('hc-link-a'));
    const b = fs.statSync(P('hc-link-b'));
    return (a.ino === b.ino && a.nlink === 2) || `ino ${a.ino}/${b.ino} nlink ${a.nlink}`;
  });
  check('hc-symlink: target', () => fs.readlinkSync(P('hc-symlink')) === 'hc-renamed' || 'wrong target');
  check('hc-symlink-long: 4000-byte target', () => {
    const tg = fs.readlinkSync(P('hc-symlink-long'));
    if (tg.length !== 4000) return `length ${tg.length}`;
    for (let i = 0; i < 4000; i++) {
      const want = i % 50 === 49 ? '/' : String.fromCharCode(97 + (i % 26));
      if (tg[i] !== want) return `char ${i}`;
    }
    return true;
  });
  check('hc-append: O_APPEND', () => fs.readFileSync(P('hc-append'), 'utf8') === 'abcdef' || 'wrong');
  check('hc-punch: punched range reads zero', () => {
    const b = fs.readFileSync(P('hc-punch'));
    if (b.length !== 1 << 20) return `size ${b.length}`;
    for (let i = 0; i < b.length; i++) {
      const want = i >= 256 << 10 && i < 512 << 10 ? 0 : 0xaa;
      if (b[i] !== want) return `byte ${i} is ${b[i]}`;
    }
    return true;
  });
  check('hc-mode-setuid: mode 04755', () => {
    const m = fs.statSync(P('hc-mode-setuid')).mode & 0o7777;
    return m === 0o4755 || `mode ${m.toString(8)}`;
  });
  check('hc-mode-sticky: dir mode 01777', () => {
    const st = fs.statSync(P('hc-mode-sticky'));
    return (st.isDirectory() && (st.mode & 0o7777) === 0o1777) || `mode ${st.mode.toString(8)}`;
  });
  check('hc-mode-000: mode 0', () => (fs.statSync(P('hc-mode-000')).mode & 0o7777) === 0 || 'not 000');
  check('hc-chown: owner 1234:5678', () => {
    const st = fs.statSync(P('hc-chown'));
    return (st.uid === 1234 && st.gid === 5678) || `owner ${st.uid}:${st.gid}`;
  });
  check('hc-times: nanosecond times', () => {
    const st = fs.statSync(P('hc-times'), { bigint: true });
    return (st.atimeNs === 1234567890123456789n && st.mtimeNs === 1600000000987654321n) ||
      `atime ${st.atimeNs} mtime ${st.mtimeNs}`;
  });
  check('hc-fifo: a FIFO 0640', () => {
    const st = fs.lstatSync(P('hc-fifo'));
    return (st.isFIFO() && (st.mode & 0o7777) === 0o640) || `mode ${st.mode.toString(8)}`;
  });
  check('hc-sock: a socket node', () => fs.lstatSync(P('hc-sock')).isSocket() || 'not a socket');
  check('hc-mknod-reg: regular file from mknod', () => {
    const st = fs.lstatSync(P('hc-mknod-reg'));
    return (st.isFile() && st.size === 0 && (st.mode & 0o7777) === 0o600) || `mode ${st.mode.toString(8)}`;
  });
  for (const [f, kind] of [['hc-user-file', 'file'], ['hc-user-dir', 'dir'], ['hc-user-link', 'symlink']] as const) {
    check(`users/${f}: owned by ${USER_ID}:${USER_ID} (${kind})`, () => {
      const st = fs.lstatSync(P(`users/${f}`));
      return (st.uid === USER_ID && st.gid === USER_ID) || `owner ${st.uid}:${st.gid}`;
    });
  }
  check('users/root-file: untouched by the user', () => fs.readFileSync(P('users/root-file'), 'utf8') === 'root' || 'changed');
  check('hc-mmap: MAP_SHARED writes', () => {
    const b = fs.readFileSync(P('hc-mmap'));
    if (b.length !== 3 * 4096 + 100) return `size ${b.length}`;
    for (let i = 0; i < b.length; i++) if (b[i] !== pat(i + 1)) return `byte ${i} is ${b[i]}`;
    return true;
  });
  check('hc-copy-range: copy_file_range', () => {
    const b = fs.readFileSync(P('hc-copy-range'));
    const n = 300000;
    if (b.length !== n - 1000 + 5000) return `size ${b.length}`;
    for (let i = 0; i < 5000; i++) if (b[i] !== 0) return `byte ${i} not zero`;
    for (let i = 1000; i < n; i++) if (b[i - 1000 + 5000] !== pat(i * 3)) return `byte ${i - 1000 + 5000}`;
    return true;
  });
  check('guest stat of a host file equals the host stat', () => {
    const st = fs.statSync(path.join(share, 'fixture', 'data.bin'), { bigint: true });
    const ns = st.mtimeNs % 1000000000n;
    const want = [st.ino, st.size, st.blocks, `${st.mtimeNs / 1000000000n}.${String(ns).padStart(9, '0')}`,
      (st.mode & 0o7777n).toString(8), st.uid, st.gid].join(' ');
    return vals.get('fixture_stat') === want || `guest ${vals.get('fixture_stat')} host ${want}`;
  });
  check('guest statfs agrees with the host', () => {
    const g = (vals.get('statfs') ?? '').split(' ').map(Number);
    const h = fs.statfsSync(share);
    return (g[0] === h.bsize && g[1] === h.blocks && Math.abs(g[3]! - h.bavail) < h.blocks / 100) ||
      `guest ${vals.get('statfs')} host bsize ${h.bsize} blocks ${h.blocks} bavail ${h.bavail}`;
  });
  check('users/grp/uf: user file in a setgid dir after chgrp', () => {
    const st = fs.statSync(P('users/grp/uf'));
    return (st.uid === USER_ID && st.gid === 2000 && st.size === 2) || `owner ${st.uid}:${st.gid} size ${st.size}`;
  });
  check('many: 2000 entries', () => {
    const n = fs.readdirSync(P('many')).length;
    return n === 2000 || `${n} entries`;
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Runs

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-func-'));
const sock = path.join(root, 'vfs.sock');
const daemons: DaemonHandle[] = [];
const probe = guestSkipReason('ours') ? null : buildProbe();
const skip = guestSkipReason('ours') ?? (probe && typeof probe === 'object' ? probe.skip : null);
const haveReference = fs.existsSync(REFERENCE_DAEMON);

// two guest boots under TCG; also when run directly with node (tap's default root timeout is 30 s)
t.setTimeout(1800_000);

t.teardown(async () => {
  for (const d of daemons) await d.stop(5000);
  fs.rmSync(root, { recursive: true, force: true });
});

interface Run {
  kind: DaemonKind;
  share: string;
  result: GuestResult;
  steps: Steps;
}

/** A probe run: every check (the default), or only the named ones with extra daemon options. */
interface Variant {
  name: string;
  refArgs: string[];
  oursArgs: string[];
  probeArgs: string;
  minSteps: number;
}
const ALL_CHECKS: Variant = { name: '', refArgs: [], oursArgs: [], probeArgs: '', minSteps: 40 };
const WRITEBACK: Variant = { name: '-writeback', refArgs: ['-o', 'writeback'], oursArgs: ['--writeback'], probeArgs: '', minSteps: 40 };
const XATTR_ON: Variant = { name: '-xattr', refArgs: ['-o', 'xattr'], oursArgs: ['--xattr'], probeArgs: ' xattr_user', minSteps: 4 };

async function runProbe(tt: Test, kind: DaemonKind, fixture: string, v: Variant = ALL_CHECKS): Promise<Run | null> {
  const share = path.join(root, `share-${kind}${v.name}`);
  fs.cpSync(fixture, share, { recursive: true, verbatimSymlinks: true });
  const d = await startDaemon(kind, {
    sharedDir: share,
    socketPath: sock,
    extraArgs: kind === 'reference' ? ['-o', 'cache=auto', ...v.refArgs] : ['--cache=auto', ...v.oursArgs],
  });
  daemons.push(d);
  // Ours runs the way an operator starts it (as root: the namespace sandbox, seccomp kill): look at its
  // confinement from the host while the guest runs the probe (docs/sandbox.md).
  let confined: Confinement | null = null;
  const result = await runGuest({
    socketPath: sock,
    tag: TAG,
    script: GUEST_PRELUDE + script(v.probeArgs),
    timeoutSec: 600,
    files: { fsprobe: fs.readFileSync(probe as string) },
    onLine: (l) => {
      if (process.env.VIRTIOFSD_TS_E2E_VERBOSE) console.error(`[${kind}] ${l}`);
      if (kind === 'ours' && confined === null && l.includes('@@STEP ')) confined = confinementOf(d.pid, share);
    },
  });
  if (kind === 'ours' && v === ALL_CHECKS && process.getuid?.() === 0) checkConfinement(tt, confined, d);
  if (kind === 'ours') await d.stop(10000);
  else await Promise.race([d.exited, new Promise((r) => setTimeout(r, 10000))]).then(() => d.stop(2000));
  tt.comment(`${kind}${v.name}: guest ran ${(result.durationMs / 1000).toFixed(1)} s`);
  const diag = {
    console: result.output.split('\n').slice(-60).join('\n'),
    qemuStderr: result.stderr,
    daemonLogs: d.logs().split('\n').slice(-40).join('\n'),
  };
  tt.notOk(result.timedOut, `${kind}: guest finished before the timeout`, result.timedOut ? diag : {});
  if (result.rc === null) {
    tt.fail(`${kind}: guest did not report an exit code (qemu exit ${result.qemuExitCode})`, diag);
    return null;
  }
  const steps = parseSteps(result.output);
  const vals = parseVals(result.output);
  tt.ok(steps.size > v.minSteps, `${kind}: the probe reported its steps (${steps.size})`, steps.size > v.minSteps ? {} : diag);
  tt.ok(result.output.includes('@@PROBE_DONE'), `${kind}: the probe ran to the end (rc ${vals.get('probe_rc')})`,
    result.output.includes('@@PROBE_DONE') ? {} : diag);
  for (const s of ['mount', 'fixture_read', 'fixture_symlink']) {
    tt.ok(steps.get(s)?.ok, `${kind}: ${s}`, steps.get(s)?.ok ? {} : { step: steps.get(s), ...diag });
  }
  return { kind, share, result, steps };
}

interface Confinement {
  pid: number;
  threads: number;
  /** threads whose CapEff, CapBnd, NoNewPrivs or Seccomp differ from the expected */
  off: string[];
  rootIsShare: boolean;
  ownMntNs: boolean;
  ownPidNs: boolean;
}

/** The file server's capability set as /proc prints it (src/sandbox/caps.ts DEFAULT_CAPS). */
const SANDBOX_CAPS = '00000000880000df';

function confinementOf(pid: number, share: string): Confinement {
  const off: string[] = [];
  const tids = fs.readdirSync(`/proc/${pid}/task`);
  for (const tid of tids) {
    const st = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    const f = (k: string): string => new RegExp(`^${k}:\\s+(\\S+)`, 'm').exec(st)?.[1] ?? '?';
    const got = [f('CapEff'), f('CapBnd'), f('NoNewPrivs'), f('Seccomp')];
    if (got.join() !== [SANDBOX_CAPS, SANDBOX_CAPS, '1', '2'].join()) off.push(`${tid}: ${got.join(' ')}`);
  }
  return {
    pid,
    threads: tids.length,
    off,
    rootIsShare: fs.statSync(`/proc/${pid}/root`).ino === fs.statSync(share).ino && fs.readdirSync(`/proc/${pid}/root`).length === fs.readdirSync(share).length,
    ownMntNs: fs.readlinkSync(`/proc/${pid}/ns/mnt`) !== fs.readlinkSync('/proc/self/ns/mnt'),
    ownPidNs: fs.readlinkSync(`/proc/${pid}/ns/pid`) !== fs.readlinkSync('/proc/self/ns/pid'),
  };
}

function checkConfinement(tt: Test, c: Confinement | null, d: DaemonHandle): void {
  tt.ok(c !== null, 'ours: its confinement was read while the guest ran the probe');
  if (c === null) return;
  tt.not(c.pid, d.spawnedPid, 'ours: the serving process is the launcher\'s child');
  tt.same(c.off, [], `ours: all ${c.threads} threads: CapEff = CapBnd = ${SANDBOX_CAPS}, NoNewPrivs 1, Seccomp 2 (filter)`);
  tt.ok(c.rootIsShare, 'ours: /proc/PID/root is the share');
  tt.ok(c.ownMntNs && c.ownPidNs, 'ours: mount and pid namespaces of its own');
  tt.match(d.logs(), /seccomp filter installed on every thread \(--seccomp=kill\)/, 'ours: seccomp kill');
}

function table(ref: Steps | null, ours: Steps): string {
  const names = [...new Set([...(ref?.keys() ?? []), ...ours.keys()])];
  const cell = (s?: { ok: boolean; detail: string }) => (s ? (s.ok ? 'ok' : `FAIL ${s.detail}`) : 'missing');
  return names
    .map((n) => `  ${n.padEnd(28)} ${ref ? `reference: ${cell(ref.get(n))} | ` : ''}ours: ${cell(ours.get(n))}`)
    .join('\n');
}

/** Every step the reference passes must pass on ours (a `null` reference: the expected set instead). */
function compareSteps(t3: Test, r: Run | null, o: Run, v: Variant): void {
  const expected: Record<string, string> = { ...EXPECTED_FAIL, ...(VARIANT_EXPECTED_FAIL[v.name] ?? {}) };
  if (r) {
    const onlyOurs: string[] = [];
    const bothFail: string[] = [];
    for (const [name, rs] of r.steps) {
      const os_ = o.steps.get(name);
      if (rs.ok && !os_?.ok && name in POLICY_DIFF) {
        t3.comment(`step ${name}: passes on the reference, fails on ours by design: ${POLICY_DIFF[name]} (ours: ${os_?.detail})`);
      } else if (rs.ok) {
        t3.ok(os_?.ok, `step ${name}: passes on the reference, so on ours`, os_?.ok ? {} : { ours: os_ ?? 'missing' });
      } else if (os_?.ok) {
        onlyOurs.push(`${name} (reference: ${rs.detail})`);
      } else {
        bothFail.push(`${name} (reference: ${rs.detail}; ours: ${os_?.detail ?? 'missing'})`);
      }
    }
    for (const name of o.steps.keys()) {
      if (!r.steps.has(name)) onlyOurs.push(`${name} (not reported by the reference run)`);
    }
    if (bothFail.length) t3.comment(`steps failing on both:\n  ${bothFail.join('\n  ')}`);
    // a step failing on both daemons is a guest-kernel limit only if it is known to be one
    for (const [name, rs] of r.steps) {
      if (rs.ok || o.steps.get(name)?.ok) continue;
      t3.ok(name in expected, `step ${name}: fails on both daemons, and is a known guest-kernel limit`, name in expected ? {} : { reference: rs.detail, ours: o.steps.get(name)?.detail ?? 'missing' });
    }
    if (onlyOurs.length) t3.comment(`steps passing only on ours:\n  ${onlyOurs.join('\n  ')}`);
    t3.comment(`per-step results:\n${table(r.steps, o.steps)}`);
    // keep the expected-failure list honest: it should name only what the reference also fails
    for (const [name, why] of Object.entries(expected)) {
      if (r.steps.get(name)?.ok) t3.comment(`note: ${name} is listed as expected to fail (${why}) but the reference passes it`);
    }
  } else {
    for (const [name, s] of o.steps) {
      if (name in POLICY_DIFF && !s.ok) {
        t3.comment(`${name}: fails by design: ${POLICY_DIFF[name]}`);
        continue;
      }
      if (name in expected) {
        t3.comment(`${name}: ${s.ok ? 'passes' : `fails (${s.detail})`}; expected to fail: ${expected[name]}`);
        continue;
      }
      t3.ok(s.ok, `step ${name}`, s.ok ? {} : { detail: s.detail });
    }
    t3.comment(`per-step results:\n${table(null, o.steps)}`);
  }
}

async function fullProbe(tt: Test, v: Variant): Promise<void> {
  const fixture = path.join(root, `fixture-template${v.name}`);
  fs.mkdirSync(fixture);
  makeFixture(fixture);

  let ref: Run | null = null;
  if (haveReference) {
    await tt.test('reference daemon run', async (t1) => {
      ref = await runProbe(t1, 'reference', fixture, v);
    });
  } else {
    tt.comment(`reference daemon ${REFERENCE_DAEMON} not installed: checking ours against the expected set`);
  }
  let ours: Run | null = null;
  await tt.test('our daemon run', async (t2) => {
    ours = await runProbe(t2, 'ours', fixture, v);
  });
  const o = ours as Run | null;
  const r = ref as Run | null;
  if (!o) return;

  await tt.test('per-step comparison', async (t3) => compareSteps(t3, r, o, v));

  await tt.test('host-side checks of the files the probe wrote (ours)', async (t4) => {
    for (const c of hostChecks(o.share, o.result.output)) t4.ok(c.ok, `host: ${c.name}`, c.ok ? {} : { detail: c.detail });
    if (r) {
      const refFails = hostChecks(r.share, r.result.output).filter((c) => !c.ok);
      if (refFails.length) {
        t4.comment(`host checks failing on the reference's share (informational):\n  ${refFails
          .map((c) => `${c.name}: ${c.detail}`).join('\n  ')}`);
      }
    }
  });
}

t.test('functional probe: ours vs the reference daemon', { skip: skip ?? false }, (tt) => fullProbe(tt, ALL_CHECKS));

t.test('functional probe with the writeback cache: --writeback (ours) and -o writeback (reference)', { skip: skip ?? false },
  (tt) => fullProbe(tt, WRITEBACK));

t.test('extended attributes in a real guest: --xattr (ours) and -o xattr (reference)', { skip: skip ?? false }, async (tt) => {
  const fixture = path.join(root, 'fixture-template-xattr');
  fs.mkdirSync(fixture);
  makeFixture(fixture);
  const runs: Run[] = [];
  for (const kind of haveReference ? (['reference', 'ours'] as const) : (['ours'] as const)) {
    await tt.test(`${kind} with xattrs on`, async (t1) => {
      const r = await runProbe(t1, kind, fixture, XATTR_ON);
      if (r) runs.push(r);
    });
  }
  const ours = runs.find((r) => r.kind === 'ours');
  const ref = runs.find((r) => r.kind === 'reference');
  if (!ours) return;
  if (ref) {
    tt.ok(ref.steps.get('xattr_user')?.ok, 'the reference passes the xattr check (the check itself is sound)',
      ref.steps.get('xattr_user')?.ok ? {} : { step: ref.steps.get('xattr_user') });
  }
  const st = ours.steps.get('xattr_user');
  tt.ok(st?.ok, 'ours: set/get/list/remove, flags, ERANGE, a 4000-byte value, directories, symlinks', st?.ok ? {} : { step: st ?? 'missing' });
  // what the guest set is a real xattr of the host file
  const fd = native.openat2(native.constants.AT_FDCWD, Buffer.from(path.join(ours.share, 'probe', 'xattr-left')), native.constants.O_RDONLY, 0, 0);
  tt.ok(fd >= 0, 'the file the guest left is on the host');
  if (fd >= 0) {
    const out = new Uint8Array(64);
    const n = native.fgetxattr(fd, Buffer.from('user.left'), out);
    native.close(fd);
    tt.equal(n >= 0 ? Buffer.from(out.subarray(0, n)).toString() : `errno ${-n}`, 'kept', 'host: user.left on xattr-left');
  }
});
