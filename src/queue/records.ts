// What travels between the components: the order as the API shows it, the order as the pipeline
// keeps it, and the entries of the order and event streams. Every component reads and writes
// these shapes and no other.

import { OrderType, Side, Stp, TimeInForce } from '../engine/types.js';

export const SIDES = ['BUY', 'SELL'] as const;
export type SideName = (typeof SIDES)[number];
export const ORDER_TYPES = ['LIMIT', 'MARKET', 'STOP_LIMIT', 'STOP_MARKET'] as const;
export type OrderTypeName = (typeof ORDER_TYPES)[number];
export const TIFS = ['GTC', 'IOC', 'FOK'] as const;
export type TifName = (typeof TIFS)[number];
export const STP_MODES = ['NONE', 'CANCEL_NEWEST', 'CANCEL_OLDEST', 'CANCEL_BOTH'] as const;
export type StpName = (typeof STP_MODES)[number];
export const STATUSES = [
  'PENDING',
  'NEW',
  'PARTIALLY_FILLED',
  'FILLED',
  'CANCELED',
  'REJECTED',
] as const;
export type StatusName = (typeof STATUSES)[number];
export const FINAL_STATUSES: readonly StatusName[] = ['FILLED', 'CANCELED', 'REJECTED'];

/** The API names are indexed by the engine's numbers: SIDES[Side.SELL] === 'SELL'. */
export const engineSide = (s: SideName): Side => (s === 'BUY' ? Side.BUY : Side.SELL);
export const engineOrderType = (t: OrderTypeName): OrderType => OrderType[t];
export const engineTif = (t: TifName): TimeInForce => TimeInForce[t];
export const engineStp = (s: StpName): Stp => Stp[s];

/** The order object of api-v1.md, field for field. */
export interface ApiOrder {
  id: string;
  client_order_id: string | null;
  user_id: string;
  symbol: string;
  side: SideName;
  type: OrderTypeName;
  time_in_force: TifName;
  quantity: string;
  price: string | null;
  stop_price: string | null;
  post_only: boolean;
  self_trade_prevention: StpName;
  filled_quantity: string;
  average_fill_price: string | null;
  status: StatusName;
  reject_reason: string | null;
  created_at: string;
  updated_at: string;
}

/** The order as the pipeline keeps it: the API object plus the engine's integers. */
export interface OrderState extends ApiOrder {
  /** Sequence of the PLACE command; also the engine's id for the order. 0 until known. */
  seq: number;
  /** Sequence of the last command that changed the order (0 at accept): newer always wins. */
  version: number;
  /** The owner's compact number, for the engine's self-trade prevention. */
  owner_no: number;
  quantity_lots: number;
  /** 0 when the order has no price / stop price. */
  price_ticks: number;
  stop_ticks: number;
  filled_lots: number;
  /** Σ fill price in ticks × fill lots, as an integer decimal string (BigInt arithmetic). */
  notional: string;
  /**
   * MARKET and STOP_MARKET: the instrument's price protection in basis points when the order was
   * accepted (the engine's Command.protection); 0 or absent for none. Not in PostgreSQL.
   */
  protection_bps?: number;
}

/** Payload (field `c`) of an order-stream entry whose id is `0-<seq>`. */
export type CommandRecord =
  | { k: 'place'; order: OrderState }
  | {
      k: 'cancel';
      order_id: string;
      user_id: string;
      owner_no: number;
      symbol: string;
      /** The PLACE sequence of the order to cancel: its engine id. */
      target_seq: number;
      requested_at: string;
    }
  /**
   * An amend of a resting LIMIT GTC order (`PATCH /v1/orders/{id}`): its new price and new total
   * quantity (filled included); 0 for what the request left as it is, which the engine resolves
   * when it applies the REPLACE (so an amend queued behind another does not undo it). Same price
   * and no more lots keeps the order's place in the queue.
   */
  | {
      k: 'replace';
      order_id: string;
      user_id: string;
      owner_no: number;
      symbol: string;
      /** Added by the queue's script from the status hash: see replace-order-4.lua. */
      target_seq: number;
      price_ticks: number;
      quantity_lots: number;
      requested_at: string;
    }
  /**
   * A mass cancel (`DELETE /v1/orders`): every live order of the user on one side, of one symbol
   * or of every symbol on this shard, as the engine holds them when it comes to this entry. A
   * request for both sides is two entries, queued together; one for every symbol is queued on
   * every shard.
   */
  | {
      k: 'cancel_all';
      /** The request's id (UUIDv7), the same on each of its entries. */
      id: string;
      user_id: string;
      owner_no: number;
      /** null: every symbol. */
      symbol: string | null;
      side: SideName;
      requested_at: string;
    }
  /**
   * A symbol moved onto this shard by a change of the shard layout: its engine drops what it
   * still held of the symbol from an earlier stay (an empty book, a stale last trade price).
   * Written by src/queue/shard-layout.ts, never by a gateway; no order, nothing to write.
   */
  | { k: 'forget'; symbol: string; requested_at: string };

/** A trade as stored and shown. */
export interface TradeRecord {
  /** Deterministic from (shard, sequence, trade number): a replay gives the same id. */
  id: string;
  seq: number;
  trade_no: number;
  symbol: string;
  price: string;
  quantity: string;
  taker_side: SideName;
  taker_order_id: string;
  maker_order_id: string;
  taker_user_id: string;
  maker_user_id: string;
  executed_at: string;
}

/**
 * A cancel or an amend the engine refused (FIX's OrderCancelReject): the order it named was no
 * longer live (`UNKNOWN_ORDER`: filled or canceled first), or the amend could not be applied. The
 * order is unchanged. Shown on the user's live updates; kept nowhere else.
 */
export interface CommandRefusal {
  /** The refused command's sequence. */
  seq: number;
  kind: 'cancel' | 'amend';
  order_id: string;
  user_id: string;
  symbol: string;
  /** The engine's reason (engine/types.ts Reason), by name. */
  reason: string;
  /** The refused command's time, ISO: when the gateway took the request. */
  at: string;
}

/** Payload (field `b`) of an event-stream entry whose id is `0-<last_seq>`. */
export interface EventBatch {
  first_seq: number;
  last_seq: number;
  /** The new state of every order the batch changed, once each. */
  orders: OrderState[];
  trades: TradeRecord[];
  /** The batch's refused cancels and amends; absent when there are none. */
  refusals?: CommandRefusal[];
  /**
   * Wall-clock time the dispatcher wrote the batch (ISO, ms). Metadata outside the deterministic
   * engine — a replay writes a later one — kept for measuring submission-to-fill latency.
   */
  written_at?: string;
}

/** One fill of one order, as `GET /v1/orders/{id}/fills` shows it. */
export interface Fill {
  trade_id: string;
  price: string;
  quantity: string;
  liquidity: 'MAKER' | 'TAKER';
  executed_at: string;
}

/** The fill a trade gives one of its two orders. */
export function tradeFill(t: TradeRecord, liquidity: Fill['liquidity']): Fill {
  return {
    trade_id: t.id,
    price: t.price,
    quantity: t.quantity,
    liquidity,
    executed_at: t.executed_at,
  };
}

/** The API object of an order state (drops the pipeline's fields). */
export function apiOrder(o: OrderState): ApiOrder {
  return {
    id: o.id,
    client_order_id: o.client_order_id,
    user_id: o.user_id,
    symbol: o.symbol,
    side: o.side,
    type: o.type,
    time_in_force: o.time_in_force,
    quantity: o.quantity,
    price: o.price,
    stop_price: o.stop_price,
    post_only: o.post_only,
    self_trade_prevention: o.self_trade_prevention,
    filled_quantity: o.filled_quantity,
    average_fill_price: o.average_fill_price,
    status: o.status,
    reject_reason: o.reject_reason,
    created_at: o.created_at,
    updated_at: o.updated_at,
  };
}

const hex = (n: bigint, digits: number): string => n.toString(16).padStart(digits, '0');

/**
 * A UUIDv7 for a trade, derived from its command's time, the shard, the command sequence and the
 * trade's number within the command, so that replaying a command gives the same id. Layout after
 * the 48-bit millisecond time and the version, in the 74 bits UUIDv7 leaves free: 8 bits of
 * shard, the low 20 bits of the trade number, its next 6 bits, and the low 40 bits of the
 * sequence. A command of more than 2^20 trades (a million resting orders swept at once) thus
 * still has an id for each (the 20 bits alone gave its trade 2^20 the id of its trade 0, and the
 * writer took the second for the first, delivered again); a command's time and the low 40 bits
 * of its sequence tell it from every other (no 2^40 commands share a millisecond). Ids of trades
 * numbered below 2^20 in commands below 2^40 are as they always were.
 */
export function tradeId(ms: number, shard: number, seq: number, tradeNo: number): string {
  const bits =
    (BigInt(shard & 0xff) << 66n) |
    (BigInt(tradeNo & 0xfffff) << 46n) |
    (BigInt((tradeNo >>> 20) & 0x3f) << 40n) |
    (BigInt(seq) & ((1n << 40n) - 1n));
  const randA = bits >> 62n; // 12 bits
  const randB = bits & ((1n << 62n) - 1n); // 62 bits
  const time = hex(BigInt(ms), 12);
  const b = hex((2n << 62n) | randB, 16);
  return `${time.slice(0, 8)}-${time.slice(8)}-7${hex(randA, 3)}-${b.slice(0, 4)}-${b.slice(4)}`;
}
