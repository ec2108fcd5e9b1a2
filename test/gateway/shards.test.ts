// Several engine shards (SHARDS=3): orders on symbols of different shards are matched and
// stored, and a client_order_id is the user's across shards, not each shard's.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { shardOf } from '../../src/queue/keys.js';
import { rejectsKey } from '../../src/writer/batch-writer.js';
import { eventually, startTestSystem } from '../support/system.js';
import type { TestSystem } from '../support/system.js';

const SHARDS = 3;

describe('three engine shards', () => {
  let t: TestSystem;
  let alice: { id: string; key: string };
  let bob: { id: string; key: string };
  // Two listed symbols on different shards.
  const [a, b] = ['AAPL', 'MSFT', 'GOOG', 'AMZN', 'TSLA'].reduce<string[]>(
    (found, s) =>
      found.some((f) => shardOf(f, SHARDS) === shardOf(s, SHARDS)) ? found : [...found, s],
    [],
  ) as [string, string];

  before(async () => {
    t = await startTestSystem({ SHARDS: String(SHARDS) });
    alice = await t.user('alice');
    bob = await t.user('bob');
  });
  after(() => t.stop());

  const limit = (symbol: string, side: string, cid?: string) => ({
    symbol,
    side,
    type: 'LIMIT',
    quantity: '2',
    price: '10.00',
    ...(cid === undefined ? {} : { client_order_id: cid }),
  });

  it('matches on each shard and stores every order and trade', async () => {
    assert.notEqual(shardOf(a, SHARDS), shardOf(b, SHARDS));
    const ids: string[] = [];
    for (const symbol of [a, b]) {
      const sell = await t.api(alice.key, 'POST', '/v1/orders', limit(symbol, 'SELL'));
      const buy = await t.api(bob.key, 'POST', '/v1/orders', limit(symbol, 'BUY'));
      assert.deepEqual([sell.status, buy.status], [201, 201]);
      ids.push(sell.body.id as string, buy.body.id as string);
    }
    const rows = await eventually(async () => {
      const r = await t.db.sql<{ status: string }[]>`
        SELECT status FROM orders WHERE id = ANY(${ids}::uuid[])`;
      return r.length === 4 && r.every((x) => x.status === 'FILLED') ? r : undefined;
    });
    assert.equal(rows.length, 4);
    const [trades] = await t.db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM trades WHERE taker_order_id = ANY(${ids}::uuid[])`;
    assert.equal(trades?.n, 2);
  });

  it('409 for a client_order_id reused on another shard; PostgreSQL stores one order', async () => {
    const first = await t.api(alice.key, 'POST', '/v1/orders', limit(a, 'BUY', 'x-shard'));
    assert.equal(first.status, 201);
    const second = await t.api(alice.key, 'POST', '/v1/orders', limit(b, 'BUY', 'x-shard'));
    assert.equal(second.status, 409, JSON.stringify(second.body));
    assert.equal(second.body.error?.code, 'CONFLICT');
    const again = await t.api(alice.key, 'POST', '/v1/orders', limit(a, 'BUY', 'x-shard'));
    assert.deepEqual([again.status, again.body.id], [200, first.body.id]);
    const rows = await eventually(async () => {
      const r = await t.db.sql<{ id: string; status: string }[]>`
        SELECT id, status FROM orders WHERE user_id = ${alice.id} AND client_order_id = 'x-shard'`;
      return r.length === 1 && r[0]?.status === 'NEW' ? r : undefined;
    });
    assert.equal(rows[0]?.id, first.body.id);
    for (const k of t.system.queue.shards) {
      assert.equal(await t.system.redis.xlen(rejectsKey(k.events)), 0, k.shard);
      assert.equal(await t.system.redis.xlen(rejectsKey(k.orders)), 0, k.shard);
    }
  });
});
