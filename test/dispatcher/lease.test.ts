// The dispatcher's lease when Redis goes away: it lapses (the dispatcher says so, and counts the
// failure), and a stop does not wait for Redis to come back. Its own Redis, to kill.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { Dispatcher } from '../../src/dispatcher/dispatcher.js';
import { EngineClient } from '../../src/engine-service/client.js';
import { startEngineService } from '../../src/engine-service/server.js';
import type { EngineService } from '../../src/engine-service/server.js';
import type { LocalRedis } from '../../src/infra/local-redis.js';
import { shardKeys } from '../../src/queue/keys.js';
import { componentErrorCount } from '../support/component-errors.js';
import { freshDatabase, ownRedis } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';
import { quietLogger, sleep, waitFor } from '../engine-service/helpers.js';
import { listInstruments } from './gateway-records.js';
import { OrderFlow } from './order-flow.js';

const INSTRUMENTS = [{ symbol: 'AAA', tick: '0.01', lot: '1' }];
const keys = shardKeys('mb', 0);

describe('dispatcher lease with Redis away', () => {
  let server: LocalRedis;
  let removeRedis: () => Promise<void>;
  let db: TestDatabase;
  let service: EngineService;
  let engine: EngineClient;

  before(async () => {
    ({ server, remove: removeRedis } = await ownRedis('lease'));
    db = await freshDatabase();
    await listInstruments(db.sql, INSTRUMENTS);
    service = await startEngineService({
      shard: 0,
      address: '127.0.0.1:0',
      sql: db.sql,
      databaseUrl: db.url,
      snapshotEvery: 1_000_000,
      snapshotIntervalMs: 60_000,
      logger: quietLogger(),
    });
    engine = new EngineClient(`127.0.0.1:${service.port}`, 0);
  });
  after(async () => {
    engine.close();
    await service.stop();
    await removeRedis();
    await db.drop();
  });

  it('lapses when Redis dies, counts it, and stops without waiting for Redis', async () => {
    // As the dispatcher's client in a running system: retries without end, queues while offline.
    const redis = new Redis(server.url, { maxRetriesPerRequest: null });
    redis.on('error', () => undefined);
    const d = new Dispatcher({
      shard: 0,
      redis,
      prefix: 'mb',
      sql: db.sql,
      engine,
      batchSize: 20,
      blockMs: 100,
      leaseMs: 600,
      logger: quietLogger(),
    });
    const redisErrors = () => componentErrorCount('redis', 'dispatcher');
    d.start();
    let stopped = false;
    try {
      const flow = new OrderFlow(redis, keys, INSTRUMENTS, 3);
      for (let i = 0; i < 20; i++) await flow.next();
      await waitFor('20 dispatched', () => d.stats().lastSeq === 20);
      const errors = await redisErrors();
      server.kill('SIGKILL');
      await server.exited();
      await waitFor('the lease lapsed', () => !d.stats().leaseHeld);
      await waitFor('the failed cycle counted', async () => (await redisErrors()) > errors);
      const stop = d.stop().then(() => (stopped = true));
      // Redis stays away: the stop must not wait for it.
      await Promise.race([stop, sleep(10_000)]);
      assert.ok(stopped, 'stop() resolved with Redis still down');
    } finally {
      if (!stopped) {
        await server.restart();
        await d.stop();
      }
      redis.disconnect();
    }
  });
});
