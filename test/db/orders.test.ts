import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  findByClientOrderId,
  getOrder,
  insertPendingOrder,
  listOrders,
  listOrdersQuery,
  finishedOrders,
} from '../../src/db/orders.js';
import { upsertInstrument } from '../../src/db/instruments.js';
import type { NewUser } from '../../src/db/users.js';
import type { OrderState } from '../../src/queue/records.js';
import { freshDatabase } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';
import { arrange, filled, orderState, putOrder } from './fixtures.js';

describe('orders', () => {
  let db: TestDatabase;
  let alice: NewUser;
  let bob: NewUser;
  before(async () => {
    db = await freshDatabase();
    ({ alice, bob } = await arrange(db.sql));
  });
  after(async () => {
    await db.drop();
  });

  it('inserts a pending order and reads back exactly the state it was given', async () => {
    const o = orderState(alice, { client_order_id: 'c-1', seq: 42 });
    assert.equal(await insertPendingOrder(db.sql, o, 's0'), true);
    assert.deepEqual(await getOrder(db.sql, o.id), o);
  });

  it('reads back every field of a stop order with fills, at a non-decimal tick and lot', async () => {
    await upsertInstrument(db.sql, { symbol: 'FIVE', tick_size: '0.05', lot_size: '0.5' });
    const placed = orderState(bob, {
      symbol: 'FIVE',
      side: 'SELL',
      type: 'STOP_LIMIT',
      time_in_force: 'IOC',
      quantity: '12.5',
      quantity_lots: 25,
      price: '10.15',
      price_ticks: 203,
      stop_price: '10.2',
      stop_ticks: 204,
      post_only: false,
      self_trade_prevention: 'CANCEL_BOTH',
      seq: 7,
    });
    const state: OrderState = {
      ...placed,
      status: 'CANCELED',
      reject_reason: 'IOC_REMAINDER',
      filled_quantity: '1.5',
      filled_lots: 3,
      notional: '609',
      average_fill_price: '10.15',
      version: 9,
      updated_at: '2026-11-24T07:15:03.999Z',
    };
    await putOrder(db.sql, state);
    assert.deepEqual(await getOrder(db.sql, state.id), state);
  });

  it('refuses a second insert of the same id or the same client_order_id, changing nothing', async () => {
    const o = orderState(alice, { client_order_id: 'dup' });
    assert.equal(await insertPendingOrder(db.sql, o, 's0'), true);
    assert.equal(await insertPendingOrder(db.sql, { ...o, quantity: '11' }, 's0'), false);
    const other = orderState(alice, { client_order_id: 'dup' });
    assert.equal(await insertPendingOrder(db.sql, other, 's0'), false);
    assert.deepEqual(await getOrder(db.sql, o.id), o);
    assert.equal(await getOrder(db.sql, other.id), undefined);
    // Another user may use the same client_order_id.
    assert.equal(
      await insertPendingOrder(db.sql, orderState(bob, { client_order_id: 'dup' }), 's0'),
      true,
    );
  });

  it('finds an order by its owner and client_order_id only', async () => {
    const o = orderState(alice, { client_order_id: 'find-me' });
    await insertPendingOrder(db.sql, o, 's0');
    assert.deepEqual(await findByClientOrderId(db.sql, alice.id, 'find-me'), o);
    assert.equal(await findByClientOrderId(db.sql, bob.id, 'find-me'), undefined);
    assert.equal(await findByClientOrderId(db.sql, alice.id, 'nope'), undefined);
  });

  it('names, of any number of ids, the orders PostgreSQL holds final', async () => {
    const pending = orderState(alice);
    assert.equal(await insertPendingOrder(db.sql, pending, 's0'), true);
    const open = { ...orderState(bob), seq: 7, version: 1, status: 'NEW' as const };
    const done = { ...orderState(bob), seq: 8, version: 2, status: 'REJECTED' as const };
    for (const o of [open, done]) await putOrder(db.sql, o);
    // More ids than one statement has parameters.
    const unknown = Array.from(
      { length: 70_000 },
      (_, i) => `00000000-0000-7000-8000-${i.toString(16).padStart(12, '0')}`,
    );
    const found = await finishedOrders(db.sql, [pending.id, open.id, ...unknown, done.id]);
    assert.deepEqual([...found], [done.id]);
    assert.deepEqual([...(await finishedOrders(db.sql, []))], []);
  });

  it('has no order for an unknown or malformed id', async () => {
    assert.equal(await getOrder(db.sql, '01890000-0000-7000-8000-000000000000'), undefined);
    assert.equal(await getOrder(db.sql, 'not-a-uuid'), undefined);
  });

  it('lists a user’s orders newest first, by status and symbol, up to the limit', async () => {
    const { alice: carol, bob: dave } = await arrange(db.sql);
    const states: OrderState[] = [];
    const add = async (o: OrderState) => {
      await putOrder(db.sql, o);
      states.push(o);
    };
    const pending = orderState(carol);
    await add(pending);
    const open = {
      ...orderState(carol, { symbol: 'MSFT', seq: 2 }),
      status: 'NEW' as const,
      version: 2,
    };
    await add(open);
    const partial = filled(orderState(carol, { seq: 3 }), 4, 18725, 5);
    await add(partial);
    const done = filled(orderState(carol, { symbol: 'MSFT', seq: 4 }), 10, 18725, 6);
    await add(done);
    const canceled = { ...orderState(carol, { seq: 5 }), status: 'CANCELED' as const, version: 7 };
    await add(canceled);
    await putOrder(db.sql, orderState(dave));

    const newestFirst = [...states].reverse();
    const ids = (xs: OrderState[]) => xs.map((o) => o.id);
    const list = (status: 'OPEN' | 'CLOSED' | 'ALL', symbol?: string, limit = 100) =>
      listOrders(db.sql, { userId: carol.id, status, limit, ...(symbol ? { symbol } : {}) });

    assert.deepEqual(await list('ALL'), newestFirst);
    assert.deepEqual(ids(await list('OPEN')), ids([partial, open, pending]));
    assert.deepEqual(ids(await list('CLOSED')), ids([canceled, done]));
    assert.deepEqual(ids(await list('ALL', 'MSFT')), ids([done, open]));
    assert.deepEqual(ids(await list('OPEN', 'MSFT')), ids([open]));
    assert.deepEqual(ids(await list('ALL', undefined, 2)), ids([canceled, done]));
    assert.deepEqual(await list('ALL', 'TSLA'), []);
  });

  it('lists open orders from the index of open orders, even under a generic plan', async () => {
    // A market maker's history: thousands of closed orders, a few open. PostgreSQL may settle on
    // a generic plan for a prepared statement; the partial index serves it only if the query's
    // text implies its predicate (the statuses as literals, not parameters).
    const { alice: maker } = await arrange(db.sql);
    await db.sql`
      INSERT INTO orders (id, user_id, symbol, side, type, time_in_force, quantity, price, status,
        shard, seq, version, created_at, updated_at)
      SELECT gen_random_uuid(), ${maker.id}, 'AAPL', 'SELL', 'LIMIT', 'GTC', 10, 187.25,
        CASE WHEN g % 200 = 0 THEN 'NEW' WHEN g % 7 = 0 THEN 'CANCELED' ELSE 'FILLED' END,
        's0', g, 1, now() - g * interval '1 ms', now()
      FROM generate_series(1, 20000) AS g`;
    await db.sql`ANALYZE orders`;
    const query = { userId: maker.id, status: 'OPEN', limit: 50 } as const;
    const c = await db.sql.reserve();
    let prepared = false;
    try {
      await c`SET plan_cache_mode = force_generic_plan`;
      const { string, types } = await listOrdersQuery(c, query).describe();
      assert.equal(
        types.length,
        2,
        'the statuses are in the statement as literals, not parameters',
      );
      await c.unsafe(`PREPARE listing AS ${string}`);
      prepared = true;
      const plan = (await c.unsafe(`EXPLAIN EXECUTE listing('${maker.id}', 50)`))
        .map((row) => String(row['QUERY PLAN']))
        .join('\n');
      assert.match(plan, /Index Scan using orders_user_open_created on orders/, plan);
      assert.doesNotMatch(plan, /Sort/, plan);
      const open = await listOrders(c, query);
      assert.equal(open.length, 50);
      assert.ok(open.every((o) => o.status === 'NEW'));
    } finally {
      // The connection goes back to the pool as it came.
      try {
        if (prepared) await c.unsafe('DEALLOCATE listing');
        await c`RESET plan_cache_mode`;
      } finally {
        c.release();
      }
    }
  });
});
