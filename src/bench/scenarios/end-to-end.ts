// end-to-end: a steady offered load (open loop) and, for every order, the time from submission to
// fill two ways: from the server's own timestamps (accept `created_at` → the event batch's
// `written_at`, both ms) and as a client subscribed to the event stream sees it (request
// scheduled → batch read). The writer's backlog is sampled throughout: bounded means it kept up.
import { FillWatcher } from '../fill-watcher.js';
import { openLoop } from '../http-load.js';
import { Samples } from '../latency.js';
import type { LatencySummary } from '../latency.js';
import { createUser } from '../market-maker.js';
import { buyTraffic, prepare, ticker } from './context.js';
import type { PassContext } from './context.js';

export interface EndToEndResult {
  offered_per_sec: number;
  seconds: number;
  orders: number;
  accepted: number;
  success_rate: number;
  failed: number;
  errors: number;
  achieved_per_sec: number;
  /** Submission latency, counted from each request's scheduled time. */
  submission: LatencySummary;
  /** Submission → fill from the server's timestamps (ms resolution). */
  fill_server: LatencySummary | null;
  /** Submission → fill as a client reading the event stream sees it. */
  fill_client: LatencySummary | null;
  fills_seen: number;
  /** Writer backlog (order-stream entries) each second, and its largest value. */
  backlog_series: { t_s: number; orders: number; events: number; undispatched: number }[];
  backlog_max: number | null;
  /** Largest backlog in the second half below one second of offered load: the writer kept up. */
  backlog_bounded: boolean | null;
}

export async function runEndToEnd(ctx: PassContext): Promise<EndToEndResult> {
  const { e2eRate: rate, e2eMs: ms } = ctx.sizes;
  const total = Math.round((rate * ms) / 1000);
  const user = await createUser(ctx.target, 'bench-end-to-end');
  await prepare(ctx, Math.ceil(total * 1.05));
  const server = new Samples(total);
  const client = new Samples(total);
  // An order's fill can be read before its 201 is: whichever comes second completes the pair.
  const sentAt = new Map<string, bigint>();
  const seenAt = new Map<string, bigint>();
  let fills = 0;
  const watcher =
    ctx.target.redisUrl === undefined
      ? undefined
      : new FillWatcher(ctx.target.redisUrl, ctx.probes.keys.events, (o) => {
          if (o.userId !== user.id || o.status !== 'FILLED') return;
          fills++;
          if (!Number.isNaN(o.writtenMs)) server.add((o.writtenMs - o.createdMs) * 1e6);
          const sent = sentAt.get(o.id);
          if (sent === undefined) seenAt.set(o.id, o.seenNs);
          else {
            sentAt.delete(o.id);
            client.add(Number(o.seenNs - sent));
          }
        });
  await watcher?.start();
  const series: EndToEndResult['backlog_series'] = [];
  const t0 = Date.now();
  const sampler = setInterval(() => {
    void ctx.probes.backlog().then((b) => {
      if (b !== undefined) series.push({ t_s: Math.round((Date.now() - t0) / 100) / 10, ...b });
    });
  }, 1000);
  try {
    const m = await openLoop(buyTraffic(ctx, user), {
      rate,
      durationMs: ms,
      connections: 64,
      maxInFlight: 4096,
      onAccepted: (id, scheduledNs) => {
        if (watcher === undefined) return;
        const seen = seenAt.get(id);
        if (seen === undefined) sentAt.set(id, scheduledNs);
        else {
          seenAt.delete(id);
          client.add(Number(seen - scheduledNs));
        }
      },
      onTick: ticker(ctx, ms / 1000),
    });
    const accepted = m.result.ok;
    const deadline = Date.now() + 30_000;
    while (watcher !== undefined && fills < accepted && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    clearInterval(sampler);
    const secondHalf = series.filter((s) => s.t_s >= ms / 2000 && s.t_s <= ms / 1000);
    const backlogMax = series.length === 0 ? null : Math.max(...series.map((s) => s.orders));
    ctx.samples.set('end-to-end-submission', m.sorted);
    ctx.samples.set('end-to-end-fill-client', client.sorted());
    return {
      offered_per_sec: rate,
      seconds: ms / 1000,
      orders: total,
      accepted,
      success_rate: m.result.success_rate,
      failed: total - accepted,
      errors: m.result.errors,
      achieved_per_sec: m.result.orders_per_sec,
      submission: m.result.latency,
      fill_server: watcher === undefined ? null : server.summary(),
      fill_client: watcher === undefined ? null : client.summary(),
      fills_seen: fills,
      backlog_series: series,
      backlog_max: backlogMax,
      backlog_bounded:
        secondHalf.length === 0 ? null : Math.max(...secondHalf.map((s) => s.orders)) < rate,
    };
  } finally {
    clearInterval(sampler);
    await watcher?.stop();
  }
}
