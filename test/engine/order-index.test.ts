import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Order } from '../../src/engine/order.js';
import { OrderIndex } from '../../src/engine/order-index.js';

function order(id: number): Order {
  const o = new Order();
  o.id = id;
  return o;
}

describe('OrderIndex', () => {
  it('behaves as a Map under any mix of sets and deletes, with colliding and huge ids', () => {
    const id = fc.oneof(
      fc.integer({ min: 0, max: 64 }),
      fc.integer({ min: 0, max: 64 }).map((n) => n * 1024),
      fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    );
    const op = fc.tuple(fc.boolean(), id);
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
        const index = new OrderIndex(4);
        const model = new Map<number, Order>();
        for (const [add, k] of ops) {
          if (add) {
            const o = order(k);
            index.set(k, o);
            model.set(k, o);
          } else {
            assert.equal(index.delete(k), model.delete(k));
          }
          assert.equal(index.size, model.size);
        }
        for (const [k, o] of model) assert.equal(index.get(k), o);
        for (const [, k] of ops) assert.equal(index.has(k), model.has(k));
        assert.deepEqual(
          [...index.orders()].map((o) => o.id).sort((a, b) => a - b),
          [...model.keys()].sort((a, b) => a - b),
        );
      }),
      { numRuns: 300 },
    );
  });
});
