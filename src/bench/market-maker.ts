// The bench's users and the liquidity every MARKET BUY fills against: a market-maker user rests
// SELL LIMIT orders of MAKER_LOTS lots over ten price levels, topped up before each scenario to
// what that scenario can consume, so that no order of the measurement goes unfilled.
import { assertLoopback, closedLoop } from './http-load.js';
import type { Target } from './system-process.js';

export const SYMBOL = 'AAPL';
/** The measured order: one lot, at market, exactly as the seed sent it. */
export const MARKET_BUY = JSON.stringify({
  symbol: SYMBOL,
  side: 'BUY',
  type: 'MARKET',
  quantity: '1',
});
/** Lots per resting maker order: big enough to keep the count of maker orders small. */
const MAKER_LOTS = 1000;

export interface BenchUser {
  id: string;
  key: string;
}

async function call(
  target: Target,
  key: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  assertLoopback(target.url);
  const res = await fetch(target.url + path, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  const parsed = text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : {};
  return { status: res.status, body: parsed };
}

export async function createUser(target: Target, name: string): Promise<BenchUser> {
  const r = await call(target, target.adminToken, 'POST', '/v1/admin/users', { name });
  if (r.status !== 201) throw new Error(`creating user ${name} answered ${r.status}`);
  return { id: String(r.body.id), key: String(r.body.api_key) };
}

/** Lots resting on the ask side of SYMBOL, as the engine reports its book. */
export async function askDepth(target: Target, key: string): Promise<number> {
  const r = await call(target, key, 'GET', `/v1/instruments/${SYMBOL}/book?depth=1000`);
  if (r.status !== 200) throw new Error(`book answered ${r.status}`);
  const asks = (r.body.asks ?? []) as { quantity: string }[];
  return asks.reduce((sum, level) => sum + Number(level.quantity), 0);
}

interface Levels {
  /** Who places them, and what the error calls them. */
  key: string;
  who: string;
  side: 'BUY' | 'SELL';
  quantity: string;
  /** Price of level 0, and how many levels a cent apart. */
  from: number;
  levels: number;
  clients: number;
  durationMs: number;
}

/**
 * Places `orders` LIMIT orders spread evenly over price levels a cent apart, one closed loop per
 * level (each level has its own body); throws unless every one is accepted.
 */
async function placeOverLevels(target: Target, orders: number, o: Levels): Promise<void> {
  for (let level = 0; level < o.levels; level++) {
    const count = Math.floor(orders / o.levels) + (level < orders % o.levels ? 1 : 0);
    if (count === 0) continue;
    const body = JSON.stringify({
      symbol: SYMBOL,
      side: o.side,
      type: 'LIMIT',
      quantity: o.quantity,
      price: (o.from + level / 100).toFixed(2),
    });
    const r = await closedLoop(
      { url: target.url, path: '/v1/orders', apiKey: o.key, body },
      { clients: Math.min(o.clients, count), count, durationMs: o.durationMs },
    );
    if (r.result.ok !== count) {
      throw new Error(
        `${o.who} placed ${r.result.ok} of ${count} orders: ${r.result.error_samples.join('; ')}`,
      );
    }
  }
}

/**
 * Rests `orders` BUY LIMIT orders of one lot that nothing in the bench trades with: a deep book,
 * as a venue's is, for the engine to hold, match beside and snapshot. 100 levels at
 * 50.00–50.99, far below every ask.
 */
export async function restBook(target: Target, orders: number): Promise<void> {
  const user = await createUser(target, 'bench-resting-book');
  await placeOverLevels(target, orders, {
    key: user.key,
    who: 'the resting book',
    side: 'BUY',
    quantity: '1',
    from: 50,
    levels: 100,
    clients: 16,
    durationMs: 600_000,
  });
}

export class MarketMaker {
  private placed = 0;

  private constructor(
    private readonly target: Target,
    readonly user: BenchUser,
  ) {}

  static async create(target: Target): Promise<MarketMaker> {
    return new MarketMaker(target, await createUser(target, 'bench-market-maker'));
  }

  /**
   * Rests enough SELL lots that `lots` more MARKET BUYs of one lot all fill. `settle` waits
   * until the new orders are in the engine's book (queue mode answers before that).
   */
  async ensure(lots: number, settle: () => Promise<unknown>): Promise<number> {
    const have = await askDepth(this.target, this.user.key);
    const missing = lots - have;
    if (missing <= 0) return have;
    const orders = Math.ceil(missing / MAKER_LOTS);
    await placeOverLevels(this.target, orders, {
      key: this.user.key,
      who: 'the market maker',
      side: 'SELL',
      quantity: String(MAKER_LOTS),
      from: 100,
      levels: 10,
      clients: 8,
      durationMs: 120_000,
    });
    this.placed += orders;
    await settle();
    return askDepth(this.target, this.user.key);
  }

  get ordersPlaced(): number {
    return this.placed;
  }
}
