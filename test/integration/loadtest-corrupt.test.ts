/**
 * The load tester refuses to measure a backend that answers wrongly. The backend is our daemon behind
 * test/helpers/corrupting-backend.ts, a vhost-user proxy that damages every N-th reply in guest memory
 * before passing the interrupt on: one byte of READ data, the reply's unique, or its length. Each run
 * must end with exit status 1, say what was wrong, and write no result; the same proxy damaging nothing
 * must measure normally (so the failures come from the damage, not from the proxy).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { repoRoot } from '../../harness/locations.js';

const BIN = path.join(repoRoot(), 'bin', 'virtiofsd-ts.js');
const PROXY = path.join(repoRoot(), 'dist', 'test', 'helpers', 'corrupting-backend.js');
const NODE = process.execPath;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-loadtest-corrupt-'));
const share = path.join(tmp, 'share');
fs.mkdirSync(share);
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

function backend(flip: string, every: number): string {
  return `${NODE} ${PROXY} --socket-path={socket} --flip=${flip} --every=${every} -- ${NODE} ${BIN} --socket-path={upstream} --shared-dir={share}`;
}

function run(flip: string, every: number, workload: string): { code: number | null; out: string; results: unknown[] } {
  const json = path.join(tmp, `${flip}-${every}.json`);
  // the same share every time: the fixture is made once (by the first, undamaged run) and reused
  const r = spawnSync(
    NODE,
    [BIN, 'loadtest', '--backend', backend(flip, every), `--workloads=${workload}`, '--duration=2', '--warmup=0.2', '--file-size=4M',
      '--entries=10', `--share=${share}`, '--depth=4', `--json=${json}`, '--quiet'],
    { encoding: 'utf8', timeout: 120_000 },
  );
  const results = fs.existsSync(json) ? fs.readFileSync(json, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
  return { code: r.status, out: `${r.stdout}\n${r.stderr}`, results };
}

t.test('through the proxy damaging nothing, the run measures normally', async (tt) => {
  const r = run('data', 0, 'read-rand');
  tt.equal(r.code, 0, r.out);
  tt.equal(r.results.length, 1, 'one result');
  tt.equal((r.results[0] as { errors: number }).errors, 0);
});

t.test('one flipped byte of READ data: no result, the byte named', async (tt) => {
  const r = run('data', 50, 'read-rand');
  tt.equal(r.code, 1, r.out);
  tt.match(r.out, /read-rand on .*: READ at \d+: byte \d+ of the file is not what the fixture holds/);
  tt.equal(r.results.length, 0, 'no result written');
});

t.test('a reply with the wrong unique: no result', async (tt) => {
  const r = run('unique', 50, 'getattr');
  tt.equal(r.code, 1, r.out);
  tt.match(r.out, /getattr on .*: GETATTR reply carries unique 0x[0-9a-f]+, not the request's/);
  tt.equal(r.results.length, 0, 'no result written');
});

t.test('a reply header with the wrong length: no result', async (tt) => {
  const r = run('len', 50, 'getattr');
  tt.equal(r.code, 1, r.out);
  tt.match(r.out, /getattr on .*: .*(reply header says \d+ bytes but the device wrote \d+|overruns the \d+ bytes of its buffers|malformed reply header)/);
  tt.equal(r.results.length, 0, 'no result written');
});
