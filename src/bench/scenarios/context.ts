// What every scenario of one pass (one running system) shares: the system, the probes behind it,
// the market maker, the taker, the sizes and the live line.
import type { Sizes } from '../bench-options.js';
import type { Traffic } from '../http-load.js';
import { MARKET_BUY } from '../market-maker.js';
import type { BenchUser, MarketMaker } from '../market-maker.js';
import type { Probes } from '../probes.js';
import type { Progress } from '../progress.js';
import type { Target } from '../system-process.js';

export interface PassContext {
  target: Target;
  probes: Probes;
  maker: MarketMaker;
  taker: BenchUser;
  sizes: Sizes;
  progress: Progress;
  /** Sorted latency samples kept for the charts, by label. */
  samples: Map<string, Float64Array>;
}

/** MARKET BUY traffic of `user` (the pass's taker unless given). */
export function buyTraffic(ctx: PassContext, user: BenchUser = ctx.taker): Traffic {
  return { url: ctx.target.url, path: '/v1/orders', apiKey: user.key, body: MARKET_BUY };
}

/**
 * Before a measurement: liquidity for `lots` more buys, then an idle pipeline, so that no
 * scenario measures the previous one's backlog.
 */
export async function prepare(ctx: PassContext, lots: number): Promise<void> {
  await ctx.maker.ensure(lots, () => ctx.probes.quiesce(ctx.sizes.quiesceMs));
  await ctx.probes.quiesce(ctx.sizes.quiesceMs);
}

/** A progress callback for load phases: answered so far and the running rate. */
export function ticker(ctx: PassContext, seconds?: number): (done: number, ms: number) => void {
  return (done, ms) =>
    ctx.progress.update(
      `${seconds === undefined ? '' : `${(ms / 1000).toFixed(1)}/${seconds} s  `}${done.toLocaleString('en-US')} orders  ${Math.round(done / (ms / 1000)).toLocaleString('en-US')}/s`,
    );
}
