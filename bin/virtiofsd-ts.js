#!/usr/bin/env node
// The entry point: everything lives in dist/src/cli.js (built by `npm ci` / `npm run build`).
import { main } from '../dist/src/cli.js';

main(process.argv.slice(2)).then(
  (code) => { if (typeof code === 'number') process.exitCode = code; },
  (err) => { process.stderr.write(`virtiofsd-ts: fatal: ${err && err.stack ? err.stack : err}\n`); process.exit(1); }
);
