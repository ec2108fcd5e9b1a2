import type { Order } from './order.js';
import { Side } from './types.js';

/**
 * Stop orders of one symbol waiting for their trigger. Each side is an array sorted so that the
 * next order to trigger is the last element: buys by stop price descending (the lowest stop
 * triggers first), sells ascending (the highest first), and among equal stops the newest first,
 * so that equal stops trigger in arrival order.
 */
export class StopBook {
  readonly buys: Order[] = [];
  readonly sells: Order[] = [];

  get size(): number {
    return this.buys.length + this.sells.length;
  }

  /** True when a stop on `side` at `stopPrice` is reached by a trade at `lastPrice`. */
  static reached(side: Side, stopPrice: number, lastPrice: number): boolean {
    return side === Side.BUY ? lastPrice >= stopPrice : lastPrice <= stopPrice;
  }

  /** Adds a stop; it must be newer than every stop already waiting. */
  add(order: Order): void {
    const arr = order.side === Side.BUY ? this.buys : this.sells;
    const buy = order.side === Side.BUY;
    let lo = 0;
    let hi = arr.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const s = (arr[mid] as Order).stopPrice;
      if (buy ? s <= order.stopPrice : s >= order.stopPrice) hi = mid;
      else lo = mid + 1;
    }
    arr.splice(lo, 0, order);
  }

  /** Appends a stop at the trigger-last end, for restoring arrays saved in order. */
  restore(order: Order): void {
    (order.side === Side.BUY ? this.buys : this.sells).push(order);
  }

  remove(order: Order): void {
    const arr = order.side === Side.BUY ? this.buys : this.sells;
    const i = arr.lastIndexOf(order);
    if (i >= 0) arr.splice(i, 1);
  }

  /** Moves every stop that a trade at `price` reaches onto `queue`: buys first, then sells. */
  collect(price: number, queue: Order[]): void {
    const buys = this.buys;
    while (buys.length > 0 && (buys[buys.length - 1] as Order).stopPrice <= price) {
      queue.push(buys.pop() as Order);
    }
    const sells = this.sells;
    while (sells.length > 0 && (sells[sells.length - 1] as Order).stopPrice >= price) {
      queue.push(sells.pop() as Order);
    }
  }
}
