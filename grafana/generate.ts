/**
 * `npm run grafana` (node dist/grafana/generate.js): writes the dashboard built by grafana/dashboard.ts
 * to grafana/dashboards/virtiofsd.json. `--check` writes nothing and exits 1 when the committed file
 * differs from what the code builds (test/unit/grafana-dashboard.test.ts checks the same).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dashboardJson } from './dashboard.js';

/** The committed dashboard, from where this script runs: dist/grafana/generate.js. */
const DASHBOARD_FILE = fileURLToPath(new URL('../../grafana/dashboards/virtiofsd.json', import.meta.url));

function main(args: string[]): number {
  const check = args.includes('--check');
  const unknown = args.filter((a) => a !== '--check');
  if (unknown.length > 0) {
    process.stderr.write(`usage: npm run grafana [-- --check]\nunknown argument: ${unknown.join(' ')}\n`);
    return 2;
  }
  const text = dashboardJson();
  if (!check) {
    writeFileSync(DASHBOARD_FILE, text);
    process.stdout.write(`wrote ${DASHBOARD_FILE}\n`);
    return 0;
  }
  let committed: string;
  try {
    committed = readFileSync(DASHBOARD_FILE, 'utf8');
  } catch (e) {
    process.stderr.write(`${DASHBOARD_FILE}: ${(e as Error).message}\nrun: npm run build:ts && npm run grafana\n`);
    return 1;
  }
  if (committed !== text) {
    process.stderr.write(`${DASHBOARD_FILE} differs from the dashboard grafana/dashboard.ts builds\nrun: npm run build:ts && npm run grafana\n`);
    return 1;
  }
  process.stdout.write(`${DASHBOARD_FILE} is up to date\n`);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
