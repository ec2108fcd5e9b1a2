// Orders as PostgreSQL keeps them, read back as the pipeline's OrderState. Prices and quantities
// are stored exactly as the records carry them (already normalised to the instrument's precision)
// and read back as text, so a round trip gives the same strings; the engine's integers are derived
// from them with the instrument's scale, which can never change.
import { Scale } from '../engine/scale.js';
import type { OrderState, StatusName } from '../queue/records.js';
import type { Queryable, Sql } from './client.js';

export type OrderListStatus = 'OPEN' | 'CLOSED' | 'ALL';

export const OPEN_STATUSES: readonly StatusName[] = ['PENDING', 'NEW', 'PARTIALLY_FILLED'];
export const CLOSED_STATUSES: readonly StatusName[] = ['FILLED', 'CANCELED', 'REJECTED'];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface OrderRow {
  id: string;
  client_order_id: string | null;
  user_id: string;
  symbol: string;
  side: OrderState['side'];
  type: OrderState['type'];
  time_in_force: OrderState['time_in_force'];
  quantity: string;
  price: string | null;
  stop_price: string | null;
  post_only: boolean;
  self_trade_prevention: OrderState['self_trade_prevention'];
  filled_quantity: string;
  average_fill_price: string | null;
  status: StatusName;
  reject_reason: string | null;
  created_at: Date;
  updated_at: Date;
  seq: string;
  version: string;
  notional: string;
  owner_no: string;
  tick_size: string;
  lot_size: string;
}

const scales = new Map<string, Scale>();
function scaleOf(size: string): Scale {
  let s = scales.get(size);
  if (s === undefined) {
    s = new Scale(size);
    scales.set(size, s);
  }
  return s;
}

/** A stored decimal as a count of steps; null and zero are 0. */
function units(scale: Scale, text: string | null): number {
  if (text === null) return 0;
  const n = scale.toUnits(text);
  if (n === 'NOT_POSITIVE') return 0;
  if (typeof n === 'string') throw new RangeError(`stored ${text} is not a whole step (${n})`);
  return n;
}

function toState(r: OrderRow): OrderState {
  const ticks = scaleOf(r.tick_size);
  const lots = scaleOf(r.lot_size);
  return {
    id: r.id,
    client_order_id: r.client_order_id,
    user_id: r.user_id,
    symbol: r.symbol,
    side: r.side,
    type: r.type,
    time_in_force: r.time_in_force,
    quantity: r.quantity,
    price: r.price,
    stop_price: r.stop_price,
    post_only: r.post_only,
    self_trade_prevention: r.self_trade_prevention,
    filled_quantity: r.filled_quantity,
    average_fill_price: r.average_fill_price,
    status: r.status,
    reject_reason: r.reject_reason,
    created_at: r.created_at.toISOString(),
    updated_at: r.updated_at.toISOString(),
    seq: Number(r.seq),
    version: Number(r.version),
    owner_no: Number(r.owner_no),
    quantity_lots: units(lots, r.quantity),
    price_ticks: units(ticks, r.price),
    stop_ticks: units(ticks, r.stop_price),
    filled_lots: units(lots, r.filled_quantity),
    notional: r.notional,
  };
}

/** Selects the columns of OrderRow from `orders o`, joined to its user and instrument. */
function selectOrders(sql: Queryable) {
  return sql`
    SELECT o.id, o.client_order_id, o.user_id, o.symbol, o.side, o.type, o.time_in_force,
      o.quantity::text, o.price::text, o.stop_price::text, o.post_only, o.self_trade_prevention,
      o.filled_quantity::text, o.average_fill_price::text, o.status, o.reject_reason,
      o.created_at, o.updated_at, o.seq, o.version, o.notional::text, u.no AS owner_no,
      i.tick_size::text, i.lot_size::text
    FROM orders o JOIN users u ON u.id = o.user_id JOIN instruments i ON i.symbol = o.symbol`;
}

/** One order by id, whoever owns it (the caller checks ownership). */
export async function getOrder(sql: Sql, id: string): Promise<OrderState | undefined> {
  if (!UUID.test(id)) return undefined;
  const [row] = await sql<OrderRow[]>`${selectOrders(sql)} WHERE o.id = ${id}`;
  return row === undefined ? undefined : toState(row);
}

export interface ListOrdersQuery {
  userId: string;
  status: OrderListStatus;
  symbol?: string;
  limit: number;
}

/**
 * `IN (…)` of statuses written as literals, not parameters: the index of open orders is partial
 * (migration 003), and a generic plan (postgres.js prepares every statement, and PostgreSQL may
 * settle on one after five runs) can use it only when the query's own text implies its predicate.
 * Made once, of this module's constants, never of input.
 */
function statusIn(statuses: readonly StatusName[]): string {
  if (!statuses.every((s) => /^[A-Z_]+$/.test(s)))
    throw new Error(`bad statuses ${statuses.join(', ')}`);
  return `IN (${statuses.map((s) => `'${s}'`).join(', ')})`;
}
const LISTED: Record<OrderListStatus, string | undefined> = {
  OPEN: statusIn(OPEN_STATUSES),
  CLOSED: statusIn(CLOSED_STATUSES),
  ALL: undefined,
};

/** The listing's statement, not yet run (the tests read its plan). */
export function listOrdersQuery(sql: Queryable, q: ListOrdersQuery) {
  const inStatuses = LISTED[q.status];
  return sql<OrderRow[]>`
    ${selectOrders(sql)}
    WHERE o.user_id = ${q.userId}
    ${inStatuses === undefined ? sql`` : sql`AND o.status ${sql.unsafe(inStatuses)}`}
    ${q.symbol === undefined ? sql`` : sql`AND o.symbol = ${q.symbol}`}
    ORDER BY o.created_at DESC, o.id DESC
    LIMIT ${q.limit}`;
}

/** A user's orders, newest first; OPEN is PENDING, NEW and PARTIALLY_FILLED. */
export async function listOrders(sql: Queryable, q: ListOrdersQuery): Promise<OrderState[]> {
  return (await listOrdersQuery(sql, q)).map(toState);
}

/**
 * Of these order ids, those PostgreSQL holds in a final state (FILLED, CANCELED, REJECTED): the
 * engine is done with them, and Redis lets them expire once they are here.
 */
export async function finishedOrders(sql: Sql, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  // One array parameter, not one parameter per id (a statement takes at most 65,535).
  const rows = await sql<{ id: string }[]>`
    SELECT id::text AS id FROM orders
    WHERE id = ANY(${ids as string[]}::uuid[]) AND status IN ${sql(CLOSED_STATUSES)}`;
  return new Set(rows.map((r) => r.id));
}

/** The user's order with this client_order_id, if any. */
export async function findByClientOrderId(
  sql: Sql,
  userId: string,
  clientOrderId: string,
): Promise<OrderState | undefined> {
  const [row] = await sql<OrderRow[]>`
    ${selectOrders(sql)} WHERE o.user_id = ${userId} AND o.client_order_id = ${clientOrderId}`;
  return row === undefined ? undefined : toState(row);
}

/**
 * Inserts an accepted order before the engine sees it (sync mode). False when an order with this
 * id or this user's client_order_id already exists; nothing is changed then.
 */
export async function insertPendingOrder(
  sql: Sql,
  state: OrderState,
  shard: string,
): Promise<boolean> {
  // `::text` first: a parameter typed json would be JSON-encoded again by postgres.js.
  // The same JSON-to-row mapping as the batch writer (json_populate_record), so both paths store
  // a record's strings identically.
  const result = await sql`
    INSERT INTO orders (id, client_order_id, user_id, symbol, side, type, time_in_force, quantity,
      price, stop_price, post_only, self_trade_prevention, filled_quantity, average_fill_price,
      status, reject_reason, shard, seq, version, notional, created_at, updated_at)
    SELECT o.id, o.client_order_id, o.user_id, o.symbol, o.side, o.type, o.time_in_force,
      o.quantity, o.price, o.stop_price, o.post_only, o.self_trade_prevention, o.filled_quantity,
      o.average_fill_price, 'PENDING', o.reject_reason, ${shard}, o.seq, o.version, o.notional,
      o.created_at, o.updated_at
    FROM json_populate_record(null::orders, ${JSON.stringify(state)}::text::json) AS o
    ON CONFLICT DO NOTHING`;
  return result.count === 1;
}
