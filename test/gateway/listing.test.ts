// GET /v1/orders merges the status cache (Redis) with PostgreSQL, which may be a flush behind:
// a listing filtered by status must still hold the first `limit` orders that match now.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually, startTestSystem } from '../support/system.js';
import type { TestSystem } from '../support/system.js';

describe('listing orders across the cache and PostgreSQL', () => {
  let t: TestSystem;
  let alice: { id: string; key: string };

  before(async () => {
    t = await startTestSystem();
    alice = await t.user('alice');
  });
  after(() => t.stop());

  const listed = async (query: string): Promise<string[]> => {
    const r = await t.api(alice.key, 'GET', `/v1/orders?${query}`);
    assert.equal(r.status, 200);
    return (r.body.orders as { id: string }[]).map((o) => o.id);
  };

  it('OPEN with a limit: orders PostgreSQL still has open but the cache has closed make way for older open ones', async () => {
    const ids: string[] = [];
    for (const price of ['1.00', '2.00', '3.00']) {
      const r = await t.api(alice.key, 'POST', '/v1/orders', {
        symbol: 'AAPL',
        side: 'BUY',
        type: 'LIMIT',
        quantity: '1',
        price,
      });
      assert.equal(r.status, 201);
      ids.push(r.body.id as string);
    }
    const [oldest, middle, newest] = ids as [string, string, string];
    await eventually(async () => {
      const rows = await t.db.sql`
        SELECT 1 FROM orders WHERE id = ANY(${ids}::uuid[]) AND status = 'NEW'`;
      return rows.length === 3 ? true : undefined;
    });
    // PostgreSQL falls behind: the two newest are canceled in the cache only.
    await t.system.writer?.stop();
    for (const id of [newest, middle]) {
      assert.equal((await t.api(alice.key, 'DELETE', `/v1/orders/${id}`)).status, 202);
      await eventually(async () => {
        const r = await t.api(alice.key, 'GET', `/v1/orders/${id}`);
        return r.body.status === 'CANCELED' ? true : undefined;
      });
    }
    // The oldest has left the user's recent-order index, as after 500 newer orders.
    const k = t.system.queue.shardFor('AAPL');
    await t.system.redis.zrem(k.recent(alice.id), oldest);

    assert.deepEqual(await listed('status=OPEN&limit=1'), [oldest]);
    assert.deepEqual(await listed('status=OPEN&limit=2'), [oldest]);
    assert.deepEqual(await listed('status=CLOSED&limit=5'), [newest, middle]);
    assert.deepEqual(await listed('status=ALL&limit=2'), [newest, middle]);
    assert.deepEqual(await listed('status=ALL'), [newest, middle, oldest]);
  });
});
