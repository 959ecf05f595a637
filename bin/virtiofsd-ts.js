#!/usr/bin/env node
// The entry point: everything lives in dist/src/cli.js (built by `npm ci` / `npm run build`).
import { main } from '../dist/src/cli.js';

main(process.argv.slice(2)).then(
  // Exit explicitly: a clean shutdown has released everything, and a stray handle must not keep an
  // operator's SIGTERM from ending the process.
  (code) => process.exit(typeof code === 'number' ? code : 0),
  (err) => {
    process.stderr.write(`virtiofsd-ts: fatal: ${err?.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
