import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MatchingEngine } from '../../src/engine/matching-engine.js';
import { OrderType, Side, TimeInForce } from '../../src/engine/types.js';
import { cancel, place } from './commands.js';
import { Harness, checkConsistency } from './engine-helpers.js';

function busyBook(): Harness {
  const h = new Harness(['AAA', 'BBB']);
  h.run(
    place(1, { side: Side.SELL, price: 101, quantity: 3, ownerId: 2 }),
    place(2, { side: Side.SELL, price: 101, quantity: 2, ownerId: 3 }),
    place(3, { side: Side.BUY, price: 101, quantity: 1, ownerId: 4 }),
    place(4, { side: Side.BUY, price: 99, quantity: 5, postOnly: true }),
    place(5, { orderType: OrderType.STOP_MARKET, tif: TimeInForce.IOC, price: 0, stopPrice: 102 }),
    place(6, { orderType: OrderType.STOP_LIMIT, side: Side.SELL, price: 90, stopPrice: 95 }),
    place(7, { symbol: 'BBB', side: Side.SELL, price: 7, quantity: 9 }),
    cancel(8, 404),
  );
  return h;
}

describe('snapshot', () => {
  it('restores books, queues, stops, last trade price and sequence exactly', () => {
    const h = busyBook();
    const restored = MatchingEngine.restore(h.engine.snapshot());
    checkConsistency(restored);
    assert.equal(restored.lastSeq, 8);
    assert.deepEqual(restored.symbols(), ['AAA', 'BBB']);
    const byId = (e: MatchingEngine) => e.liveOrders().sort((a, b) => a.orderId - b.orderId);
    assert.deepEqual(byId(restored), byId(h.engine));
    for (const s of ['AAA', 'BBB']) assert.deepEqual(restored.depth(s, 50), h.engine.depth(s, 50));
    assert.deepEqual(restored.snapshot(), h.engine.snapshot());

    // Queue order survived: a sell at 101 hits #1 (partly filled) before #2, and the trade at 102
    // would need the stop's trigger state: 101 trades leave stop #5 (102) waiting.
    const next = [place(9, { price: 101, quantity: 3, ownerId: 5 })];
    const a = new Harness([], restored);
    assert.deepEqual(a.run(...next), h.run(...next));
    assert.deepEqual(a.last, h.last);
  });

  it('is compact: a resting order takes a few dozen bytes', () => {
    const h = new Harness();
    for (let i = 1; i <= 1000; i++) {
      h.engine.apply(place(i, { price: 1000 + (i % 50), quantity: 1 + (i % 7) }), h.out);
    }
    const bytes = h.engine.snapshot().length;
    assert.ok(bytes < 1000 * 32, `${bytes} bytes for 1000 orders`);
  });

  it('refuses a damaged, truncated or foreign snapshot', () => {
    const good = busyBook().engine.snapshot();
    const flipped = good.slice();
    flipped[10] = (flipped[10] as number) ^ 0x01;
    assert.throws(() => MatchingEngine.restore(flipped), /checksum/);
    assert.throws(
      () => MatchingEngine.restore(good.slice(0, good.length - 9)),
      /checksum|truncated/,
    );
    assert.throws(() => MatchingEngine.restore(new Uint8Array(3)), /truncated/);
    assert.throws(
      () => MatchingEngine.restore(new TextEncoder().encode('hello, world')),
      /checksum/,
    );
  });
});
