// A writer under test against real Redis and PostgreSQL: fresh keys and database, helpers to put
// records into the streams by hand, and the writer's log captured for assertions.
import { pino } from 'pino';
import type { Redis } from 'ioredis';
import type { Sql } from '../../src/db/client.js';
import { getOrder } from '../../src/db/orders.js';
import type { NewUser } from '../../src/db/users.js';
import { WRITER_GROUP, shardKeys } from '../../src/queue/keys.js';
import type { ShardKeys } from '../../src/queue/keys.js';
import type { CommandRecord, EventBatch, OrderState } from '../../src/queue/records.js';
import { BatchWriter } from '../../src/writer/batch-writer.js';
import type { BatchWriterOptions } from '../../src/writer/batch-writer.js';
import { arrange, orderState } from '../db/fixtures.js';
import { freshDatabase, freshRedis } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export interface Harness {
  db: TestDatabase;
  redis: Redis;
  keys: ShardKeys;
  alice: NewUser;
  bob: NewUser;
  logs: LogLine[];
  writer(options?: Partial<BatchWriterOptions>): BatchWriter;
  /** XADD a PLACE command at `0-<seq>`; its `order.seq` is 0 as the gateway writes it. */
  place(seq: number, order: OrderState): Promise<void>;
  /** PLACEs of `count` new orders of alice at `0-1` to `0-<count>`, in one pipeline: the orders. */
  placeMany(count: number): Promise<OrderState[]>;
  /** XADD an event batch at `0-<last_seq>`, naming the orders it closes as the dispatcher does. */
  events(batch: EventBatch, closed?: string[]): Promise<void>;
  /** Entries delivered to the writer group and not acknowledged. */
  pending(stream: string): Promise<number>;
  close(): Promise<void>;
}

/** A PLACE entry's payload as the submit script writes it: the order's seq is 0. */
function placeRecord(order: OrderState): string {
  const record: CommandRecord = { k: 'place', order: { ...order, seq: 0 } };
  return JSON.stringify(record);
}

/** A harness on the test run's Redis, or on the one at `redisUrl`. */
export async function harness(redisUrl?: string): Promise<Harness> {
  const db = await freshDatabase();
  const r = await freshRedis(redisUrl);
  const keys = shardKeys(r.prefix, 0);
  const { alice, bob } = await arrange(db.sql);
  const logs: LogLine[] = [];
  const logger = pino(
    { level: 'info' },
    {
      write(line: string) {
        logs.push(JSON.parse(line) as LogLine);
      },
    },
  );
  const writers: BatchWriter[] = [];
  return {
    db,
    redis: r.redis,
    keys,
    alice,
    bob,
    logs,
    writer(options = {}) {
      const w = new BatchWriter({
        redis: r.redis,
        sql: db.sql,
        keys: [keys],
        flushMs: 20,
        batchSize: 1000,
        statusTtlS: 600,
        logger,
        ...options,
      });
      writers.push(w);
      return w;
    },
    async place(seq, order) {
      await r.redis.xadd(keys.orders, `0-${seq}`, 'c', placeRecord(order));
    },
    async placeMany(count) {
      const pipeline = r.redis.pipeline();
      const orders: OrderState[] = [];
      for (let seq = 1; seq <= count; seq++) {
        const o = { ...orderState(alice), seq };
        orders.push(o);
        pipeline.xadd(keys.orders, `0-${seq}`, 'c', placeRecord(o));
      }
      await pipeline.exec();
      return orders;
    },
    async events(batch, closed = []) {
      const id = `0-${batch.last_seq}`;
      const b = JSON.stringify(batch);
      const x = closed.length === 0 ? [] : ['x', closed.join(' ')];
      await r.redis.xadd(keys.events, id, 'b', b, ...x);
    },
    async pending(stream) {
      const [count] = (await r.redis.xpending(stream, WRITER_GROUP)) as [number];
      return Number(count);
    },
    async close() {
      for (const w of writers) if (!w.stopping) await w.stop();
      await r.cleanup();
      await db.drop();
    },
  };
}

/** Polls until `check` returns true; fails after `ms`. */
export async function waitFor(check: () => Promise<boolean> | boolean, ms = 5_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Takes an exclusive lock on `orders` in a transaction of its own, held until `release()`
 * resolves: a flush waits on it meanwhile.
 */
export async function lockOrders(sql: Sql): Promise<{ release(): Promise<void> }> {
  let release = (): void => undefined;
  const released = new Promise<void>((resolve) => (release = resolve));
  let locked = (): void => undefined;
  const isLocked = new Promise<void>((resolve) => (locked = resolve));
  const holding = sql.begin(async (tx) => {
    await tx`LOCK TABLE orders IN EXCLUSIVE MODE`;
    locked();
    await released;
  });
  await isLocked;
  return {
    async release() {
      release();
      await holding;
    },
  };
}

/** Every order row as OrderState, by id. */
export async function ordersById(sql: Sql): Promise<Map<string, OrderState>> {
  const ids = await sql<{ id: string }[]>`SELECT id FROM orders ORDER BY id`;
  const out = new Map<string, OrderState>();
  for (const { id } of ids) out.set(id, (await getOrder(sql, id)) as OrderState);
  return out;
}

/** Each row's physical version: unchanged xmin proves a statement did not even rewrite it. */
export async function rowVersions(sql: Sql): Promise<string[]> {
  const rows = await sql<{ v: string }[]>`
    SELECT 'o' || id || xmin::text AS v FROM orders
    UNION ALL SELECT 't' || id || xmin::text FROM trades ORDER BY 1`;
  return rows.map((r) => r.v);
}

/**
 * From now on, records every row PostgreSQL inserts into or updates in `orders` (operation and
 * status, in order): what was written, not only what is there in the end.
 */
export async function logOrderWrites(sql: Sql): Promise<() => Promise<string[]>> {
  await sql.unsafe(`
    CREATE TABLE order_writes (n serial, id uuid, op text, status text);
    CREATE FUNCTION log_order_write() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO order_writes (id, op, status) VALUES (NEW.id, TG_OP, NEW.status);
      RETURN NULL; END $$;
    CREATE TRIGGER log_order_write AFTER INSERT OR UPDATE ON orders
      FOR EACH ROW EXECUTE FUNCTION log_order_write();`);
  return async () =>
    (await sql<{ w: string }[]>`SELECT op || ' ' || status AS w FROM order_writes ORDER BY n`).map(
      (r) => r.w,
    );
}
