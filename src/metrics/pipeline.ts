// Prometheus metrics of the parts behind the queue — dispatcher, engine service, batch writer — in
// prom-client's default registry. Each process serves that registry: the gateway at /metrics, the
// others through metrics-server.ts. Run in one process (tests, `startSystem` with everything), the
// gateway's /metrics shows them all.
import { counter, gauge, histogram } from './registry.js';

/** Seconds, from 10 µs to 2.5 s: engine batches are fast, Redis and PostgreSQL calls are not. */
const SECONDS = [
  1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5,
];
/** Entries or commands per batch. */
const SIZES = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

export const dispatcherMetrics = {
  batches: counter({
    name: 'matchbox_dispatch_batches_total',
    help: 'Batches sent to the engine and written to Redis.',
    labelNames: ['shard'],
  }),
  commands: counter({
    name: 'matchbox_dispatch_commands_total',
    help: 'Commands whose outcome the dispatcher wrote.',
    labelNames: ['shard'],
  }),
  batchSize: histogram({
    name: 'matchbox_dispatch_batch_commands',
    help: 'Commands per dispatched batch.',
    labelNames: ['shard'],
    buckets: SIZES,
  }),
  engineSeconds: histogram({
    name: 'matchbox_dispatch_engine_seconds',
    help: 'Round trip of one batch to the engine.',
    labelNames: ['shard'],
    buckets: SECONDS,
  }),
  writeSeconds: histogram({
    name: 'matchbox_dispatch_write_seconds',
    help: 'Writing one batch’s outcome to Redis (one script call).',
    labelNames: ['shard'],
    buckets: SECONDS,
  }),
  reconnects: counter({
    name: 'matchbox_dispatch_reconnects_total',
    help: 'Engine sessions opened again after a failure (engine, Redis or stream).',
    labelNames: ['shard'],
  }),
  leaseHeld: gauge({
    name: 'matchbox_dispatch_lease_held',
    help: '1 while this dispatcher holds its shard’s lease (runs the shard), 0 while it stands by.',
    labelNames: ['shard'],
  }),
};

/** The engine services of this process, for the resting-orders gauge. */
export const restingSources = new Set<{ shard: string; resting(): Map<string, number> }>();

export const engineMetrics = {
  commands: counter({
    name: 'matchbox_engine_commands_total',
    help: 'Commands applied by the engine.',
    labelNames: ['shard'],
  }),
  batchSeconds: histogram({
    name: 'matchbox_engine_batch_seconds',
    help: 'Time the matching core took to apply one batch (match latency).',
    labelNames: ['shard'],
    buckets: SECONDS,
  }),
  lastSeq: gauge({
    name: 'matchbox_engine_last_seq',
    help: 'Last command sequence the engine applied.',
    labelNames: ['shard'],
  }),
  replicaSeq: gauge({
    name: 'matchbox_engine_replica_seq',
    help: "Last command sequence the engine's snapshot replica applied (it follows matchbox_engine_last_seq).",
    labelNames: ['shard'],
  }),
  resting: gauge({
    name: 'matchbox_engine_resting_orders',
    help: 'Orders resting in the book, per symbol.',
    labelNames: ['shard', 'symbol'],
    // Counted when scraped, from every engine service of this process.
    collect() {
      this.reset();
      for (const source of restingSources) {
        for (const [symbol, n] of source.resting()) this.set({ shard: source.shard, symbol }, n);
      }
    },
  }),
  snapshots: counter({
    name: 'matchbox_engine_snapshots_total',
    help: 'Snapshots stored in PostgreSQL.',
    labelNames: ['shard'],
  }),
  rollbacks: counter({
    name: 'matchbox_engine_rollbacks_total',
    help: 'Rollbacks to a snapshot for a dispatcher’s replay.',
    labelNames: ['shard'],
  }),
};

export const writerMetrics = {
  flushes: counter({
    name: 'matchbox_writer_flushes_total',
    help: 'Flushes: entries written (one transaction) or found already written, then acknowledged.',
  }),
  rows: counter({
    name: 'matchbox_writer_rows_total',
    help: 'Rows written to PostgreSQL (orders inserted, order states, trades).',
  }),
  entries: counter({
    name: 'matchbox_writer_entries_total',
    help: 'Stream entries committed and acknowledged.',
  }),
  skipped: counter({
    name: 'matchbox_writer_skipped_total',
    help: 'Order-stream entries passed over unread: their outcomes were already written.',
  }),
  flushSize: histogram({
    name: 'matchbox_writer_flush_entries',
    help: 'Stream entries per committed transaction.',
    buckets: SIZES,
  }),
  flushSeconds: histogram({
    name: 'matchbox_writer_flush_seconds',
    help: 'One flush: the transaction and the acknowledgements.',
    buckets: SECONDS,
  }),
  failedFlushes: counter({
    name: 'matchbox_writer_failed_flushes_total',
    help: 'Flush attempts that failed (retried; nothing is acknowledged before a commit).',
  }),
  rejected: counter({
    name: 'matchbox_writer_rejected_total',
    help: 'Records PostgreSQL refused, set aside in the rejects stream.',
  }),
  leaseHeld: gauge({
    name: 'matchbox_writer_lease_held',
    help: '1 while this writer holds its shard’s lease (writes the shard), 0 while it stands by.',
    labelNames: ['shard'],
  }),
};

/** Failures to reach a dependency, counted by the process that met them. */
export const componentErrors = counter({
  name: 'matchbox_component_errors_total',
  help: 'Failed calls to a dependency (redis, postgres, engine), by the component that made them.',
  labelNames: ['dependency', 'component'],
});
