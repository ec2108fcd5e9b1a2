// What the gateway will write, done by hand: orders as OrderState (seq 0 at accept), queued with
// one atomic script per command exactly as architecture.md step 1 describes (INCR the sequence,
// XADD `0-<seq>` to the order stream, write the status hash, add to the open set).
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Sql } from '../../src/db/client.js';
import { Scale } from '../../src/engine/scale.js';
import type { ShardKeys } from '../../src/queue/keys.js';
import type { CommandRecord, OrderState } from '../../src/queue/records.js';

const PLACE = `
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], '0-' .. seq, 'c', ARGV[1])
redis.call('HSET', KEYS[3], 'j', ARGV[2], 's', 'PENDING', 'u', ARGV[3], 'q', seq)
redis.call('SADD', KEYS[4], ARGV[4])
return seq`;

const CANCEL = `
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], '0-' .. seq, 'c', ARGV[1])
return seq`;

export interface Instrument {
  symbol: string;
  tick: string;
  lot: string;
}

export async function listInstruments(sql: Sql, instruments: Instrument[]): Promise<void> {
  for (const i of instruments) {
    await sql`INSERT INTO instruments (symbol, tick_size, lot_size)
      VALUES (${i.symbol}, ${i.tick}, ${i.lot})`;
  }
}

export interface User {
  id: string;
  no: number;
}

export const user = (no: number): User => ({ id: randomUUID(), no });

export interface PlaceFields {
  symbol: string;
  side: OrderState['side'];
  type?: OrderState['type'];
  time_in_force?: OrderState['time_in_force'];
  quantity: string;
  price?: string;
  stop_price?: string;
  post_only?: boolean;
  self_trade_prevention?: OrderState['self_trade_prevention'];
  created_at: string;
}

/** An accepted order, PENDING, as the gateway builds it (ticks and lots from the decimals). */
export function newOrder(u: User, instrument: Instrument, f: PlaceFields): OrderState {
  const tick = new Scale(instrument.tick);
  const lot = new Scale(instrument.lot);
  const units = (scale: Scale, text: string | undefined): number => {
    if (text === undefined) return 0;
    const n = scale.toUnits(text);
    if (typeof n !== 'number') throw new Error(`${text}: ${n}`);
    return n;
  };
  const type = f.type ?? 'LIMIT';
  return {
    id: randomUUID(),
    client_order_id: null,
    user_id: u.id,
    symbol: f.symbol,
    side: f.side,
    type,
    time_in_force: f.time_in_force ?? (type === 'LIMIT' || type === 'STOP_LIMIT' ? 'GTC' : 'IOC'),
    quantity: f.quantity,
    price: f.price ?? null,
    stop_price: f.stop_price ?? null,
    post_only: f.post_only ?? false,
    self_trade_prevention: f.self_trade_prevention ?? 'NONE',
    filled_quantity: lot.toDecimal(0),
    average_fill_price: null,
    status: 'PENDING',
    reject_reason: null,
    created_at: f.created_at,
    updated_at: f.created_at,
    seq: 0,
    version: 0,
    owner_no: u.no,
    quantity_lots: units(lot, f.quantity),
    price_ticks: units(tick, f.price),
    stop_ticks: units(tick, f.stop_price),
    filled_lots: 0,
    notional: '0',
  };
}

/** Queues a PLACE; its sequence (the order's engine id). */
export async function enqueuePlace(
  redis: Redis,
  keys: ShardKeys,
  order: OrderState,
): Promise<number> {
  const record: CommandRecord = { k: 'place', order };
  const json = JSON.stringify(record);
  const seq = await redis.eval(
    PLACE,
    4,
    keys.seq,
    keys.orders,
    keys.order(order.id),
    keys.open,
    json,
    JSON.stringify(order),
    order.user_id,
    order.id,
  );
  return Number(seq);
}

/** Queues a CANCEL of an order placed at `targetSeq`; the cancel's sequence. */
export async function enqueueCancel(
  redis: Redis,
  keys: ShardKeys,
  order: OrderState,
  targetSeq: number,
  requestedAt: string,
): Promise<number> {
  const record: CommandRecord = {
    k: 'cancel',
    order_id: order.id,
    user_id: order.user_id,
    owner_no: order.owner_no,
    symbol: order.symbol,
    target_seq: targetSeq,
    requested_at: requestedAt,
  };
  return Number(await redis.eval(CANCEL, 2, keys.seq, keys.orders, JSON.stringify(record)));
}
