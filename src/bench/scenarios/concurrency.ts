// concurrency: N clients, each with its own keep-alive connection and one request at a time, for
// a fixed time per level; throughput, latency percentiles, errors, and where the CPU went.
import { closedLoop } from '../http-load.js';
import { cpuMeter } from '../process-cpu.js';
import { buyTraffic, prepare, ticker } from './context.js';
import type { PassContext } from './context.js';

export interface ConcurrencyLevel {
  clients: number;
  orders_per_sec: number;
  success_rate: number;
  errors: number;
  status: Record<string, number>;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
  seconds: number;
  /** Writer backlog (order-stream entries) when the phase ended. */
  queued_in_redis_at_end: number | null;
  /** CPU use by role during the phase, in percent of one core. */
  cpu_percent: Record<string, number>;
  generator_cpu_us_per_request: number;
}

/** Lots a phase of `ms` could consume at most (well above anything this machine answers). */
const lotsFor = (ms: number): number => Math.ceil((ms / 1000) * 40_000);

export async function runConcurrency(
  ctx: PassContext,
  label: string,
): Promise<{ levels: ConcurrencyLevel[] }> {
  const levels: ConcurrencyLevel[] = [];
  const seconds = ctx.sizes.concurrencyMs / 1000;
  for (const clients of ctx.sizes.concurrency) {
    ctx.progress.phase(`[${ctx.target.name}] concurrency: ${clients} clients`);
    await prepare(ctx, lotsFor(ctx.sizes.concurrencyMs));
    const cpu = cpuMeter(ctx.target.pid, ctx.target.dataDir);
    const m = await closedLoop(buyTraffic(ctx), {
      clients,
      count: Number.MAX_SAFE_INTEGER,
      durationMs: ctx.sizes.concurrencyMs,
      onTick: ticker(ctx, seconds),
    });
    const cpuPercent = cpu.end();
    const backlog = await ctx.probes.backlog();
    ctx.samples.set(`${label}-c${clients}`, m.sorted);
    const r = m.result;
    levels.push({
      clients,
      orders_per_sec: r.orders_per_sec,
      success_rate: r.success_rate,
      errors: r.errors,
      status: r.status,
      p50_ms: r.latency.p50_ms,
      p90_ms: r.latency.p90_ms,
      p99_ms: r.latency.p99_ms,
      p999_ms: r.latency.p999_ms,
      max_ms: r.latency.max_ms,
      seconds: r.seconds,
      queued_in_redis_at_end: backlog?.orders ?? null,
      cpu_percent: cpuPercent,
      generator_cpu_us_per_request: r.generator_cpu_us_per_request,
    });
  }
  return { levels };
}
