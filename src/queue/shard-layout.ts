// Which engine holds which symbol's book is decided by SHARD_PINS, else by `shardOf` and SHARDS
// (ShardPlacement in keys.ts). Change any of them and a symbol moves to another engine: its new
// orders go to an empty book there while its resting orders stay on the old one, matched against
// nothing. So the layout (the hash, the count and the pins) is recorded, and it fences every
// accept: the submit script queues an order only when the gateway routes by the layout Redis holds
// (src/queue/lua/submit-order-7.lua), so a gateway left with another SHARDS, or running while the
// layout changes, refuses orders (503) instead of splitting a book. PostgreSQL keeps the layout too
// (table shard_layout): when Redis has none (it came back empty, or the marker of a change whose
// part died expired), the key is put back from there, by the first gateway that finds it missing
// or the next part that starts; no submit records its own. Two copies that differ outside a change
// stop every part at start (recordedShardLayout).
//
// The gateway, which routes orders, adopts the layout as it starts (`matchbox start` does, before
// any part): the same, nothing to do; another, it changes in two steps, once PostgreSQL has no
// open order on a symbol that would move (asked first, so that a part that will be refused holds
// nothing back).
//   1. The key is set to a marker, `changing:<new>`: from then on no gateway accepts an order. It
//      expires after MARKER_MS, should its part die; the key is then put back from PostgreSQL.
//   2. It waits (up to DRAIN_MS) until every shard with a queue, the new ones and the old ones
//      alike, has matched and written everything accepted, so that PostgreSQL holds every order;
//      then asks PostgreSQL again. Refused: the key is put back and the part refuses to start,
//      saying why. Otherwise PostgreSQL takes the new layout under a marker just renewed, then
//      Redis (or PostgreSQL gives it back).
// Symbols that stay keep their books, so SHARDS can grow or shrink with books open, as long as
// the moved symbols' are empty (canceled or filled under the old layout). A part that finds a
// change under way waits for it to end. With no layout recorded anywhere (a deployment from
// before the record), nothing would drain its queues before it starts: the symbols of the PLACEs
// PostgreSQL may not have yet are read from the order streams instead of waiting.
//
// Dispatchers and writers only follow: they refuse to start with a layout other than the one
// recorded (one left with the old SHARDS would leave the new shards' orders unmatched or
// unwritten), and start during a change (the old ones must drain it). They check at start only.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { MAX_SHARDS } from '../config/config.js';
import type { Sql } from '../db/client.js';
import { OPEN_STATUSES } from '../db/orders.js';
import { seqOf } from '../writer/stream-ids.js';
import { LAYOUT_CHANGING, layoutKey, ShardPlacement, shardKeys, WRITER_GROUP } from './keys.js';
import type { ShardKeys } from './keys.js';
import type { CommandRecord } from './records.js';
import { aofWritten, runIdOf } from './aof.js';
import { restoreHalts } from './halts.js';
import { keyCount, lua } from './lua-scripts.js';
import { dispatchedThrough, writerBacklog, writerGroup } from './stream-info.js';

const RECORD = 'record-layout-1.lua';
const FORGET = 'forget-symbols-3.lua';
/** Most forgets looked at in a shard's backlog (one per listed symbol moved onto it, at most). */
const FORGET_SCAN = 10_000;
/** Forgets queued per call of the script (its arguments, and Redis's time in one call). */
const FORGET_CALL = 500;
/** The statuses of an order not final, as the status cache spells them. */
const OPEN = new Set<string>(OPEN_STATUSES);
/** How long a change holds new orders back for the queues to drain. */
const DRAIN_MS = 10_000;
/** A change's marker expires after this, should its part die mid-change. */
const MARKER_MS = 30_000;
/** How long a part waits for a change under way (another part's) to end. */
const WAIT_MS = MARKER_MS + 5_000;
/** Order-stream entries read at a time when looking for PLACEs not yet written. */
const SCAN_STEP = 5_000;

/** A layout change that would strand orders; the message says what to do. */
export class ShardLayoutError extends Error {
  override readonly name = 'ShardLayoutError';
}

/** A shard's queue that still holds work: accepted not yet matched, or not yet in PostgreSQL. */
interface ShardBacklog {
  shard: number;
  undispatched: number;
  unwritten: number;
}

/** An open order's symbol that the new layout would move off the shard its book is on. */
interface Mover {
  symbol: string;
  from: string;
  to: string;
  open: number;
}

export interface LayoutCheck {
  /** The layout recorded before, or undefined when none was. */
  was: string | undefined;
  now: string;
  changed: boolean;
}

/** Compare-and-set of the layout key ('' for none); true when set. */
async function cas(redis: Redis, key: string, from: string, to: string, ttlMs = 0) {
  return (await redis.eval(lua(RECORD), keyCount(RECORD) as number, key, from, to, ttlMs)) === 1;
}

/** Shards with a queue in Redis (a sequence counter), whatever their number up to SHARDS's bound. */
async function shardsWithQueues(redis: Redis, prefix: string): Promise<number[]> {
  const pipe = redis.pipeline();
  for (let n = 0; n < MAX_SHARDS; n++) pipe.exists(shardKeys(prefix, n).seq);
  const replies = (await pipe.exec()) ?? [];
  return replies.flatMap(([err, exists], n) => {
    if (err) throw err;
    return exists === 1 ? [n] : [];
  });
}

/** Whether an order-stream entry is a forget (see forgetMoved). */
const isForget = (fields: string[]): boolean =>
  (fields[fields.indexOf('c') + 1] ?? '').startsWith('{"k":"forget"');

/**
 * True when every order-stream entry of the shard not yet dispatched or not yet written is a
 * forget: a change that queued them and then failed leaves them where no dispatcher may ever run
 * (a shard of the layout it did not take). Run late, a forget drops only what it would have
 * dropped then (every later order on the shard comes after it), so they hold no change back.
 */
async function onlyForgets(
  redis: Redis,
  k: ShardKeys,
  dispatched: number,
  backlog: { undispatched: number; unwritten: number },
): Promise<boolean> {
  if (backlog.undispatched > FORGET_SCAN || backlog.unwritten > FORGET_SCAN) return false;
  // Each entry counted found, and a forget: a count with no entry behind it is work all the same.
  const forgets = (entries: [string, string[]][]) =>
    entries.filter(([, fields]) => isForget(fields)).length;
  const after = (from: string) => redis.xrange(k.orders, from, '+', 'COUNT', FORGET_SCAN + 1);
  if (forgets(await after(`(0-${dispatched}`)) !== backlog.undispatched) return false;
  let found = 0;
  for await (const fields of unwrittenEntries(redis, k.orders)) {
    if (!isForget(fields)) return false;
    found++;
  }
  return found === backlog.unwritten;
}

async function backlogOf(redis: Redis, prefix: string, n: number): Promise<ShardBacklog> {
  const k = shardKeys(prefix, n);
  const [seq, dispatched, orders, events] = await Promise.all([
    redis.get(k.seq),
    dispatchedThrough(redis, k.events),
    // A stream with no writer group is one the writer never read: all of it unwritten.
    writerBacklog(redis, k.orders, 'all'),
    writerBacklog(redis, k.events, 'all'),
  ]);
  const undispatched = Math.max(0, Number(seq ?? 0) - dispatched);
  const backlog = { undispatched, unwritten: orders };
  if (
    events === 0 &&
    undispatched + orders > 0 &&
    (await onlyForgets(redis, k, dispatched, backlog))
  ) {
    return { shard: n, undispatched: 0, unwritten: 0 };
  }
  return { shard: n, undispatched, unwritten: orders + events };
}

/** The shards still holding work, once none do or `ms` have passed. */
async function untilDrained(redis: Redis, prefix: string, ms: number): Promise<ShardBacklog[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const queues = await shardsWithQueues(redis, prefix);
    const busy = (await Promise.all(queues.map((n) => backlogOf(redis, prefix, n)))).filter(
      (b) => b.undispatched > 0 || b.unwritten > 0,
    );
    if (busy.length === 0 || Date.now() >= deadline) return busy;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Adds one open order of `symbol` on `from` that would move under `placement`. */
function count(
  movers: Map<string, Mover>,
  symbol: string,
  from: string,
  placement: ShardPlacement,
  n = 1,
) {
  const to = `s${placement.of(symbol)}`;
  if (to === from) return;
  const key = `${symbol} ${from}`;
  const m = movers.get(key) ?? { symbol, from, to, open: 0 };
  m.open += n;
  movers.set(key, m);
}

/**
 * Open orders in PostgreSQL on symbols whose shard differs under `placement`. A PENDING row counts
 * as Redis's status cache has it: without a status hash it is no order (an order not final always
 * has one), but a row a sync-mode gateway inserted before a submit it then did not make (refused,
 * or the gateway died); final there, its outcome is what PostgreSQL has not taken.
 */
async function moversIn(
  redis: Redis,
  sql: Sql,
  prefix: string,
  placement: ShardPlacement,
): Promise<Map<string, Mover>> {
  const movers = new Map<string, Mover>();
  const rows = await sql<{ symbol: string; shard: string; open: number }[]>`
    SELECT symbol, shard, count(*)::int AS open FROM orders
    WHERE status IN ('NEW', 'PARTIALLY_FILLED') GROUP BY symbol, shard ORDER BY symbol, shard`;
  for (const r of rows) count(movers, r.symbol, r.shard, placement, r.open);
  const pending = (
    await sql<{ id: string; symbol: string; shard: string }[]>`
      SELECT id, symbol, shard FROM orders WHERE status = 'PENDING'`
  ).filter((r) => r.shard !== `s${placement.of(r.symbol)}`);
  if (pending.length > 0) {
    const pipe = redis.pipeline();
    for (const r of pending) {
      pipe.hget(shardKeys(prefix, Number(r.shard.slice(1))).order(r.id), 's');
    }
    const held = (await pipe.exec()) ?? [];
    pending.forEach((r, i) => {
      const [err, state] = held[i] ?? [null, null];
      if (err) throw err;
      if (typeof state === 'string' && OPEN.has(state)) {
        count(movers, r.symbol, r.shard, placement);
      }
    });
  }
  return movers;
}

/**
 * The entries of a shard's order stream the writer has not written, in order: pending for it or
 * never delivered to it (all of them where it has no group).
 */
async function* unwrittenEntries(redis: Redis, stream: string): AsyncGenerator<string[]> {
  const group = await writerGroup(redis, stream).catch(() => undefined);
  const pending = new Set<string>();
  let delivered = -1;
  let from = '-';
  if (group !== undefined) {
    delivered = seqOf(String(group['last-delivered-id']));
    const n = Number(group.pending);
    if (n > 0) {
      const rows = (await redis.xpending(stream, WRITER_GROUP, '-', '+', n)) as [string][];
      for (const [id] of rows) pending.add(id);
    }
    from = pending.size > 0 ? ([...pending][0] as string) : `(0-${delivered}`;
  }
  for (;;) {
    const entries = await redis.xrange(stream, from, '+', 'COUNT', SCAN_STEP);
    for (const [id, fields] of entries) {
      if (seqOf(id) > delivered || pending.has(id)) yield fields;
    }
    const last = entries[entries.length - 1];
    if (last === undefined || entries.length < SCAN_STEP) return;
    from = `(${last[0]}`;
  }
}

/**
 * Symbols of the PLACEs in a shard's order stream that PostgreSQL may not have (the writer has not
 * written them), with how many of each.
 */
async function unwrittenPlaces(redis: Redis, stream: string): Promise<Map<string, number>> {
  const symbols = new Map<string, number>();
  for await (const fields of unwrittenEntries(redis, stream)) {
    const at = fields.indexOf('c');
    let record: CommandRecord | undefined;
    try {
      record = JSON.parse(fields[at + 1] ?? '') as CommandRecord;
    } catch {
      // Not a command (the writer sets such an entry aside): no order.
    }
    if (at % 2 === 0 && record?.k === 'place') {
      const symbol = record.order.symbol;
      symbols.set(symbol, (symbols.get(symbol) ?? 0) + 1);
    }
  }
  return symbols;
}

function moversRefusal(movers: Map<string, Mover>): string | undefined {
  if (movers.size === 0) return undefined;
  const list = [...movers.values()];
  const what = list
    .slice(0, 5)
    .map((m) => `${m.symbol} (${m.open} open on ${m.from}, would move to ${m.to})`)
    .join(', ');
  const more = list.length > 5 ? ` and ${list.length - 5} more` : '';
  return (
    `it would move symbols with open orders off the engine that holds their book: ${what}${more}. ` +
    'Cancel those orders (or let them fill) with the SHARDS (and SHARD_PINS) they were placed under first'
  );
}

/**
 * Why a change is refused under its marker. With a layout recorded, the queues are given their
 * time to drain, so that PostgreSQL holds every order. With none (a deployment from before the
 * record), nothing would drain them before this part starts: the PLACEs PostgreSQL may not have
 * yet are read from the streams instead.
 */
async function refusal(
  redis: Redis,
  sql: Sql,
  prefix: string,
  placement: ShardPlacement,
  drainMs: number | undefined,
): Promise<string | undefined> {
  if (drainMs !== undefined) {
    const busy = await untilDrained(redis, prefix, drainMs);
    if (busy.length > 0) {
      const what = busy
        .map((b) => `s${b.shard}: ${b.undispatched} to match, ${b.unwritten} to write`)
        .join('; ');
      return (
        `orders accepted before are still on their way (${what}). Run every part with the SHARDS ` +
        'they were accepted under until they are matched and written, then change it'
      );
    }
  }
  // The streams before PostgreSQL: a PLACE the writer commits in between is then seen in one
  // of them at least, never in neither.
  const unwrittenMovers = new Map<string, Mover>();
  if (drainMs === undefined) {
    for (const n of await shardsWithQueues(redis, prefix)) {
      const places = await unwrittenPlaces(redis, shardKeys(prefix, n).orders);
      for (const [symbol, k] of places) count(unwrittenMovers, symbol, `s${n}`, placement, k);
    }
  }
  const movers = await moversIn(redis, sql, prefix, placement);
  for (const m of unwrittenMovers.values()) count(movers, m.symbol, m.from, placement, m.open);
  return moversRefusal(movers);
}

/**
 * Queues a forget on each listed symbol's new shard when the change moves it there, so that the
 * engine drops what it still holds of the symbol from an earlier stay: an empty book and, with
 * it, the last trade price that stop orders would otherwise be triggered by (a price from before
 * the symbol left). Under the change's marker, with every queue drained: before any order under
 * the new layout. Nothing is queued on the shards the symbols leave: the stale state waits there,
 * harmless, until a symbol comes back, and is forgotten then. With no layout recorded before,
 * where symbols were is not known: none.
 */
async function forgetMoved(
  redis: Redis,
  sql: Sql,
  prefix: string,
  was: string | undefined,
  placement: ShardPlacement,
  marker: string,
): Promise<number> {
  const before = was === undefined ? undefined : ShardPlacement.parse(was);
  if (before === undefined) return 0;
  const rows = await sql<{ symbol: string }[]>`SELECT symbol FROM instruments ORDER BY symbol`;
  const onto = new Map<number, string[]>();
  for (const { symbol } of rows) {
    const to = placement.of(symbol);
    if (before.of(symbol) === to) continue;
    const list = onto.get(to);
    if (list === undefined) onto.set(to, [symbol]);
    else list.push(symbol);
  }
  const at = new Date().toISOString();
  let queued = 0;
  for (const [shard, all] of onto) {
    const k = shardKeys(prefix, shard);
    for (let i = 0; i < all.length; i += FORGET_CALL) {
      const n = await queueForgets(redis, k, prefix, marker, all.slice(i, i + FORGET_CALL), at);
      if (n < 0) return -1;
      queued += n;
    }
  }
  return queued;
}

/** One call of the script: the forgets of `symbols` on one shard; -1 when the marker was gone. */
async function queueForgets(
  redis: Redis,
  k: ShardKeys,
  prefix: string,
  marker: string,
  symbols: string[],
  at: string,
): Promise<number> {
  const records = symbols.map((symbol) =>
    JSON.stringify({ k: 'forget', symbol, requested_at: at } satisfies CommandRecord),
  );
  const n = Number(
    await redis.eval(
      lua(FORGET),
      keyCount(FORGET) as number,
      k.seq,
      k.orders,
      layoutKey(prefix),
      marker,
      ...records,
    ),
  );
  return n === records.length ? n : -1;
}

/** The layout PostgreSQL keeps, or undefined when none is. */
export async function storedShardLayout(sql: Sql): Promise<string | undefined> {
  const [row] = await sql<{ layout: string }[]>`SELECT layout FROM shard_layout`;
  return row?.layout;
}

async function storeShardLayout(sql: Sql, layout: string): Promise<void> {
  await sql`
    INSERT INTO shard_layout (layout) VALUES (${layout})
    ON CONFLICT (one) DO UPDATE SET layout = EXCLUDED.layout, changed_at = now()`;
}

/**
 * The recorded layout. Redis's copy is put back from PostgreSQL's when it has none (it came back
 * empty; a change's marker expired). Two copies that differ (outside a change) are not settled
 * here: one was restored from an older backup, or a part points at another database, and which
 * layout the books were placed under is the operator's to say. Undefined: none anywhere (a
 * deployment from before the record).
 */
export async function recordedShardLayout(
  redis: Redis,
  sql: Sql,
  prefix: string,
): Promise<string | undefined> {
  const key = layoutKey(prefix);
  let [held, stored] = await Promise.all([redis.get(key), storedShardLayout(sql)]);
  if (
    held !== null &&
    !held.startsWith(LAYOUT_CHANGING) &&
    stored !== undefined &&
    held !== stored
  ) {
    // Read again in the order a change writes them (PostgreSQL first): one that ended between
    // the two reads above is then seen whole.
    stored = await storedShardLayout(sql);
    held = await redis.get(key);
  }
  if (held !== null) {
    if (!held.startsWith(LAYOUT_CHANGING) && stored !== undefined && held !== stored) {
      throw new ShardLayoutError(
        `Redis records the shard layout ${held} (${key}) and PostgreSQL ${stored} (table ` +
          'shard_layout): one was restored from an older copy, or a part points elsewhere. Set ' +
          'both to the layout the open orders were placed under, then start again.',
      );
    }
    return held;
  }
  if (stored === undefined) return undefined;
  // The users whose trading is halted first: the layout lets orders in.
  await restoreHalts(redis, sql, prefix);
  await cas(redis, key, '', stored);
  return (await redis.get(key)) ?? undefined;
}

/**
 * After PostgreSQL took `now` and the marker had expired: true when Redis has `now` (a part put it
 * back from PostgreSQL meanwhile: the change stands; nothing could be accepted under `was` with no
 * key). Otherwise Redis takes `was` back first, then PostgreSQL, so the two never differ for long;
 * false.
 */
async function settleAfterExpiry(
  redis: Redis,
  sql: Sql,
  key: string,
  was: string | undefined,
  now: string,
): Promise<boolean> {
  for (;;) {
    const held = await redis.get(key);
    if (held === now) return true;
    if (held === null && was !== undefined && !(await cas(redis, key, '', was))) continue;
    if (was === undefined) await sql`DELETE FROM shard_layout WHERE layout = ${now}`;
    else {
      await sql`UPDATE shard_layout SET layout = ${was}, changed_at = now() WHERE layout = ${now}`;
    }
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Checks the recorded shard layout against `placement` and records it when it may change (see
 * the top of this file). Throws ShardLayoutError when it may not.
 */
export async function adoptShardLayout(
  redis: Redis,
  sql: Sql,
  prefix: string,
  placement: ShardPlacement,
  logger: Pick<Logger, 'info' | 'warn'>,
  drainMs = DRAIN_MS,
): Promise<LayoutCheck> {
  const now = placement.layout;
  const key = layoutKey(prefix);
  const waitUntil = Date.now() + WAIT_MS;
  for (;;) {
    const was = await recordedShardLayout(redis, sql, prefix);
    if (was === now) {
      // Redis had it; PostgreSQL too, unless it is a deployment from before PostgreSQL kept it
      // (or another part recorded another layout there since: left to it).
      await sql`INSERT INTO shard_layout (layout) VALUES (${now}) ON CONFLICT (one) DO NOTHING`;
      return { was, now, changed: false };
    }
    const refuse = (why: string) =>
      new ShardLayoutError(
        `${placement.settings} (${now}) differs from ${was ?? 'the layout before one was recorded'}: ${why}.`,
      );
    if (was?.startsWith(LAYOUT_CHANGING)) {
      if (Date.now() > waitUntil) {
        throw refuse(`another part is changing it to ${was.slice(LAYOUT_CHANGING.length)}`);
      }
      await sleep(100);
      continue;
    }
    // Asked before anything is held back: a part that will be refused stops no order.
    const first = moversRefusal(await moversIn(redis, sql, prefix, placement));
    if (first !== undefined) throw refuse(first);
    const marker = `${LAYOUT_CHANGING}${now}`;
    const runId = await runIdOf(redis);
    // Lost to another part: look again.
    if (!(await cas(redis, key, was ?? '', marker, MARKER_MS))) continue;
    let why: string | undefined;
    try {
      why = await refusal(redis, sql, prefix, placement, was === undefined ? undefined : drainMs);
    } catch (err) {
      await cas(redis, key, marker, was ?? '');
      throw err;
    }
    if (why !== undefined) {
      await cas(redis, key, marker, was ?? '');
      throw refuse(why);
    }
    // Harmless should the change not be taken after all: a symbol is forgotten only on a shard
    // the old layout does not place it on, and only a book with no order in it; left there
    // undispatched, forgets hold no later change back (onlyForgets).
    let forgotten: number;
    try {
      forgotten = await forgetMoved(redis, sql, prefix, was, placement, marker);
    } catch (err) {
      await cas(redis, key, marker, was ?? '');
      throw err;
    }
    // PostgreSQL takes the new layout only under a marker renewed just before and in Redis's AOF
    // (a Redis restarted then comes back with the marker, which expires, and the key is put back
    // from PostgreSQL: the new layout), and gives it back if Redis does not take it after.
    const outlasted = refuse(
      `the change outlasted its marker (${MARKER_MS / 1000} s); start again`,
    );
    if (forgotten < 0 || !(await cas(redis, key, marker, marker, MARKER_MS))) throw outlasted;
    await aofWritten(redis, runId);
    // Failing here, the marker is left to expire: whether PostgreSQL took the layout is unknown,
    // and the key comes back from whatever it holds.
    await storeShardLayout(sql, now);
    if (
      !(await cas(redis, key, marker, now)) &&
      !(await settleAfterExpiry(redis, sql, key, was, now))
    ) {
      throw outlasted;
    }
    if (was === undefined) logger.info({ layout: now }, 'shard layout recorded');
    else {
      logger.warn({ was, now, forgotten }, 'shard layout changed: symbols moved between engines');
    }
    return { was, now, changed: true };
  }
}

/** Throws ShardLayoutError when a layout other than that of `placement` is recorded. */
export async function followShardLayout(
  redis: Redis,
  sql: Sql,
  prefix: string,
  placement: ShardPlacement,
): Promise<void> {
  const now = placement.layout;
  const was = await recordedShardLayout(redis, sql, prefix);
  if (was !== undefined && was !== now && !was.startsWith(LAYOUT_CHANGING)) {
    throw new ShardLayoutError(
      `${placement.settings} (${now}) differs from the layout the gateways route by (${was}): ` +
        'every part must run with the same SHARDS and SHARD_PINS',
    );
  }
}
