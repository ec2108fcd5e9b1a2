import type { Order } from './order.js';

/** All resting orders at one price of one side, in time priority: a FIFO threaded through them. */
export class PriceLevel {
  price = 0;
  head: Order | null = null;
  tail: Order | null = null;
  /** Sum of the leaves of the orders in the queue. */
  total = 0;
  count = 0;

  /** Adds an order at the back of the queue. */
  append(order: Order): void {
    order.level = this;
    order.prev = this.tail;
    order.next = null;
    if (this.tail === null) this.head = order;
    else this.tail.next = order;
    this.tail = order;
    this.total += order.leaves;
    this.count++;
  }

  /** Unlinks an order from anywhere in the queue in O(1). */
  unlink(order: Order): void {
    const { prev, next } = order;
    if (prev === null) this.head = next;
    else prev.next = next;
    if (next === null) this.tail = prev;
    else next.prev = prev;
    order.prev = null;
    order.next = null;
    order.level = null;
    this.total -= order.leaves;
    this.count--;
  }
}
