// burst: every order in flight at once (HTTP/1.1-pipelined over up to 256 connections), then the
// time until all are accepted, until all are persisted in PostgreSQL (counted there) and until
// all are filled (seen on the event stream).
import { burst } from '../http-load.js';
import { FillWatcher } from '../fill-watcher.js';
import { createUser } from '../market-maker.js';
import { buyTraffic, prepare } from './context.js';
import type { PassContext } from './context.js';

export interface BurstResult {
  orders: number;
  connections: number;
  pipelining: number;
  success_rate: number;
  failed: number;
  errors: number;
  status: Record<string, number>;
  /** From the first request written to the last 201, ms. */
  all_accepted_ms: number;
  /** From the first request written until PostgreSQL holds every accepted order, ms. */
  all_persisted_ms: number | null;
  all_persisted_after_last_accept_ms: number | null;
  /** From the first request written until the event stream showed every accepted order FILLED. */
  all_filled_ms: number | null;
  filled: number;
  accept_p50_ms: number;
  accept_p99_ms: number;
}

const POLL_MS = 10;

export async function runBurst(ctx: PassContext): Promise<BurstResult> {
  const n = ctx.sizes.burst;
  // Its own taker, so that PostgreSQL's count of its orders is the count of this burst.
  const user = await createUser(ctx.target, 'bench-burst');
  await prepare(ctx, n);
  let filled = 0;
  let lastFillNs = 0n;
  const watcher =
    ctx.target.redisUrl === undefined
      ? undefined
      : new FillWatcher(ctx.target.redisUrl, ctx.probes.keys.events, (o) => {
          if (o.userId !== user.id || o.status !== 'FILLED') return;
          filled++;
          lastFillNs = o.seenNs;
        });
  await watcher?.start();
  try {
    const b = await burst(buyTraffic(ctx, user), n);
    const accepted = b.measured.result.ok;
    ctx.progress.update(`${accepted} accepted; waiting for PostgreSQL and the fills`);
    // Both waits are bounded: a pipeline that never catches up leaves the figure null.
    const deadline = Date.now() + Math.max(60_000, n * 10);
    let persistedNs: bigint | undefined;
    while (Date.now() < deadline) {
      const p = await ctx.probes.persisted(user.id);
      if (p === undefined) break;
      if (p.orders >= accepted) {
        persistedNs = process.hrtime.bigint();
        break;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    while (watcher !== undefined && filled < accepted && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    const ms = (ns: bigint): number => Number((Number(ns - b.startNs) / 1e6).toFixed(1));
    return {
      orders: n,
      connections: b.connections,
      pipelining: b.pipelining,
      success_rate: b.measured.result.success_rate,
      failed: n - accepted,
      errors: b.measured.result.errors,
      status: b.measured.result.status,
      all_accepted_ms: b.all_answered_ms,
      all_persisted_ms: persistedNs === undefined ? null : ms(persistedNs),
      all_persisted_after_last_accept_ms:
        persistedNs === undefined
          ? null
          : Number((Number(persistedNs - b.lastAnswerNs) / 1e6).toFixed(1)),
      all_filled_ms: watcher === undefined || filled < accepted ? null : ms(lastFillNs),
      filled,
      accept_p50_ms: b.measured.result.latency.p50_ms,
      accept_p99_ms: b.measured.result.latency.p99_ms,
    };
  } finally {
    await watcher?.stop();
  }
}
