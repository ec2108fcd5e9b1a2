// Orders for the queue's tests: user n buys n AAA at 1.00, created now.
import type { OrderState } from '../../src/queue/records.js';
import { newOrder, user } from '../dispatcher/gateway-records.js';

const AAA = { symbol: 'AAA', tick: '0.01', lot: '1' };

export { sleep } from '../engine-service/helpers.js';

export const order = (n: number): OrderState =>
  newOrder(user(n), AAA, {
    symbol: 'AAA',
    side: 'BUY',
    type: 'LIMIT',
    quantity: String(n),
    price: '1',
    created_at: new Date().toISOString(),
  });
