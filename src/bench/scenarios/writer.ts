// writer: orders arrive as fast as the clients can send them — far more than one flush a second
// — while the writer's backlog and the rows PostgreSQL has taken (its statistics counters of
// inserted and updated tuples in orders and trades) are sampled every 250 ms; then the backlog is
// watched until it drains. Rows/s counts from the first order to the drained backlog. That rate
// is the offered load's, not the writer's most: so then the writer process is stopped (SIGSTOP)
// while orders queue behind it, and let go once they are all matched, to drain them with nothing
// else running: rows/s and orders/s from that backlog are what the writer sustains.
import { signal } from '../../infra/processes.js';
import { closedLoop } from '../http-load.js';
import { createUser } from '../market-maker.js';
import type { BenchUser } from '../market-maker.js';
import { cpuMeter, partPid } from '../process-cpu.js';
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
  /** The writer stopped while orders queued, then draining them alone; null: not measured. */
  from_backlog: FromBacklog | null;
  series: WriterSample[];
}

export interface FromBacklog {
  /** Orders accepted while the writer was stopped (all matched before it was let go). */
  orders: number;
  /** Stream entries and PostgreSQL rows it then wrote, and how long it took. */
  entries: number;
  rows: number;
  drain_ms: number;
  rows_per_sec: number;
  orders_per_sec: number;
  /** CPU while it drained, in percent of one core, by part (the writer, PostgreSQL, Redis…). */
  cpu: Record<string, number>;
}

const SAMPLE_MS = 250;

/** As many MARKET BUYs as the writer scenario's clients send in `ms`. */
function buyFor(ctx: PassContext, user: BenchUser, ms: number): ReturnType<typeof closedLoop> {
  return closedLoop(buyTraffic(ctx, user), {
    clients: ctx.sizes.writerClients,
    count: Number.MAX_SAFE_INTEGER,
    durationMs: ms,
    onTick: ticker(ctx, ms / 1000),
  });
}

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
    const m = await buyFor(ctx, user, ctx.sizes.writerMs);
    const loadEnd = Date.now();
    ctx.progress.update('load done; waiting for the writer to drain');
    const drained = await ctx.probes.quiesce(120_000);
    if (drained) drainedAfter = Date.now() - loadEnd;
    await ctx.probes.statsSettled();
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
    const fromBacklog = hasSql ? await drainFromBacklog(ctx, user) : null;
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
      from_backlog: fromBacklog,
      series,
    };
  } finally {
    clearInterval(timer);
    await sampling.catch(() => undefined);
  }
}

/**
 * Orders queue for `writerHeldMs` while the writer process is stopped; once the dispatcher has
 * matched them all, the writer is let go and drains the backlog alone. Null when the bench did
 * not start the system (no writer process to stop) or the backlog did not drain.
 */
async function drainFromBacklog(ctx: PassContext, user: BenchUser): Promise<FromBacklog | null> {
  const writer = partPid(ctx.target.pid, 'writer');
  if (writer === undefined) return null;
  await prepare(ctx, Math.ceil((ctx.sizes.writerHeldMs / 1000) * 20_000));
  ctx.progress.update('writer stopped while orders queue');
  // Let go however the bench ends (Ctrl-C exits from its signal handler, past any finally).
  const resume = (): void => signal(writer, 'SIGCONT');
  process.once('exit', resume);
  signal(writer, 'SIGSTOP');
  let orders: number;
  let before: { rows: number; entries: number };
  try {
    const m = await buyFor(ctx, user, ctx.sizes.writerHeldMs);
    orders = m.result.ok;
    // Everything matched, so that only the writer works while it drains.
    if (!(await ctx.probes.until((b) => b.undispatched === 0, ctx.sizes.quiesceMs))) return null;
    await ctx.probes.statsSettled();
    const b = await ctx.probes.backlog();
    before = {
      rows: (await ctx.probes.rowsWritten()) ?? 0,
      entries: (b?.orders ?? 0) + (b?.events ?? 0),
    };
  } finally {
    resume();
    process.off('exit', resume);
  }
  const t0 = performance.now();
  const meter = cpuMeter(ctx.target.pid, ctx.target.dataDir);
  ctx.progress.update(`writer draining ${before.entries.toLocaleString('en-US')} entries`);
  if (!(await ctx.probes.quiesce(ctx.sizes.quiesceMs))) return null;
  const drainMs = performance.now() - t0;
  const cpu = meter.end();
  await ctx.probes.statsSettled();
  const rows = ((await ctx.probes.rowsWritten()) ?? 0) - before.rows;
  return {
    orders,
    entries: before.entries,
    rows,
    drain_ms: Math.round(drainMs),
    rows_per_sec: Math.round(rows / (drainMs / 1000)),
    orders_per_sec: Math.round(orders / (drainMs / 1000)),
    cpu,
  };
}
