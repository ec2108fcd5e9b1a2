// Canceling all of a user's orders (`DELETE /v1/orders`) through HTTP against real Redis and
// PostgreSQL, on two engine shards: of one symbol and side, then of every symbol; orders accepted
// before it are canceled even when still queued, none accepted after it; other users' orders are
// untouched; and every refusal changes nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually, settledStatuses, startTestSystem } from '../support/system.js';
import type { TestSystem } from '../support/system.js';

type Order = Record<string, unknown> & { id: string; status: string };

describe('canceling all of a user’s orders', () => {
  let t: TestSystem;
  let alice: { id: string; key: string };
  let bob: { id: string; key: string };

  before(async () => {
    // AAPL and MSFT on different engines: a mass cancel of every symbol reaches both.
    t = await startTestSystem({ SHARDS: '2', SHARD_PINS: 'AAPL=0,MSFT=1' });
    [alice, bob] = await Promise.all([t.user('alice'), t.user('bob')]);
  });
  after(() => t.stop());

  async function submit(key: string, body: Record<string, unknown>): Promise<Order> {
    const r = await t.api(key, 'POST', '/v1/orders', body);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body as Order;
  }
  const limit = (symbol: string, side: string, price: string) => ({
    symbol,
    side,
    type: 'LIMIT',
    quantity: '2',
    price,
  });

  const statuses = (key: string, orders: Order[]) => settledStatuses(t, key, orders);
  /** Waits until the given orders are all in `status`. */
  const until = (key: string, orders: Order[], status: string) =>
    eventually(async () => {
      const now = await statuses(key, orders);
      return now.every((s) => s.startsWith(status)) ? now : undefined;
    });

  const cancelAll = (key: string | undefined, query = '') =>
    t.api(key, 'DELETE', `/v1/orders${query}`);

  it('cancels the caller’s orders of one symbol and side, then of every symbol, and no one else’s', async () => {
    const aaplBids = [
      await submit(alice.key, limit('AAPL', 'BUY', '180.00')),
      await submit(alice.key, limit('AAPL', 'BUY', '181.00')),
    ];
    // A buy stop waits (no trade yet): it is canceled with the bids.
    const stop = await submit(alice.key, {
      symbol: 'AAPL',
      side: 'BUY',
      type: 'STOP_LIMIT',
      quantity: '1',
      price: '200.00',
      stop_price: '199.00',
    });
    const aaplAsk = await submit(alice.key, limit('AAPL', 'SELL', '190.00'));
    const msftBid = await submit(alice.key, limit('MSFT', 'BUY', '300.00'));
    const bobs = [
      await submit(bob.key, limit('AAPL', 'BUY', '179.00')),
      await submit(bob.key, limit('MSFT', 'SELL', '310.00')),
    ];
    await until(alice.key, [...aaplBids, stop, aaplAsk, msftBid], 'NEW');
    await until(bob.key, bobs, 'NEW');

    const r = await cancelAll(alice.key, '?symbol=AAPL&side=BUY');
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.deepEqual(
      { ...r.body, requested_at: typeof r.body.requested_at },
      {
        symbol: 'AAPL',
        side: 'BUY',
        requested_at: 'string',
      },
    );
    assert.deepEqual(await until(alice.key, [...aaplBids, stop], 'CANCELED'), [
      'CANCELED CANCELED_BY_OWNER',
      'CANCELED CANCELED_BY_OWNER',
      'CANCELED CANCELED_BY_OWNER',
    ]);
    assert.deepEqual(await statuses(alice.key, [aaplAsk, msftBid]), ['NEW null', 'NEW null']);
    const book = await t.api(undefined, 'GET', '/v1/instruments/AAPL/book');
    assert.deepEqual(book.body.bids, [{ price: '179.00', quantity: '2' }]);
    assert.deepEqual(book.body.asks, [{ price: '190.00', quantity: '2' }]);

    // Every symbol, both sides: the rest of alice's, on both engines.
    const all = await cancelAll(alice.key);
    assert.equal(all.status, 202, JSON.stringify(all.body));
    assert.deepEqual([all.body.symbol, all.body.side], [null, null]);
    await until(alice.key, [aaplAsk, msftBid], 'CANCELED');
    assert.deepEqual(await statuses(bob.key, bobs), ['NEW null', 'NEW null']);
    const open = await eventually(async () => {
      const list = await t.api(alice.key, 'GET', '/v1/orders?status=OPEN');
      return (list.body.orders as Order[]).length === 0 ? list.body.orders : undefined;
    });
    assert.deepEqual(open, []);
    // PostgreSQL has them so too.
    const stored = await eventually(async () => {
      const rows = await t.db.sql<{ status: string; n: number }[]>`
        SELECT status, count(*)::int AS n FROM orders WHERE user_id = ${alice.id}
        GROUP BY status`;
      // Once the writer has every change: the orders there, and none still open.
      const open = rows.some((x) => x.status === 'NEW' || x.status === 'PENDING');
      return rows.length === 0 || open ? undefined : rows;
    });
    assert.deepEqual(
      stored.map((x) => ({ ...x })),
      [{ status: 'CANCELED', n: 5 }],
    );
  });

  it('cancels an order accepted before it though the engine has yet to take it, and none accepted after', async () => {
    // No wait between the 201s and the cancel: the engine takes each order in the order Redis
    // queued it, and the cancel after them.
    const before = [
      await submit(alice.key, limit('MSFT', 'BUY', '290.00')),
      await submit(alice.key, limit('AAPL', 'SELL', '195.00')),
    ];
    assert.equal((await cancelAll(alice.key)).status, 202);
    const later = await submit(alice.key, limit('MSFT', 'BUY', '291.00'));
    assert.deepEqual(await statuses(alice.key, before), [
      'CANCELED CANCELED_BY_OWNER',
      'CANCELED CANCELED_BY_OWNER',
    ]);
    assert.deepEqual(await statuses(alice.key, [later]), ['NEW null']);
    // A mass cancel with nothing to cancel is taken all the same.
    assert.equal((await cancelAll(bob.key, '?symbol=GOOG')).status, 202);
    assert.equal((await cancelAll(alice.key)).status, 202);
    await until(alice.key, [later], 'CANCELED');
  });

  it('refuses bad requests with 4xx and changes nothing', async () => {
    const resting = await submit(bob.key, limit('AAPL', 'BUY', '170.00'));
    await until(bob.key, [resting], 'NEW');
    const cases: [string | undefined, string, number, string][] = [
      [bob.key, '?side=HOLD', 400, 'VALIDATION_ERROR'],
      [bob.key, '?symbol=aapl%20x', 400, 'VALIDATION_ERROR'],
      [bob.key, '?symbol=NOPE', 400, 'UNKNOWN_SYMBOL'],
      [bob.key, '?everything=yes', 400, 'VALIDATION_ERROR'],
      [undefined, '', 401, 'UNAUTHORIZED'],
      ['not-a-key', '?symbol=AAPL', 401, 'UNAUTHORIZED'],
    ];
    for (const [key, query, status, code] of cases) {
      const r = await cancelAll(key, query);
      assert.equal(r.status, status, `${query}: ${JSON.stringify(r.body)}`);
      assert.equal((r.body.error as { code: string }).code, code, query);
    }
    // An order placed after every refusal goes to the engine behind them: were any of them
    // queued, the resting order would be canceled before it is taken.
    const marker = await submit(bob.key, limit('AAPL', 'BUY', '169.00'));
    await until(bob.key, [marker], 'NEW');
    assert.deepEqual(await statuses(bob.key, [resting]), ['NEW null']);
  });
});
