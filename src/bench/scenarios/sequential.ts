// seed and sequential: one client, one request at a time, MARKET BUY AAPL — the seed report's
// test — and at the end the writer's backlog as the seed's "orders queued in Redis".
import { closedLoop } from '../http-load.js';
import { buyTraffic, prepare, ticker } from './context.js';
import type { PassContext } from './context.js';

/** Un-measured orders sent just before the measured ones (see ClosedLoopOptions.warmup). */
export const PHASE_WARMUP = 2000;

export interface SequentialResult {
  orders: number;
  orders_per_sec: number;
  success_rate: number;
  failed: number;
  /** Order-stream entries the writer had not yet acknowledged right after the last answer. */
  queued_in_redis: number | null;
  /** Event-stream batches the writer had not yet acknowledged at the same moment. */
  events_queued_in_redis: number | null;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
  seconds: number;
  generator_cpu_us_per_request: number;
}

export async function runSequential(
  ctx: PassContext,
  count: number,
  label: string,
): Promise<SequentialResult> {
  await prepare(ctx, count + PHASE_WARMUP);
  const m = await closedLoop(buyTraffic(ctx), {
    clients: 1,
    count,
    warmup: PHASE_WARMUP,
    durationMs: Math.max(60_000, count * 20),
    onTick: ticker(ctx),
  });
  const backlog = await ctx.probes.backlog();
  ctx.samples.set(label, m.sorted);
  const r = m.result;
  return {
    orders: count,
    orders_per_sec: r.orders_per_sec,
    success_rate: r.success_rate,
    failed: count - r.ok,
    queued_in_redis: backlog?.orders ?? null,
    events_queued_in_redis: backlog?.events ?? null,
    p50_ms: r.latency.p50_ms,
    p90_ms: r.latency.p90_ms,
    p99_ms: r.latency.p99_ms,
    p999_ms: r.latency.p999_ms,
    max_ms: r.latency.max_ms,
    seconds: r.seconds,
    generator_cpu_us_per_request: r.generator_cpu_us_per_request,
  };
}
