// Trades as stored by the batch writer, read as an order's fills, a symbol's recent trades and its
// candles.
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

/** One interval of a symbol's trades: open, high, low, close, and how much traded. */
export interface Candle {
  open_time: string;
  open: string;
  high: string;
  low: string;
  close: string;
  /** The quantity traded. */
  volume: string;
  /** Price × quantity, summed: the value traded. */
  quote_volume: string;
  trades: number;
}

/**
 * How long one candles query may run before PostgreSQL cancels it (SQLSTATE 57014): less than the
 * gateway's wait for PostgreSQL (1 s), so that the query stops when the request gives up on it.
 */
const CANDLES_TIMEOUT_MS = 900;

/**
 * A symbol's candles of `seconds` each (aligned to the Unix epoch, so a day's starts at midnight
 * UTC) whose start is in [from, to], oldest first; an interval without a trade has none. Open and
 * close are the first and last trades in the order the engine made them. Exact: NUMERIC
 * throughout, as text. In constant memory per candle (open and close are the least and greatest
 * (time, seq, trade number, price) of the interval, not an array of its prices), and cancelled
 * past CANDLES_TIMEOUT_MS: the pool it runs on is the one orders are written through.
 */
export async function candles(
  sql: Sql,
  symbol: string,
  seconds: number,
  from: Date,
  to: Date,
): Promise<Candle[]> {
  type Row = Omit<Candle, 'open_time'> & { open_time: Date };
  const rows = await sql.begin(async (tx) => {
    await tx.unsafe(`SET LOCAL statement_timeout = ${CANDLES_TIMEOUT_MS}`);
    return tx<Row[]>`
      SELECT
        to_timestamp(floor(extract(epoch FROM executed_at) / ${seconds}) * ${seconds}) AS open_time,
        (min(ARRAY[extract(epoch FROM executed_at), seq, trade_no, price]))[4]::text AS open,
        max(price)::text AS high,
        min(price)::text AS low,
        (max(ARRAY[extract(epoch FROM executed_at), seq, trade_no, price]))[4]::text AS close,
        sum(quantity)::text AS volume,
        sum(price * quantity)::text AS quote_volume,
        count(*)::int AS trades
      FROM trades
      WHERE symbol = ${symbol}
        AND executed_at >= ${from}
        AND executed_at < ${new Date(to.getTime() + seconds * 1000)}
      GROUP BY 1
      ORDER BY 1`;
  });
  return rows.map((r) => ({ ...r, open_time: r.open_time.toISOString() }));
}
