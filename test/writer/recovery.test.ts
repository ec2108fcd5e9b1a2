import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { connect } from '../../src/db/client.js';
import { WRITER_GROUP } from '../../src/queue/keys.js';
import { orderState } from '../db/fixtures.js';
import { databaseUrl } from '../support/services.js';
import { harness, ordersById, waitFor } from './harness.js';
import type { Harness } from './harness.js';

/**
 * Switches the harness's database off and on: it refuses new connections and every open one is
 * cut (a server that is down, as far as the writer can tell), then takes them again. `end()`
 * switches it on and closes the admin connection.
 */
function databaseSwitch(h: Harness) {
  const name = new URL(h.db.url).pathname.slice(1);
  const admin = connect(databaseUrl(), { max: 1 });
  const up = async () => {
    await admin.unsafe(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
  };
  return {
    async down() {
      await admin.unsafe(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
      await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${name}`;
    },
    up,
    async end() {
      await up();
      await admin.end();
    },
  };
}

describe('batch writer: outages and trimming', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness();
  });
  afterEach(async () => {
    await h.close();
  });

  it('acks nothing while PostgreSQL is unreachable, then writes it all once it is back', async () => {
    const w = h.writer({ flushMs: 20 });
    await w.start();
    const o1 = orderState(h.alice);
    await h.place(1, o1);
    await waitFor(() => w.stats.entriesWritten === 1);

    // Down as far as the writer can tell, and back without a race.
    const db = databaseSwitch(h);
    try {
      await db.down();
      const o2 = orderState(h.bob);
      const o3 = orderState(h.bob);
      await h.place(2, o2);
      await h.place(3, o3);
      const v1 = { ...o1, seq: 1, version: 1, status: 'NEW' as const };
      await h.events({ first_seq: 1, last_seq: 1, orders: [v1], trades: [] });
      await waitFor(() => w.stats.failedFlushes >= 2);
      assert.equal(w.stats.entriesWritten, 1);
      assert.equal(await h.pending(h.keys.orders), 2, 'delivered, not acknowledged');
      assert.equal(await h.pending(h.keys.events), 1);
      assert.ok(
        h.logs.some((l) => l.level === 40 && l.entries === 3),
        'warned with the count',
      );

      await db.up();
      await waitFor(() => w.stats.entriesWritten === 4, 15_000);
      assert.equal(await h.pending(h.keys.orders), 0);
      assert.equal(await h.pending(h.keys.events), 0);
      const rows = await ordersById(h.db.sql);
      assert.deepEqual(rows.get(o1.id), v1);
      assert.deepEqual(rows.get(o2.id), { ...o2, seq: 2 });
      assert.deepEqual(rows.get(o3.id), { ...o3, seq: 3 });
    } finally {
      await db.end();
      await w.stop();
    }
  });

  it('outlives its connections cut in the middle of its transactions, and writes every record once', async () => {
    // PostgreSQL ends the writer's backends (pg_terminate_backend: an administrator, a failover,
    // a crashed backend) again and again while it flushes, so that some end between the
    // statements of a transaction. The client must turn each into a failed flush, which the
    // writer retries. postgres.js 3.4.9 threw from a timer there instead, an exception nothing
    // can catch, which ended the writer's process (and here, the test run).
    const count = 20_000;
    await h.placeMany(count);
    const name = new URL(h.db.url).pathname.slice(1);
    const admin = connect(databaseUrl(), { max: 1 });
    const w = h.writer({ flushMs: 5, batchSize: 100 });
    try {
      await w.start();
      const until = Date.now() + 15_000;
      const cutting = () =>
        w.stats.failedFlushes < 8 && w.stats.entriesWritten < count && Date.now() < until;
      while (cutting()) {
        // OFFSET 0 keeps the filter first: PostgreSQL may otherwise call pg_terminate_backend
        // before the test `pid <> pg_backend_pid()`, and end the admin's own connection.
        await admin`
          SELECT pg_terminate_backend(pid) FROM (
            SELECT pid FROM pg_stat_activity
            WHERE datname = ${name} AND pid <> pg_backend_pid() OFFSET 0) AS theirs`;
        // Long enough between cuts for the writer to reconnect and flush again.
        await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 180));
      }
      assert.ok(w.stats.failedFlushes > 0, 'a cut landed in a flush');
      await waitFor(() => w.stats.entriesWritten === count, 30_000);
      assert.equal(await h.pending(h.keys.orders), 0);
      const [rows] = await h.db.sql<{ n: number; ids: number }[]>`
        SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids FROM orders`;
      assert.deepEqual(rows, { n: count, ids: count });
    } finally {
      await admin.end();
      await w.stop();
    }
  });

  it('keeps a final order in the cache without a TTL while PostgreSQL is down, then expires it', async () => {
    const w = h.writer({ flushMs: 20, statusTtlS: 600 });
    await w.start();
    const db = databaseSwitch(h);
    try {
      await db.down();
      const o = orderState(h.alice);
      const done = {
        ...o,
        seq: 1,
        version: 1,
        status: 'CANCELED' as const,
        reject_reason: 'IOC_REMAINDER',
      };
      await h.redis.hset(h.keys.order(o.id), 'j', JSON.stringify(done), 's', done.status);
      await h.place(1, o);
      await h.events({ first_seq: 1, last_seq: 1, orders: [done], trades: [] }, [o.id]);
      await waitFor(() => w.stats.failedFlushes >= 2);
      assert.equal(await h.redis.ttl(h.keys.order(o.id)), -1, 'no TTL before the commit');

      await db.up();
      await waitFor(() => w.stats.entriesWritten === 2, 15_000);
      assert.deepEqual((await ordersById(h.db.sql)).get(o.id), done);
      const ttl = await h.redis.ttl(h.keys.order(o.id));
      assert.ok(ttl > 0 && ttl <= 600, `ttl ${ttl} once committed`);
    } finally {
      await db.end();
      await w.stop();
    }
  });

  it('stop() gives up on an unreachable database after its timeout, leaving entries pending', async () => {
    const db = databaseSwitch(h);
    const w = h.writer({ flushMs: 20, stopTimeoutMs: 300 });
    try {
      await w.start();
      await db.down();
      await h.place(1, orderState(h.alice));
      await waitFor(() => w.stats.failedFlushes >= 1);
      await w.stop();
      assert.equal(w.stats.entriesWritten, 0);
      assert.equal(await h.pending(h.keys.orders), 1);
    } finally {
      await db.end();
    }
    // The next start writes it.
    const next = h.writer();
    await next.start();
    await waitFor(() => next.stats.entriesWritten === 1, 10_000);
    await next.stop();
  });

  it('behind a backlog, commits no flush after one that stop() gave up on', async () => {
    // 12,000 PLACEs and the one outcome of them all: the first flush holds the outcome and
    // 10,000 PLACEs, the next the other 2,000, passed over as superseded by that outcome.
    const states = (await h.placeMany(12_000)).map((o) => ({
      ...o,
      version: o.seq,
      status: 'NEW' as const,
    }));
    await h.events({ first_seq: 1, last_seq: 12_000, orders: states, trades: [] });
    // PostgreSQL refuses every transaction until the first flush is given up, then takes them.
    const givenUp = () =>
      h.logs.some((l) => l.msg.startsWith('writer: stopping with entries unwritten'));
    const sql = new Proxy(h.db.sql, {
      get(target, key, receiver) {
        if (key !== 'begin') return Reflect.get(target, key, receiver) as unknown;
        return (...args: unknown[]) => {
          if (!givenUp()) {
            return Promise.reject(
              Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' }),
            );
          }
          return (target.begin as (...a: unknown[]) => Promise<unknown>)(...args);
        };
      },
    });
    // Flushes cut by size, not by time: a slow machine reads fewer than 10,000 entries in a
    // second, and a flush cut then left entries unread behind the two (CI, 2026-12-07).
    const w = h.writer({ sql, flushMs: 60_000, stopTimeoutMs: 300 });
    await w.start();
    // Everything read: the first flush retrying, the next one taken behind it.
    await waitFor(
      async () => (await h.pending(h.keys.orders)) === 12_000 && w.stats.failedFlushes > 0,
      30_000,
    );
    await w.stop();
    assert.ok(givenUp());
    // Nothing acknowledged: the outcome was never written, so neither is any PLACE passed over.
    assert.equal(w.stats.entriesWritten, 0);
    assert.equal(await h.pending(h.keys.orders), 12_000);
    assert.equal(await h.pending(h.keys.events), 1);
    const [rows] = await h.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM orders`;
    assert.equal(rows?.n, 0);
  });

  it('trims events below what is acked, and orders also below the snapshot the engine would use, pinned', async () => {
    for (let seq = 1; seq <= 10; seq++) await h.place(seq, orderState(h.alice));
    await h.events({ first_seq: 1, last_seq: 5, orders: [], trades: [] });
    await h.events({ first_seq: 6, last_seq: 10, orders: [], trades: [] });
    const w = h.writer({ trimIntervalMs: 60_000 });
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 12);
    const ids = async (stream: string) =>
      ((await h.redis.xrange(stream, '-', '+')) as [string, string[]][]).map(([id]) => id);

    // No snapshot yet: the engine would replay the whole order stream, so none of it goes.
    await w.trimAll();
    assert.equal((await ids(h.keys.orders)).length, 10);
    assert.deepEqual(await ids(h.keys.events), []);

    const snapshot = (shard: string, seq: number) => h.db.sql`
      INSERT INTO engine_snapshots (shard, seq, data) VALUES (${shard}, ${seq}, '\\x00')`;
    const pinned = async () =>
      (
        await h.db.sql<{ seq: string }[]>`
          SELECT shard || '/' || seq AS seq FROM engine_snapshots WHERE pinned ORDER BY shard, seq`
      ).map((r) => r.seq);
    await snapshot('s0', 4);
    await snapshot('s1', 9);
    await w.trimAll();
    // The one trimmed to is pinned: pruning keeps it (s1 has no stream here, nothing trimmed).
    assert.deepEqual(await pinned(), ['s0/4']);
    assert.deepEqual(await ids(h.keys.orders), ['0-5', '0-6', '0-7', '0-8', '0-9', '0-10']);
    await w.stop();

    // A snapshot ahead of the writer: entries it has not acknowledged stay.
    await h.place(11, orderState(h.alice));
    await h.place(12, orderState(h.alice));
    await h.redis.xreadgroup('GROUP', WRITER_GROUP, 'other', 'STREAMS', h.keys.orders, '>');
    await h.place(13, orderState(h.alice));
    // A snapshot above W (the dispatcher has written reports up to 10) is not the one a rollback
    // would use: the bound stays at the newest snapshot at or below W.
    await snapshot('s0', 20);
    const idle = h.writer();
    await idle.trimAll();
    assert.deepEqual(await ids(h.keys.orders), [
      '0-5',
      '0-6',
      '0-7',
      '0-8',
      '0-9',
      '0-10',
      '0-11',
      '0-12',
      '0-13',
    ]);
    await snapshot('s0', 10);
    await idle.trimAll();
    assert.deepEqual(await ids(h.keys.orders), ['0-11', '0-12', '0-13']);
    assert.deepEqual(await pinned(), ['s0/10'], 'the pin moved; the one before may be pruned');
    assert.equal(idle.stats.backlog, 3, 'two pending, one not yet delivered');
  });
});
