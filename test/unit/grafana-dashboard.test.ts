/**
 * The Grafana dashboard (grafana/dashboard.ts): the committed JSON is what the code builds, every metric
 * a panel queries is one the daemon's registry exports, every expression selects the instance variable,
 * and the variables, ids and titles hold together (docs/testing.md, "Grafana dashboard").
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import {
  buildDashboard, DASHBOARD_UID, DATASOURCE_NAME, DATASOURCE_REF, DATASOURCE_UID, dashboardJson, INSTANCE_QUERY, panelQueries,
} from '../../grafana/dashboard.js';
import { Opcode } from '../../src/abi/fuse.js';
import { buildRegistry } from '../../src/metrics/collect.js';
import { counterBuffer, countRequest, Q, QUEUE_AT, QUEUE_STRIDE, W, workerBlock } from '../../src/metrics/counters.js';
import { VhostUserStats } from '../../src/vhost/stats.js';

/** A file of the repository, from this test's place in the build (dist/test/unit/). */
const repoFile = (p: string): string => fileURLToPath(new URL(`../../../${p}`, import.meta.url));

/** The metric selectors of a PromQL expression: each metric name with its `{…}` matchers ('' without). */
function selectors(expr: string): Array<{ name: string; matchers: string }> {
  const bare = expr
    .replace(/\[[^\]]*\]/g, '') // range durations ([$__rate_interval])
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ''); // label lists
  const out: Array<{ name: string; matchers: string }> = [];
  const keywords = new Set(['and', 'or', 'unless', 'bool', 'offset']);
  // an identifier with its matchers (whose label names and strings are consumed with it), not a call
  for (const m of bare.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?(\s*\()?/g)) {
    if (m[3] !== undefined || keywords.has(m[1]!)) continue;
    out.push({ name: m[1]!, matchers: m[2] ?? '' });
  }
  return out;
}

/** Every series name the registry exports over fake sources with some of each kind of count. */
async function exportedNames(): Promise<Set<string>> {
  const counters = counterBuffer(2);
  const w0 = workerBlock(counters, 0);
  const w1 = workerBlock(counters, 1);
  countRequest(w0, Opcode.Getattr, 1e-5, 0);
  countRequest(w0, Opcode.Lookup, 3e-4, -2);
  countRequest(w1, Opcode.Read, 2e-3, 0);
  for (const w of [w0, w1]) {
    for (const slot of Object.values(W)) w[slot]! += 1;
    for (const slot of Object.values(Q)) w[QUEUE_AT + QUEUE_STRIDE + slot]! += 1;
  }
  const vhost = new VhostUserStats();
  vhost.connections = 1;
  vhost.message(1, false);
  vhost.message(99, true);
  const registry = buildRegistry({
    counters,
    workers: 2,
    queues: () => [
      { index: 0, size: 128, inFlight: 0, pending: 0, broken: false },
      { index: 1, size: 1024, inFlight: 2, pending: 1, broken: false },
    ],
    tables: () => ({ inodes: 3, inodesMax: 1 << 20, handles: 1, handlesMax: 1 << 18 }),
    memory: () => ({ bytes: 1 << 30, regions: 2, apertureHits: 1, apertureMisses: 0 }),
    vhost,
    connected: () => true,
    build: { version: '0.0.0', node_version: process.version },
    config: { cache: 'auto', thread_pool_size: '2' },
  });
  const names = new Set<string>();
  for (const line of (await registry.metrics()).split('\n')) {
    const help = /^# HELP (\S+)/.exec(line);
    if (help !== null) names.add(help[1]!);
    const hist = /^# TYPE (\S+) histogram$/.exec(line);
    if (hist !== null) for (const s of ['_bucket', '_sum', '_count']) names.add(hist[1]! + s);
    const sample = /^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]/.exec(line);
    if (sample !== null) names.add(sample[1]!);
  }
  return names;
}

t.test('the committed JSON is what grafana/dashboard.ts builds', async (t) => {
  const file = repoFile('grafana/dashboards/virtiofsd.json');
  const committed = readFileSync(file, 'utf8');
  t.equal(committed, dashboardJson(), `${file} is stale: run npm run build:ts && npm run grafana`);
  t.same(JSON.parse(committed), buildDashboard());
});

t.test('every metric a panel queries is exported by the registry', async (t) => {
  const names = await exportedNames();
  // sanity: the fake sources produce the series a dashboard needs
  for (const n of ['virtiofsd_fuse_request_duration_seconds_bucket', 'virtiofsd_fuse_errors_total', 'process_open_fds', 'process_max_fds']) {
    t.ok(names.has(n), `the registry exports ${n}`);
  }
  const queries = panelQueries();
  t.ok(queries.length >= 30, `${queries.length} expressions`);
  const unknown: string[] = [];
  for (const { panel, expr } of queries) {
    const used = selectors(expr);
    t.ok(used.length > 0, `${panel}: ${expr} selects a metric`);
    for (const { name } of used) if (!names.has(name)) unknown.push(`${panel}: ${name}`);
  }
  for (const { name } of selectors(INSTANCE_QUERY.replace(/^label_values\((.*), instance\)$/, '$1'))) {
    if (!names.has(name)) unknown.push(`instance variable: ${name}`);
  }
  t.same(unknown, [], 'metrics no registry exports');
});

t.test('every expression selects the instance and uses no other variable', async (t) => {
  for (const { panel, expr } of panelQueries()) {
    for (const { name, matchers } of selectors(expr)) {
      t.match(matchers, /^\{(.*,\s*)?instance=~"\$instance"(\s*,.*)?\}$/, `${panel}: ${name} filters on instance`);
    }
    const vars = [...expr.matchAll(/\$\{?(\w+)/g)].map((m) => m[1]);
    t.same(vars.filter((v) => v !== 'instance' && v !== '__rate_interval'), [], `${panel}: only $instance and $__rate_interval`);
  }
});

t.test('the selector scanner sees a misspelled or unfiltered metric', async (t) => {
  const expr = 'histogram_quantile(0.5, sum by (le, opcode) (rate(virtiofsd_fuse_request_duration_secs_bucket{instance=~"$instance"}[$__rate_interval]))) / up';
  t.same(selectors(expr), [
    { name: 'virtiofsd_fuse_request_duration_secs_bucket', matchers: '{instance=~"$instance"}' },
    { name: 'up', matchers: '' },
  ]);
});

t.test('variables, datasource, ids and titles', async (t) => {
  const d = buildDashboard();
  t.equal(d.uid, DASHBOARD_UID);
  const vars = d.templating.list ?? [];
  const instance = vars.find((v) => v.name === 'instance');
  t.ok(instance, 'an instance variable');
  t.equal(instance?.type, 'query');
  t.equal(instance?.query, 'label_values(virtiofsd_build_info, instance)');
  t.same(instance?.datasource, DATASOURCE_REF);
  const dsVar = /^\$\{(\w+)\}$/.exec(DATASOURCE_REF.uid ?? '')?.[1];
  t.equal(DATASOURCE_REF.type, 'prometheus');
  const ds = vars.find((v) => v.name === dsVar);
  t.equal(ds?.type, 'datasource');
  t.equal(ds?.query, 'prometheus', 'the datasource variable lists Prometheus datasources');
  t.equal(ds?.current?.value, DATASOURCE_UID, 'and defaults to the provisioned one');
  const provisioned = readFileSync(repoFile('grafana/provisioning/datasources/prometheus.yaml'), 'utf8');
  t.match(provisioned, new RegExp(`^\\s*uid: ${DATASOURCE_UID}$`, 'm'), 'the provisioning file gives the datasource that uid');
  t.match(provisioned, new RegExp(`^\\s*- name: ${DATASOURCE_NAME.replace(/[()]/g, '\\$&')}$`, 'm'), 'and the name the variable shows');

  const panels = d.panels ?? [];
  const ids = panels.map((p) => p.id);
  const titles = panels.map((p) => p.title);
  t.ok(ids.every((id) => typeof id === 'number'), 'every panel has an id');
  t.equal(new Set(ids).size, ids.length, 'ids are unique');
  t.same(titles.filter((x, i) => titles.indexOf(x) !== i), [], 'titles are unique');
  const cells = new Set<string>();
  for (const p of panels) {
    const g = p.gridPos!;
    t.ok(g.x + g.w <= 24, `${p.title} fits the width`);
    for (let x = g.x; x < g.x + g.w; x++) {
      for (let y = g.y; y < g.y + g.h; y++) {
        if (cells.has(`${x},${y}`)) t.fail(`${p.title} overlaps another panel at ${x},${y}`);
        cells.add(`${x},${y}`);
      }
    }
    if (p.type === 'row') continue;
    t.same(p.datasource, DATASOURCE_REF, `${p.title} queries the datasource variable`);
    for (const q of (p as { targets?: Array<{ datasource?: unknown }> }).targets ?? []) t.same(q.datasource, DATASOURCE_REF);
  }
});
