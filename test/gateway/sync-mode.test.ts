// The synchronous path (ORDER_PATH=sync), where the gateway stores the order in PostgreSQL before
// queueing it: one client_order_id is one order however requests race, and an order queued is
// answered 201 even when the engine is slow to take it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { rejectsKey } from '../../src/writer/batch-writer.js';
import { eventually, startTestSystem } from '../support/system.js';
import type { Answer, TestSystem } from '../support/system.js';

describe('sync mode', () => {
  let t: TestSystem;
  let alice: { id: string; key: string };

  before(async () => {
    t = await startTestSystem({ ORDER_PATH: 'sync' });
    alice = await t.user('alice');
  });
  after(() => t.stop());

  const shard = () => t.system.queue.shards[0] as { orders: string; events: string };
  const order = (cid: string, price = '1.00') => ({
    symbol: 'AAPL',
    side: 'BUY',
    type: 'LIMIT',
    quantity: '1',
    price,
    client_order_id: cid,
  });

  /** Sends both bodies at once until each has been accepted once; returns every answer. */
  async function race(cid: string, bodies: [unknown, unknown]): Promise<Answer[]> {
    const answers: Answer[] = [];
    for (let i = 0; i < 20; i++) {
      const pair = await Promise.all(bodies.map((b) => t.api(alice.key, 'POST', '/v1/orders', b)));
      answers.push(...pair);
      // 503: the other request's order was being accepted; a retry gets the settled answer.
      if (pair.every((a) => a.status !== 503)) return answers;
    }
    assert.fail(`${cid}: still 503 after 20 tries`);
  }

  it('one client_order_id is one order, stored once, however two requests race', async () => {
    const accepted = new Map<string, string>();
    for (let i = 0; i < 30; i++) {
      const cid = `race-${i}`;
      // Even: the same body twice (200 for the second); odd: two bodies (409 for the second).
      const bodies: [unknown, unknown] =
        i % 2 === 0 ? [order(cid), order(cid)] : [order(cid), order(cid, '2.00')];
      const answers = await race(cid, bodies);
      const created = answers.filter((a) => a.status === 201);
      assert.equal(created.length, 1, `${cid}: ${JSON.stringify(answers.map((a) => a.status))}`);
      const id = (created[0] as Answer).body.id as string;
      for (const a of answers) {
        assert.ok([200, 201, 409, 503].includes(a.status), `${cid}: ${a.status}`);
        if (a.status === 200) assert.equal(a.body.id, id);
        if (a.status === 409) assert.equal(a.body.error?.code, 'CONFLICT');
        if (a.status === 503) assert.equal(a.headers.get('retry-after'), '1');
      }
      accepted.set(cid, id);
    }
    // PostgreSQL holds each client_order_id once, under the id answered 201, and has taken the
    // engine's state of every one of them (the writer refused nothing).
    const rows = await eventually(async () => {
      const r = await t.db.sql<{ client_order_id: string; id: string; status: string }[]>`
        SELECT client_order_id, id, status FROM orders
        WHERE user_id = ${alice.id} AND client_order_id LIKE 'race-%'`;
      return r.length === accepted.size && r.every((x) => x.status === 'NEW') ? r : undefined;
    });
    assert.deepEqual(
      new Map(rows.map((r) => [r.client_order_id, r.id])),
      accepted,
      'each client_order_id stored under the id answered 201',
    );
    assert.equal(await t.system.redis.xlen(rejectsKey(shard().events)), 0);
  });

  it('201 for an order the engine is slow to take: it is queued and stored', async () => {
    for (const d of t.system.dispatchers) await d.stop();
    const before = await t.system.redis.xlen(shard().orders);
    const r = await t.api(alice.key, 'POST', '/v1/orders', order('slow'));
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.status, 'PENDING');
    assert.equal(await t.system.redis.xlen(shard().orders), before + 1);
    const [row] = await t.db.sql<{ id: string; status: string }[]>`
      SELECT id, status FROM orders WHERE id = ${r.body.id as string}`;
    assert.deepEqual({ ...row }, { id: r.body.id, status: 'PENDING' });
  });
});
