// What the gateway needs from PostgreSQL and from the engine, as small interfaces: the
// composition root injects the real ones, so routes know no SQL and no gRPC.
import type { Candle } from '../db/trades.js';
import type { UserHalt } from '../db/users.js';
import type { Fill, OrderState, SideName } from '../queue/records.js';

export interface UserKey {
  id: string;
  no: number;
  name: string;
  /** SHA-256 of the API key. */
  api_key_hash: Buffer;
}

export interface InstrumentRow {
  symbol: string;
  tick_size: string;
  lot_size: string;
  /** Price protection of MARKET and STOP_MARKET orders, in basis points; 0 for none. */
  market_protection_bps: number;
}

/** An instrument to list or confirm; a protection left out keeps the listed one (0 when new). */
export type InstrumentInput = Omit<InstrumentRow, 'market_protection_bps'> & {
  market_protection_bps?: number;
};

export type UpsertResult =
  | { kind: 'created' | 'updated' | 'unchanged'; instrument: InstrumentRow }
  | { kind: 'conflict'; instrument: InstrumentRow };

export interface TradeRow {
  id: string;
  price: string;
  quantity: string;
  taker_side: SideName;
  executed_at: string;
}

export interface ListQuery {
  userId: string;
  status: 'OPEN' | 'CLOSED' | 'ALL';
  symbol?: string;
  limit: number;
}

export interface GatewayStore {
  loadUsers(): Promise<UserKey[]>;
  createUser(name: string): Promise<{ id: string; no: number; name: string; api_key: string }>;
  /** Halts or resumes a user's trading; undefined for an unknown user. */
  setUserHalt(userId: string, halted: boolean): Promise<UserHalt | undefined>;
  listInstruments(): Promise<InstrumentRow[]>;
  upsertInstrument(row: InstrumentInput): Promise<UpsertResult>;
  getOrder(id: string): Promise<OrderState | undefined>;
  listOrders(query: ListQuery): Promise<OrderState[]>;
  findByClientOrderId(userId: string, clientOrderId: string): Promise<OrderState | undefined>;
  /**
   * Sync mode: the order written before the engine sees it. False when the user's
   * client_order_id is already taken (nothing written).
   */
  insertPendingOrder(order: OrderState): Promise<boolean>;
  /** Sync mode: undoes insertPendingOrder when the queue refused the order. */
  deletePendingOrder(orderId: string): Promise<void>;
  fillsOfOrder(orderId: string): Promise<Fill[]>;
  recentTrades(symbol: string, limit: number): Promise<TradeRow[]>;
  /** A symbol's candles of `seconds` each starting in [from, to], oldest first (db/trades.ts). */
  candles(symbol: string, seconds: number, from: Date, to: Date): Promise<Candle[]>;
  ping(): Promise<void>;
}

export interface EngineLevel {
  price: number;
  quantity: number;
  orders: number;
}

export interface EngineView {
  depth(
    symbol: string,
    levels: number,
  ): Promise<{ bids: EngineLevel[]; asks: EngineLevel[]; seq: number }>;
  /** The last applied sequence of each shard's engine, by shard index. */
  lastApplied(): Promise<number[]>;
}
