// Trades as stored by the batch writer, read as an order's fills and a symbol's recent trades.
import type { Fill, SideName } from '../queue/records.js';
import type { Sql } from './client.js';

/** A trade as `GET /v1/instruments/{symbol}/trades` shows it. */
export interface PublicTrade {
  id: string;
  price: string;
  quantity: string;
  taker_side: SideName;
  executed_at: string;
}

interface FillRow {
  trade_id: string;
  price: string;
  quantity: string;
  liquidity: 'MAKER' | 'TAKER';
  executed_at: Date;
}

/** The fills of an order, oldest first; a self-trade is two fills, MAKER then TAKER. */
export async function fillsOfOrder(sql: Sql, orderId: string): Promise<Fill[]> {
  const rows = await sql<FillRow[]>`
    SELECT trade_id, price, quantity, liquidity, executed_at FROM (
      SELECT id AS trade_id, price::text, quantity::text, 'MAKER' AS liquidity, executed_at, seq,
        trade_no
      FROM trades WHERE maker_order_id = ${orderId}
      UNION ALL
      SELECT id, price::text, quantity::text, 'TAKER', executed_at, seq, trade_no
      FROM trades WHERE taker_order_id = ${orderId}
    ) f
    ORDER BY executed_at, seq, trade_no, liquidity`;
  return rows.map((r) => ({
    trade_id: r.trade_id,
    price: r.price,
    quantity: r.quantity,
    liquidity: r.liquidity,
    executed_at: r.executed_at.toISOString(),
  }));
}

/** A symbol's latest trades, newest first. */
export async function recentTrades(
  sql: Sql,
  symbol: string,
  limit: number,
): Promise<PublicTrade[]> {
  const rows = await sql<(Omit<PublicTrade, 'executed_at'> & { executed_at: Date })[]>`
    SELECT id, price::text, quantity::text, taker_side, executed_at FROM trades
    WHERE symbol = ${symbol}
    ORDER BY executed_at DESC, seq DESC, trade_no DESC
    LIMIT ${limit}`;
  return rows.map((r) => ({
    id: r.id,
    price: r.price,
    quantity: r.quantity,
    taker_side: r.taker_side,
    executed_at: r.executed_at.toISOString(),
  }));
}
