// Which engine holds which symbol's book is decided by `shardOf` and SHARDS. Change either and a
// symbol moves to another engine: new orders on it would go to an empty book there while its
// resting orders stay on the old engine, matched against nothing and out of their cancels' reach
// (a cancel goes to the symbol's shard). So the layout is recorded in Redis, and every part checks
// it as it starts. The gateway decides where each order goes, so it (and `matchbox start`, before
// any part) adopts the layout: the same, nothing to do; another (or none recorded yet), the new
// one is recorded only when no order would be stranded:
//   - every shard with a queue (the new ones and the old ones alike) has dispatched and written
//     everything accepted, so PostgreSQL holds every order;
//   - PostgreSQL has no open order (PENDING, NEW, PARTIALLY_FILLED) on a symbol that would move.
// Otherwise the part refuses to start and says which symbols hold it back. Symbols that stay put
// keep their orders, so SHARDS can grow or shrink with books open, as long as the moved symbols'
// are empty (canceled or filled under the old layout). A dispatcher or a writer only follows: it
// refuses to start with a layout other than the one recorded (a part left with the old SHARDS
// would leave the new shards' orders unmatched or unwritten).
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Sql } from '../db/client.js';
import { OPEN_STATUSES } from '../db/orders.js';
import { seqOf } from '../writer/stream-ids.js';
import { shardKeys, shardLayout, shardOf } from './keys.js';
import { keyCount, lua } from './lua-scripts.js';
import { lastGeneratedSeq, writerBacklog } from './stream-info.js';

const RECORD = 'record-layout-1.lua';

/** The key holding the recorded layout (`<hash>/<shards>`). */
export const layoutKey = (prefix: string): string => `${prefix}:shard-layout`;

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

/** Shards with a queue in Redis: 0 … shards − 1, and past them as long as one has a sequence. */
async function shardsWithQueues(redis: Redis, prefix: string, shards: number): Promise<number[]> {
  const found: number[] = [];
  for (let n = 0; ; n++) {
    const exists = (await redis.exists(shardKeys(prefix, n).seq)) === 1;
    if (exists) found.push(n);
    else if (n >= shards) return found;
  }
}

async function backlogOf(redis: Redis, prefix: string, n: number): Promise<ShardBacklog> {
  const k = shardKeys(prefix, n);
  const [seq, last, orders, events] = await Promise.all([
    redis.get(k.seq),
    redis.xrevrange(k.events, '+', '-', 'COUNT', 1),
    writerBacklog(redis, k.orders),
    writerBacklog(redis, k.events),
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

/** Open orders in PostgreSQL on symbols whose shard differs under `shards`. */
async function moversIn(sql: Sql, shards: number): Promise<Mover[]> {
  const rows = await sql<{ symbol: string; shard: string; open: number }[]>`
    SELECT symbol, shard, count(*)::int AS open FROM orders
    WHERE status IN ${sql(OPEN_STATUSES)} GROUP BY symbol, shard ORDER BY symbol, shard`;
  return rows
    .map((r) => ({
      symbol: r.symbol,
      from: r.shard,
      to: `s${shardOf(r.symbol, shards)}`,
      open: r.open,
    }))
    .filter((m) => m.from !== m.to);
}

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
): Promise<LayoutCheck> {
  const now = shardLayout(shards);
  const key = layoutKey(prefix);
  const was = (await redis.get(key)) ?? undefined;
  if (was === now) return { was, now, changed: false };

  const queues = await shardsWithQueues(redis, prefix, shards);
  const busy = (await Promise.all(queues.map((n) => backlogOf(redis, prefix, n)))).filter(
    (b) => b.undispatched > 0 || b.unwritten > 0,
  );
  const from = was === undefined ? 'the layout before it was recorded' : was;
  if (busy.length > 0) {
    const what = busy
      .map((b) => `s${b.shard}: ${b.undispatched} to match, ${b.unwritten} to write`)
      .join('; ');
    throw new ShardLayoutError(
      `SHARDS=${shards} (${now}) differs from ${from}, and orders are still on their way (${what}). ` +
        'Start every part with the layout they were accepted under until the queues are empty, then change it.',
    );
  }
  const movers = await moversIn(sql, shards);
  if (movers.length > 0) {
    const what = movers
      .slice(0, 5)
      .map((m) => `${m.symbol} (${m.open} open on ${m.from}, would move to ${m.to})`)
      .join(', ');
    const more = movers.length > 5 ? ` and ${movers.length - 5} more` : '';
    throw new ShardLayoutError(
      `SHARDS=${shards} (${now}) differs from ${from} and would move symbols with open orders ` +
        `off their engine: ${what}${more}. Cancel those orders (or let them fill) with the layout ` +
        'they rest under, or keep it.',
    );
  }
  // Recorded only if no other part recorded another meanwhile.
  const set = await redis.eval(lua(RECORD), keyCount(RECORD) as number, key, was ?? '', now);
  if (set !== 1) {
    throw new ShardLayoutError(
      `another part recorded a shard layout while this one (SHARDS=${shards}, ${now}) was checking: ` +
        `every part must run with the same SHARDS (recorded now: ${String(await redis.get(key))})`,
    );
  }
  if (was === undefined) logger.info({ layout: now }, 'shard layout recorded');
  else logger.warn({ was, now }, 'shard layout changed: symbols moved between engines');
  return { was, now, changed: true };
}

/** Throws ShardLayoutError when a layout other than that of `shards` is recorded. */
export async function followShardLayout(
  redis: Redis,
  prefix: string,
  shards: number,
): Promise<void> {
  const now = shardLayout(shards);
  const was = await redis.get(layoutKey(prefix));
  if (was !== null && was !== now) {
    throw new ShardLayoutError(
      `SHARDS=${shards} (${now}) differs from the layout the gateways route by (${was}): ` +
        'every part must run with the same SHARDS',
    );
  }
}
