// The report's three charts from its results: latency distributions, throughput against
// concurrency, and the writer's backlog over time.
import { histogram } from './latency.js';
import type { BenchReport, ConcurrencyScenario } from './report.js';
import { lineChart } from './svg-charts.js';
import type { Series } from './svg-charts.js';

const LATENCY_SERIES: [label: string, name: string][] = [
  ['queue-everysec:seed', 'seed, queue'],
  ['sync-everysec:seed', 'seed, sync'],
  ['queue-everysec:concurrency-c64', '64 clients, queue'],
  ['sync-everysec:concurrency-c64', '64 clients, sync'],
  ['queue-always:concurrency-c64', '64 clients, queue, fsync always'],
  ['end-to-end-fill-client', 'submission → fill (client)'],
];

function throughput(c: ConcurrencyScenario): Series[] {
  const out: Series[] = [];
  const add = (
    name: string,
    r: { levels: { clients: number; orders_per_sec: number }[] } | undefined,
  ) => {
    if (r !== undefined)
      out.push({ name, points: r.levels.map((l) => [l.clients, l.orders_per_sec]) });
  };
  add('queue (everysec)', c.queue);
  add('sync (everysec)', c.sync);
  add('queue (always)', c.appendfsync_always?.queue);
  add('sync (always)', c.appendfsync_always?.sync);
  return out;
}

/** File name → SVG text; only the charts there is data for. */
export function buildCharts(
  report: BenchReport,
  samples: Map<string, Float64Array>,
): Map<string, string> {
  const charts = new Map<string, string>();
  const latency: Series[] = [];
  for (const [label, name] of LATENCY_SERIES) {
    const sorted = samples.get(label);
    if (sorted === undefined || sorted.length === 0) continue;
    latency.push({
      name,
      points: histogram(sorted)
        .filter((b) => b.count > 0)
        .map((b) => [b.hi_ms, Number(((100 * b.count) / sorted.length).toFixed(2))]),
    });
  }
  if (latency.length > 0) {
    charts.set(
      'latency-distribution.svg',
      lineChart({
        title: 'Latency distribution',
        xLabel: 'latency, ms (bucket upper edge, log scale)',
        yLabel: '% of requests',
        series: latency,
        logX: true,
      }),
    );
  }
  const c = report.scenarios.concurrency;
  if (c !== undefined) {
    charts.set(
      'throughput-vs-concurrency.svg',
      lineChart({
        title: 'Orders/s accepted against concurrent clients',
        xLabel: 'concurrent clients (log scale)',
        yLabel: 'orders/s',
        series: throughput(c),
        logX: true,
      }),
    );
  }
  const backlog: Series[] = [];
  const w = report.scenarios.writer;
  if (w?.default_batch !== undefined) {
    backlog.push({
      name: `writer, batch ${w.default_batch.writer_batch_size}`,
      points: w.default_batch.series.map((s) => [s.t_s, s.backlog_orders]),
    });
  }
  if (w?.large_batch !== undefined) {
    backlog.push({
      name: `writer, batch ${w.large_batch.writer_batch_size}`,
      points: w.large_batch.series.map((s) => [s.t_s, s.backlog_orders]),
    });
  }
  const e2e = report.scenarios['end-to-end']?.queue;
  if (e2e !== undefined) {
    backlog.push({
      name: `end-to-end, ${e2e.offered_per_sec}/s offered`,
      points: e2e.backlog_series.map((s) => [s.t_s, s.orders]),
    });
  }
  if (backlog.length > 0) {
    charts.set(
      'writer-backlog.svg',
      lineChart({
        title: 'Writer backlog: orders queued in Redis, not yet in PostgreSQL',
        xLabel: 'seconds since the load began',
        yLabel: 'order-stream entries unacknowledged',
        series: backlog,
      }),
    );
  }
  return charts;
}
