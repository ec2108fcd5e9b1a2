// The writer's SQL. Stream entries go to PostgreSQL as the JSON text they arrived in, joined into
// one JSON array per stream: PostgreSQL maps them onto typed rows (json_to_record; keys that are
// not columns are ignored), so the writer's process never parses or re-serialises a record on the
// fast path — it only concatenates strings. The JSON goes as `$n::text::json`: a parameter typed
// json would be JSON-encoded again by postgres.js.
import type { TransactionSql } from 'postgres';
import { classify, errorCode } from '../db/pg-errors.js';

type Tx = TransactionSql;

/** A stream entry held by the writer: its id and the JSON of its payload field. */
export interface HeldEntry {
  id: string;
  raw: string;
  /** An event entry's field x: the ids of the orders its batch made final, space-separated. */
  closed?: string;
}

/** A record set aside because PostgreSQL refuses it (a data error): kept, never dropped. */
export interface Reject {
  stream: string;
  id: string;
  /** The refused JSON: the whole entry, or one order state or trade of an event batch. */
  record: string;
  code: string;
  message: string;
}

export interface WrittenRows {
  /** Orders inserted from PLACE commands. */
  placed: number;
  /** Order states inserted or advanced to a newer version. */
  states: number;
  trades: number;
}

const ORDER_COLUMNS = `id, client_order_id, user_id, symbol, side, type, time_in_force, quantity,
  price, stop_price, post_only, self_trade_prevention, filled_quantity, average_fill_price, status,
  reject_reason, shard, seq, version, notional, created_at, updated_at`;

/** The JSON keys of an OrderState that are columns, typed (json_to_record needs the list). */
const ORDER_RECORD = `id uuid, client_order_id text, user_id uuid, symbol text, side text,
  type text, time_in_force text, quantity numeric, price numeric, stop_price numeric,
  post_only boolean, self_trade_prevention text, filled_quantity numeric,
  average_fill_price numeric, status text, reject_reason text, seq bigint, version bigint,
  notional numeric, created_at timestamptz, updated_at timestamptz`;

const TRADE_RECORD = `id uuid, seq bigint, trade_no integer, symbol text, price numeric,
  quantity numeric, taker_side text, taker_order_id uuid, maker_order_id uuid,
  taker_user_id uuid, maker_user_id uuid, executed_at timestamptz`;

/**
 * One flush in one statement, so each JSON text is parsed once and the whole flush is one round
 * trip:
 * - event batches: order states deduplicated by id keeping the highest version (one upsert may not
 *   touch a row twice), upserted so that only a newer version replaces a row — a re-delivered or
 *   older state changes nothing; trades inserted once;
 * - PLACE commands: PENDING rows at version 0. The record's `order.seq` is 0 (the gateway does not
 *   know it); the true sequence is the stream id's. No conflict target: a clash on id (already
 *   written) or on (user_id, client_order_id) leaves the existing row alone rather than failing.
 *   The writer sends no PLACE whose outcome it holds or has written (see ShardLoop.superseded);
 *   should one come with its state all the same, the state supersedes it here too, rather than
 *   inserting the row and then rewriting it (every index twice).
 */
const FLUSH = `
  WITH b AS MATERIALIZED (SELECT json_array_elements($3::text::json) AS b),
  s AS MATERIALIZED (
    SELECT DISTINCT ON (o.id) o.*
    FROM b, json_to_recordset(b.b->'orders') AS o(${ORDER_RECORD})
    ORDER BY o.id, o.version DESC
  ),
  t AS (
    INSERT INTO trades (id, shard, seq, trade_no, symbol, price, quantity, taker_side,
      taker_order_id, maker_order_id, taker_user_id, maker_user_id, executed_at)
    SELECT t.id, $1, t.seq, t.trade_no, t.symbol, t.price, t.quantity, t.taker_side,
      t.taker_order_id, t.maker_order_id, t.taker_user_id, t.maker_user_id, t.executed_at
    FROM b, json_to_recordset(b.b->'trades') AS t(${TRADE_RECORD})
    ON CONFLICT DO NOTHING
    RETURNING 1
  ),
  u AS (
    INSERT INTO orders (${ORDER_COLUMNS})
    SELECT s.id, s.client_order_id, s.user_id, s.symbol, s.side, s.type, s.time_in_force,
      s.quantity, s.price, s.stop_price, s.post_only, s.self_trade_prevention,
      s.filled_quantity, s.average_fill_price, s.status, s.reject_reason, $1, s.seq, s.version,
      s.notional, s.created_at, s.updated_at
    FROM s
    ON CONFLICT (id) DO UPDATE SET
      client_order_id = EXCLUDED.client_order_id, user_id = EXCLUDED.user_id,
      symbol = EXCLUDED.symbol, side = EXCLUDED.side, type = EXCLUDED.type,
      time_in_force = EXCLUDED.time_in_force, quantity = EXCLUDED.quantity,
      price = EXCLUDED.price, stop_price = EXCLUDED.stop_price, post_only = EXCLUDED.post_only,
      self_trade_prevention = EXCLUDED.self_trade_prevention,
      filled_quantity = EXCLUDED.filled_quantity,
      average_fill_price = EXCLUDED.average_fill_price, status = EXCLUDED.status,
      reject_reason = EXCLUDED.reject_reason, shard = EXCLUDED.shard, seq = EXCLUDED.seq,
      version = EXCLUDED.version, notional = EXCLUDED.notional,
      created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at
    WHERE orders.version < EXCLUDED.version
    RETURNING 1
  ),
  p AS (
    INSERT INTO orders (${ORDER_COLUMNS})
    SELECT o.id, o.client_order_id, o.user_id, o.symbol, o.side, o.type, o.time_in_force,
      o.quantity, o.price, o.stop_price, o.post_only, o.self_trade_prevention,
      o.filled_quantity, o.average_fill_price, 'PENDING', o.reject_reason, $1,
      (e->>0)::bigint, 0, o.notional, o.created_at, o.updated_at
    FROM json_array_elements($2::text::json) AS e,
      json_to_record(e->1->'order') AS o(${ORDER_RECORD})
    WHERE e->1->>'k' = 'place' AND o.id NOT IN (SELECT s.id FROM s)
    ON CONFLICT DO NOTHING
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM p) AS placed, (SELECT count(*) FROM u) AS states,
    (SELECT count(*) FROM t) AS trades`;

/** `[[seq, command], …]` from order-stream entries `0-<seq>`, by concatenation only. */
function placesJson(entries: readonly HeldEntry[]): string {
  let json = '[';
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as HeldEntry;
    json += `${i === 0 ? '' : ','}[${e.id.slice(e.id.indexOf('-') + 1)},${e.raw}]`;
  }
  return `${json}]`;
}

/** Writes order-stream entries (`placed`) and event-stream payloads (`batches`) in one statement. */
export async function writeAll(
  tx: Tx,
  shard: string,
  placed: readonly HeldEntry[],
  batches: readonly string[],
): Promise<WrittenRows> {
  if (placed.length === 0 && batches.length === 0) return { placed: 0, states: 0, trades: 0 };
  const [row] = await tx.unsafe<{ placed: string; states: string; trades: string }[]>(
    FLUSH,
    [shard, placesJson(placed), `[${batches.join(',')}]`],
    { prepare: true },
  );
  return {
    placed: Number(row?.placed ?? 0),
    states: Number(row?.states ?? 0),
    trades: Number(row?.trades ?? 0),
  };
}

/**
 * The flush after a data error: each entry in its own savepoint, and within a refused event batch
 * each order state and trade in its own, so that only what PostgreSQL refuses is set aside and
 * everything else is written. Slow (a statement per record) but only ever run on a bad batch.
 * Errors other than data errors propagate: the caller retries the whole flush.
 */
export async function writeIsolating(
  tx: Tx,
  shard: string,
  streams: { orders: string; events: string },
  placed: HeldEntry[],
  events: HeldEntry[],
): Promise<{ rows: WrittenRows; rejects: Reject[] }> {
  const rows: WrittenRows = { placed: 0, states: 0, trades: 0 };
  const rejects: Reject[] = [];
  const attempt = async (
    stream: string,
    id: string,
    record: string,
    write: (sp: Tx) => Promise<void>,
  ): Promise<boolean> => {
    try {
      await tx.savepoint(write);
      return true;
    } catch (err) {
      if (classify(err) !== 'data') throw err;
      rejects.push({
        stream,
        id,
        record,
        code: errorCode(err) ?? '',
        message: err instanceof Error ? err.message : String(err),
      });
      return false;
    }
  };

  for (const e of placed) {
    await attempt(streams.orders, e.id, e.raw, async (sp) => {
      rows.placed += (await writeAll(sp, shard, [e], [])).placed;
    });
  }
  for (const e of events) {
    const whole = await attempt(streams.events, e.id, e.raw, async (sp) => {
      const r = await writeAll(sp, shard, [], [e.raw]);
      rows.states += r.states;
      rows.trades += r.trades;
    });
    if (whole) continue;
    // The entry was refused as a whole (and recorded so); if it parses, retry it record by record
    // and keep only the records that are refused on their own.
    const refused = rejects.pop() as Reject;
    let batch: { orders?: unknown[]; trades?: unknown[] };
    try {
      batch = JSON.parse(e.raw) as typeof batch;
    } catch {
      rejects.push(refused);
      continue;
    }
    if (!Array.isArray(batch.orders) || !Array.isArray(batch.trades)) {
      rejects.push(refused);
      continue;
    }
    for (const order of batch.orders) {
      const record = JSON.stringify(order);
      await attempt(streams.events, e.id, record, async (sp) => {
        const one = `{"orders":[${record}],"trades":[]}`;
        rows.states += (await writeAll(sp, shard, [], [one])).states;
      });
    }
    for (const trade of batch.trades) {
      const record = JSON.stringify(trade);
      await attempt(streams.events, e.id, record, async (sp) => {
        const one = `{"orders":[],"trades":[${record}]}`;
        rows.trades += (await writeAll(sp, shard, [], [one])).trades;
      });
    }
  }
  return { rows, rejects };
}
