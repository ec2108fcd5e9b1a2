import { BookSide } from './book-side.js';
import type { Order } from './order.js';
import { StopBook } from './stop-book.js';
import { Side } from './types.js';

/** Everything the engine keeps for one symbol. */
export class OrderBook {
  readonly bids = new BookSide(true);
  readonly asks = new BookSide(false);
  readonly stops = new StopBook();
  /** Price of the symbol's last trade in ticks; 0 before the first. */
  lastTradePrice = 0;

  constructor(readonly symbol: string) {}

  /** The side an order rests on. */
  own(side: Side): BookSide {
    return side === Side.BUY ? this.bids : this.asks;
  }

  /** The side an order trades against. */
  opposite(side: Side): BookSide {
    return side === Side.BUY ? this.asks : this.bids;
  }

  /** True when a limit order at `price` would trade on arrival. */
  wouldTrade(side: Side, price: number): boolean {
    return this.opposite(side).reaches(price);
  }

  /** Takes a resting order out of the book (not out of the engine's index). */
  unrest(order: Order): void {
    this.own(order.side).remove(order);
  }
}
