import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { candles, fillsOfOrder, recentTrades } from '../../src/db/trades.js';
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

  it('makes candles: open and close in the engine’s order, exact sums, empty intervals left out', async () => {
    const { alice, bob } = await arrange(db.sql);
    const maker = orderState(alice, { symbol: 'GOOG', side: 'SELL', seq: 10 });
    const taker = orderState(bob, { symbol: 'GOOG', side: 'BUY', seq: 11 });
    for (const o of [maker, taker]) await putOrder(db.sql, o);
    const put = (seq: number, tradeNo: number, iso: string, price: string, quantity: string) =>
      putTrade(db.sql, trade(taker, maker, seq, tradeNo, { price, quantity, executed_at: iso }));
    // 10:00 – 10:01: three trades, two of one command in the same millisecond (its second is the
    // close, and stored first to show that the order comes from seq and trade number).
    await put(101, 0, '2026-12-08T10:00:00.000Z', '140.10', '3');
    await put(102, 1, '2026-12-08T10:00:59.999Z', '139.95', '2');
    await put(102, 0, '2026-12-08T10:00:59.999Z', '140.30', '1');
    // 10:01 has none; 10:02 one at its first and one at its last millisecond, and one at the
    // first of 10:03, outside the window below; 09:59 one; and a trade of another symbol in 10:00.
    await put(103, 0, '2026-12-08T10:02:00.000Z', '0.10', '7');
    await put(104, 0, '2026-12-08T10:02:59.999Z', '0.15', '1');
    await put(105, 0, '2026-12-08T10:03:00.000Z', '0.20', '1');
    await put(99, 0, '2026-12-08T09:59:59.999Z', '141.00', '1');
    await putTrade(
      db.sql,
      trade(orderState(bob, { symbol: 'MSFT', seq: 12 }), maker, 500, 0, {
        symbol: 'MSFT',
        executed_at: '2026-12-08T10:00:30.000Z',
      }),
    );

    const minute = (from: string, to: string) =>
      candles(db.sql, 'GOOG', 60, new Date(from), new Date(to));
    assert.deepEqual(await minute('2026-12-08T10:00:00.000Z', '2026-12-08T10:02:00.000Z'), [
      {
        open_time: '2026-12-08T10:00:00.000Z',
        open: '140.10',
        high: '140.30',
        low: '139.95',
        close: '139.95',
        volume: '6',
        // 140.10 × 3 + 140.30 × 1 + 139.95 × 2, exactly
        quote_volume: '840.50',
        trades: 3,
      },
      {
        open_time: '2026-12-08T10:02:00.000Z',
        open: '0.10',
        high: '0.15',
        low: '0.10',
        close: '0.15',
        volume: '8',
        quote_volume: '0.85',
        trades: 2,
      },
    ]);
    // The window is of candles' starts: 09:59 is outside it, 10:02 too when it ends at 10:01.
    assert.deepEqual(
      (await minute('2026-12-08T10:00:00.000Z', '2026-12-08T10:01:00.000Z')).map((c) => c.trades),
      [3],
    );
    // Days start at midnight UTC, four hours at 08:00.
    const day = await candles(
      db.sql,
      'GOOG',
      86_400,
      new Date('2026-12-08T00:00:00.000Z'),
      new Date('2026-12-08T00:00:00.000Z'),
    );
    assert.deepEqual(
      day.map((c) => [c.open_time, c.open, c.close, c.volume, c.trades]),
      [['2026-12-08T00:00:00.000Z', '141.00', '0.20', '16', 7]],
    );
    const fourHours = await candles(
      db.sql,
      'GOOG',
      14_400,
      new Date('2026-12-08T08:00:00.000Z'),
      new Date('2026-12-08T08:00:00.000Z'),
    );
    assert.deepEqual(
      fourHours.map((c) => c.open_time),
      ['2026-12-08T08:00:00.000Z'],
    );
  });
});
