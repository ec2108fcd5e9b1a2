import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fillsOfOrder, recentTrades } from '../../src/db/trades.js';
import { freshDatabase } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';
import { arrange, orderState, putOrder, putTrade, trade } from './fixtures.js';

describe('trades', () => {
  let db: TestDatabase;
  before(async () => {
    db = await freshDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('gives each order its fills oldest first, as MAKER or TAKER, a self-trade as both', async () => {
    const { alice, bob } = await arrange(db.sql);
    const maker = orderState(alice, { side: 'SELL', price: '187.25', seq: 1 });
    const taker = orderState(bob, { side: 'BUY', price: '187.5', seq: 2 });
    const self = orderState(alice, { side: 'BUY', price: '187.3', seq: 3 });
    for (const o of [maker, taker, self]) await putOrder(db.sql, o);
    const t1 = trade(taker, maker, 2, 0, { quantity: '3' });
    const t2 = trade(taker, maker, 2, 1, { quantity: '2', price: '187.25' });
    const t3 = trade(self, maker, 3, 0, { quantity: '5' });
    // Stored out of order: the answer's order comes from the query, not the insert.
    for (const t of [t3, t1, t2]) await putTrade(db.sql, t);

    const fill = (t: typeof t1, liquidity: 'MAKER' | 'TAKER') => ({
      trade_id: t.id,
      price: t.price,
      quantity: t.quantity,
      liquidity,
      executed_at: t.executed_at,
    });
    assert.deepEqual(await fillsOfOrder(db.sql, maker.id), [
      fill(t1, 'MAKER'),
      fill(t2, 'MAKER'),
      fill(t3, 'MAKER'),
    ]);
    assert.deepEqual(await fillsOfOrder(db.sql, taker.id), [fill(t1, 'TAKER'), fill(t2, 'TAKER')]);
    assert.deepEqual(await fillsOfOrder(db.sql, self.id), [fill(t3, 'TAKER')]);

    // A self-trade: the same order on both sides of one trade has two fills.
    const both = orderState(bob, { seq: 4 });
    await putOrder(db.sql, both);
    const t4 = trade(both, both, 4, 0);
    await putTrade(db.sql, t4);
    assert.deepEqual(await fillsOfOrder(db.sql, both.id), [fill(t4, 'MAKER'), fill(t4, 'TAKER')]);
    assert.deepEqual(await fillsOfOrder(db.sql, orderState(bob).id), []);

    const pub = (t: typeof t1) => ({
      id: t.id,
      price: t.price,
      quantity: t.quantity,
      taker_side: t.taker_side,
      executed_at: t.executed_at,
    });
    assert.deepEqual(await recentTrades(db.sql, 'AAPL', 100), [t4, t3, t2, t1].map(pub));
    assert.deepEqual(await recentTrades(db.sql, 'AAPL', 2), [t4, t3].map(pub));
    assert.deepEqual(await recentTrades(db.sql, 'MSFT', 10), []);
  });
});
