// The batch script on batches larger than its per-call chunk (200): one order filled by 450 makers,
// 450 of them closed, 30 placed and left open, one older order advanced, and the trades list
// capped. Every key is read back and compared with what the batch says; nothing expires yet (the
// writer does that once PostgreSQL has the final states), and the event entry names the orders the
// batch closed. A batch that does not follow what Redis holds (W not just below it, or another
// command at its last seq, as after a restart that lost writes) is refused, and writes nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { StaleBatchError, TRADES_KEPT, writeBatch } from '../../src/dispatcher/batch-write.js';
import type { ProjectedBatch } from '../../src/dispatcher/projector.js';
import { shardKeys } from '../../src/queue/keys.js';
import type { ShardKeys } from '../../src/queue/keys.js';
import { tradeId } from '../../src/queue/records.js';
import type { CommandRefusal, Fill, OrderState, TradeRecord } from '../../src/queue/records.js';
import { freshRedis } from '../support/services.js';
import { newOrder, user } from './gateway-records.js';

const AAPL = { symbol: 'AAPL', tick: '0.01', lot: '1' };
const AT = '2026-11-24T07:15:00.000Z';

function order(seq: number, status: OrderState['status'], filledLots: number): OrderState {
  const o = newOrder(user(seq), AAPL, {
    symbol: 'AAPL',
    side: 'SELL',
    type: 'LIMIT',
    quantity: '10',
    price: '100.00',
    created_at: AT,
  });
  return { ...o, seq, version: 1000, status, filled_lots: filledLots };
}

describe('write-batch.lua', () => {
  let redis: Redis;
  let keys: ShardKeys;
  let prefix: string;
  let cleanup: () => Promise<void>;

  before(async () => {
    const r = await freshRedis();
    redis = r.redis;
    cleanup = () => r.cleanup();
    prefix = r.prefix;
    keys = shardKeys(prefix, 0);
  });
  after(() => cleanup());

  it('writes every order, fill and trade of a batch past the chunk size, in order', async () => {
    const firstSeq = 501;
    const lastSeq = 1000;
    // Makers placed before the batch: 450 fill completely, one (the earlier open order) does not.
    const makers = Array.from({ length: 450 }, (_, i) => order(i + 1, 'FILLED', 10));
    const older = order(460, 'PARTIALLY_FILLED', 5);
    // Placed in the batch: 30 rest open; the taker fills against all the makers.
    const resting = Array.from({ length: 30 }, (_, i) => order(firstSeq + i, 'NEW', 0));
    const taker = { ...order(firstSeq + 30, 'FILLED', 4505), side: 'BUY' as const };
    await redis.sadd(keys.open, ...makers.map((m) => m.id), older.id);
    // An earlier fill of the order that is now final and fills nothing more in this batch.
    const earlier = order(470, 'CANCELED', 3);
    await redis.rpush(keys.fills(earlier.id), '{"trade_id":"earlier"}');
    await redis.sadd(keys.open, earlier.id);

    const trades: TradeRecord[] = makers.map((m, i) => ({
      id: tradeId(Date.parse(AT), 0, taker.seq, i + 1),
      seq: taker.seq,
      trade_no: i + 1,
      symbol: 'AAPL',
      price: '100.00',
      quantity: '10',
      taker_side: 'BUY',
      taker_order_id: taker.id,
      maker_order_id: m.id,
      taker_user_id: taker.user_id,
      maker_user_id: m.user_id,
      executed_at: AT,
    }));
    const fill = (t: TradeRecord, liquidity: Fill['liquidity']): Fill => ({
      trade_id: t.id,
      price: t.price,
      quantity: t.quantity,
      liquidity,
      executed_at: t.executed_at,
    });
    const fills = new Map<string, Fill[]>([[taker.id, trades.map((t) => fill(t, 'TAKER'))]]);
    makers.forEach((m, i) => fills.set(m.id, [fill(trades[i] as TradeRecord, 'MAKER')]));
    const all = [...makers, older, earlier, ...resting, taker];
    const refusal: CommandRefusal = {
      seq: lastSeq - 1,
      kind: 'cancel',
      order_id: taker.id,
      user_id: taker.user_id,
      symbol: 'AAPL',
      reason: 'UNKNOWN_ORDER',
      at: AT,
    };
    const batch: ProjectedBatch = {
      firstSeq,
      lastSeq,
      orders: new Map(all.map((o) => [o.seq, o])),
      trades,
      fills,
      refusals: [refusal],
    };

    // Batches up to 500 were written (their entries trimmed away); W as the dispatcher sets it.
    await redis.xadd(keys.events, '0-500', 'b', '{}');
    await redis.xdel(keys.events, '0-500');
    await redis.set(keys.written, '500');
    const last = await command(keys, lastSeq);
    await writeBatch(redis, keys, batch, last);
    assert.equal(await redis.get(keys.written), String(lastSeq));

    for (const o of all) {
      const [j, s] = await redis.hmget(keys.order(o.id), 'j', 's');
      assert.deepEqual(JSON.parse(j as string), o, `state of ${o.seq}`);
      assert.equal(s, o.status);
      const final = o.status === 'FILLED' || o.status === 'CANCELED';
      assert.equal(await redis.sismember(keys.open, o.id), final ? 0 : 1, `open set: ${o.seq}`);
      assert.equal(await redis.ttl(keys.order(o.id)), -1, `no ttl on ${o.seq} before PostgreSQL`);
    }
    const takerFills = (await redis.lrange(keys.fills(taker.id), 0, -1)).map(
      (f) => JSON.parse(f) as Fill,
    );
    assert.deepEqual(takerFills, fills.get(taker.id), 'all 450 taker fills, oldest first');
    for (const id of [taker.id, (makers[7] as OrderState).id, earlier.id]) {
      assert.equal(await redis.ttl(keys.fills(id)), -1, 'fills kept until PostgreSQL has them');
    }
    assert.equal(await redis.llen(keys.fills(earlier.id)), 1, 'an earlier fill list is kept');
    assert.equal(await redis.exists(keys.fills(older.id)), 0, 'no fills, no list');

    const recent = (await redis.lrange(keys.trades('AAPL'), 0, -1)).map(
      (t) => JSON.parse(t) as TradeRecord,
    );
    assert.deepEqual(recent, [...trades].reverse().slice(0, TRADES_KEPT), 'newest first');

    const [[id, fields]] = (await redis.xrange(keys.events, '-', '+')) as [[string, string[]]];
    assert.equal(id, `0-${lastSeq}`);
    assert.equal(fields[0], 'b');
    assert.equal(fields[2], 'x');
    const closed = all.filter((o) => o.status === 'FILLED' || o.status === 'CANCELED');
    assert.equal(closed.length, 452);
    assert.deepEqual(
      (fields[3] as string).split(' ').sort(),
      closed.map((o) => o.id).sort(),
      'the entry names every order the batch closed, and only those',
    );
    const event = JSON.parse(fields[1] as string) as {
      first_seq: number;
      last_seq: number;
      orders: OrderState[];
      trades: TradeRecord[];
      refusals: CommandRefusal[];
    };
    assert.equal(event.first_seq, firstSeq);
    assert.equal(event.last_seq, lastSeq);
    assert.deepEqual(event.orders, all);
    assert.deepEqual(event.trades, trades);
    assert.deepEqual(event.refusals, [refusal]);

    // Sent again (a reply lost with the connection): nothing is written twice.
    await writeBatch(redis, keys, batch, last);
    assert.equal(await redis.llen(keys.fills(taker.id)), 450);
    assert.equal(await redis.llen(keys.trades('AAPL')), 450);
    assert.equal(await redis.xlen(keys.events), 1);
  });

  it('writes a batch sent again nothing twice, also once the writer has trimmed its entry away', async () => {
    const k = shardKeys(prefix, 1);
    const first = filledBatch(1);
    const second = filledBatch(2);
    await write(k, first);
    await write(k, second);
    // The first again, with a later entry in the stream.
    await write(k, first);
    assert.equal(await fillsOf(k, first), 1);
    // Both entries written and trimmed: the stream is empty, its last id still 0-2.
    await redis.xtrim(k.events, 'MINID', '0-3');
    assert.equal(await redis.xlen(k.events), 0);
    await write(k, second);
    await write(k, first);
    assert.deepEqual([await fillsOf(k, first), await fillsOf(k, second)], [1, 1]);
    assert.equal(await redis.xlen(k.events), 0, 'no entry added again');
    // A new batch after the trim is written.
    const third = filledBatch(3);
    await write(k, third);
    assert.equal(await fillsOf(k, third), 1);
    assert.deepEqual(
      (await redis.xrange(k.events, '-', '+')).map(([id]) => id),
      ['0-3'],
    );
  });

  it('writes a batch sent again nothing twice when its own entry was deleted and older ones kept', async () => {
    const k = shardKeys(prefix, 2);
    const first = filledBatch(1);
    const second = filledBatch(2);
    await write(k, first);
    await write(k, second);
    await redis.xdel(k.events, '0-2');
    await write(k, second);
    assert.deepEqual([await fillsOf(k, first), await fillsOf(k, second)], [1, 1]);
    assert.deepEqual(
      (await redis.xrange(k.events, '-', '+')).map(([id]) => id),
      ['0-1'],
    );
  });

  it('writes text beyond ASCII as UTF-8, from a small batch sent as strings and a large one encoded', async () => {
    const k = shardKeys(prefix, 3);
    const named = (seq: number): OrderState => ({
      ...order(seq, 'NEW', 0),
      client_order_id: `ordre-${seq}-é-中-😀`,
    });
    const small = [named(1)];
    const large = Array.from({ length: 300 }, (_, i) => named(2 + i));
    const batchOf = (orders: OrderState[]): ProjectedBatch => ({
      firstSeq: (orders[0] as OrderState).seq,
      lastSeq: (orders[orders.length - 1] as OrderState).seq,
      orders: new Map(orders.map((o) => [o.seq, o])),
      refusals: [],
      trades: [],
      fills: new Map(),
    });
    const readBack = async (orders: OrderState[]) => {
      for (const o of orders) {
        const j = (await redis.hgetBuffer(k.order(o.id), 'j')) as Buffer;
        assert.deepEqual(j, Buffer.from(JSON.stringify(o)), `state of ${o.seq}, byte for byte`);
      }
      const [[, fields]] = (await redis.xrevrange(k.events, '+', '-', 'COUNT', 1)) as [
        [string, string[]],
      ];
      assert.deepEqual((JSON.parse(fields[1] as string) as { orders: unknown }).orders, orders);
    };

    await write(k, batchOf(small)); // also defines the script command on this client
    await readBack(small);
    // The script calls as writeBatch makes them (the small batch again, which writes nothing
    // twice): the small batch's JSON goes as strings, the large one's as buffers.
    const client = redis as unknown as Record<string, (args: unknown[]) => Promise<number>>;
    const call = client.mbWriteBatch as (args: unknown[]) => Promise<number>;
    const sent: (string | number | Buffer)[][] = [];
    client.mbWriteBatch = (args) => {
      sent.push(args as (string | number | Buffer)[]);
      return call.call(redis, args);
    };
    try {
      for (const orders of [small, large]) {
        await write(k, batchOf(orders));
      }
    } finally {
      client.mbWriteBatch = call;
    }
    const kinds = (args: (string | number | Buffer)[]) =>
      new Set(args.filter((a) => typeof a !== 'number' && a.length > 500).map((a) => typeof a));
    assert.deepEqual(sent.map(kinds), [new Set(['string']), new Set(['object'])]);
    await readBack(large);
  });

  it('refuses a batch that does not follow what Redis holds, and writes nothing of it', async () => {
    const k = shardKeys(prefix, 4);
    await write(k, filledBatch(1));
    const second = filledBatch(2);
    const third = filledBatch(3);
    // Its last command is not in the order stream (Redis lost it), or another is in its place
    // (an order queued again after the restart took its seq).
    const text = JSON.stringify({ k: 'place', order: { seq: 2 } });
    await assert.rejects(writeBatch(redis, k, second, text), StaleBatchError);
    await redis.xadd(k.orders, '0-2', 'c', '{"k":"place","order":"another"}');
    await assert.rejects(writeBatch(redis, k, second, text), StaleBatchError);
    // A gap: W is 1, the batch begins at 3 (the dispatcher's W was lost with a Redis restart).
    await assert.rejects(write(k, third), StaleBatchError);
    assert.deepEqual([await fillsOf(k, second), await fillsOf(k, third)], [0, 0]);
    assert.deepEqual(
      (await redis.xrange(k.events, '-', '+')).map(([id]) => id),
      ['0-1'],
    );
    assert.equal(await redis.get(k.written), '1');
    assert.equal(await redis.exists(k.order([...second.orders.values()][0]?.id ?? '')), 0);
    // The batch that does follow is written.
    await writeBatch(redis, k, second, '{"k":"place","order":"another"}');
    assert.equal(await fillsOf(k, second), 1);
    assert.equal(await redis.get(k.written), '2');
  });

  /**
   * The order-stream entry at `seq`, as the dispatcher read it: added (a stand-in command) if the
   * stream has none there yet.
   */
  async function command(k: ShardKeys, seq: number): Promise<string> {
    const id = `0-${seq}`;
    const [found] = await redis.xrange(k.orders, id, id);
    if (found !== undefined) return found[1][1] as string;
    const text = JSON.stringify({ k: 'place', order: { seq } });
    await redis.xadd(k.orders, id, 'c', text);
    return text;
  }

  /** Writes a batch as the dispatcher does, its last command in the order stream. */
  async function write(k: ShardKeys, b: ProjectedBatch): Promise<void> {
    await writeBatch(redis, k, b, await command(k, b.lastSeq));
  }

  /** A batch of one order, placed and filled by seq `seq`, with its one fill. */
  function filledBatch(seq: number): ProjectedBatch {
    const o = order(seq, 'FILLED', 10);
    const f: Fill = {
      trade_id: `t-${seq}`,
      price: '100.00',
      quantity: '10',
      liquidity: 'TAKER',
      executed_at: AT,
    };
    return {
      firstSeq: seq,
      lastSeq: seq,
      orders: new Map([[seq, o]]),
      trades: [],
      refusals: [],
      fills: new Map([[o.id, [f]]]),
    };
  }

  /** The length of the fills list of a batch's one order: how often its fill was written. */
  async function fillsOf(k: ShardKeys, b: ProjectedBatch): Promise<number> {
    const [o] = [...b.orders.values()] as [OrderState];
    return redis.llen(k.fills(o.id));
  }
});
