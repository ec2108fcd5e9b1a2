import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { Dispatcher } from '../../src/dispatcher/dispatcher.js';
import { engineCommand } from '../../src/dispatcher/engine-commands.js';
import { EngineClient } from '../../src/engine-service/client.js';
import { startEngineService } from '../../src/engine-service/server.js';
import { shardKeys } from '../../src/queue/keys.js';
import type { ShardKeys } from '../../src/queue/keys.js';
import { freshDatabase, freshRedis } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';
import {
  exited,
  freePort,
  quietLogger,
  sleep,
  spawnEngine,
  waitFor,
} from '../engine-service/helpers.js';
import { listInstruments } from './gateway-records.js';
import type { Instrument } from './gateway-records.js';
import { OrderFlow } from './order-flow.js';
import { assertMatchesReference } from './redis-outcome.js';
import { readOrderStream, referenceOutcome } from './reference.js';

const INSTRUMENTS: Instrument[] = [
  { symbol: 'AAA', tick: '0.01', lot: '1' },
  { symbol: 'BBB', tick: '0.5', lot: '0.001' },
];

describe('dispatcher through crashes', () => {
  let db: TestDatabase;
  let redis: Redis;
  let prefix: string;
  let keys: ShardKeys;
  let cleanup: () => Promise<void>;

  before(async () => {
    db = await freshDatabase();
    const r = await freshRedis();
    ({ redis, prefix } = r);
    cleanup = () => r.cleanup();
    keys = shardKeys(prefix, 0);
    await listInstruments(db.sql, INSTRUMENTS);
  });
  after(async () => {
    await cleanup();
    await db.drop();
  });

  const dispatcher = (engine: EngineClient, batchSize: number): Dispatcher =>
    new Dispatcher({
      shard: 0,
      redis,
      prefix,
      sql: db.sql,
      engine,
      batchSize,
      blockMs: 100,
      logger: quietLogger(),
    });

  it('loses and duplicates nothing when the engine process is killed -9 mid-stream', async () => {
    await redis.del(keys.seq, keys.orders, keys.events, keys.open);
    await db.sql`DELETE FROM engine_snapshots`;
    const total = 3000;
    const port = await freePort();
    const options = { databaseUrl: db.url, port, snapshotEvery: 400, snapshotIntervalMs: 250 };
    let child: ChildProcess = await spawnEngine(options);
    const engine = new EngineClient(`127.0.0.1:${port}`, 0, { deadlineMs: 3000 });
    const d = dispatcher(engine, 64);
    d.start();
    try {
      const flow = new OrderFlow(redis, keys, INSTRUMENTS, 42);
      let killedAt = 0;
      const crash = (async () => {
        await waitFor('a third of the flow dispatched', () => d.stats().lastSeq >= total / 3);
        child.kill('SIGKILL');
        await exited(child);
        killedAt = d.stats().lastSeq;
        await sleep(300);
        child = await spawnEngine(options);
      })();
      // A steady stream: 20 orders every 10 ms, whatever the engine is doing.
      for (let i = 0; i < total; i += 20) {
        for (let k = 0; k < 20; k++) await flow.next();
        await sleep(10);
      }
      await crash;
      await waitFor('every order dispatched', () => d.stats().lastSeq === total, 60_000);
      assert.ok(killedAt > 0 && killedAt < total, `killed at ${killedAt}`);
      assert.ok(d.stats().reconnects >= 1, 'the dispatcher reconnected');
      assert.equal(d.stats().commands, total);
    } finally {
      await d.stop();
      engine.close();
      child.kill('SIGTERM');
      await exited(child);
    }
    const expected = referenceOutcome(await readOrderStream(redis, keys), INSTRUMENTS);
    assert.ok(expected.trades.length > 100, `a busy flow (${expected.trades.length} trades)`);
    await assertMatchesReference(redis, keys, expected);
  });

  it('replays without rewriting when the engine applied what the dispatcher never wrote', async () => {
    await redis.del(keys.seq, keys.orders, keys.events, keys.open);
    await db.sql`DELETE FROM engine_snapshots`;
    const service = await startEngineService({
      shard: 0,
      address: '127.0.0.1:0',
      sql: db.sql,
      databaseUrl: db.url,
      snapshotEvery: 50,
      snapshotIntervalMs: 60_000,
      logger: quietLogger(),
    });
    const engine = new EngineClient(`127.0.0.1:${service.port}`, 0);
    const flow = new OrderFlow(redis, keys, INSTRUMENTS, 7);
    // A dispatcher that died after the engine applied a batch and before its MULTI: the engine
    // holds commands 1..from+n applied, Redis holds reports only up to `written`.
    const applyUnwritten = async (written: number, n: number): Promise<void> => {
      const records = (await readOrderStream(redis, keys)).slice(written, written + n);
      const session = engine.session();
      await session.hello(written);
      const reply = await session.send(records.map(([seq, r]) => engineCommand(seq, r)));
      assert.equal(reply.lastSeq, written + n);
      session.close();
    };
    try {
      for (let i = 0; i < 150; i++) await flow.next();
      await applyUnwritten(0, 30); // no snapshot at or below 0: back to an empty engine

      const first = dispatcher(engine, 25);
      first.start();
      await waitFor('150 written', () => first.stats().lastSeq === 150);
      await first.stop();
      assert.equal(first.stats().commands, 150);

      for (let i = 0; i < 150; i++) await flow.next();
      await applyUnwritten(150, 70); // the engine reaches 220 and snapshots past 150
      await waitFor('a snapshot past 150', async () => {
        const [row] = await db.sql<{ seq: string }[]>`SELECT max(seq) AS seq FROM engine_snapshots`;
        return Number(row?.seq ?? 0) > 150;
      });
      assert.equal(await engine.lastApplied(), 220);

      const second = dispatcher(engine, 40);
      second.start();
      await waitFor('300 written', () => second.stats().lastSeq === 300);
      await second.stop();
      assert.equal(second.stats().commands, 150, 'only the commands above W were written');
    } finally {
      engine.close();
      await service.stop();
    }
    const expected = referenceOutcome(await readOrderStream(redis, keys), INSTRUMENTS);
    await assertMatchesReference(redis, keys, expected);
  });
});
