// The writer's SQL: a whole flush in one statement, one round trip.
//
// Event batches, where nearly all of a flush's rows are, go as one array per column
// (`unnest($n::text::uuid[], …)`): the writer parses each batch once (JSON.parse), keeps each
// order's newest state, checks every value's type, and sends each column as an array literal.
// PostgreSQL then only runs each type's input function. Mapping the batches' JSON onto rows in
// PostgreSQL instead (json_to_recordset, parsing each object into a hash of its fields) took
// about a third of PostgreSQL's time on a flush, more than JSON.parse and the arrays cost here
// (the README has the measurements); and PostgreSQL is the part a deployment cannot add more of.
//
// PLACE commands, few in a flush (see ShardLoop.superseded), still go as the JSON text they
// arrived in, one JSON array, mapped in PostgreSQL (json_to_record; keys that are not columns are
// ignored). JSON and array literals go as `$n::text::…`: a parameter typed json or uuid[] would be
// encoded again by postgres.js.
import type { TransactionSql } from 'postgres';
import { classify, errorCode } from '../db/pg-errors.js';
import type { CommandRecord } from '../queue/records.js';

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

/**
 * A record the writer refuses before PostgreSQL sees it (not JSON, not the shape of an event
 * batch, a value of the wrong type). Its code is the one PostgreSQL gives malformed input, so
 * that it is handled as PostgreSQL's own data errors are: set aside, never retried.
 */
class RecordError extends Error {
  readonly code = '22P02';
}

type Kind = 'uuid' | 'text' | 'numeric' | 'bigint' | 'integer' | 'boolean' | 'timestamptz';
type Scalar = string | number | boolean | null;
type Columns = readonly (readonly [name: string, kind: Kind])[];

/** The fields of an OrderState that are columns of `orders` (all but `shard`), typed. */
const STATE_COLUMNS: Columns = [
  ['id', 'uuid'],
  ['client_order_id', 'text'],
  ['user_id', 'uuid'],
  ['symbol', 'text'],
  ['side', 'text'],
  ['type', 'text'],
  ['time_in_force', 'text'],
  ['quantity', 'numeric'],
  ['price', 'numeric'],
  ['stop_price', 'numeric'],
  ['post_only', 'boolean'],
  ['self_trade_prevention', 'text'],
  ['filled_quantity', 'numeric'],
  ['average_fill_price', 'numeric'],
  ['status', 'text'],
  ['reject_reason', 'text'],
  ['seq', 'bigint'],
  ['version', 'bigint'],
  ['notional', 'numeric'],
  ['created_at', 'timestamptz'],
  ['updated_at', 'timestamptz'],
];

/** The fields of a TradeRecord that are columns of `trades` (all but `shard`), typed. */
const TRADE_COLUMNS: Columns = [
  ['id', 'uuid'],
  ['seq', 'bigint'],
  ['trade_no', 'integer'],
  ['symbol', 'text'],
  ['price', 'numeric'],
  ['quantity', 'numeric'],
  ['taker_side', 'text'],
  ['taker_order_id', 'uuid'],
  ['maker_order_id', 'uuid'],
  ['taker_user_id', 'uuid'],
  ['maker_user_id', 'uuid'],
  ['executed_at', 'timestamptz'],
];

const names = (cols: Columns) => cols.map(([name]) => name).join(', ');
/** `unnest($first::text::uuid[], …) AS alias(id, …)`: one array parameter per column. */
const unnestOf = (cols: Columns, first: number, alias: string) =>
  `unnest(${cols.map(([, kind], i) => `$${first + i}::text::${kind}[]`).join(', ')})
    AS ${alias}(${names(cols)})`;

const ORDER_COLUMNS = `${names(STATE_COLUMNS)}, shard`;

/** The JSON keys of a PLACE's order that are columns, typed (json_to_record needs the list). */
const ORDER_RECORD = STATE_COLUMNS.map(([name, kind]) => `${name} ${kind}`).join(', ');

/**
 * One flush, one statement. $1 is the shard, $2 the PLACEs' JSON, then one array per column of
 * the order states and of the trades:
 * - order states, one per order (its newest, chosen by the writer: one upsert may not touch a row
 *   twice), upserted so that only a newer version replaces a row — a re-delivered or older state
 *   changes nothing; trades inserted once (a trade already there by its id changes nothing;
 *   another trade at its shard, seq and number fails the flush, and is set aside);
 * - PLACE commands: PENDING rows at version 0 (one without an id is not passed over: NOT NULL
 *   refuses it; `NOT IN` alone would have dropped it, and NOT EXISTS is not hashed here). The
 *   record's `order.seq` is 0 (the gateway does not know it); the true sequence is the stream
 *   id's. A row already there by its id (written
 *   before, or by the gateway in sync mode) is left alone; another order's with the same
 *   (user_id, client_order_id) fails the flush, and the PLACE is set aside, as its state would be.
 *   The writer sends no PLACE whose outcome it holds or has written (see ShardLoop.superseded);
 *   should one come with its state all the same, the state supersedes it here too, rather than
 *   inserting the row and then rewriting it (every index twice).
 */
const FLUSH = `
  WITH s AS MATERIALIZED (SELECT * FROM ${unnestOf(STATE_COLUMNS, 3, 's')}),
  t AS (
    INSERT INTO trades (${names(TRADE_COLUMNS)}, shard)
    SELECT t.*, $1 FROM ${unnestOf(TRADE_COLUMNS, 3 + STATE_COLUMNS.length, 't')}
    ON CONFLICT (id) DO NOTHING
    RETURNING 1
  ),
  u AS (
    INSERT INTO orders (${ORDER_COLUMNS})
    SELECT s.*, $1 FROM s
    ON CONFLICT (id) DO UPDATE SET
      ${STATE_COLUMNS.slice(1)
        .map(([name]) => `${name} = EXCLUDED.${name}`)
        .join(', ')}, shard = EXCLUDED.shard
    WHERE orders.version < EXCLUDED.version
    RETURNING 1
  ),
  p AS (
    INSERT INTO orders (${ORDER_COLUMNS})
    SELECT o.id, o.client_order_id, o.user_id, o.symbol, o.side, o.type, o.time_in_force,
      o.quantity, o.price, o.stop_price, o.post_only, o.self_trade_prevention,
      o.filled_quantity, o.average_fill_price, 'PENDING', o.reject_reason,
      (e->>0)::bigint, 0, o.notional, o.created_at, o.updated_at, $1
    FROM json_array_elements($2::text::json) AS e,
      json_to_record(e->1->'order') AS o(${ORDER_RECORD})
    WHERE e->1->>'k' = 'place' AND (o.id IS NULL OR o.id NOT IN (SELECT s.id FROM s))
    ON CONFLICT (id) DO NOTHING
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM p) AS placed, (SELECT count(*) FROM u) AS states,
    (SELECT count(*) FROM t) AS trades`;

const orString = (v: unknown) => v === null || typeof v === 'string';
const orInteger = (v: unknown) => v === null || Number.isSafeInteger(v) || typeof v === 'string';

/**
 * Whether a value may go to a column of each kind (null: PostgreSQL checks NOT NULL). A quantity
 * or price is a decimal string: a JSON number would have passed through a float.
 */
const FITS: Record<Kind, (v: unknown) => boolean> = {
  uuid: orString,
  text: orString,
  numeric: orString,
  timestamptz: orString,
  bigint: orInteger,
  integer: orInteger,
  boolean: (v) => v === null || typeof v === 'boolean',
};

/** The array literal of each column of `rows`, each value checked against its column's kind. */
function columnsOf(rows: readonly Record<string, unknown>[], cols: Columns, what: string) {
  return cols.map(([name, kind]) => {
    const fits = FITS[kind];
    const values = new Array<Scalar>(rows.length);
    for (let j = 0; j < rows.length; j++) {
      const v = (rows[j] as Record<string, unknown>)[name] ?? null;
      if (!fits(v)) {
        throw new RecordError(`${what} field ${name}: ${JSON.stringify(v)} is not a ${kind}`);
      }
      values[j] = v as Scalar;
    }
    return arrayLiteral(values, `${what} field ${name}`);
  });
}

const LONE_SURROGATE = /\p{Cs}/u;

/**
 * A PostgreSQL array literal of `values`. JSON.stringify makes it, `[…]` to `{…}` (JSON's null is
 * the literal's NULL), unless a string needed an escape: JSON's (`\n`, `\u0001`, …) are not an
 * array literal's, so then each element is quoted here, escaping only `"` and `\`. A lone
 * surrogate (JSON escapes it too) has no UTF-8 form: sent, it would arrive as U+FFFD, so it is
 * refused, as PostgreSQL refused it in JSON.
 */
function arrayLiteral(values: readonly Scalar[], what: string): string {
  const json = JSON.stringify(values);
  if (!json.includes('\\')) return `{${json.slice(1, -1)}}`;
  let literal = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as Scalar;
    if (i > 0) literal += ',';
    if (v === null) literal += 'NULL';
    else if (typeof v === 'string') {
      if (LONE_SURROGATE.test(v))
        throw new RecordError(`${what}: ${JSON.stringify(v)} is not Unicode`);
      literal += `"${v.replace(/["\\]/g, '\\$&')}"`;
    } else literal += String(v);
  }
  return `${literal}}`;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** An event-batch payload's orders and trades; a RecordError if it is not one. */
function eventBatch(raw: string): { orders: unknown[]; trades: unknown[] } {
  let batch: unknown;
  try {
    batch = JSON.parse(raw);
  } catch (err) {
    throw new RecordError(`event batch is not JSON: ${(err as Error).message}`);
  }
  if (!isObject(batch) || !Array.isArray(batch.orders) || !Array.isArray(batch.trades)) {
    throw new RecordError('event batch without its orders and trades arrays');
  }
  return { orders: batch.orders, trades: batch.trades };
}

/** The order states (the newest of each order) and trades of event-batch payloads, as arrays. */
function eventColumns(batches: readonly string[]): string[] {
  const newest = new Map<unknown, Record<string, unknown>>();
  const trades: Record<string, unknown>[] = [];
  for (const raw of batches) {
    const batch = eventBatch(raw);
    for (const o of batch.orders) {
      if (!isObject(o)) throw new RecordError(`order state ${JSON.stringify(o)} is not an object`);
      const held = newest.get(o.id);
      if (held === undefined || Number(held.version) < Number(o.version)) newest.set(o.id, o);
    }
    for (const t of batch.trades) {
      if (!isObject(t)) throw new RecordError(`trade ${JSON.stringify(t)} is not an object`);
      trades.push(t);
    }
  }
  return [
    ...columnsOf([...newest.values()], STATE_COLUMNS, 'order state'),
    ...columnsOf(trades, TRADE_COLUMNS, 'trade'),
  ];
}

/** How an order-stream PLACE record begins (src/queue/lua/submit-order-7.lua writes it so). */
export const PLACE_PREFIX = '{"k":"place",';

const COMMAND_KINDS: ReadonlySet<unknown> = new Set<CommandRecord['k']>([
  'place',
  'cancel',
  'replace',
  'cancel_all',
  'forget',
]);

/**
 * Refuses an order-stream record that is not a PLACE, a cancel, an amend, a mass cancel or a forget: the
 * statement writes the PLACEs and passes over the rest, so one of another kind would be
 * acknowledged unwritten. (A record that is not JSON, PostgreSQL refuses.)
 */
function checkCommand(raw: string): void {
  if (raw.startsWith(PLACE_PREFIX)) return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return;
  }
  const k = isObject(parsed) ? parsed.k : undefined;
  if (!COMMAND_KINDS.has(k)) {
    throw new RecordError(
      `order-stream record of kind ${JSON.stringify(k)}: not ${[...COMMAND_KINDS].join(', ')}`,
    );
  }
}

/** `[[seq, command], …]` from order-stream entries `0-<seq>`, by concatenation only. */
function placesJson(entries: readonly HeldEntry[]): string {
  let json = '[';
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as HeldEntry;
    checkCommand(e.raw);
    json += `${i === 0 ? '' : ','}[${e.id.slice(e.id.indexOf('-') + 1)},${e.raw}]`;
  }
  return `${json}]`;
}

/**
 * The parameters of one flush's statement: order-stream entries (`placed`) and event-stream
 * payloads (`batches`) parsed, checked and made into arrays. Undefined when there is nothing to
 * write. The work of a flush that is not PostgreSQL's, so that the writer can do it while
 * PostgreSQL commits the flush before; a RecordError for a record that cannot be written.
 */
export function flushParameters(
  shard: string,
  placed: readonly HeldEntry[],
  batches: readonly string[],
): string[] | undefined {
  if (placed.length === 0 && batches.length === 0) return undefined;
  return [shard, placesJson(placed), ...eventColumns(batches)];
}

/** Runs one flush's statement with parameters from flushParameters. */
export async function writeParameters(
  tx: Tx,
  parameters: string[] | undefined,
): Promise<WrittenRows> {
  if (parameters === undefined) return { placed: 0, states: 0, trades: 0 };
  const [row] = await tx.unsafe<{ placed: string; states: string; trades: string }[]>(
    FLUSH,
    parameters,
    { prepare: true },
  );
  return {
    placed: Number(row?.placed ?? 0),
    states: Number(row?.states ?? 0),
    trades: Number(row?.trades ?? 0),
  };
}

/** Writes order-stream entries (`placed`) and event-stream payloads (`batches`) in one statement. */
export async function writeAll(
  tx: Tx,
  shard: string,
  placed: readonly HeldEntry[],
  batches: readonly string[],
): Promise<WrittenRows> {
  return writeParameters(tx, flushParameters(shard, placed, batches));
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
    let batch: { orders: unknown[]; trades: unknown[] };
    try {
      batch = eventBatch(e.raw);
    } catch {
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
