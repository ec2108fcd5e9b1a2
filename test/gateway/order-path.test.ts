// The whole order path through HTTP against real Redis and PostgreSQL: two users, every order
// type, statuses to their final values, fills, the book, and PostgreSQL equal to the API.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { listOrders } from '../../src/db/orders.js';
import { apiOrder } from '../../src/queue/records.js';
import { eventually, startTestSystem } from '../support/system.js';
import type { Answer, TestSystem } from '../support/system.js';

type Order = Record<string, unknown> & { id: string; status: string };

for (const mode of ['queue', 'sync'] as const)
  describe(`order path, end to end (${mode})`, () => {
    let t: TestSystem;
    let alice: { id: string; key: string };
    let bob: { id: string; key: string };

    before(async () => {
      t = await startTestSystem({ ORDER_PATH: mode });
      alice = await t.user('alice');
      bob = await t.user('bob');
    });
    after(() => t.stop());

    async function submit(key: string, body: Record<string, unknown>): Promise<Order> {
      const r = await t.api(key, 'POST', '/v1/orders', body);
      assert.equal(r.status, 201, JSON.stringify(r.body));
      // Queue mode answers once the order is queued; sync mode once the engine has taken it.
      if (mode === 'queue') assert.equal(r.body.status, 'PENDING');
      else assert.notEqual(r.body.status, 'PENDING');
      return r.body as Order;
    }

    /** The order once it is no longer PENDING (or has the status wanted). */
    async function settled(key: string, id: string, status?: string): Promise<Order> {
      return eventually(async () => {
        const r = await t.api(key, 'GET', `/v1/orders/${id}`);
        assert.equal(r.status, 200);
        const o = r.body as Order;
        if (status !== undefined) return o.status === status ? o : undefined;
        return o.status === 'PENDING' ? undefined : o;
      });
    }

    const fills = async (key: string, id: string): Promise<Answer['body']['fills']> =>
      (await t.api(key, 'GET', `/v1/orders/${id}/fills`)).body.fills;

    it('matches orders of every type across two users and reports every final state', async () => {
      const a1 = await submit(alice.key, {
        symbol: 'AAPL',
        side: 'SELL',
        type: 'LIMIT',
        quantity: '10',
        price: '100.00',
      });
      const a2 = await submit(alice.key, {
        symbol: 'AAPL',
        side: 'SELL',
        type: 'LIMIT',
        quantity: 5,
        price: 101,
      });
      assert.equal((await settled(alice.key, a2.id)).status, 'NEW');

      // MARKET sweeps two levels at the makers' prices.
      const b1 = await submit(bob.key, {
        symbol: 'AAPL',
        side: 'BUY',
        type: 'MARKET',
        quantity: '12',
      });
      const b1s = await settled(bob.key, b1.id);
      assert.equal(b1s.status, 'FILLED');
      assert.equal(b1s.filled_quantity, '12');
      assert.equal(b1s.average_fill_price, '100.166667');
      assert.equal(b1s.time_in_force, 'IOC');
      assert.equal((await settled(alice.key, a1.id)).status, 'FILLED');
      const a2s = await settled(alice.key, a2.id, 'PARTIALLY_FILLED');
      assert.equal(a2s.filled_quantity, '2');
      const b1f = await fills(bob.key, b1.id);
      assert.deepEqual(
        (b1f as Record<string, unknown>[]).map((f) => [f.price, f.quantity, f.liquidity]),
        [
          ['100.00', '10', 'TAKER'],
          ['101.00', '2', 'TAKER'],
        ],
      );
      assert.deepEqual(
        ((await fills(alice.key, a1.id)) as Record<string, unknown>[]).map((f) => f.liquidity),
        ['MAKER'],
      );

      // IOC: takes what rests at its price, the rest is canceled.
      const b2 = await submit(bob.key, {
        symbol: 'AAPL',
        side: 'BUY',
        type: 'LIMIT',
        time_in_force: 'IOC',
        quantity: '10',
        price: '101.00',
      });
      const b2s = await settled(bob.key, b2.id);
      assert.deepEqual(
        [b2s.status, b2s.filled_quantity, b2s.reject_reason],
        ['CANCELED', '3', 'IOC_REMAINDER'],
      );
      assert.equal((await settled(alice.key, a2.id, 'FILLED')).filled_quantity, '5');

      // Stops wait for the last trade price (101 now).
      const a3 = await submit(alice.key, {
        symbol: 'AAPL',
        side: 'SELL',
        type: 'STOP_MARKET',
        quantity: '2',
        stop_price: '99.00',
      });
      const a4 = await submit(alice.key, {
        symbol: 'AAPL',
        side: 'BUY',
        type: 'LIMIT',
        quantity: '5',
        price: '99.00',
        post_only: true,
      });
      const b3 = await submit(bob.key, {
        symbol: 'AAPL',
        side: 'SELL',
        type: 'STOP_LIMIT',
        quantity: '3',
        price: '98.00',
        stop_price: '100.00',
      });
      assert.equal((await settled(alice.key, a3.id)).status, 'NEW');
      assert.equal((await settled(bob.key, b3.id)).status, 'NEW');
      assert.equal((await settled(alice.key, a4.id)).status, 'NEW');

      // FOK that cannot fill whole: canceled, nothing traded.
      const b4 = await submit(bob.key, {
        symbol: 'AAPL',
        side: 'SELL',
        type: 'LIMIT',
        time_in_force: 'FOK',
        quantity: '10',
        price: '99.00',
      });
      const b4s = await settled(bob.key, b4.id);
      assert.deepEqual(
        [b4s.status, b4s.filled_quantity, b4s.reject_reason],
        ['CANCELED', '0', 'FOK_NOT_FILLABLE'],
      );

      // A trade at 99 triggers both sell stops, highest stop first.
      const b5 = await submit(bob.key, {
        symbol: 'AAPL',
        side: 'SELL',
        type: 'LIMIT',
        quantity: '1',
        price: '99.00',
      });
      assert.equal((await settled(bob.key, b5.id)).status, 'FILLED');
      const b3s = await settled(bob.key, b3.id, 'FILLED');
      assert.deepEqual([b3s.filled_quantity, b3s.average_fill_price], ['3', '99.00']);
      const a3s = await settled(alice.key, a3.id, 'CANCELED');
      assert.deepEqual([a3s.filled_quantity, a3s.reject_reason], ['1', 'IOC_REMAINDER']);
      assert.equal((await settled(alice.key, a4.id, 'FILLED')).filled_quantity, '5');

      // Post-only that would trade, self-trade prevention, and a cancel.
      const b6 = await submit(bob.key, {
        symbol: 'AAPL',
        side: 'SELL',
        type: 'LIMIT',
        quantity: '1',
        price: '120.00',
      });
      assert.equal((await settled(bob.key, b6.id)).status, 'NEW');
      const a5 = await submit(alice.key, {
        symbol: 'AAPL',
        side: 'BUY',
        type: 'LIMIT',
        quantity: '1',
        price: '120.00',
        post_only: true,
      });
      const a5s = await settled(alice.key, a5.id);
      assert.deepEqual([a5s.status, a5s.reject_reason], ['REJECTED', 'POST_ONLY_WOULD_TRADE']);
      const b7 = await submit(bob.key, {
        symbol: 'AAPL',
        side: 'BUY',
        type: 'LIMIT',
        quantity: '1',
        price: '120.00',
        self_trade_prevention: 'CANCEL_NEWEST',
      });
      const b7s = await settled(bob.key, b7.id);
      assert.deepEqual([b7s.status, b7s.reject_reason], ['CANCELED', 'SELF_TRADE_PREVENTION']);
      const a6 = await submit(alice.key, {
        symbol: 'AAPL',
        side: 'SELL',
        type: 'LIMIT',
        quantity: '7',
        price: '150.00',
      });
      await settled(alice.key, a6.id, 'NEW');
      const del = await t.api(alice.key, 'DELETE', `/v1/orders/${a6.id}`);
      assert.equal(del.status, 202);
      assert.equal(del.body.id, a6.id);
      const a6s = await settled(alice.key, a6.id, 'CANCELED');
      assert.equal(a6s.reject_reason, 'CANCELED_BY_OWNER');
      const again = await t.api(alice.key, 'DELETE', `/v1/orders/${a6.id}`);
      assert.equal(again.status, 409);
      assert.equal(again.body.error?.code, 'ORDER_CLOSED');

      // The book: only bob's ask at 120 rests.
      const book = await t.api(bob.key, 'GET', '/v1/instruments/AAPL/book?depth=5');
      assert.equal(book.status, 200);
      assert.deepEqual(
        [book.body.bids, book.body.asks],
        [[], [{ price: '120.00', quantity: '1' }]],
      );
      const trades = await t.api(bob.key, 'GET', '/v1/instruments/AAPL/trades?limit=100');
      const prices = (trades.body.trades as Record<string, unknown>[]).map((x) => [
        x.price,
        x.quantity,
      ]);
      assert.deepEqual(prices, [
        ['99.00', '1'],
        ['99.00', '3'],
        ['99.00', '1'],
        ['101.00', '3'],
        ['101.00', '2'],
        ['100.00', '10'],
      ]);

      // After a flush PostgreSQL holds every order and trade with the values the API shows.
      const all = [
        ...((await t.api(alice.key, 'GET', '/v1/orders?status=ALL&limit=500')).body
          .orders as Order[]),
        ...((await t.api(bob.key, 'GET', '/v1/orders?status=ALL&limit=500')).body
          .orders as Order[]),
      ];
      assert.equal(all.length, 13);
      await eventually(async () => {
        const rows = await t.db.sql<{ id: string; status: string; filled_quantity: string }[]>`
        SELECT id, status, filled_quantity::text FROM orders`;
        const byId = new Map(rows.map((r) => [r.id, r]));
        return all.every(
          (o) =>
            byId.get(o.id)?.status === o.status &&
            byId.get(o.id)?.filled_quantity === o.filled_quantity,
        )
          ? true
          : undefined;
      });
      for (const user of [alice, bob]) {
        const stored = await listOrders(t.db.sql, { userId: user.id, status: 'ALL', limit: 500 });
        const byId = (x: { id: string }, y: { id: string }) => (x.id < y.id ? -1 : 1);
        assert.deepEqual(
          stored.map(apiOrder).sort(byId),
          all.filter((o) => o.user_id === user.id).sort(byId),
        );
      }
      const storedTrades = await t.db.sql<{ price: string; quantity: string }[]>`
      SELECT price::text, quantity::text FROM trades ORDER BY seq DESC, trade_no DESC`;
      assert.deepEqual(
        storedTrades.map((r) => [r.price, r.quantity]),
        prices,
      );
    });
  });
