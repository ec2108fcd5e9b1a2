// What the bench reads behind the gateway, directly from the servers: the writer's backlog in
// Redis (the consumer group's pending entries plus those not yet delivered), whether the
// dispatcher has caught up, and what PostgreSQL holds. Unavailable (undefined) when the bench was
// pointed at a system whose servers it does not know.
import { Redis } from 'ioredis';
import { connect } from '../db/client.js';
import type { Sql } from '../db/client.js';
import { ShardPlacement, shardKeys } from '../queue/keys.js';
import type { ShardKeys } from '../queue/keys.js';
import { dispatchedThrough, streamInfo, undelivered, writerGroup } from '../queue/stream-info.js';
import type { Target } from './system-process.js';

export interface Backlog {
  /** Order-stream entries the writer has not acknowledged: the orders queued in Redis. */
  orders: number;
  /** Event-stream entries (dispatched batches) the writer has not acknowledged. */
  events: number;
  /** Commands accepted but not yet through the engine and written back by the dispatcher. */
  undispatched: number;
}

export class Probes {
  readonly redis: Redis | undefined;
  readonly sql: Sql | undefined;
  readonly keys: ShardKeys;
  /** The backlog when a quiesce last gave up, for the report. */
  lastStuck: Backlog | undefined;

  /** `placement`: where the system places the symbol (SHARDS and SHARD_PINS). */
  constructor(target: Target, symbol: string, placement = new ShardPlacement(1)) {
    this.keys = shardKeys(target.redisPrefix, placement.of(symbol));
    this.redis =
      target.redisUrl === undefined
        ? undefined
        : new Redis(target.redisUrl, { maxRetriesPerRequest: 2, lazyConnect: false });
    this.sql =
      target.databaseUrl === undefined ? undefined : connect(target.databaseUrl, { max: 2 });
  }

  async close(): Promise<void> {
    this.redis?.disconnect();
    await this.sql?.end({ timeout: 2 });
  }

  /** Entries of `stream` the writer group has not acknowledged (pending + never delivered). */
  private async unacked(redis: Redis, stream: string): Promise<number> {
    const g = await writerGroup(redis, stream).catch(() => null);
    if (g === null) return 0; // no stream yet
    if (g === undefined) return await redis.xlen(stream);
    const pending = Number(g.pending ?? 0);
    const left = undelivered(g, (await streamInfo(redis, stream))?.lastSeq ?? 0);
    if (left === 0 || typeof g.lag === 'number') return pending + left;
    // Redis cannot always tell the lag (after deletions): count what follows the group's position.
    const after = (await redis.xrange(
      stream,
      `(${String(g['last-delivered-id'])}`,
      '+',
      'COUNT',
      1_000_000,
    )) as unknown[];
    return pending + after.length;
  }

  async backlog(): Promise<Backlog | undefined> {
    const r = this.redis;
    if (r === undefined) return undefined;
    const [orders, events, seq, dispatched] = await Promise.all([
      this.unacked(r, this.keys.orders),
      this.unacked(r, this.keys.events),
      r.get(this.keys.seq),
      dispatchedThrough(r, this.keys.events),
    ]);
    return { orders, events, undispatched: Math.max(0, Number(seq ?? 0) - dispatched) };
  }

  /** Orders of `userId` in PostgreSQL, and how many of them are FILLED there. */
  async persisted(userId: string): Promise<{ orders: number; filled: number } | undefined> {
    if (this.sql === undefined) return undefined;
    const [row] = await this.sql<{ n: number; filled: number }[]>`
      SELECT count(*)::int AS n, count(*) FILTER (WHERE status = 'FILLED')::int AS filled
      FROM orders WHERE user_id = ${userId}`;
    return { orders: row?.n ?? 0, filled: row?.filled ?? 0 };
  }

  /** Rows inserted or updated in orders and trades so far (PostgreSQL's statistics counters). */
  async rowsWritten(): Promise<number | undefined> {
    if (this.sql === undefined) return undefined;
    const [row] = await this.sql<{ n: string | null }[]>`
      SELECT sum(n_tup_ins + n_tup_upd)::text AS n FROM pg_stat_user_tables
      WHERE relname IN ('orders', 'trades')`;
    return Number(row?.n ?? 0);
  }

  /**
   * Waits until everything accepted is dispatched and written (or `timeoutMs` passes); resolves
   * to whether it got there. Without Redis it can only wait a little.
   */
  async quiesce(timeoutMs: number): Promise<boolean> {
    if (this.redis === undefined) {
      await new Promise((r) => setTimeout(r, 1500));
      return false;
    }
    return this.until((b) => b.orders === 0 && b.events === 0 && b.undispatched === 0, timeoutMs);
  }

  /** Polls the backlog until `done` holds (true) or `timeoutMs` passes (false). */
  async until(done: (b: Backlog) => boolean, timeoutMs: number): Promise<boolean> {
    if (this.redis === undefined) return false;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const b = await this.backlog();
      if (b !== undefined && done(b)) return true;
      if (Date.now() > deadline) {
        this.lastStuck = b;
        return false;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * Waits until PostgreSQL has published every backend's counters. A backend publishes at the end
   * of a transaction at most once a second; what a transaction less than a second after the last
   * publication counted waits, once the backend is idle, for its idle timer: 10 s in PostgreSQL
   * 15 (PGSTAT_IDLE_INTERVAL; measured here: 10.07 s). The writer's last flush of a drain is
   * often such a transaction: read 1.5 s after it, a drain showed fewer rows than orders (CI).
   */
  async statsSettled(): Promise<void> {
    await new Promise((r) => setTimeout(r, 10_500));
  }
}
