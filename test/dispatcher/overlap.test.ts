// Two dispatchers of one shard at once (one started before the other stopped, or one superseded
// whose write was in flight), and a dispatcher whose cycle starts again while PostgreSQL is away.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import type { Sql } from '../../src/db/client.js';
import { connect } from '../../src/db/client.js';
import { Dispatcher } from '../../src/dispatcher/dispatcher.js';
import { EngineClient } from '../../src/engine-service/client.js';
import { startEngineService } from '../../src/engine-service/server.js';
import type { EngineService } from '../../src/engine-service/server.js';
import { pinReplayBound } from '../../src/engine-service/snapshot-store.js';
import { shardKeys } from '../../src/queue/keys.js';
import type { ShardKeys } from '../../src/queue/keys.js';
import { hooked, through } from '../support/hooked-redis.js';
import { componentErrorCount } from '../support/component-errors.js';
import { freshDatabase, freshRedis } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';
import { quietLogger, sleep, waitFor } from '../engine-service/helpers.js';
import { listInstruments } from './gateway-records.js';
import type { Instrument } from './gateway-records.js';
import { OrderFlow } from './order-flow.js';
import { assertExactlyOnce, assertMatchesReference, readEventBatches } from './redis-outcome.js';
import { readOrderStream, referenceOutcome } from './reference.js';

const INSTRUMENTS: Instrument[] = [
  { symbol: 'AAA', tick: '0.01', lot: '1' },
  { symbol: 'BBB', tick: '0.5', lot: '0.001' },
];

describe('dispatcher: overlapping sessions, PostgreSQL away', () => {
  let db: TestDatabase;
  let redis: Redis;
  let prefix: string;
  let keys: ShardKeys;
  let service: EngineService;
  let engine: EngineClient;
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
    engine?.close();
    await service?.stop();
    await cleanup();
    await db.drop();
  });

  async function freshShard(snapshotEvery: number): Promise<void> {
    engine?.close();
    await service?.stop();
    await redis.del(keys.seq, keys.orders, keys.events, keys.open, keys.written, keys.lease);
    await db.sql`DELETE FROM engine_snapshots`;
    service = await startEngineService({
      shard: 0,
      address: '127.0.0.1:0',
      sql: db.sql,
      databaseUrl: db.url,
      snapshotEvery,
      snapshotIntervalMs: 60_000,
      logger: quietLogger(),
    });
    engine = new EngineClient(`127.0.0.1:${service.port}`, 0);
  }

  const dispatcher = (
    client: Redis,
    batchSize: number,
    sql: Sql = db.sql,
    leaseMs?: number,
    leaseId?: string,
  ): Dispatcher =>
    new Dispatcher({
      shard: 0,
      redis: client,
      prefix,
      sql,
      engine,
      batchSize,
      blockMs: 100,
      ...(leaseMs === undefined ? {} : { leaseMs }),
      ...(leaseId === undefined ? {} : { leaseId }),
      logger: quietLogger(),
    });

  it('a second dispatcher that read W before the first wrote a batch never writes it again', async () => {
    await freshShard(1_000_000);
    const flow = new OrderFlow(redis, keys, INSTRUMENTS, 1);
    for (let i = 0; i < 300; i++) await flow.next();
    // A's third write is held until B has read W; those after it until B is done.
    let writes = 0;
    let releaseThird = (): void => undefined;
    const third = new Promise<void>((r) => (releaseThird = r));
    let releaseRest = (): void => undefined;
    const rest = new Promise<void>((r) => (releaseRest = r));
    const a = dispatcher(
      hooked(redis, (name) => {
        if (name !== 'mbWriteBatch') return undefined;
        writes++;
        const gate = writes === 3 ? third : writes > 3 ? rest : undefined;
        return gate && ((conn, args) => gate.then(() => through(conn, name, args)));
      }),
      5,
      db.sql,
      // Without the lease, which would keep B standing by: the two at once, as when A was paused
      // past its lease with a write in flight.
      0,
    );
    a.start();
    await waitFor('A holding its third write', () => writes >= 3 && a.stats().matchedSeq >= 20);
    // B reads W (10); A's held write (11–15) lands right after, before B goes on.
    let first = true;
    const landed = async (): Promise<void> => {
      releaseThird();
      await waitFor('A wrote 11–15', async () => (await redis.get(keys.written)) === '15');
    };
    const b = dispatcher(
      hooked(redis, (name) => {
        // W is read as a cycle starts: by XINFO STREAM, alone or in a transaction.
        if (!first || (name !== 'xinfo' && name !== 'multi')) return undefined;
        first = false;
        return (conn, args) => {
          if (name === 'xinfo') return through(conn, name, args).finally(landed);
          const tx = conn.multi();
          const exec = tx.exec.bind(tx);
          return Object.assign(tx, { exec: () => exec().finally(landed) });
        };
      }),
      8,
      db.sql,
      0,
    );
    b.start();
    try {
      await waitFor('B wrote everything', () => b.stats().lastSeq === 300, 30_000);
    } finally {
      await b.stop();
      releaseRest();
      await a.stop();
    }
    const batches = await readEventBatches(redis, keys);
    assertExactlyOnce(batches, 300);
    const expected = referenceOutcome(await readOrderStream(redis, keys), INSTRUMENTS);
    await assertMatchesReference(redis, keys, expected);
  });

  it('refuses a hello below the pinned snapshot, and the shard goes on', async () => {
    await freshShard(40);
    const flow = new OrderFlow(redis, keys, INSTRUMENTS, 3);
    const a = dispatcher(redis, 50);
    a.start();
    try {
      for (let i = 0; i < 300; i++) {
        await flow.next();
        if (i % 25 === 0) await sleep(30);
      }
      await waitFor('A at 300', () => a.stats().lastSeq === 300);
      await waitFor('a snapshot above 100', async () => {
        const [row] = await db.sql<
          { seq: string }[]
        >`SELECT max(seq)::text AS seq FROM engine_snapshots`;
        return Number(row?.seq ?? 0) > 100;
      });
      // The writer's trim: W (300) is in the AOF; the newest snapshot at or below it is pinned,
      // and the order stream is trimmed below it.
      const pinned = await pinReplayBound(db.sql, 's0', 300);
      assert.ok(pinned !== undefined && pinned > 100, `pinned ${pinned}`);
      await redis.xtrim(keys.orders, 'MINID', `0-${pinned + 1}`);
      // A second dispatcher's hello with the W it read long before.
      const stale = engine.session();
      await assert.rejects(stale.hello(100));
      stale.close();
      const rows = await db.sql<{ seq: string }[]>`
        SELECT seq::text FROM engine_snapshots WHERE pinned`;
      assert.deepEqual(
        rows.map((r) => Number(r.seq)),
        [pinned],
      );
      // A, superseded by that session, takes the engine back and goes on.
      for (let i = 0; i < 5; i++) await flow.next();
      await waitFor('A at 305', () => a.stats().lastSeq === 305, 15_000);
    } finally {
      await a.stop();
    }
  });

  it('with PostgreSQL away, a cycle that starts again matches with the instruments it had', async () => {
    await freshShard(1_000_000);
    let away = false;
    const sql = ((...a: unknown[]) =>
      away
        ? Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))
        : (db.sql as unknown as (...x: unknown[]) => unknown)(...a)) as unknown as Sql;
    const d = dispatcher(redis, 50, sql);
    d.start();
    try {
      const flow = new OrderFlow(redis, keys, INSTRUMENTS, 5);
      for (let i = 0; i < 100; i++) await flow.next();
      await waitFor('100 dispatched', () => d.stats().lastSeq === 100);
      away = true;
      const reconnects = d.stats().reconnects;
      // Redis closes the dispatcher's connections: its cycle ends and starts again.
      await redis.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      for (let i = 0; i < 50; i++) await flow.next();
      await waitFor('150 dispatched with PostgreSQL away', () => d.stats().lastSeq === 150, 15_000);
      assert.ok(d.stats().reconnects > reconnects, 'the cycle started again');
    } finally {
      away = false;
      await d.stop();
    }
  });
  it('counts a cycle that PostgreSQL failed against PostgreSQL, not Redis', async () => {
    await freshShard(1_000_000);
    const count = (dependency: string) => componentErrorCount(dependency, 'dispatcher');
    const [pg, rd] = [await count('postgres'), await count('redis')];
    // A PostgreSQL nothing listens for: the instruments were never read, so no cycle gets going.
    const nowhere = connect('postgres://postgres@127.0.0.1:1/matchbox', { max: 1 });
    const d = dispatcher(redis, 50, nowhere);
    d.start();
    try {
      await waitFor('a failed cycle counted', async () => (await count('postgres')) > pg);
      assert.equal(await count('redis'), rd, 'none counted against Redis');
    } finally {
      await d.stop();
      await nowhere.end();
    }
  });
  it('runs one dispatcher of a shard at a time: a second stands by, and takes over at a stop or a death', async () => {
    await freshShard(1_000_000);
    const flow = new OrderFlow(redis, keys, INSTRUMENTS, 7);
    const orders = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) await flow.next();
    };
    // Leases of a minute: only A giving it up lets B take over at its stop.
    const a = dispatcher(redis, 20, db.sql, 60_000);
    const b = dispatcher(redis, 20, db.sql, 60_000);
    let c: Dispatcher | undefined;
    a.start();
    try {
      await orders(50);
      await waitFor('A at 50', () => a.stats().lastSeq === 50);
      b.start();
      // Orders while both run: B never opens a session.
      for (let i = 0; i < 10; i++) {
        await orders(5);
        await sleep(100);
      }
      await waitFor('A at 100', () => a.stats().lastSeq === 100);
      assert.equal(a.stats().reconnects, 0, 'A kept its session: B never took the engine');
      assert.equal(b.stats().reconnects, -1, 'B never said hello');
      assert.deepEqual([a.stats().leaseHeld, b.stats().leaseHeld], [true, false]);
      // A stops (giving the lease up): B takes over.
      await a.stop();
      await orders(50);
      await waitFor('B at 150', () => b.stats().lastSeq === 150);
      // B dies with the lease: its key stays until it expires (B's stop here only ends its
      // renewals; the key is set back as a dead dispatcher leaves it).
      await b.stop();
      await redis.set(keys.lease, 'a-dead-dispatcher', 'PX', 3_000);
      c = dispatcher(redis, 20, db.sql, 600);
      c.start();
      await orders(50);
      await sleep(500);
      assert.equal(c.stats().reconnects, -1, 'C waits while the dead one’s lease lasts');
      assert.equal(c.stats().leaseHeld, false);
      await waitFor('C at 200 once it expired', () => c?.stats().lastSeq === 200);
    } finally {
      await a.stop();
      await b.stop();
      await c?.stop();
    }
    assertExactlyOnce(await readEventBatches(redis, keys), 200);
    const expected = referenceOutcome(await readOrderStream(redis, keys), INSTRUMENTS);
    await assertMatchesReference(redis, keys, expected);
  });

  it('stands by while another holds its lease, and goes on once the lease is free', async () => {
    await freshShard(1_000_000);
    const flow = new OrderFlow(redis, keys, INSTRUMENTS, 11);
    const a = dispatcher(redis, 20, db.sql, 600);
    a.start();
    try {
      for (let i = 0; i < 30; i++) await flow.next();
      await waitFor('A at 30', () => a.stats().lastSeq === 30);
      // Another dispatcher took the lease (A was paused past it, say).
      await redis.set(keys.lease, 'another-dispatcher', 'PX', 60_000);
      await waitFor('A standing by', () => !a.stats().leaseHeld);
      for (let i = 0; i < 30; i++) await flow.next();
      await sleep(500);
      assert.equal(a.stats().lastSeq, 30, 'nothing dispatched while another holds the lease');
      await redis.del(keys.lease);
      await waitFor('A at 60', () => a.stats().lastSeq === 60);
      assert.equal((await redis.pttl(keys.lease)) > 0, true, 'A holds it, expiring');
    } finally {
      await a.stop();
    }
    assert.equal(await redis.exists(keys.lease), 0, 'given up at the stop');
    assertExactlyOnce(await readEventBatches(redis, keys), 60);
  });
  it('takes its own lease back at once when restarted with its lease id, though it has not expired', async () => {
    await freshShard(1_000_000);
    const flow = new OrderFlow(redis, keys, INSTRUMENTS, 13);
    const first = dispatcher(redis, 20, db.sql, 60_000, 'host-a/dispatcher');
    first.start();
    for (let i = 0; i < 20; i++) await flow.next();
    await waitFor('the first at 20', () => first.stats().lastSeq === 20);
    await first.stop();
    // Its death as a kill leaves it: the key still its own, for the rest of a minute.
    await redis.set(keys.lease, 'host-a/dispatcher|the-dead-one', 'PX', 60_000);
    const other = dispatcher(redis, 20, db.sql, 60_000);
    const restarted = dispatcher(redis, 20, db.sql, 60_000, 'host-a/dispatcher');
    other.start();
    restarted.start();
    try {
      for (let i = 0; i < 20; i++) await flow.next();
      await waitFor('the restarted one at 40', () => restarted.stats().lastSeq === 40);
      assert.equal(other.stats().leaseHeld, false, 'another id stands by');
    } finally {
      await restarted.stop();
      await other.stop();
    }
    assertExactlyOnce(await readEventBatches(redis, keys), 40);
  });
  it('keeps its lease through a Redis stall that times one renewal out', async () => {
    await freshShard(1_000_000);
    let armed = false;
    const d = dispatcher(
      hooked(redis, (name) => {
        if (name !== 'mbTakeLease' || !armed) return undefined;
        armed = false;
        // Redis stalls, as this renewal is sent, for longer than a lease call waits (1 s).
        return (conn, args) =>
          redis.call('CLIENT', 'PAUSE', '1300', 'WRITE').then(() => through(conn, name, args));
      }),
      20,
      db.sql,
      3_000,
    );
    d.start();
    try {
      await waitFor('the lease taken', () => d.stats().leaseHeld);
      armed = true;
      // Watched at every turn of the event loop until well after the stall.
      let lapses = 0;
      const until = performance.now() + 4_000;
      while (performance.now() < until) {
        if (!d.stats().leaseHeld) lapses++;
        await new Promise((r) => setImmediate(r));
      }
      assert.equal(armed, false, 'a renewal was stalled');
      assert.equal(lapses, 0, 'the lease held throughout');
      assert.equal(d.stats().reconnects, 0, 'the session went on');
    } finally {
      await d.stop();
    }
  });
});
