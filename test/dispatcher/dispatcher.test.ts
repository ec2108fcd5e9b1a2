import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { Dispatcher, LINGER_FROM } from '../../src/dispatcher/dispatcher.js';
import { EngineClient } from '../../src/engine-service/client.js';
import { startEngineService } from '../../src/engine-service/server.js';
import type { EngineService } from '../../src/engine-service/server.js';
import { shardKeys } from '../../src/queue/keys.js';
import type { ShardKeys } from '../../src/queue/keys.js';
import { tradeId } from '../../src/queue/records.js';
import type { OrderState, TradeRecord } from '../../src/queue/records.js';
import { freshDatabase, freshRedis } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';
import { quietLogger, waitFor } from '../engine-service/helpers.js';
import { enqueueCancel, enqueuePlace, listInstruments, newOrder, user } from './gateway-records.js';
import type { Instrument, PlaceFields } from './gateway-records.js';
import { assertMatchesReference, readEventBatches } from './redis-outcome.js';
import { readOrderStream, referenceOutcome } from './reference.js';

const AAPL: Instrument = { symbol: 'AAPL', tick: '0.01', lot: '1' };
const XYZ: Instrument = { symbol: 'XYZ', tick: '0.05', lot: '0.1' };
const T0 = Date.parse('2026-11-24T07:15:00.000Z');
/** The time of command n: one second apart. */
const at = (n: number): string => new Date(T0 + n * 1000).toISOString();

describe('dispatcher with the engine service', () => {
  let db: TestDatabase;
  let redis: Redis;
  let keys: ShardKeys;
  let cleanup: () => Promise<void>;
  let service: EngineService;
  let engine: EngineClient;

  before(async () => {
    db = await freshDatabase();
    const r = await freshRedis();
    redis = r.redis;
    cleanup = () => r.cleanup();
    keys = shardKeys(r.prefix, 0);
    await listInstruments(db.sql, [AAPL, XYZ]);
    service = await startEngineService({
      shard: 0,
      address: '127.0.0.1:0',
      sql: db.sql,
      databaseUrl: db.url,
      snapshotEvery: 1000,
      snapshotIntervalMs: 60_000,
      logger: quietLogger(),
    });
    engine = new EngineClient(`127.0.0.1:${service.port}`, 0);
  });
  /** A dispatcher of shard 0 against this suite's Redis, database and engine. */
  const dispatcherOf = (batchSize: number, lingerMs?: number, leaseMs?: number): Dispatcher =>
    new Dispatcher({
      shard: 0,
      redis,
      prefix: keys.orders.split(':{')[0] as string,
      sql: db.sql,
      engine,
      batchSize,
      blockMs: 100,
      ...(lingerMs === undefined ? {} : { lingerMs }),
      ...(leaseMs === undefined ? {} : { leaseMs }),
      logger: quietLogger(),
    });

  after(async () => {
    engine.close();
    await service.stop();
    await cleanup();
    await db.drop();
  });

  it('writes the status cache, fills, trades and event batches two crossing users imply', async () => {
    const alice = user(1);
    const bob = user(2);
    const placed = new Map<number, OrderState>();
    const place = async (who: typeof alice, i: Instrument, f: Omit<PlaceFields, 'created_at'>) => {
      const n = (await redis.get(keys.seq)) === null ? 1 : Number(await redis.get(keys.seq)) + 1;
      const order = newOrder(who, i, { ...f, created_at: at(n) });
      const seq = await enqueuePlace(redis, keys, order);
      placed.set(seq, { ...order, seq });
      return seq;
    };
    await place(alice, AAPL, { symbol: 'AAPL', side: 'SELL', quantity: '10', price: '187.25' });
    await place(bob, AAPL, { symbol: 'AAPL', side: 'BUY', quantity: '4', price: '187.30' });
    await place(bob, AAPL, {
      symbol: 'AAPL',
      side: 'BUY',
      quantity: '10',
      price: '187.50',
      time_in_force: 'IOC',
    });
    await place(bob, AAPL, { symbol: 'AAPL', side: 'BUY', quantity: '5', price: '187.10' });
    await place(alice, AAPL, {
      symbol: 'AAPL',
      side: 'SELL',
      quantity: '1',
      price: '187.00',
      post_only: true,
    });
    await enqueueCancel(redis, keys, placed.get(4) as OrderState, 4, at(6));
    await place(alice, XYZ, { symbol: 'XYZ', side: 'SELL', quantity: '3', price: '10.00' });
    await place(alice, XYZ, { symbol: 'XYZ', side: 'SELL', quantity: '2', price: '10.05' });
    await place(bob, XYZ, { symbol: 'XYZ', side: 'BUY', quantity: '5', price: '10.05' });
    await place(bob, AAPL, { symbol: 'AAPL', side: 'BUY', type: 'MARKET', quantity: '1' });
    await enqueueCancel(redis, keys, placed.get(1) as OrderState, 1, at(11));

    const sub = redis.duplicate();
    const published: string[] = [];
    await sub.subscribe(keys.applied);
    sub.on('message', (_channel: string, seq: string) => published.push(seq));

    const dispatcher = dispatcherOf(3);
    dispatcher.start();
    await waitFor('seq 11 written', () => dispatcher.stats().lastSeq === 11);
    await dispatcher.stop();
    assert.equal(dispatcher.stats().batches, 4);
    assert.equal(await dispatcher.lag(), 0);

    // Hand-derived, field by field, from the engine rules.
    const o = (seq: number, changes: Partial<OrderState>): OrderState => ({
      ...(placed.get(seq) as OrderState),
      version: seq,
      ...changes,
    });
    const filled = (
      seq: number,
      lastCmd: number,
      qty: string,
      lots: number,
      notional: string,
      avg: string,
      status: OrderState['status'],
    ): OrderState =>
      o(seq, {
        version: lastCmd,
        updated_at: at(lastCmd),
        filled_quantity: qty,
        filled_lots: lots,
        notional,
        average_fill_price: avg,
        status,
      });
    const expected = new Map<number, OrderState>([
      [1, filled(1, 3, '10', 10, '187250', '187.25', 'FILLED')],
      [2, filled(2, 2, '4', 4, '74900', '187.25', 'FILLED')],
      [
        3,
        {
          ...filled(3, 3, '6', 6, '112350', '187.25', 'CANCELED'),
          reject_reason: 'IOC_REMAINDER',
        },
      ],
      [
        4,
        o(4, {
          version: 6,
          updated_at: at(6),
          status: 'CANCELED',
          reject_reason: 'CANCELED_BY_OWNER',
        }),
      ],
      [5, o(5, { status: 'REJECTED', reject_reason: 'POST_ONLY_WOULD_TRADE' })],
      [7, filled(7, 9, '3.0', 30, '6000', '10.00', 'FILLED')],
      [8, filled(8, 9, '2.0', 20, '4020', '10.05', 'FILLED')],
      [9, filled(9, 9, '5.0', 50, '10020', '10.02', 'FILLED')],
      [10, o(10, { status: 'CANCELED', reject_reason: 'IOC_REMAINDER' })],
    ]);
    for (const [seq, want] of expected) {
      const [j, s] = await redis.hmget(keys.order(want.id), 'j', 's');
      assert.deepEqual(JSON.parse(j as string), want, `order ${seq}`);
      assert.equal(s, want.status);
      // The writer expires it once PostgreSQL has it; no writer runs here.
      assert.equal(await redis.ttl(keys.order(want.id)), -1, `final order ${seq} kept`);
    }
    assert.equal(await redis.scard(keys.open), 0);

    const trade = (
      seq: number,
      no: number,
      i: Instrument,
      price: string,
      quantity: string,
      taker: number,
      maker: number,
    ): TradeRecord => {
      const t = placed.get(taker) as OrderState;
      const m = placed.get(maker) as OrderState;
      return {
        id: tradeId(Date.parse(at(seq)), 0, seq, no),
        seq,
        trade_no: no,
        symbol: i.symbol,
        price,
        quantity,
        taker_side: t.side,
        taker_order_id: t.id,
        maker_order_id: m.id,
        taker_user_id: t.user_id,
        maker_user_id: m.user_id,
        executed_at: at(seq),
      };
    };
    const trades = [
      trade(2, 0, AAPL, '187.25', '4', 2, 1),
      trade(3, 0, AAPL, '187.25', '6', 3, 1),
      trade(9, 0, XYZ, '10.00', '3.0', 9, 7),
      trade(9, 1, XYZ, '10.05', '2.0', 9, 8),
    ];
    const batches = await readEventBatches(redis, keys);
    assert.deepEqual(
      batches.map((b) => [b.first_seq, b.last_seq]),
      [
        [1, 3],
        [4, 6],
        [7, 9],
        [10, 11],
      ],
    );
    assert.deepEqual(
      batches.flatMap((b) => b.trades),
      trades,
    );
    assert.deepEqual(
      batches.map((b) => b.orders.map((x) => x.seq)),
      [[1, 2, 3], [4, 5], [7, 8, 9], [10]],
    );
    assert.deepEqual(
      (await redis.lrange(keys.trades('AAPL'), 0, -1)).map((t) => JSON.parse(t) as TradeRecord),
      [trades[1], trades[0]],
      'recent trades newest first',
    );
    const fill = (t: TradeRecord, liquidity: 'MAKER' | 'TAKER') => ({
      trade_id: t.id,
      price: t.price,
      quantity: t.quantity,
      liquidity,
      executed_at: t.executed_at,
    });
    const [t0, t1, t2, t3] = trades as [TradeRecord, TradeRecord, TradeRecord, TradeRecord];
    const fillsOf = async (seq: number) =>
      (await redis.lrange(keys.fills((placed.get(seq) as OrderState).id), 0, -1)).map(
        (f) => JSON.parse(f) as unknown,
      );
    assert.deepEqual(await fillsOf(1), [fill(t0, 'MAKER'), fill(t1, 'MAKER')]);
    assert.deepEqual(await fillsOf(3), [fill(t1, 'TAKER')]);
    assert.deepEqual(await fillsOf(9), [fill(t2, 'TAKER'), fill(t3, 'TAKER')]);
    assert.deepEqual(await fillsOf(8), [fill(t3, 'MAKER')]);
    assert.deepEqual(await fillsOf(4), []);

    await waitFor('the applied notices', () => published.includes('11'));
    assert.deepEqual(published, ['3', '6', '9', '11']);
    await sub.quit();

    // And the in-process reference agrees with all of it.
    const records = await readOrderStream(redis, keys);
    await assertMatchesReference(redis, keys, referenceOutcome(records, [AAPL, XYZ]));
  });

  it('matches the next batch while Redis writes the last, and writes them in order', async () => {
    const dave = user(4);
    const order = (side: 'BUY' | 'SELL', quantity: string) =>
      newOrder(dave, XYZ, {
        symbol: 'XYZ',
        side,
        quantity,
        price: '12.00',
        created_at: at(200),
      });
    const written = (await readEventBatches(redis, keys)).length;
    // Two batches of two: a SELL of 3 and a BUY of 1 that fills against it, then two more BUYs.
    const first = await enqueuePlace(redis, keys, order('SELL', '3'));
    await enqueuePlace(redis, keys, order('BUY', '1'));
    await enqueuePlace(redis, keys, order('BUY', '1'));
    const last = await enqueuePlace(redis, keys, order('BUY', '1'));

    // Redis holds every write (the batch script) but answers reads (the order stream).
    const pauser = redis.duplicate();
    await pauser.call('CLIENT', 'PAUSE', '20000', 'WRITE');
    // Without the lease: taking it is a write, which the pause holds too.
    const d = dispatcherOf(2, undefined, 0);
    try {
      d.start();
      await waitFor('the second batch matched', () => d.stats().matchedSeq === last);
      assert.ok(d.stats().lastSeq < first, 'nothing written while Redis holds writes');
      await pauser.call('CLIENT', 'UNPAUSE');
      await waitFor('both batches written', () => d.stats().lastSeq === last);
    } finally {
      await pauser.call('CLIENT', 'UNPAUSE');
      pauser.disconnect();
      await d.stop();
    }
    assert.equal(d.stats().batches, 2);
    const batches = (await readEventBatches(redis, keys)).slice(written);
    assert.deepEqual(
      batches.map((b) => [b.first_seq, b.last_seq]),
      [
        [first, first + 1],
        [first + 2, last],
      ],
    );
    const records = await readOrderStream(redis, keys);
    await assertMatchesReference(redis, keys, referenceOutcome(records, [AAPL, XYZ]));
  });

  it('dispatches a quiet read at once, and lingers for company only after a busy one', async () => {
    const lingering = () => dispatcherOf(100, 60_000);
    const carol = user(3);
    const place = () =>
      enqueuePlace(
        redis,
        keys,
        newOrder(carol, AAPL, {
          symbol: 'AAPL',
          side: 'SELL',
          quantity: '1',
          price: '200.00',
          created_at: at(100),
        }),
      );

    // A lone command: dispatched without waiting the minute for more.
    const quiet = lingering();
    quiet.start();
    const lone = await place();
    await waitFor('the lone command dispatched', () => quiet.stats().lastSeq === lone);
    await quiet.stop();
    assert.equal(quiet.stats().lingers, 0);

    // LINGER_FROM commands waiting when the next dispatcher starts: read at once, then held.
    let last = 0;
    for (let i = 0; i < LINGER_FROM; i++) last = await place();
    const busy = lingering();
    busy.start();
    await waitFor('the busy read', () => busy.stats().lingers === 1);
    assert.equal(busy.stats().batches, 0, 'held, lingering after a busy read');
    // Stopping ends the wait; the batch in hand is dispatched whole.
    await busy.stop();
    assert.equal(busy.stats().lastSeq, last);
    assert.equal(busy.stats().batches, 1);
    assert.equal(busy.stats().lastBatchSize, LINGER_FROM);
  });
});
