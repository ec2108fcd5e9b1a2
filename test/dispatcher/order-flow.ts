// A seeded random order flow like a busy market's: limits around a fixed middle (some IOC, FOK,
// post-only), markets, stops, self-trade prevention, and cancels of earlier orders (some already
// done, which the engine refuses), queued the way the gateway queues them.
import type { Redis } from 'ioredis';
import { rng } from '../../src/bench/engine-workload.js';
import { Scale } from '../../src/engine/scale.js';
import type { ShardKeys } from '../../src/queue/keys.js';
import type { OrderState } from '../../src/queue/records.js';
import { enqueueCancel, enqueuePlace, newOrder, user } from './gateway-records.js';
import type { Instrument, User } from './gateway-records.js';

const MIDDLE = 200;
const T0 = Date.parse('2026-11-24T08:00:00.000Z');

export class OrderFlow {
  private readonly rand: () => number;
  readonly users: User[] = [user(1), user(2), user(3), user(4)];
  private readonly placed: [number, OrderState][] = [];
  private n = 0;

  constructor(
    private readonly redis: Redis,
    private readonly keys: ShardKeys,
    private readonly instruments: Instrument[],
    seed: number,
  ) {
    this.rand = rng(seed);
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.rand() * items.length)] as T;
  }

  /** Queues the next command; its sequence. */
  async next(): Promise<number> {
    this.n++;
    const time = new Date(T0 + this.n).toISOString();
    if (this.placed.length > 0 && this.rand() < 0.1) {
      const [seq, order] = this.pick(this.placed);
      return enqueueCancel(this.redis, this.keys, order, seq, time);
    }
    const instrument = this.pick(this.instruments);
    const tick = new Scale(instrument.tick);
    const lot = new Scale(instrument.lot);
    const side = this.pick(['BUY', 'SELL'] as const);
    const toward = side === 'BUY' ? -1 : 1;
    const near = (): string => tick.toDecimal(MIDDLE + toward * (Math.floor(this.rand() * 8) - 2));
    const kind = this.rand();
    const stp: OrderState['self_trade_prevention'] =
      this.rand() < 0.8
        ? 'NONE'
        : this.pick(['CANCEL_NEWEST', 'CANCEL_OLDEST', 'CANCEL_BOTH'] as const);
    const base = {
      symbol: instrument.symbol,
      side,
      quantity: lot.toDecimal(1 + Math.floor(this.rand() * 10)),
      self_trade_prevention: stp,
      created_at: time,
    };
    let order: OrderState;
    const who = this.pick(this.users);
    if (kind < 0.7) {
      const tif = this.pick(['GTC', 'GTC', 'GTC', 'GTC', 'GTC', 'IOC', 'FOK'] as const);
      const postOnly = tif === 'GTC' && this.rand() < 0.1;
      order = newOrder(who, instrument, {
        ...base,
        price: near(),
        time_in_force: tif,
        post_only: postOnly,
      });
    } else if (kind < 0.85) {
      order = newOrder(who, instrument, { ...base, type: 'MARKET' });
    } else if (kind < 0.93) {
      const stop = tick.toDecimal(MIDDLE - toward * (1 + Math.floor(this.rand() * 3)));
      order = newOrder(who, instrument, {
        ...base,
        type: 'STOP_LIMIT',
        price: near(),
        stop_price: stop,
      });
    } else {
      const stop = tick.toDecimal(MIDDLE - toward * (1 + Math.floor(this.rand() * 3)));
      order = newOrder(who, instrument, { ...base, type: 'STOP_MARKET', stop_price: stop });
    }
    const seq = await enqueuePlace(this.redis, this.keys, order);
    this.placed.push([seq, order]);
    return seq;
  }
}
