// The import rule of docs/internals.md "Layers and the import rule", checked on the sources: a module
// imports only its own layer and the layers below it; leaves import nothing of ours. A new import that
// runs against the order fails here (the fix is to pass a callback or an interface in, not to import up).
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { packageRoot } from '../../src/package-root.js';

const SRC = path.join(packageRoot(), 'src');

/** layer → the other layers it may import. Wiring modules (cli, config, daemon, worker) are not listed: they compose. */
const ALLOWED: Record<string, readonly string[]> = {
  abi: [],
  errors: [],
  log: [],
  'package-root': [],
  native: ['package-root'],
  // a socket file removed through its directory (safe once the sandbox has moved the root)
  'socket-file': ['abi', 'native'],
  // namespaces, the new root, capabilities (the launcher and the move into the sandbox)
  sandbox: ['abi', 'errors', 'log', 'native'],
  syslog: ['log', 'native'],
  memory: ['abi', 'errors', 'log', 'native'],
  // the counters workers write and the registry, HTTP endpoint and address syntax that read them
  metrics: ['abi', 'errors', 'log', 'native', 'socket-file'],
  virtio: ['abi', 'errors', 'log', 'native', 'memory', 'metrics', 'package-root'],
  vhost: ['abi', 'errors', 'log', 'native', 'socket-file', 'virtio'],
  fs: ['abi', 'errors', 'log', 'native'],
  fuse: ['abi', 'errors', 'log', 'fs'],
  // the driver side: vhost-user message codec, region descriptions, the wire ABI
  frontend: ['abi', 'errors', 'native', 'memory', 'vhost'],
  // the load tester: a frontend that runs the AS module's driver-side rings (virtio's wasm loader)
  loadtest: ['abi', 'errors', 'native', 'package-root', 'virtio', 'vhost', 'frontend'],
};
const WIRING = new Set(['cli', 'config', 'daemon', 'worker', 'worker-init']);

function layerOf(rel: string): string {
  const first = rel.split(path.sep)[0]!;
  return first.endsWith('.ts') || first.endsWith('.js') ? first.slice(0, -3) : first;
}

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    return d.isDirectory() ? sources(p) : d.name.endsWith('.ts') ? [p] : [];
  });
}

/** [importing file, imported layer] for every relative import or re-export that leaves the file's layer. */
function crossings(): Array<[string, string, string]> {
  const out: Array<[string, string, string]> = [];
  const spec = /(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+'(\.[^']+)'/g;
  for (const file of sources(SRC)) {
    const rel = path.relative(SRC, file);
    const from = layerOf(rel);
    for (const m of fs.readFileSync(file, 'utf8').matchAll(spec)) {
      const target = path.relative(SRC, path.resolve(path.dirname(file), m[1]!));
      const to = layerOf(target);
      if (to !== from) out.push([rel, from, to]);
    }
  }
  return out;
}

t.test('every src/ module imports only its own layer and the layers below it', async (t) => {
  const all = crossings();
  t.ok(all.length > 20, `found the cross-layer imports (${all.length})`);
  const layers = new Set(all.flatMap(([, a, b]) => [a, b]));
  for (const l of layers) {
    t.ok(l in ALLOWED || WIRING.has(l), `layer '${l}' is known to this test (add it to ALLOWED or WIRING)`);
  }
  for (const [file, from, to] of all) {
    if (WIRING.has(from)) continue;
    if (!(ALLOWED[from] ?? []).includes(to)) t.fail(`${file} (${from}) imports ${to}: against the layer order`);
  }
});

t.test('the checker sees an upward import', async (t) => {
  // The same scan over a made-up file: memory importing virtio must be flagged.
  const spec = /(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+'(\.[^']+)'/g;
  const text = "import fs from 'node:fs';\nimport type { VqExports } from '../virtio/wasm.js';\n";
  const targets = [...text.matchAll(spec)].map((m) => layerOf(path.relative(SRC, path.resolve(SRC, 'memory', m[1]!))));
  t.same(targets, ['virtio']);
  t.notOk(ALLOWED.memory!.includes('virtio'));
});
