// Which engine holds which symbol's book is decided by `shardOf` and SHARDS. Change either and a
// symbol moves to another engine: its new orders go to an empty book there while its resting
// orders stay on the old one, matched against nothing. So the layout (the hash and the count) is
// recorded, and it fences every accept: the submit script queues an order only when the gateway
// routes by the layout Redis holds (src/queue/lua/submit-order-6.lua), so a gateway left with
// another SHARDS, or running while the layout changes, refuses orders (503) instead of splitting a
// book. PostgreSQL keeps the layout too (table shard_layout): when Redis has none (it came back
// empty, or the marker of a change whose part died expired), the key is put back from there, by
// the first gateway that finds it missing or the next part that starts; no submit records its own.
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
//      saying why. Otherwise PostgreSQL, then Redis, record the new layout.
// Symbols that stay keep their books, so SHARDS can grow or shrink with books open, as long as
// the moved symbols' are empty (canceled or filled under the old layout). A part that finds a
// change under way waits for it to end. With no layout recorded anywhere (a deployment from
// before the record) only PostgreSQL is asked: nothing would drain its queues before it starts.
//
// Dispatchers and writers only follow: they refuse to start with a layout other than the one
// recorded (one left with the old SHARDS would leave the new shards' orders unmatched or
// unwritten), and start during a change (the old ones must drain it). They check at start only.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Sql } from '../db/client.js';
import { OPEN_STATUSES } from '../db/orders.js';
import { seqOf } from '../writer/stream-ids.js';
import { layoutKey, shardKeys, shardLayout, shardOf } from './keys.js';
import { keyCount, lua } from './lua-scripts.js';
import { lastGeneratedSeq, streamInfo, undelivered, writerGroup } from './stream-info.js';

const RECORD = 'record-layout-1.lua';
const CHANGING = 'changing:';
/** How long a change holds new orders back for the queues to drain. */
const DRAIN_MS = 10_000;
/** A change's marker expires after this, should its part die mid-change. */
const MARKER_MS = 30_000;
/** How long a part waits for a change under way (another part's) to end. */
const WAIT_MS = MARKER_MS + 5_000;
/** SHARDS's upper bound (config.ts): every shard that may have a queue is looked at. */
const MAX_SHARDS = 256;

/** A layout change that would strand orders; the message says what to do. */
export class ShardLayoutError extends Error {
  override readonly name = 'ShardLayoutError';
}

/** A shard's queue that still holds work: accepted not yet matched, or not yet in PostgreSQL. */
export interface ShardBacklog {
  shard: number;
  undispatched: number;
  unwritten: number;
}

/** An open order's symbol that the new layout would move off the shard its book is on. */
export interface Mover {
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

/** Shards with a queue in Redis (a sequence counter), whatever their number. */
async function shardsWithQueues(redis: Redis, prefix: string): Promise<number[]> {
  const pipe = redis.pipeline();
  for (let n = 0; n < MAX_SHARDS; n++) pipe.exists(shardKeys(prefix, n).seq);
  const replies = (await pipe.exec()) ?? [];
  return replies.flatMap(([err, exists], n) => {
    if (err) throw err;
    return exists === 1 ? [n] : [];
  });
}

/** Entries of a stream the writer has not committed; all of them when it has no group there. */
async function unwritten(redis: Redis, stream: string): Promise<number> {
  const [group, info] = await Promise.all([
    writerGroup(redis, stream).catch(() => undefined),
    streamInfo(redis, stream),
  ]);
  if (info === undefined) return 0;
  if (group === undefined) return info.length;
  return Number(group.pending) + undelivered(group, info.lastSeq);
}

async function backlogOf(redis: Redis, prefix: string, n: number): Promise<ShardBacklog> {
  const k = shardKeys(prefix, n);
  const [seq, last, orders, events] = await Promise.all([
    redis.get(k.seq),
    redis.xrevrange(k.events, '+', '-', 'COUNT', 1),
    unwritten(redis, k.orders),
    unwritten(redis, k.events),
  ]);
  // The event stream's last id is the last sequence dispatched; the writer trims the stream, so
  // an empty one still knows it (XINFO).
  const dispatched =
    last.length > 0
      ? seqOf((last[0] as [string, string[]])[0])
      : await lastGeneratedSeq(redis, k.events);
  return {
    shard: n,
    undispatched: Math.max(0, Number(seq ?? 0) - dispatched),
    unwritten: orders + events,
  };
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

/**
 * Open orders in PostgreSQL on symbols whose shard differs under `shards`. Once the queues are
 * drained, a PENDING row is no order: the writer has written every queued order's outcome, so it
 * is a row a sync-mode gateway inserted before a submit it then did not make (refused, or the
 * gateway died); it is left out.
 */
async function moversIn(sql: Sql, shards: number, drained: boolean): Promise<Mover[]> {
  const statuses = drained ? OPEN_STATUSES.filter((st) => st !== 'PENDING') : OPEN_STATUSES;
  const rows = await sql<{ symbol: string; shard: string; open: number }[]>`
    SELECT symbol, shard, count(*)::int AS open FROM orders
    WHERE status IN ${sql(statuses)} GROUP BY symbol, shard ORDER BY symbol, shard`;
  return rows
    .map((r) => ({ ...r, to: `s${shardOf(r.symbol, shards)}` }))
    .filter((m) => m.shard !== m.to)
    .map((m) => ({ symbol: m.symbol, from: m.shard, to: m.to, open: m.open }));
}

function moversRefusal(movers: Mover[]): string | undefined {
  if (movers.length === 0) return undefined;
  const what = movers
    .slice(0, 5)
    .map((m) => `${m.symbol} (${m.open} open on ${m.from}, would move to ${m.to})`)
    .join(', ');
  const more = movers.length > 5 ? ` and ${movers.length - 5} more` : '';
  return (
    `it would move symbols with open orders off the engine that holds their book: ${what}${more}. ` +
    'Cancel those orders (or let them fill) with the SHARDS they were placed under first'
  );
}

/** Why a change is refused under its marker, once the queues have been given their time. */
async function refusal(
  redis: Redis,
  sql: Sql,
  prefix: string,
  shards: number,
  drainMs: number | undefined,
): Promise<string | undefined> {
  const busy = drainMs === undefined ? [] : await untilDrained(redis, prefix, drainMs);
  if (busy.length > 0) {
    const what = busy
      .map((b) => `s${b.shard}: ${b.undispatched} to match, ${b.unwritten} to write`)
      .join('; ');
    return (
      `orders accepted before are still on their way (${what}). Run every part with the SHARDS ` +
      'they were accepted under until they are matched and written, then change it'
    );
  }
  return moversRefusal(await moversIn(sql, shards, drainMs !== undefined));
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
 * The recorded layout, Redis's copy made to agree with PostgreSQL's: put back when Redis has none
 * or another (a Redis restored from an older file; a change whose part died after PostgreSQL took
 * it), left alone while a change is under way. Undefined: none anywhere (a deployment from before
 * the record).
 */
export async function recordedShardLayout(
  redis: Redis,
  sql: Sql,
  prefix: string,
): Promise<string | undefined> {
  const key = layoutKey(prefix);
  const [held, stored] = await Promise.all([redis.get(key), storedShardLayout(sql)]);
  if (held?.startsWith(CHANGING) || stored === undefined || held === stored) {
    return held ?? undefined;
  }
  await cas(redis, key, held ?? '', stored);
  return (await redis.get(key)) ?? undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Checks the recorded shard layout against `shards` and records it when it may change (see the
 * top of this file). Throws ShardLayoutError when it may not.
 */
export async function adoptShardLayout(
  redis: Redis,
  sql: Sql,
  prefix: string,
  shards: number,
  logger: Pick<Logger, 'info' | 'warn'>,
  drainMs = DRAIN_MS,
): Promise<LayoutCheck> {
  const now = shardLayout(shards);
  const key = layoutKey(prefix);
  const waitUntil = Date.now() + WAIT_MS;
  for (;;) {
    const was = await recordedShardLayout(redis, sql, prefix);
    if (was === now) {
      // Redis had it; PostgreSQL too, unless it is a deployment from before PostgreSQL kept it.
      if ((await storedShardLayout(sql)) !== now) await storeShardLayout(sql, now);
      return { was, now, changed: false };
    }
    const refuse = (why: string) =>
      new ShardLayoutError(
        `SHARDS=${shards} (${now}) differs from ${was ?? 'the layout before one was recorded'}: ${why}.`,
      );
    if (was?.startsWith(CHANGING)) {
      if (Date.now() > waitUntil) {
        throw refuse(`another part is changing it to ${was.slice(CHANGING.length)}`);
      }
      await sleep(100);
      continue;
    }
    // Asked before anything is held back: a part that will be refused stops no order. (PENDING
    // rows are left out as under the marker, where the queues will have drained: there the
    // question is asked again.)
    const first = moversRefusal(await moversIn(sql, shards, was !== undefined));
    if (first !== undefined) throw refuse(first);
    const marker = `${CHANGING}${now}`;
    // Lost to another part: look again.
    if (!(await cas(redis, key, was ?? '', marker, MARKER_MS))) continue;
    let why: string | undefined;
    try {
      why = await refusal(redis, sql, prefix, shards, was === undefined ? undefined : drainMs);
      if (why === undefined) await storeShardLayout(sql, now);
    } catch (err) {
      await cas(redis, key, marker, was ?? '');
      throw err;
    }
    if (why !== undefined) {
      await cas(redis, key, marker, was ?? '');
      throw refuse(why);
    }
    // The marker may have expired, and the key been put back from PostgreSQL: the new layout.
    if (!(await cas(redis, key, marker, now)) && (await redis.get(key)) !== now) {
      throw refuse(
        `the change outlasted its marker (${MARKER_MS / 1000} s); start this part again`,
      );
    }
    if (was === undefined) logger.info({ layout: now }, 'shard layout recorded');
    else logger.warn({ was, now }, 'shard layout changed: symbols moved between engines');
    return { was, now, changed: true };
  }
}

/** Throws ShardLayoutError when a layout other than that of `shards` is recorded. */
export async function followShardLayout(
  redis: Redis,
  sql: Sql,
  prefix: string,
  shards: number,
): Promise<void> {
  const now = shardLayout(shards);
  const was = await recordedShardLayout(redis, sql, prefix);
  if (was !== undefined && was !== now && !was.startsWith(CHANGING)) {
    throw new ShardLayoutError(
      `SHARDS=${shards} (${now}) differs from the layout the gateways route by (${was}): ` +
        'every part must run with the same SHARDS',
    );
  }
}
