// Amending an order (`PATCH /v1/orders/{id}`) through HTTP against real Redis and PostgreSQL:
// the engine's REPLACE from the gateway to PostgreSQL, its queue priority, its trades when the new
// price crosses, and every refusal, each changing nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { shardKeys } from '../../src/queue/keys.js';
import { eventually, startTestSystem } from '../support/system.js';
import type { Answer, TestSystem } from '../support/system.js';

type Order = Record<string, unknown> & { id: string; status: string };

describe('amending an order', () => {
  let t: TestSystem;
  let alice: { id: string; key: string };
  let bob: { id: string; key: string };
  let carol: { id: string; key: string };

  before(async () => {
    t = await startTestSystem();
    [alice, bob, carol] = await Promise.all([t.user('alice'), t.user('bob'), t.user('carol')]);
  });
  after(() => t.stop());

  async function submit(key: string, body: Record<string, unknown>): Promise<Order> {
    const r = await t.api(key, 'POST', '/v1/orders', body);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body as Order;
  }

  /** The order once `done` holds for it. */
  async function until(key: string, id: string, done: (o: Order) => boolean): Promise<Order> {
    return eventually(async () => {
      const r = await t.api(key, 'GET', `/v1/orders/${id}`);
      assert.equal(r.status, 200);
      return done(r.body as Order) ? (r.body as Order) : undefined;
    });
  }
  const settled = (key: string, id: string) => until(key, id, (o) => o.status !== 'PENDING');

  const amend = (key: string, id: string, body: unknown): Promise<Answer> =>
    t.api(key, 'PATCH', `/v1/orders/${id}`, body);

  const book = async (symbol: string) =>
    (await t.api(undefined, 'GET', `/v1/instruments/${symbol}/book?depth=10`)).body;

  const fillsOf = async (key: string, id: string) =>
    (
      (await t.api(key, 'GET', `/v1/orders/${id}/fills`)).body.fills as Record<string, unknown>[]
    ).map((f) => [f.price, f.quantity, f.liquidity]);

  it('a smaller quantity at the same price keeps the order’s place; a larger one loses it', async () => {
    const first = await submit(alice.key, {
      symbol: 'MSFT',
      side: 'SELL',
      type: 'LIMIT',
      quantity: '5',
      price: '300.00',
    });
    const second = await submit(bob.key, {
      symbol: 'MSFT',
      side: 'SELL',
      type: 'LIMIT',
      quantity: '5',
      price: '300.00',
    });
    await settled(bob.key, second.id);

    const down = await amend(alice.key, first.id, { quantity: '3' });
    assert.equal(down.status, 202, JSON.stringify(down.body));
    assert.equal(down.body.id, first.id);
    await until(alice.key, first.id, (o) => o.quantity === '3');
    // Still first in the queue at 300: a BUY of 3 takes alice's.
    await submit(carol.key, { symbol: 'MSFT', side: 'BUY', type: 'MARKET', quantity: '3' });
    const filled = await until(alice.key, first.id, (o) => o.status === 'FILLED');
    assert.deepEqual([filled.quantity, filled.filled_quantity], ['3', '3']);
    assert.equal((await settled(bob.key, second.id)).filled_quantity, '0');

    // A third order rests behind bob's; bob adds to his and goes behind it.
    const third = await submit(alice.key, {
      symbol: 'MSFT',
      side: 'SELL',
      type: 'LIMIT',
      quantity: '2',
      price: '300.00',
    });
    await settled(alice.key, third.id);
    assert.equal((await amend(bob.key, second.id, { quantity: 6 })).status, 202);
    await until(bob.key, second.id, (o) => o.quantity === '6');
    await submit(carol.key, { symbol: 'MSFT', side: 'BUY', type: 'MARKET', quantity: '2' });
    await until(alice.key, third.id, (o) => o.status === 'FILLED');
    assert.equal((await settled(bob.key, second.id)).filled_quantity, '0');
    assert.deepEqual((await book('MSFT')).asks, [{ price: '300.00', quantity: '6' }]);
  });

  it('a new price that crosses trades at once, at the resting order’s price', async () => {
    const bid = await submit(bob.key, {
      symbol: 'GOOG',
      side: 'BUY',
      type: 'LIMIT',
      quantity: '4',
      price: '99.50',
    });
    const ask = await submit(alice.key, {
      symbol: 'GOOG',
      side: 'SELL',
      type: 'LIMIT',
      quantity: '10',
      price: '101.00',
    });
    await settled(alice.key, ask.id);
    await settled(bob.key, bid.id);

    // Priced down through the bid: takes it whole at 99.50 and rests the rest at 99.00.
    const r = await amend(alice.key, ask.id, { price: '99.00' });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const amended = await until(alice.key, ask.id, (o) => o.filled_quantity === '4');
    assert.deepEqual(
      [amended.status, amended.price, amended.quantity, amended.average_fill_price],
      ['PARTIALLY_FILLED', '99.00', '10', '99.50'],
    );
    assert.deepEqual(await fillsOf(alice.key, ask.id), [['99.50', '4', 'TAKER']]);
    assert.deepEqual(await fillsOf(bob.key, bid.id), [['99.50', '4', 'MAKER']]);
    assert.deepEqual((await book('GOOG')).asks, [{ price: '99.00', quantity: '6' }]);

    // The quantity is the new total, filled included: 4 filled, so 5 leaves 1 open.
    assert.equal((await amend(alice.key, ask.id, { quantity: '5' })).status, 202);
    await until(alice.key, ask.id, (o) => o.quantity === '5');
    assert.deepEqual((await book('GOOG')).asks, [{ price: '99.00', quantity: '1' }]);
    const notAbove = await amend(alice.key, ask.id, { quantity: '4' });
    assert.equal(notAbove.status, 400);
    assert.equal(notAbove.body.error?.code, 'VALIDATION_ERROR');
    assert.deepEqual(
      (notAbove.body.error?.details as { field: string }[]).map((d) => d.field),
      ['quantity'],
    );

    // PostgreSQL ends with the order as the API shows it.
    const shown = await until(alice.key, ask.id, (o) => o.quantity === '5');
    await eventually(async () => {
      const [row] = await t.db.sql<{ price: string; quantity: string; filled: string }[]>`
        SELECT price::text, quantity::text, filled_quantity::text AS filled
        FROM orders WHERE id = ${ask.id}`;
      return row?.quantity === '5' ? row : undefined;
    }).then((row) =>
      assert.deepEqual(
        [row.price, row.quantity, row.filled],
        [shown.price, shown.quantity, shown.filled_quantity],
      ),
    );
  });

  it('two amends sent before either is applied each change only what they name', async () => {
    // Sent while the order is still PENDING, one right after the other: the second leaves the
    // quantity as the first made it, not as the order stood when it was read.
    const o = await submit(alice.key, {
      symbol: 'TSLA',
      side: 'BUY',
      type: 'LIMIT',
      quantity: '8',
      price: '200.00',
    });
    assert.equal((await amend(alice.key, o.id, { quantity: '3' })).status, 202);
    assert.equal((await amend(alice.key, o.id, { price: '201.00' })).status, 202);
    const done = await until(alice.key, o.id, (x) => x.price === '201.00');
    assert.deepEqual([done.status, done.quantity], ['NEW', '3']);
    // As queued: each names only its own field (0 for the other), whatever the gateway read.
    const redis = new Redis(t.config.redisUrl as string);
    try {
      const keys = shardKeys(t.config.redisPrefix, t.system.queue.shardIndex('TSLA'));
      const queued = (await redis.xrange(keys.orders, '-', '+')).flatMap(([, f]) => {
        const r = JSON.parse(f[1] as string) as Record<string, unknown>;
        return r.k === 'replace' && r.order_id === o.id ? [[r.price_ticks, r.quantity_lots]] : [];
      });
      assert.deepEqual(queued, [
        [0, 3],
        [20100, 0],
      ]);
    } finally {
      redis.disconnect();
    }
    assert.deepEqual((await book('TSLA')).bids, [{ price: '201.00', quantity: '3' }]);

    // A post-only order's new price that would trade: the engine refuses it, and the order is
    // as it was.
    const maker = await submit(bob.key, {
      symbol: 'TSLA',
      side: 'SELL',
      type: 'LIMIT',
      quantity: '1',
      price: '210.00',
      post_only: true,
    });
    await settled(bob.key, maker.id);
    assert.equal((await amend(bob.key, maker.id, { price: '201.00' })).status, 202);
    assert.equal((await amend(bob.key, maker.id, { quantity: '2' })).status, 202);
    const kept = await until(bob.key, maker.id, (x) => x.quantity === '2');
    assert.deepEqual([kept.price, kept.filled_quantity], ['210.00', '0']);
  });

  it('refuses, changing nothing: bad values, other users’ orders, final and non-resting orders', async () => {
    const o = await submit(alice.key, {
      symbol: 'AMZN',
      side: 'BUY',
      type: 'LIMIT',
      quantity: '7',
      price: '150.00',
    });
    await settled(alice.key, o.id);

    const refused = async (
      key: string | undefined,
      id: string,
      body: unknown,
      status: number,
      code: string,
      fields?: string[],
    ): Promise<void> => {
      const r = await amend(key as string, id, body);
      assert.equal(r.status, status, JSON.stringify(r.body));
      assert.equal(r.body.error?.code, code);
      if (fields !== undefined) {
        const details = r.body.error?.details as { field: string }[];
        assert.deepEqual(details.map((d) => d.field).sort(), fields);
      }
    };
    await refused(alice.key, o.id, {}, 400, 'VALIDATION_ERROR');
    await refused(alice.key, o.id, { side: 'SELL' }, 400, 'VALIDATION_ERROR', ['side']);
    await refused(alice.key, o.id, { price: '150.001', quantity: '0' }, 400, 'VALIDATION_ERROR', [
      'price',
      'quantity',
    ]);
    await refused(alice.key, o.id, { price: -1 }, 400, 'VALIDATION_ERROR', ['price']);
    await refused(alice.key, o.id, { price: 'abc' }, 400, 'VALIDATION_ERROR', ['price']);
    await refused(undefined, o.id, { price: '151.00' }, 401, 'UNAUTHORIZED');
    await refused(bob.key, o.id, { price: '151.00' }, 404, 'NOT_FOUND');
    await refused(
      alice.key,
      '0190a000-0000-7000-8000-000000000000',
      { price: '1' },
      404,
      'NOT_FOUND',
    );

    const stop = await submit(alice.key, {
      symbol: 'AMZN',
      side: 'BUY',
      type: 'STOP_LIMIT',
      quantity: '1',
      price: '200.00',
      stop_price: '199.00',
    });
    await settled(alice.key, stop.id);
    await refused(alice.key, stop.id, { price: '201.00' }, 409, 'NOT_AMENDABLE');

    const canceled = await submit(alice.key, {
      symbol: 'AMZN',
      side: 'BUY',
      type: 'LIMIT',
      quantity: '1',
      price: '140.00',
    });
    await settled(alice.key, canceled.id);
    assert.equal((await t.api(alice.key, 'DELETE', `/v1/orders/${canceled.id}`)).status, 202);
    await until(alice.key, canceled.id, (x) => x.status === 'CANCELED');
    await refused(alice.key, canceled.id, { price: '141.00' }, 409, 'ORDER_CLOSED');

    // Nothing of any of it reached the book or the orders.
    assert.deepEqual((await book('AMZN')).bids, [{ price: '150.00', quantity: '7' }]);
    const now = await settled(alice.key, o.id);
    assert.deepEqual([now.price, now.quantity, now.status], ['150.00', '7', 'NEW']);
    const stopNow = await settled(alice.key, stop.id);
    assert.deepEqual([stopNow.price, stopNow.status], ['200.00', 'NEW']);
  });
});
