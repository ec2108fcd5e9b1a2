// A Redis killed while its AOF write was postponed (appendfsync everysec, a slow fsync) comes back
// without its last writes: order entries and event batches the dispatcher had read, matched and
// written. The gateway queues the lost orders again under new sequence numbers, so the restarted
// Redis holds other commands where the engine matched the lost ones. The dispatcher, whose client
// re-sends what the dropped connection left unanswered, must not write the old outcomes over the
// new commands, nor carry on from where it had read: it resyncs, the engine rolls back, and the
// outcome is the new stream's. No snapshot of the lost commands may survive the rollback, and the
// batch writer, which held them read but not yet written, writes none of them to PostgreSQL. Real
// Redis killed with SIGKILL; the lost tail is made by cutting its AOF back, as a postponed write
// leaves it.
import assert from 'node:assert/strict';
import { readdirSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { Dispatcher } from '../../src/dispatcher/dispatcher.js';
import { engineCommand } from '../../src/dispatcher/engine-commands.js';
import { EngineClient } from '../../src/engine-service/client.js';
import { startEngineService } from '../../src/engine-service/server.js';
import { EventBuffer } from '../../src/engine/event-buffer.js';
import { MatchingEngine } from '../../src/engine/matching-engine.js';
import type { LocalRedis } from '../../src/infra/local-redis.js';
import { shardKeys } from '../../src/queue/keys.js';
import { BatchWriter } from '../../src/writer/batch-writer.js';
import { freshDatabase, ownRedis } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';
import { quietLogger, waitFor } from '../engine-service/helpers.js';
import { listInstruments } from './gateway-records.js';
import type { Instrument } from './gateway-records.js';
import { OrderFlow } from './order-flow.js';
import { assertMatchesReference } from './redis-outcome.js';
import { readOrderStream, referenceOutcome } from './reference.js';

const INSTRUMENTS: Instrument[] = [
  { symbol: 'AAA', tick: '0.01', lot: '1' },
  { symbol: 'BBB', tick: '0.5', lot: '0.001' },
];
const keys = shardKeys('mb', 0);

/** A decimal string with 8 places, as PostgreSQL prints numeric(20,8). */
const fixed = (d: string): string => {
  const [whole, frac = ''] = d.split('.');
  return `${whole}.${frac.padEnd(8, '0')}`;
};

describe('dispatcher through a Redis restart that lost its last writes', () => {
  let server: LocalRedis;
  let removeRedis: () => Promise<void>;
  let db: TestDatabase;

  before(async () => {
    ({ server, remove: removeRedis } = await ownRedis('restart'));
    db = await freshDatabase();
    await listInstruments(db.sql, INSTRUMENTS);
  });
  after(async () => {
    await removeRedis();
    await db.drop();
  });

  /** Every order in PostgreSQL: id, status, whether anything filled; sorted. */
  const inPostgres = async (): Promise<string[]> =>
    (
      await db.sql<{ o: string }[]>`
        SELECT concat_ws(' ', id, status, CASE WHEN filled_quantity > 0 THEN 'filled' ELSE '-' END)
          AS o FROM orders`
    )
      .map((r) => r.o)
      .sort();

  /** The AOF file Redis appends to (Redis 7 keeps a base file and an increment). */
  const incrementFile = (): string => {
    const aofDir = join(server.dir, 'appendonlydir');
    const name = readdirSync(aofDir).find((f) => f.endsWith('.incr.aof'));
    assert.ok(name !== undefined, `no incremental AOF in ${aofDir}`);
    return join(aofDir, name);
  };

  it('resyncs, rolls the engine back and matches the commands Redis holds now', async () => {
    // As the dispatcher's client in a running system: retries without end, re-sends on reconnect.
    const redis = new Redis(server.url, { maxRetriesPerRequest: null });
    redis.on('error', () => undefined);
    const service = await startEngineService({
      shard: 0,
      address: '127.0.0.1:0',
      sql: db.sql,
      databaseUrl: db.url,
      snapshotEvery: 40,
      snapshotIntervalMs: 60_000,
      logger: quietLogger(),
    });
    const engine = new EngineClient(`127.0.0.1:${service.port}`, 0);
    const d = new Dispatcher({
      shard: 0,
      redis,
      prefix: 'mb',
      sql: db.sql,
      engine,
      batchSize: 25,
      blockMs: 100,
      logger: quietLogger(),
    });
    // Flushes far apart: what it reads of the commands about to be lost, it still holds when
    // Redis is killed. (What it had written, Redis had in its AOF: a kill never loses that.)
    const writer = new BatchWriter({
      redis,
      sql: db.sql,
      keys: [keys],
      flushMs: 4_000,
      batchSize: 100_000,
      statusTtlS: 600,
      logger: quietLogger(),
    });
    const before = new OrderFlow(redis, keys, INSTRUMENTS, 11);
    const after = new OrderFlow(redis, keys, INSTRUMENTS, 12);
    for (const u of [...before.users, ...after.users]) {
      await db.sql`INSERT INTO users (id, name, api_key_hash)
        VALUES (${u.id}, ${`user ${u.no}`}, ${Buffer.from(u.id)})`;
    }
    d.start();
    await writer.start();
    try {
      for (let i = 0; i < 200; i++) await before.next();
      await waitFor('200 written', () => d.stats().lastSeq === 200);
      await waitFor('the AOF buffer written', async () =>
        /^aof_buffer_length:0\r?$/m.test(await redis.info('persistence')),
      );
      const cut = statSync(incrementFile()).size;
      const placed = (await readOrderStream(redis, keys)).filter(([, r]) => r.k === 'place');
      await waitFor(
        'the writer past 200',
        async () => {
          const rows = await inPostgres();
          return rows.length === placed.length && !rows.some((r) => r.includes('PENDING'));
        },
        20_000,
      );
      // Read, matched, written and snapshotted, then lost: 201..300.
      for (let i = 0; i < 100; i++) await before.next();
      await waitFor('300 written', () => d.stats().lastSeq === 300);
      await waitFor('a snapshot past 200', async () => {
        const [row] = await db.sql<{ seq: string }[]>`SELECT max(seq) AS seq FROM engine_snapshots`;
        return Number(row?.seq ?? 0) > 200;
      });
      await waitFor('the AOF buffer written', async () =>
        /^aof_buffer_length:0\r?$/m.test(await redis.info('persistence')),
      );
      assert.ok(statSync(incrementFile()).size > cut);

      server.kill('SIGKILL');
      await server.exited();
      truncateSync(incrementFile(), cut);
      await server.restart();
      await waitFor('Redis back', async () => (await redis.get(keys.seq)) === '200');

      // Other commands under half the lost sequence numbers: read from where Redis stands now,
      // not from where the dispatcher had read to. Then more, past them.
      for (let i = 0; i < 50; i++) await after.next();
      await waitFor('250 written', () => d.stats().lastSeq === 250, 30_000);
      for (let i = 0; i < 100; i++) await after.next();
      await waitFor('350 written', () => d.stats().lastSeq === 350, 30_000);
      assert.ok(d.stats().reconnects >= 1, 'the dispatcher resynced');
      const all = (await readOrderStream(redis, keys)).filter(([, r]) => r.k === 'place');
      await waitFor(
        'the writer past 350',
        async () => {
          const rows = await inPostgres();
          return rows.length >= all.length && !rows.some((r) => r.includes('PENDING'));
        },
        30_000,
      );
    } finally {
      await writer.stop();
      await d.stop();
      engine.close();
      await service.stop();
    }

    const stream = await readOrderStream(redis, keys);
    assert.deepEqual(
      stream.map(([seq]) => seq),
      Array.from({ length: 350 }, (_, i) => i + 1),
    );
    const expected = referenceOutcome(stream, INSTRUMENTS);
    await assertMatchesReference(redis, keys, expected);

    // PostgreSQL holds the orders and trades of the stream Redis holds, and nothing of the lost.
    const want = [...expected.orders.values()]
      .map((o) => `${o.id} ${o.status} ${o.filled_lots > 0 ? 'filled' : '-'}`)
      .sort();
    assert.deepEqual(await inPostgres(), want, 'the orders in PostgreSQL');
    const trades = await db.sql<{ t: string }[]>`
      SELECT concat_ws(' ', id, taker_order_id, maker_order_id, price::numeric(20,8),
        quantity::numeric(20,8)) AS t FROM trades ORDER BY 1`;
    assert.deepEqual(
      trades.map((r) => r.t),
      expected.trades
        .map((t) =>
          [t.id, t.taker_order_id, t.maker_order_id, fixed(t.price), fixed(t.quantity)].join(' '),
        )
        .sort(),
      'the trades in PostgreSQL',
    );

    // Every snapshot kept is of the stream Redis holds: the same live orders as the reference
    // engine at its sequence.
    const snapshots = await db.sql<{ seq: string; data: Buffer }[]>`
      SELECT seq, data FROM engine_snapshots ORDER BY seq`;
    assert.ok(snapshots.length > 0);
    const reference = new MatchingEngine();
    const out = new EventBuffer();
    let at = 0;
    for (const row of snapshots) {
      const seq = Number(row.seq);
      for (; at < seq; at++) {
        const [n, record] = stream[at] as (typeof stream)[number];
        const symbol = record.k === 'place' ? record.order.symbol : record.symbol;
        if (symbol !== null) reference.listInstrument(symbol);
        out.clear();
        reference.apply(engineCommand(n, record), out);
      }
      const stored = MatchingEngine.restore(new Uint8Array(row.data));
      assert.equal(stored.lastSeq, seq);
      const live = (e: MatchingEngine) =>
        e
          .liveOrders()
          .map((o) => JSON.stringify(o))
          .sort();
      assert.deepEqual(live(stored), live(reference), `snapshot at ${seq}`);
    }
    redis.disconnect();
  });
});
