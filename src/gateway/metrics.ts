// The gateway's Prometheus metrics (prom-client's default registry, with the process defaults),
// and the queue's state read from Redis when scraped: stream lengths, the writer's backlog, the
// commands not yet matched.
import type { Redis } from 'ioredis';
import { Counter, Gauge, Histogram, register } from 'prom-client';
import { processMetrics } from '../metrics/metrics-server.js';
import { WRITER_GROUP } from '../queue/keys.js';
import type { ShardKeys } from '../queue/keys.js';

/** The queues the gateways of this process watch (one per gateway; tests run several). */
const queues = new Set<{ redis: Redis; shards: ShardKeys[] }>();

interface QueueGauges {
  streams: Gauge;
  writer: Gauge;
  dispatch: Gauge;
}
let gauges: QueueGauges | undefined;
let reading: Promise<void> | undefined;

/** One read of Redis per scrape, whichever of the three gauges asks first. */
function collectQueues(): Promise<void> {
  reading ??= readQueues(gauges as QueueGauges).finally(() => {
    reading = undefined;
  });
  return reading;
}

function gauge(name: string, help: string, labelNames: string[]): Gauge {
  return (
    (register.getSingleMetric(name) as Gauge | undefined) ??
    new Gauge({ name, help, labelNames, collect: collectQueues })
  );
}

/** XINFO's flat [name, value, …] list as an object. */
function fields(list: unknown[]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (let i = 0; i + 1 < list.length; i += 2) o[String(list[i])] = list[i + 1];
  return o;
}

/** Reads each watched shard's queue state into the three gauges; Redis down leaves them empty. */
async function readQueues({ streams, writer, dispatch }: QueueGauges): Promise<void> {
  for (const g of [streams, writer, dispatch]) g.reset();
  for (const { redis, shards } of queues) {
    for (const k of shards) {
      try {
        const [seq, orders, events] = await Promise.all([
          redis.get(k.seq),
          redis.call('XINFO', 'STREAM', k.orders).catch(() => null) as Promise<unknown[] | null>,
          redis.call('XINFO', 'STREAM', k.events).catch(() => null) as Promise<unknown[] | null>,
        ]);
        for (const [name, key, info] of [
          ['orders', k.orders, orders],
          ['events', k.events, events],
        ] as const) {
          if (info === null) continue;
          streams.set({ shard: k.shard, stream: name }, Number(fields(info).length));
          const groups = (await redis.xinfo('GROUPS', key)) as unknown[][];
          const g = groups.map(fields).find((x) => x.name === WRITER_GROUP);
          if (g !== undefined) {
            writer.set({ shard: k.shard, stream: name }, Number(g.pending) + Number(g.lag ?? 0));
          }
        }
        const written =
          events === null ? 0 : Number(String(fields(events)['last-generated-id']).split('-')[1]);
        dispatch.set({ shard: k.shard }, Math.max(0, Number(seq ?? 0) - written));
      } catch {
        // Redis unreachable: no queue figures this scrape (matchbox_component_errors_total says why).
      }
    }
  }
}

function counter(name: string, help: string, labelNames: string[]): Counter {
  return (
    (register.getSingleMetric(name) as Counter | undefined) ??
    new Counter({ name, help, labelNames })
  );
}

export class GatewayMetrics {
  readonly ordersAccepted = counter('matchbox_orders_accepted_total', 'Orders accepted (201).', [
    'mode',
  ]);
  readonly ordersRefused = counter(
    'matchbox_orders_refused_total',
    'POST /v1/orders answered with an error, by error code.',
    ['code'],
  );
  readonly clientErrors = counter('matchbox_http_client_errors_total', 'HTTP 4xx by code.', [
    'code',
  ]);
  readonly requestSeconds =
    (register.getSingleMetric('matchbox_http_request_seconds') as Histogram | undefined) ??
    new Histogram({
      name: 'matchbox_http_request_seconds',
      help: 'HTTP request latency by route.',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1],
    });

  /** The request histogram's children by method, route and status: one lookup per request. */
  private readonly requestChildren = new Map<string, Histogram.Internal<string>>();

  /** Records one answered request. */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    const key = `${method} ${status} ${route}`;
    let child = this.requestChildren.get(key);
    if (child === undefined) {
      child = this.requestSeconds.labels(method, route, String(status));
      this.requestChildren.set(key, child);
    }
    child.observe(seconds);
  }

  readonly streamEntries: Gauge;
  readonly writerBacklog: Gauge;
  readonly dispatchLag: Gauge;

  constructor() {
    processMetrics('gateway');
    this.streamEntries = gauge(
      'matchbox_stream_entries',
      'Entries in a shard’s stream (orders: the engine’s journal; events: its outcomes).',
      ['shard', 'stream'],
    );
    this.writerBacklog = gauge(
      'matchbox_writer_backlog_entries',
      'Stream entries the batch writer has not committed yet (pending + never delivered).',
      ['shard', 'stream'],
    );
    this.dispatchLag = gauge(
      'matchbox_dispatch_lag_commands',
      'Commands accepted but not yet matched and written back (order stream head − last dispatched).',
      ['shard'],
    );
    gauges = {
      streams: this.streamEntries,
      writer: this.writerBacklog,
      dispatch: this.dispatchLag,
    };
  }

  /** Reports this queue's state when scraped, until `unwatch`. */
  watch(redis: Redis, shards: ShardKeys[]): () => void {
    const q = { redis, shards };
    queues.add(q);
    return () => queues.delete(q);
  }

  text(): Promise<string> {
    return register.metrics();
  }

  get contentType(): string {
    return register.contentType;
  }
}
