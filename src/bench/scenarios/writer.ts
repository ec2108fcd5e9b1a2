// writer: orders arrive as fast as the clients can send them — far more than one flush a second
// — while the writer's backlog and the rows PostgreSQL has taken (its statistics counters of
// inserted and updated tuples in orders and trades) are sampled every 250 ms; then the backlog is
// watched until it drains. Rows/s counts from the first order to the drained backlog.
import { closedLoop } from '../http-load.js';
import { createUser } from '../market-maker.js';
import { buyTraffic, prepare, ticker } from './context.js';
import type { PassContext } from './context.js';

export interface WriterSample {
  t_s: number;
  backlog_orders: number;
  backlog_events: number;
  rows: number;
}

export interface WriterResult {
  writer_batch_size: number;
  clients: number;
  load_seconds: number;
  orders_per_sec: number;
  success_rate: number;
  errors: number;
  rows_written: number | null;
  /** Rows from the first order until the backlog drained, per second. */
  rows_per_sec: number | null;
  /** Best one-second window. */
  peak_rows_per_sec: number | null;
  backlog_max: number | null;
  /** From the end of the load until the writer's backlog was empty, ms; null: not within 2 min. */
  drained_after_ms: number | null;
  series: WriterSample[];
}

const SAMPLE_MS = 250;

export async function runWriter(ctx: PassContext, batchSize: number): Promise<WriterResult> {
  const user = await createUser(ctx.target, `bench-writer-${batchSize}`);
  await prepare(ctx, Math.ceil((ctx.sizes.writerMs / 1000) * 40_000));
  const series: WriterSample[] = [];
  const rows0 = (await ctx.probes.rowsWritten()) ?? 0;
  const t0 = Date.now();
  let sampling: Promise<void> = Promise.resolve();
  const sample = async (): Promise<void> => {
    const [b, rows] = await Promise.all([ctx.probes.backlog(), ctx.probes.rowsWritten()]);
    series.push({
      t_s: (Date.now() - t0) / 1000,
      backlog_orders: b?.orders ?? 0,
      backlog_events: b?.events ?? 0,
      rows: (rows ?? rows0) - rows0,
    });
  };
  const timer = setInterval(() => {
    sampling = sampling.then(sample);
  }, SAMPLE_MS);
  let drainedAfter: number | null = null;
  try {
    const m = await closedLoop(buyTraffic(ctx, user), {
      clients: ctx.sizes.writerClients,
      count: Number.MAX_SAFE_INTEGER,
      durationMs: ctx.sizes.writerMs,
      onTick: ticker(ctx, ctx.sizes.writerMs / 1000),
    });
    const loadEnd = Date.now();
    ctx.progress.update('load done; waiting for the writer to drain');
    const drained = await ctx.probes.quiesce(120_000);
    if (drained) drainedAfter = Date.now() - loadEnd;
    // PostgreSQL publishes a backend's counters about once a second: let the last ones land.
    await new Promise((r) => setTimeout(r, 1_500));
    clearInterval(timer);
    await sampling;
    await sample();
    const rowsNow = ((await ctx.probes.rowsWritten()) ?? rows0) - rows0;
    const drainedAt = drainedAfter === null ? null : (loadEnd - t0 + drainedAfter) / 1000;
    let peak = 0;
    for (let i = 0; i < series.length; i++) {
      const a = series[i] as WriterSample;
      const b = series.find((s) => s.t_s >= a.t_s + 1);
      if (b !== undefined) peak = Math.max(peak, (b.rows - a.rows) / (b.t_s - a.t_s));
    }
    const hasSql = ctx.probes.sql !== undefined;
    return {
      writer_batch_size: batchSize,
      clients: ctx.sizes.writerClients,
      load_seconds: m.result.seconds,
      orders_per_sec: m.result.orders_per_sec,
      success_rate: m.result.success_rate,
      errors: m.result.errors,
      rows_written: hasSql ? rowsNow : null,
      rows_per_sec: hasSql && drainedAt !== null ? Math.round(rowsNow / drainedAt) : null,
      peak_rows_per_sec: hasSql ? Math.round(peak) : null,
      backlog_max:
        ctx.probes.redis === undefined ? null : Math.max(...series.map((s) => s.backlog_orders)),
      drained_after_ms: drainedAfter,
      series,
    };
  } finally {
    clearInterval(timer);
    await sampling.catch(() => undefined);
  }
}
