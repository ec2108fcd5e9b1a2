// Records and rows for the repository and writer tests: complete OrderStates and TradeRecords with
// every field set, and direct inserts so that a test can arrange any state without the pipeline.
import { v7 as uuidv7 } from 'uuid';
import type { Sql } from '../../src/db/client.js';
import { createUser } from '../../src/db/users.js';
import type { NewUser } from '../../src/db/users.js';
import { seedDefaultInstruments } from '../../src/db/instruments.js';
import { Scale } from '../../src/engine/scale.js';
import type { OrderState, TradeRecord } from '../../src/queue/records.js';

/** Two users and the default instruments (tick 0.01, lot 1). */
export async function arrange(sql: Sql): Promise<{ alice: NewUser; bob: NewUser }> {
  await seedDefaultInstruments(sql);
  return { alice: await createUser(sql, 'alice'), bob: await createUser(sql, 'bob') };
}

let clock = Date.parse('2026-11-24T07:15:02.123Z');
/** Strictly increasing ISO times, a few milliseconds apart. */
export function nextTime(): string {
  clock += 7;
  return new Date(clock).toISOString();
}

const cents = new Scale('0.01');
const ones = new Scale('1');
const steps = (scale: Scale, text: string | null): number => {
  const n = text === null ? 0 : scale.toUnits(text);
  return typeof n === 'number' ? n : 0;
};

/**
 * A LIMIT order of `user` (tick 0.01, lot 1), PENDING at version 0; the engine's integers follow
 * the overridden decimals unless given too.
 */
export function orderState(user: NewUser, over: Partial<OrderState> = {}): OrderState {
  const at = nextTime();
  const o: OrderState = {
    id: uuidv7(),
    client_order_id: null,
    user_id: user.id,
    symbol: 'AAPL',
    side: 'BUY',
    type: 'LIMIT',
    time_in_force: 'GTC',
    quantity: '10',
    price: '187.25',
    stop_price: null,
    post_only: false,
    self_trade_prevention: 'NONE',
    filled_quantity: '0',
    average_fill_price: null,
    status: 'PENDING',
    reject_reason: null,
    created_at: at,
    updated_at: at,
    seq: 0,
    version: 0,
    owner_no: user.no,
    quantity_lots: 10,
    price_ticks: 18725,
    stop_ticks: 0,
    filled_lots: 0,
    notional: '0',
    ...over,
  };
  o.quantity_lots = over.quantity_lots ?? steps(ones, o.quantity);
  o.price_ticks = over.price_ticks ?? steps(cents, o.price);
  o.stop_ticks = over.stop_ticks ?? steps(cents, o.stop_price);
  return o;
}

/** The state after `lots` more lots filled at `priceTicks` (tick 0.01) by command `version`. */
export function filled(
  o: OrderState,
  lots: number,
  priceTicks: number,
  version: number,
): OrderState {
  const filledLots = o.filled_lots + lots;
  const notional = BigInt(o.notional) + BigInt(lots) * BigInt(priceTicks);
  const avg = Number(notional) / filledLots / 100;
  return {
    ...o,
    filled_lots: filledLots,
    filled_quantity: String(filledLots),
    notional: notional.toString(),
    // Exact for the whole-cent prices these tests use.
    average_fill_price: avg.toFixed(2).replace(/\.?0+$/, ''),
    status: filledLots === o.quantity_lots ? 'FILLED' : 'PARTIALLY_FILLED',
    version,
    updated_at: nextTime(),
  };
}

/** A trade between two orders at `price`, `quantity` (decimal strings). */
export function trade(
  taker: OrderState,
  maker: OrderState,
  seq: number,
  tradeNo: number,
  over: Partial<TradeRecord> = {},
): TradeRecord {
  return {
    id: uuidv7(),
    seq,
    trade_no: tradeNo,
    symbol: taker.symbol,
    price: maker.price ?? '1',
    quantity: '1',
    taker_side: taker.side,
    taker_order_id: taker.id,
    maker_order_id: maker.id,
    taker_user_id: taker.user_id,
    maker_user_id: maker.user_id,
    executed_at: nextTime(),
    ...over,
  };
}

/** Stores an order row exactly as given (any status or version). */
export async function putOrder(sql: Sql, o: OrderState, shard = 's0'): Promise<void> {
  await sql`
    INSERT INTO orders (id, client_order_id, user_id, symbol, side, type, time_in_force, quantity,
      price, stop_price, post_only, self_trade_prevention, filled_quantity, average_fill_price,
      status, reject_reason, shard, seq, version, notional, created_at, updated_at)
    VALUES (${o.id}, ${o.client_order_id}, ${o.user_id}, ${o.symbol}, ${o.side}, ${o.type},
      ${o.time_in_force}, ${o.quantity}, ${o.price}, ${o.stop_price}, ${o.post_only},
      ${o.self_trade_prevention}, ${o.filled_quantity}, ${o.average_fill_price}, ${o.status},
      ${o.reject_reason}, ${shard}, ${o.seq}, ${o.version}, ${o.notional}, ${o.created_at},
      ${o.updated_at})`;
}

/** Stores a trade row. */
export async function putTrade(sql: Sql, t: TradeRecord, shard = 's0'): Promise<void> {
  await sql`
    INSERT INTO trades (id, shard, seq, trade_no, symbol, price, quantity, taker_side,
      taker_order_id, maker_order_id, taker_user_id, maker_user_id, executed_at)
    VALUES (${t.id}, ${shard}, ${t.seq}, ${t.trade_no}, ${t.symbol}, ${t.price}, ${t.quantity},
      ${t.taker_side}, ${t.taker_order_id}, ${t.maker_order_id}, ${t.taker_user_id},
      ${t.maker_user_id}, ${t.executed_at})`;
}

/** Every trade row, as a TradeRecord (shard dropped), by (seq, trade_no). */
export async function allTrades(sql: Sql): Promise<TradeRecord[]> {
  const rows = await sql<
    (Omit<TradeRecord, 'seq' | 'executed_at'> & {
      seq: string;
      executed_at: Date;
    })[]
  >`
    SELECT id, seq, trade_no, symbol, price::text, quantity::text, taker_side, taker_order_id,
      maker_order_id, taker_user_id, maker_user_id, executed_at
    FROM trades ORDER BY seq, trade_no`;
  return rows.map((r) => ({
    id: r.id,
    seq: Number(r.seq),
    trade_no: r.trade_no,
    symbol: r.symbol,
    price: r.price,
    quantity: r.quantity,
    taker_side: r.taker_side,
    taker_order_id: r.taker_order_id,
    maker_order_id: r.maker_order_id,
    taker_user_id: r.taker_user_id,
    maker_user_id: r.maker_user_id,
    executed_at: r.executed_at.toISOString(),
  }));
}
