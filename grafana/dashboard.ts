/**
 * The Grafana dashboard of the daemon's Prometheus metrics (docs/metrics.md), as code: `npm run grafana`
 * (grafana/generate.ts) writes it to grafana/dashboards/virtiofsd.json, which Grafana provisions or
 * imports (grafana/README.md). Every PromQL expression selects `instance=~"$instance"` and uses no
 * variable but `$instance` and `$__rate_interval`, so a test can evaluate each one through a real
 * Prometheus with the two replaced (panelQueries() lists them).
 */
import * as common from '@grafana/grafana-foundation-sdk/common';
import * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import * as prometheus from '@grafana/grafana-foundation-sdk/prometheus';
import * as stat from '@grafana/grafana-foundation-sdk/stat';
import * as table from '@grafana/grafana-foundation-sdk/table';
import * as timeseries from '@grafana/grafana-foundation-sdk/timeseries';

/** The datasource uid grafana/provisioning/datasources/prometheus.yaml gives the Prometheus it provisions. */
export const DATASOURCE_UID = 'virtiofsd-prometheus';
export const DATASOURCE_NAME = 'Prometheus (virtiofsd)';
export const DASHBOARD_UID = 'virtiofsd-ts';
/** The query of the `instance` variable: every target that exports the daemon's build info. */
export const INSTANCE_QUERY = 'label_values(virtiofsd_build_info, instance)';

/** Panels and the variable query go through the `datasource` variable, so an import can pick any Prometheus. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a JavaScript template
export const DATASOURCE_REF: common.DataSourceRef = { type: 'prometheus', uid: '${datasource}' };

// ---- PromQL ----

/** `metric{instance=~"$instance"}`: the only selector the expressions use. */
const sel = (metric: string): string => `${metric}{instance=~"$instance"}`;
const rate = (metric: string): string => `rate(${sel(metric)}[$__rate_interval])`;
const increase = (metric: string): string => `increase(${sel(metric)}[$__rate_interval])`;
/** `sum by (labels) (rate(metric))`; `sum (rate(metric))` without labels. */
const sumRate = (metric: string, by = ''): string => `sum${by === '' ? '' : ` by (${by})`} (${rate(metric)})`;
/**
 * `expr`, or 0 with `like`'s labels where `expr` has no series: counters that have never moved have none
 * (collect.ts leaves out zero errors and bad chains), and a panel should draw 0, not "No data".
 */
const orZero = (expr: string, like: string): string => `${expr} or 0 * ${like}`;
/**
 * A gauge of the running queues, by queue; 0 for the queues that served chains while none runs (no
 * frontend): the daemon reports running queues only, and a panel should not go blank on a disconnect.
 */
const queueGauge = (metric: string): string =>
  orZero(`sum by (queue) (${sel(metric)})`, `sum by (queue) (${sel('virtiofsd_queue_requests_total')})`);
const quantile = (q: number): string =>
  `histogram_quantile(${q}, sum by (le, opcode) (${rate('virtiofsd_fuse_request_duration_seconds_bucket')}))`;

// ---- panels ----

interface Query {
  expr: string;
  legend: string;
  /** an instant query shown as a table (the info metrics) */
  table?: boolean;
}
const q = (expr: string, legend: string): Query => ({ expr, legend });

function target(query: Query, i: number): prometheus.DataqueryBuilder {
  const t = new prometheus.DataqueryBuilder()
    .datasource(DATASOURCE_REF)
    .editorMode(prometheus.QueryEditorMode.Code)
    .expr(query.expr)
    .legendFormat(query.legend)
    .refId(String.fromCharCode(65 + i));
  return query.table === true ? t.instant().format(prometheus.PromQueryFormat.Table) : t.range();
}

interface SeriesOptions {
  unit: string;
  /** fixed axis range (utilisation and ratios stop at 1) */
  max?: number;
  width?: number;
  /** series (by legend) drawn against a right-hand axis, with their unit */
  rightAxis?: Record<string, string>;
}

function series(title: string, description: string, queries: Query[], o: SeriesOptions): timeseries.PanelBuilder {
  const p = new timeseries.PanelBuilder()
    .title(title)
    .description(description)
    .datasource(DATASOURCE_REF)
    .targets(queries.map(target))
    .unit(o.unit)
    .min(0)
    .span(o.width ?? 12)
    .height(8)
    .fillOpacity(10)
    .showPoints(common.VisibilityMode.Never)
    .legend(new common.VizLegendOptionsBuilder().showLegend(true).displayMode(common.LegendDisplayMode.List).placement(common.LegendPlacement.Bottom))
    .tooltip(new common.VizTooltipOptionsBuilder().mode(common.TooltipDisplayMode.Multi).sort(common.SortOrder.Descending));
  if (o.max !== undefined) p.max(o.max);
  for (const [name, unit] of Object.entries(o.rightAxis ?? {})) {
    p.overrideByName(name, [
      { id: 'unit', value: unit },
      { id: 'custom.axisPlacement', value: 'right' },
    ]);
  }
  return p;
}

function single(title: string, description: string, query: Query, unit: string, steps: dashboard.Threshold[]): stat.PanelBuilder {
  return new stat.PanelBuilder()
    .title(title)
    .description(description)
    .datasource(DATASOURCE_REF)
    .targets([target(query, 0)])
    .unit(unit)
    .span(4)
    .height(4)
    .graphMode(common.BigValueGraphMode.None)
    .colorMode(common.BigValueColorMode.Value)
    .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(['lastNotNull']))
    .thresholds(new dashboard.ThresholdsConfigBuilder().mode(dashboard.ThresholdsMode.Absolute).steps(steps));
}

/** An info metric's labels as a table: one row per instance, the time, value and name columns hidden. */
function info(title: string, description: string, metric: string, width: number): table.PanelBuilder {
  return new table.PanelBuilder()
    .title(title)
    .description(description)
    .datasource(DATASOURCE_REF)
    .targets([target({ expr: sel(metric), legend: '__auto', table: true }, 0)])
    .span(width)
    .height(5)
    .withTransformation({ id: 'organize', options: { excludeByName: { Time: true, Value: true, __name__: true } } });
}

const green = (value: number | null = null): dashboard.Threshold => ({ value, color: 'green' });
const red = (value: number | null = null): dashboard.Threshold => ({ value, color: 'red' });

// ---- the rows ----

type Panel = stat.PanelBuilder | table.PanelBuilder | timeseries.PanelBuilder;

function overview(): Panel[] {
  return [
    single('Frontend connected', 'A vhost-user frontend (QEMU) is connected.', q(sel('virtiofsd_vhost_user_connected'), ''), 'none', [red(), green(1)]).mappings([
      {
        type: dashboard.MappingType.ValueToText,
        options: { '0': { text: 'no', color: 'red' }, '1': { text: 'yes', color: 'green' } },
      },
    ]),
    single('Requests/s', 'FUSE requests served per second, every opcode.', q(sumRate('virtiofsd_fuse_requests_total'), ''), 'reqps', [green()]),
    single('Worker threads', 'Worker threads serving the virtqueues.', q(sel('virtiofsd_workers'), ''), 'none', [green()]),
    single('Guest memory', 'Guest RAM mapped from the frontend.', q(sel('virtiofsd_guest_memory_bytes'), ''), 'bytes', [green()]),
    single('Broken queues', 'Virtqueues stopped because the driver corrupted them (until a device reset).', q(orZero(`sum (${sel('virtiofsd_queue_broken')})`, `sum (${sel('virtiofsd_workers')})`), ''), 'none', [
      green(),
      red(1),
    ]),
    single('Descriptors used', 'Open descriptors against the process limit (each inode the guest holds is one).', q(`${sel('process_open_fds')} / ${sel('process_max_fds')}`, ''), 'percentunit', [
      green(),
      { value: 0.8, color: 'orange' },
      red(0.95),
    ]),
    info('Build', 'virtiofsd_build_info: version and Node.js runtime.', 'virtiofsd_build_info', 8),
    info('Configuration', 'virtiofsd_config_info: the options the daemon serves with.', 'virtiofsd_config_info', 16),
  ];
}

function requests(): Panel[] {
  const latency = 'Service time in a worker, from taking the request off the ring (or the end of the previous one) to its reply; from the histogram buckets (2 µs … 10 s).';
  return [
    series('Operations/s', 'FUSE requests served and answered with an error, per second.', [
      q(sumRate('virtiofsd_fuse_requests_total'), 'requests'),
      q(orZero(sumRate('virtiofsd_fuse_errors_total'), sumRate('virtiofsd_fuse_requests_total')), 'errors'),
    ], { unit: 'reqps' }),
    series('Throughput', 'File data returned by READ and written by WRITE.', [
      q(sumRate('virtiofsd_fuse_read_bytes_total'), 'read'),
      q(sumRate('virtiofsd_fuse_write_bytes_total'), 'write'),
    ], { unit: 'binBps' }),
    series('IOPS by opcode', 'FUSE requests per second by opcode.', [q(sumRate('virtiofsd_fuse_requests_total', 'opcode'), '{{opcode}}')], { unit: 'ops' }),
    series('Mean latency by opcode', 'Mean service time by opcode (sum over count of the histogram).', [
      q(`${sumRate('virtiofsd_fuse_request_duration_seconds_sum', 'opcode')} / ${sumRate('virtiofsd_fuse_request_duration_seconds_count', 'opcode')}`, '{{opcode}}'),
    ], { unit: 's' }),
    series('Latency p50 by opcode', `Median. ${latency}`, [q(quantile(0.5), '{{opcode}}')], { unit: 's' }),
    series('Latency p99 by opcode', `99th percentile. ${latency}`, [q(quantile(0.99), '{{opcode}}')], { unit: 's' }),
  ];
}

function errors(): Panel[] {
  return [
    series('Errors by errno', 'FUSE requests answered with an error, per second, by errno (other: above 133).', [
      q(sumRate('virtiofsd_fuse_errors_total', 'errno'), '{{errno}}'),
    ], { unit: 'reqps' }),
    series('Errors by opcode', 'FUSE requests answered with an error, per second, by opcode and errno.', [
      q(sumRate('virtiofsd_fuse_errors_total', 'opcode, errno'), '{{opcode}} {{errno}}'),
    ], { unit: 'reqps' }),
  ];
}

function queues(): Panel[] {
  return [
    series('Queue depth', 'Chains taken off the ring and not answered yet (in flight), and chains available that no worker has taken (pending), by virtqueue (0 is hiprio).', [
      q(queueGauge('virtiofsd_queue_in_flight'), 'in flight q{{queue}}'),
      q(queueGauge('virtiofsd_queue_pending'), 'pending q{{queue}}'),
    ], { unit: 'short' }),
    series('Notifications and kicks', 'Used-buffer notifications sent (call eventfd writes) and suppressed (EVENT_IDX, NO_INTERRUPT), and worker wakeups by the kick eventfd, per second by virtqueue.', [
      q(sumRate('virtiofsd_queue_notifications_total', 'queue'), 'sent q{{queue}}'),
      q(sumRate('virtiofsd_queue_notifications_suppressed_total', 'queue'), 'suppressed q{{queue}}'),
      q(sumRate('virtiofsd_queue_kicks_total', 'queue'), 'kicks q{{queue}}'),
    ], { unit: 'ops' }),
    series('Chains by queue', 'Descriptor chains served per second, by virtqueue.', [q(sumRate('virtiofsd_queue_requests_total', 'queue'), 'q{{queue}}')], { unit: 'ops' }),
    series('Bad chains and broken queues', 'Chains returned unused because they broke the virtio rules (per second), and queues stopped over a corrupt ring (1).', [
      q(orZero(sumRate('virtiofsd_queue_bad_chains_total', 'queue'), sumRate('virtiofsd_queue_requests_total', 'queue')), 'bad chains q{{queue}}'),
      q(queueGauge('virtiofsd_queue_broken'), 'broken q{{queue}}'),
    ], { unit: 'short' }),
  ];
}

function workers(): Panel[] {
  return [
    series('Worker utilization', 'Share of the time each worker spends serving requests (busy seconds per second).', [
      q(sumRate('virtiofsd_worker_busy_seconds_total', 'worker'), 'worker {{worker}}'),
    ], { unit: 'percentunit', max: 1 }),
    series('Wakeups', 'Times each worker woke from waiting for a kick, per second.', [q(sumRate('virtiofsd_worker_wakeups_total', 'worker'), 'worker {{worker}}')], { unit: 'ops' }),
    series('Requests per wakeup', 'Chains served per wakeup from waiting for a kick: above 1 when polling and batching save sleeps.', [
      q(`${sumRate('virtiofsd_worker_requests_total', 'worker')} / ${sumRate('virtiofsd_worker_wakeups_total', 'worker')}`, 'worker {{worker}}'),
      q(`${sumRate('virtiofsd_worker_requests_total')} / ${sumRate('virtiofsd_worker_wakeups_total')}`, 'all'),
    ], { unit: 'short' }),
    series('Polls, hand-ons, takeovers', 'Polls before sleeping that found a request, slow requests that woke another worker, and takeovers of the rings from a stuck worker, per second.', [
      q(sumRate('virtiofsd_worker_poll_hits_total'), 'poll hits'),
      q(sumRate('virtiofsd_worker_hand_ons_total'), 'hand-ons'),
      q(sumRate('virtiofsd_worker_stall_takeovers_total'), 'stall takeovers'),
    ], { unit: 'ops' }),
  ];
}

function tables(): Panel[] {
  return [
    series('Table and descriptor usage', 'Inodes and handles against their table capacity, open descriptors against the process limit.', [
      q(`${sel('virtiofsd_inodes')} / ${sel('virtiofsd_inodes_max')}`, 'inodes'),
      q(`${sel('virtiofsd_handles')} / ${sel('virtiofsd_handles_max')}`, 'handles'),
      q(`${sel('process_open_fds')} / ${sel('process_max_fds')}`, 'descriptors'),
    ], { unit: 'percentunit', max: 1 }),
    series('Inodes, handles, descriptors', 'Inodes the guest holds (each an O_PATH descriptor), open file and directory handles, open descriptors of the process.', [
      q(sel('virtiofsd_inodes'), 'inodes'),
      q(sel('virtiofsd_handles'), 'handles'),
      q(sel('process_open_fds'), 'descriptors'),
    ], { unit: 'short' }),
  ];
}

function frontend(): Panel[] {
  return [
    series('Frontend connections', 'Connected (1) or not, and frontends accepted, gone and refused (one at a time) in each interval.', [
      q(sel('virtiofsd_vhost_user_connected'), 'connected'),
      q(increase('virtiofsd_vhost_user_connections_total'), 'connections'),
      q(increase('virtiofsd_vhost_user_disconnects_total'), 'disconnects'),
      q(increase('virtiofsd_vhost_user_refused_connections_total'), 'refused'),
    ], { unit: 'short' }),
    series('Rejected vhost-user messages', 'vhost-user messages answered with a failure in each interval, by request.', [
      q(`sum by (request) (${increase('virtiofsd_vhost_user_rejected_messages_total')})`, '{{request}}'),
    ], { unit: 'short' }),
    series('vhost-user messages', 'vhost-user messages handled per second, by request.', [q(sumRate('virtiofsd_vhost_user_messages_total', 'request'), '{{request}}')], { unit: 'ops' }),
    series('Guest memory and regions', 'Guest RAM mapped from the frontend, and its regions (right axis).', [
      q(sel('virtiofsd_guest_memory_bytes'), 'bytes'),
      q(sel('virtiofsd_guest_memory_regions'), 'regions'),
    ], { unit: 'bytes', rightAxis: { regions: 'short' } }),
    series('Aperture lookups', 'Guest memory reached through apertures, per second, hit or miss (docs/operations.md).', [
      q(sumRate('virtiofsd_guest_memory_aperture_lookups_total', 'result'), '{{result}}'),
    ], { unit: 'ops' }),
    series('Process CPU and memory', 'CPU time of the whole process per second (every thread), and its resident memory (right axis).', [
      q(rate('process_cpu_seconds_total'), 'cpu'),
      q(sel('process_resident_memory_bytes'), 'resident'),
    ], { unit: 'percentunit', rightAxis: { resident: 'bytes' } }),
  ];
}

const ROWS: Array<[string, () => Panel[]]> = [
  ['Overview', overview],
  ['FUSE requests', requests],
  ['Errors', errors],
  ['Virtqueues', queues],
  ['Workers', workers],
  ['Tables and descriptors', tables],
  ['vhost-user, memory and process', frontend],
];

/**
 * The dashboard as the JSON model Grafana stores (the classic dashboard schema): plain data, without
 * the methods the SDK's objects carry.
 */
export function buildDashboard(): dashboard.Dashboard {
  const d = new dashboard.DashboardBuilder('virtiofsd-ts')
    .id(null)
    .uid(DASHBOARD_UID)
    .description('The virtio-fs daemon: FUSE requests, latency, errors, virtqueues, workers, tables and the vhost-user frontend (docs/metrics.md).')
    .tags(['virtiofsd', 'virtio-fs'])
    .tooltip(dashboard.DashboardCursorSync.Crosshair)
    .time({ from: 'now-1h', to: 'now' })
    .refresh('30s')
    .withVariable(
      new dashboard.DatasourceVariableBuilder('datasource')
        .label('Data source')
        .type('prometheus')
        .current({ text: DATASOURCE_NAME, value: DATASOURCE_UID }),
    )
    .withVariable(
      new dashboard.QueryVariableBuilder('instance')
        .label('Instance')
        .datasource(DATASOURCE_REF)
        .query(INSTANCE_QUERY)
        .definition(INSTANCE_QUERY)
        .refresh(dashboard.VariableRefresh.OnTimeRangeChanged)
        .sort(dashboard.VariableSort.AlphabeticalAsc),
    );
  // Rows stay open with their panels after them at the top level (Grafana's layout of an expanded
  // row); ids run in the order of the page.
  let id = 1;
  for (const [title, panels] of ROWS) {
    d.withRow(new dashboard.RowBuilder(title).id(id++));
    for (const p of panels()) d.withPanel(p.id(id++));
  }
  return JSON.parse(JSON.stringify(d.build())) as dashboard.Dashboard;
}

/** The file's text: stable formatting, so a regenerated dashboard differs only where the code changed. */
export function dashboardJson(): string {
  return `${JSON.stringify(buildDashboard(), null, 2)}\n`;
}

/** Every PromQL expression of every panel, with the panel's title (the instance variable's query aside). */
export function panelQueries(): Array<{ panel: string; expr: string }> {
  const out: Array<{ panel: string; expr: string }> = [];
  for (const p of buildDashboard().panels ?? []) {
    if (p.type === 'row') continue;
    for (const t of (p as dashboard.Panel).targets ?? []) {
      out.push({ panel: (p as dashboard.Panel).title ?? '', expr: (t as prometheus.Dataquery).expr });
    }
  }
  return out;
}
