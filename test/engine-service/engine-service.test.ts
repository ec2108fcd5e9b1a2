import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EngineClient, EngineUnavailableError } from '../../src/engine-service/client.js';
import { toWireCommand } from '../../src/engine-service/proto.js';
import { startEngineService } from '../../src/engine-service/server.js';
import { ShardEngine } from '../../src/engine-service/shard-engine.js';
import { SnapshotReplica } from '../../src/engine-service/snapshot-replica.js';
import { pinReplayBound, SnapshotStore } from '../../src/engine-service/snapshot-store.js';
import { Snapshotter } from '../../src/engine-service/snapshotter.js';
import type { EngineService } from '../../src/engine-service/server.js';
import { EventBuffer } from '../../src/engine/event-buffer.js';
import { MatchingEngine } from '../../src/engine/matching-engine.js';
import { OrderType, Reason, Side, TimeInForce } from '../../src/engine/types.js';
import { componentErrors, engineMetrics } from '../../src/metrics/pipeline.js';
import type { Command, ExecutionReport } from '../../src/engine/types.js';
import { freshDatabase } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';
import { cancel, place } from '../engine/commands.js';
import { exited, freePort, quietLogger, spawnEngine, waitFor } from './helpers.js';

/** What an in-process engine, every symbol listed, reports for the commands. */
function reference(commands: Command[]): ExecutionReport[] {
  const engine = new MatchingEngine();
  for (const c of commands) engine.listInstrument(c.symbol);
  const out = new EventBuffer();
  for (const c of commands) engine.apply(c, out);
  return out.toArray();
}

/** A busy little sequence over two symbols: rests, trades, IOC, stops, cancels. */
function script(n: number): Command[] {
  const commands: Command[] = [];
  for (let seq = 1; seq <= n; seq++) {
    const symbol = seq % 3 === 0 ? 'BBB' : 'AAA';
    const side = seq % 2 === 0 ? Side.BUY : Side.SELL;
    const price = 100 + ((seq * 7) % 5) - 2;
    if (seq % 5 === 0) commands.push(cancel(seq, seq - 3, { ownerId: (seq - 3) % 4 }));
    else if (seq % 11 === 0) {
      // Price protection of 1% is one tick of a best near 100: the band stops some of these.
      const market = { orderType: OrderType.MARKET, tif: TimeInForce.IOC, price: 0 } as const;
      commands.push(place(seq, { symbol, side, ...market, quantity: 2, protection: 100 }));
    } else
      commands.push(place(seq, { symbol, side, price, quantity: 1 + (seq % 4), ownerId: seq % 4 }));
  }
  return commands;
}

async function snapshotSeqs(db: TestDatabase): Promise<number[]> {
  const rows = await db.sql<{ seq: string }[]>`SELECT seq FROM engine_snapshots ORDER BY seq`;
  return rows.map((r) => Number(r.seq));
}

describe('engine service', () => {
  let db: TestDatabase;
  before(async () => {
    db = await freshDatabase();
  });
  after(async () => {
    await db.drop();
  });

  const start = (snapshotEvery: number): Promise<EngineService> =>
    startEngineService({
      shard: 0,
      address: '127.0.0.1:0',
      sql: db.sql,
      databaseUrl: db.url,
      snapshotEvery,
      snapshotIntervalMs: 60_000,
      logger: quietLogger(),
    });

  it('answers a session, Depth and LastApplied like the engine in process', async () => {
    await db.sql`DELETE FROM engine_snapshots`;
    const service = await start(1_000_000);
    const client = new EngineClient(`127.0.0.1:${service.port}`, 0);
    try {
      const commands = script(40);
      const session = client.session();
      assert.equal(await session.hello(0), 0);
      const a = await session.send(commands.slice(0, 25));
      const b = await session.send(commands.slice(25));
      assert.equal(a.lastSeq, 25);
      assert.equal(b.lastSeq, 40);
      assert.deepEqual([...a.reports, ...b.reports], reference(commands));
      const stopped = (r: ExecutionReport) => r.reason === Reason.PRICE_PROTECTION;
      assert.ok([...a.reports, ...b.reports].some(stopped), 'a MARKET order stopped at its band');

      // Replayed commands are skipped, with no reports.
      const again = await session.send(commands.slice(30, 35));
      assert.deepEqual(again, { lastSeq: 40, reports: [] });

      const engine = new MatchingEngine();
      engine.listInstrument('AAA');
      engine.listInstrument('BBB');
      const out = new EventBuffer();
      for (const c of commands) engine.apply(c, out);
      assert.deepEqual(await client.depth('AAA', 10), engine.depth('AAA', 10));
      assert.deepEqual(await client.depth('BBB', 1), engine.depth('BBB', 1));
      assert.deepEqual(await client.depth('NOPE', 10), {
        symbol: 'NOPE',
        bids: [],
        asks: [],
        seq: 40,
      });
      assert.equal(await client.lastApplied(), 40);
      // LiveOrders: every live order, field for field, as the engine in process holds it.
      const live = await client.liveOrders();
      const byId = (a: { orderId: number }, b: { orderId: number }) => a.orderId - b.orderId;
      const expected = engine
        .liveOrders()
        .map(({ tif: _t, postOnly: _p, stp: _s, protection: _r, ...rest }) => rest)
        .sort(byId);
      assert.ok(expected.length > 5);
      assert.equal(live.seq, 40);
      assert.deepEqual(live.orders.sort(byId), expected);
      session.close();
    } finally {
      client.close();
      await service.stop();
    }
  });

  it('snapshots every N commands, keeps the newest 3, and a new service loads the newest', async () => {
    await db.sql`DELETE FROM engine_snapshots`;
    const service = await start(10);
    const client = new EngineClient(`127.0.0.1:${service.port}`, 0);
    const commands = script(57);
    try {
      const session = client.session();
      await session.hello(0);
      for (let i = 0; i < commands.length; i += 6) {
        const { lastSeq } = await session.send(commands.slice(i, i + 6));
        // Every 10 commands, at a batch's end: 12, 24, 36, 48. Waiting for each keeps the test
        // deterministic (a trigger while a write is in flight waits for the next batch).
        if (lastSeq % 12 === 0) {
          await waitFor(`snapshot ${lastSeq}`, async () =>
            (await snapshotSeqs(db)).includes(lastSeq),
          );
        }
      }
      assert.deepEqual(await snapshotSeqs(db), [24, 36, 48]);
      session.close();
    } finally {
      client.close();
      await service.stop();
    }
    // stop() stored a final one at 57, and the older ones were pruned to 3.
    assert.deepEqual(await snapshotSeqs(db), [36, 48, 57]);

    const reloaded = await start(10);
    const client2 = new EngineClient(`127.0.0.1:${reloaded.port}`, 0);
    try {
      assert.equal(await client2.lastApplied(), 57);
      const engine = new MatchingEngine();
      engine.listInstrument('AAA');
      engine.listInstrument('BBB');
      const out = new EventBuffer();
      for (const c of commands) engine.apply(c, out);
      assert.deepEqual(await client2.depth('AAA', 50), engine.depth('AAA', 50));
      // And it continues exactly.
      const next = [place(58, { price: 97, quantity: 9, ownerId: 3 })];
      const session = client2.session();
      assert.equal(await session.hello(57), 57);
      out.clear();
      engine.apply(next[0] as Command, out);
      assert.deepEqual((await session.send(next)).reports, out.toArray());
      session.close();
    } finally {
      client2.close();
      await reloaded.stop();
    }
  });

  it('stores a snapshot as it is, not compressed by PostgreSQL, and reads it back exactly', async () => {
    // A real snapshot, compressible as they all are: 20,000 resting orders, about 400 kB.
    const engine = new MatchingEngine();
    engine.listInstrument('AAA');
    const out = new EventBuffer();
    for (let seq = 1; seq <= 20_000; seq++) {
      const side = seq % 2 === 0 ? Side.BUY : Side.SELL;
      engine.apply(
        place(seq, { side, price: side === Side.BUY ? 90 : 110, ownerId: seq % 7 }),
        out,
      );
    }
    const data = engine.snapshot();
    const store = new SnapshotStore(db.sql, 's9');
    try {
      assert.ok(await store.save(engine.lastSeq, data, await store.begin()));
      const [row] = await db.sql<{ compression: string | null; stored: number }[]>`
        SELECT pg_column_compression(data) AS compression, pg_column_size(data) AS stored
        FROM engine_snapshots WHERE shard = 's9'`;
      assert.equal(row?.compression, null, 'not compressed (migration 004)');
      assert.ok((row?.stored ?? 0) >= data.length, `${row?.stored} bytes stored`);
      const loaded = await store.newest();
      assert.equal(loaded?.seq, 20_000);
      assert.deepEqual(loaded?.data, data);
    } finally {
      await db.sql`DELETE FROM engine_snapshots WHERE shard = 's9'`;
    }
  });

  it('prunes to the newest 3 but keeps the pinned one, which the stream is trimmed to', async () => {
    const store = new SnapshotStore(db.sql, 's8');
    const seqs = async () =>
      (
        await db.sql<{ seq: string; pinned: boolean }[]>`
          SELECT seq, pinned FROM engine_snapshots WHERE shard = 's8' ORDER BY seq`
      ).map((r) => `${r.seq}${r.pinned ? ' pinned' : ''}`);
    try {
      const epoch = await store.begin();
      for (const seq of [1, 2]) await store.save(seq, new Uint8Array([seq]), epoch);
      assert.equal(await pinReplayBound(db.sql, 's8', 1), 1);
      // W at 2 in Redis's AOF: the writer pins 2, and 1 is free to go.
      assert.equal(await pinReplayBound(db.sql, 's8', 100), 2);
      // Three snapshots in the seconds a Redis restart could take back.
      for (const seq of [3, 4, 5]) await store.save(seq, new Uint8Array([seq]), epoch);
      assert.deepEqual(await seqs(), ['2 pinned', '3', '4', '5']);
      // That restart's rollback (W back at 2) leaves the one the stream can be replayed from.
      await store.rollBack(2);
      assert.equal((await store.newest(2))?.seq, 2);
      assert.equal(await pinReplayBound(db.sql, 's8', 0), undefined, 'none at or below 0');
    } finally {
      await db.sql`DELETE FROM engine_snapshots WHERE shard = 's8'`;
    }
  });

  it('stores a snapshot only under the epoch its state was taken in', async () => {
    const store = new SnapshotStore(db.sql, 's5');
    const seqs = async () =>
      (
        await db.sql<{ seq: string }[]>`
          SELECT seq FROM engine_snapshots WHERE shard = 's5' ORDER BY seq`
      ).map((r) => Number(r.seq));
    try {
      const first = await store.begin();
      assert.ok(await store.save(10, new Uint8Array([10]), first));
      assert.ok(await store.save(20, new Uint8Array([20]), first));
      // A rollback to W = 12: the snapshot above goes, and a write of a state from before it (at
      // 30, of commands a restarted Redis may no longer hold) lands after it and stores nothing.
      const { epoch: after, snapshot } = await store.rollBack(12);
      assert.equal(snapshot?.seq, 10, 'the newest left at or below W');
      assert.ok(after > first);
      assert.deepEqual(await seqs(), [10]);
      assert.equal(await store.save(30, new Uint8Array([30]), first), false);
      assert.ok(await store.save(15, new Uint8Array([15]), after));
      // Begun first, such a write holds the epoch's row: the rollback waits for it, then deletes
      // what it stored.
      let release = (): void => undefined;
      const held = new Promise<void>((resolve) => (release = resolve));
      const slow = db.sql.begin(async (tx) => {
        await tx`SELECT epoch FROM engine_epochs WHERE shard = 's5' FOR SHARE`;
        await tx`INSERT INTO engine_snapshots (shard, seq, data) VALUES ('s5', 40, '\\x28')`;
        await held;
      });
      let settled = false;
      const rolled = store.rollBack(15).finally(() => (settled = true));
      await waitFor('the rollback to wait for the write', async () => {
        const [row] = await db.sql<{ n: number }[]>`
          SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'`;
        return (row?.n ?? 0) > 0;
      });
      assert.equal(settled, false);
      release();
      await slow;
      const { epoch: third } = await rolled;
      assert.deepEqual(await seqs(), [10, 15]);
      // Another engine of the shard starts: the one before it stores nothing more.
      const next = await store.begin();
      assert.ok(next > third);
      assert.equal(await store.save(50, new Uint8Array([50]), third), false);
      assert.deepEqual(await seqs(), [10, 15]);
    } finally {
      await db.sql`DELETE FROM engine_snapshots WHERE shard = 's5'`;
    }
  });

  it('rolls back on a Hello behind it, and the replay gives byte-identical reports', async () => {
    await db.sql`DELETE FROM engine_snapshots`;
    const service = await start(8);
    const client = new EngineClient(`127.0.0.1:${service.port}`, 0);
    const commands = script(30);
    try {
      const first = client.session();
      assert.equal(await first.hello(0), 0);
      const original = new Map<number, ExecutionReport[]>();
      for (const c of commands) {
        original.set(c.seq, (await first.send([c])).reports);
        if (c.seq % 8 === 0) {
          await waitFor(`snapshot ${c.seq}`, async () => (await snapshotSeqs(db)).includes(c.seq));
        }
      }

      // The dispatcher wrote up to 21 only: the engine goes back to its snapshot at 16.
      const second = client.session();
      assert.equal(await second.hello(21), 16);
      await assert.rejects(first.send([place(31)]), EngineUnavailableError, 'superseded');
      const replay = await second.send(commands.slice(16));
      assert.equal(replay.lastSeq, 30);
      const expected = commands.slice(16).flatMap((c) => original.get(c.seq) ?? []);
      assert.deepEqual(replay.reports, expected);
      // The replica, rolled back with it into the new epoch, goes on storing snapshots.
      await waitFor('a snapshot at 30', async () => (await snapshotSeqs(db)).includes(30));
      assert.deepEqual(await snapshotSeqs(db), [8, 16, 30]);

      // Written 0 and no snapshot at or below it: an empty engine, the whole journal replayed.
      const third = client.session();
      assert.equal(await third.hello(0), 0);
      assert.deepEqual((await third.send(commands)).reports, reference(commands));
      assert.deepEqual(
        (await third.send(commands)).reports,
        [],
        'everything applied: a resend is skipped',
      );
      third.close();
    } finally {
      client.close();
      await service.stop();
    }
  });

  it('runs as its own process and exits 0 on SIGTERM after a final snapshot', async () => {
    await db.sql`DELETE FROM engine_snapshots`;
    const port = await freePort();
    const child = await spawnEngine({ databaseUrl: db.url, port, snapshotEvery: 1_000_000 });
    const client = new EngineClient(`127.0.0.1:${port}`, 0, { deadlineMs: 1000 });
    try {
      const session = client.session();
      await session.hello(0);
      await session.send(script(9));
      session.close();
      child.kill('SIGTERM');
      assert.equal(await exited(child), 0);
      assert.deepEqual(await snapshotSeqs(db), [9]);
      await assert.rejects(client.lastApplied(), (err: unknown) => {
        assert.ok(err instanceof EngineUnavailableError);
        assert.match(err.message, new RegExp(`engine at 127.0.0.1:${port} unavailable`));
        return true;
      });
    } finally {
      client.close();
      child.kill('SIGKILL');
    }
  });

  it('takes the snapshot asked for while one was being written, with no batch after it', async () => {
    await db.sql`DELETE FROM engine_snapshots WHERE shard = 's6'`;
    const engine = new ShardEngine();
    const stored: number[] = [];
    const failed: unknown[] = [];
    const store = new SnapshotStore(db.sql, 's6');
    const snapshots = new Snapshotter(
      store,
      () => engine.core,
      { every: 10, intervalMs: 60_000 },
      { stored: (seq) => stored.push(seq), failed: (err) => failed.push(err) },
    );
    snapshots.reset(0, await store.begin());
    const wire = script(20).map(toWireCommand);
    snapshots.applied(engine.apply(wire.slice(0, 10)).applied); // a write at 10 begins
    snapshots.applied(engine.apply(wire.slice(10)).applied); // and 10 more ask for another
    await waitFor('a snapshot at 20', () => stored.includes(20));
    await snapshots.final();
    assert.deepEqual(stored, [10, 20]);
    assert.deepEqual(failed, []);
    await db.sql`DELETE FROM engine_snapshots WHERE shard = 's6'`;
  });

  describe('snapshot replica', () => {
    const shard = 's7';
    /** The replica's snapshots of this shard, newest last. */
    const stored = async (): Promise<{ seq: number; data: Uint8Array }[]> => {
      const rows = await db.sql<{ seq: string; data: Buffer }[]>`
        SELECT seq, data FROM engine_snapshots WHERE shard = ${shard} ORDER BY seq`;
      return rows.map((r) => ({ seq: Number(r.seq), data: new Uint8Array(r.data) }));
    };
    const gauge = async (metric: typeof engineMetrics.replicaSeq): Promise<number | undefined> =>
      (await metric.get()).values.find((v) => v.labels.shard === shard)?.value;
    const replicaErrors = async (): Promise<number> =>
      (await componentErrors.get()).values.find((v) => v.labels.dependency === 'replica')?.value ??
      0;

    /** An engine with a replica that snapshots every `every` commands. */
    const follow = async (
      every: number,
    ): Promise<{ engine: ShardEngine; replica: SnapshotReplica }> => {
      const engine = new ShardEngine();
      const store = new SnapshotStore(db.sql, shard);
      const replica = new SnapshotReplica(
        {
          databaseUrl: db.url,
          shard,
          policy: { every, intervalMs: 60_000 },
          engine: () => engine.core,
          store,
          logger: quietLogger(),
        },
        undefined,
        0,
        await store.begin(),
      );
      return { engine, replica };
    };

    it("stores the engine's own state, byte for byte, and is started again from it after diverging", async () => {
      await db.sql`DELETE FROM engine_snapshots WHERE shard = ${shard}`;
      const { engine, replica } = await follow(10);
      const wire = script(40).map(toWireCommand);
      const send = (from: number, to: number, lastSeq?: number): void => {
        const batch = wire.slice(from, to);
        const applied = engine.apply(batch);
        replica.applied(batch, lastSeq ?? applied.lastSeq);
      };
      try {
        send(0, 20);
        const at20 = engine.core.snapshot();
        await waitFor('a snapshot at 20', async () => (await stored()).length === 1);
        assert.deepEqual(await stored(), [{ seq: 20, data: at20 }]);

        // Told the engine stands elsewhere than it does, the replica exits; another starts from
        // a copy of the engine at 30 (the batch it failed on is in that copy).
        const errors = await replicaErrors();
        send(20, 30, 999);
        await waitFor('the replica to fail', async () => (await replicaErrors()) > errors);
        await waitFor(
          'a replica at 30',
          async () => (await gauge(engineMetrics.replicaSeq)) === 30,
        );
        send(30, 40);
        const at40 = engine.core.snapshot();
        await waitFor('a snapshot at 40', async () => (await stored()).length === 2);
        assert.deepEqual((await stored())[1], { seq: 40, data: at40 });
      } finally {
        await replica.final();
      }
      assert.equal((await stored()).length, 2, 'nothing newer to store at the end');
    });

    /** An engine at 25 whose first replica has failed, told the engine stood elsewhere. */
    const diverged = async (): Promise<{ engine: ShardEngine; replica: SnapshotReplica }> => {
      await db.sql`DELETE FROM engine_snapshots WHERE shard = ${shard}`;
      const followed = await follow(1_000);
      const wire = script(25).map(toWireCommand);
      const errors = await replicaErrors();
      followed.engine.apply(wire);
      followed.replica.applied(wire, 1);
      await waitFor('the replica to fail', async () => (await replicaErrors()) > errors);
      return followed;
    };

    it('stores at a stop the state a replica was started again from, with nothing after it', async () => {
      const { engine, replica } = await diverged();
      await waitFor('a replica at 25', async () => (await gauge(engineMetrics.replicaSeq)) === 25);
      await replica.final();
      assert.deepEqual(await stored(), [{ seq: 25, data: engine.core.snapshot() }]);
    });

    it('leaves the final snapshot to the engine when the replica is gone', async () => {
      const { engine, replica } = await diverged();
      await replica.final();
      assert.deepEqual(await stored(), [{ seq: 25, data: engine.core.snapshot() }]);
    });
  });
});
