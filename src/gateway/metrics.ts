// The gateway's Prometheus metrics (prom-client's default registry, with the process defaults),
// and the queue's state read from Redis when scraped: stream lengths, the writer's backlog, the
// commands not yet matched.
import type { Redis } from 'ioredis';
import type { Gauge, Histogram } from 'prom-client';
import { register } from 'prom-client';
import { processMetrics } from '../metrics/metrics-server.js';
import { counter, gauge, histogram } from '../metrics/registry.js';
import type { ShardKeys } from '../queue/keys.js';
import { streamInfo, writerBacklog } from '../queue/stream-info.js';

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

/** Reads each watched shard's queue state into the three gauges; Redis down leaves them empty. */
async function readQueues({ streams, writer, dispatch }: QueueGauges): Promise<void> {
  for (const g of [streams, writer, dispatch]) g.reset();
  for (const { redis, shards } of queues) {
    for (const k of shards) {
      try {
        const [seq, orders, events] = await Promise.all([
          redis.get(k.seq),
          streamInfo(redis, k.orders),
          streamInfo(redis, k.events),
        ]);
        for (const [name, key, info] of [
          ['orders', k.orders, orders],
          ['events', k.events, events],
        ] as const) {
          if (info === undefined) continue;
          streams.set({ shard: k.shard, stream: name }, info.length);
          writer.set({ shard: k.shard, stream: name }, await writerBacklog(redis, key));
        }
        dispatch.set({ shard: k.shard }, Math.max(0, Number(seq ?? 0) - (events?.lastSeq ?? 0)));
      } catch {
        // Redis unreachable: no queue figures this scrape (matchbox_component_errors_total says why).
      }
    }
  }
}

export class GatewayMetrics {
  readonly ordersAccepted = counter({
    name: 'matchbox_orders_accepted_total',
    help: 'Orders accepted (201).',
    labelNames: ['mode'],
  });
  readonly ordersRefused = counter({
    name: 'matchbox_orders_refused_total',
    help: 'POST /v1/orders (or an amend) answered with an error, by error code.',
    labelNames: ['code'],
  });
  readonly clientErrors = counter({
    name: 'matchbox_http_client_errors_total',
    help: 'HTTP 4xx by code.',
    labelNames: ['code'],
  });
  readonly eventStreams = gauge({
    name: 'matchbox_event_streams',
    help: 'Open GET /v1/events streams.',
  });
  readonly eventStreamsDropped = counter({
    name: 'matchbox_event_streams_dropped_total',
    help: 'GET /v1/events streams closed because their client read too slowly.',
  });
  readonly marketStreams = gauge({
    name: 'matchbox_market_streams',
    help: 'Open GET /v1/market/events streams.',
  });
  readonly marketStreamsDropped = counter({
    name: 'matchbox_market_streams_dropped_total',
    help: 'GET /v1/market/events streams closed because their client read too slowly.',
  });
  readonly requestSeconds = histogram({
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
    this.streamEntries = gauge({
      name: 'matchbox_stream_entries',
      help: 'Entries in a shard’s stream (orders: the engine’s journal; events: its outcomes).',
      labelNames: ['shard', 'stream'],
      collect: collectQueues,
    });
    this.writerBacklog = gauge({
      name: 'matchbox_writer_backlog_entries',
      help: 'Stream entries the batch writer has not committed yet (pending + never delivered).',
      labelNames: ['shard', 'stream'],
      collect: collectQueues,
    });
    this.dispatchLag = gauge({
      name: 'matchbox_dispatch_lag_commands',
      help: 'Commands accepted but not yet matched and written back (order stream head − last dispatched).',
      labelNames: ['shard'],
      collect: collectQueues,
    });
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
