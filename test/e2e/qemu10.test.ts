/**
 * A second real frontend: the foundation workload and the functional suite again, under QEMU 10 (from
 * bookworm-backports, unpacked next to the installed 7.2 by .ci/run; harness/locations.ts qemu10()).
 * Each file runs as a child tap process with the harness pointed at QEMU 10 (VIRTIOFSD_TS_QEMU and
 * VIRTIOFSD_TS_QEMU_DATA); its assertions are this test's subtests.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { qemu10 } from '../../harness/index.js';

const q = qemu10();
const here = path.dirname(fileURLToPath(import.meta.url));
// Without QEMU 10 the test cannot run; in CI (.ci/run unpacks it) that is a failure, not a skip.
const missing = q === null ? 'QEMU 10 is not unpacked (.ci/run puts it in the cache; or set VIRTIOFSD_TS_QEMU10)' : false;

t.test('QEMU 10 is there', { skip: process.env.CI ? false : missing }, async (t) => {
  t.ok(q, missing || 'found');
  if (!q) return;
  const v = spawnSync(q.bin, ['-L', q.dataDir, '--version'], { encoding: 'utf8' });
  t.match(v.stdout, /QEMU emulator version 10\./, v.stdout.split('\n')[0] ?? '');
});

for (const file of ['foundation.test.js', 'functional.test.js']) {
  t.test(`${file} under QEMU 10`, { skip: q === null && !process.env.CI ? missing : false }, async (t) => {
    if (!q) {
      t.fail(missing as string);
      return;
    }
    t.spawn(process.execPath, [...process.execArgv, path.join(here, file)], {
      env: { ...process.env, VIRTIOFSD_TS_QEMU: q.bin, VIRTIOFSD_TS_QEMU_DATA: q.dataDir },
    }, file);
  });
}
