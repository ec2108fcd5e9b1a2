import type { OrderBook } from './order-book.js';
import type { PriceLevel } from './price-level.js';
import { OrderStatus, OrderType, Side, Stp, TimeInForce } from './types.js';
import type { OrderView } from './types.js';

/**
 * A live order inside the engine. Orders are pooled and their objects reused once the order is
 * done, so nothing outside the engine may hold one; `view()` gives a copy. `prev`/`next` make the
 * order its own node in its price level's FIFO (an intrusive list: no wrapper per order).
 */
export class Order {
  // The fields matching and cancels touch come first, so that they share cache lines.
  prev: Order | null = null;
  next: Order | null = null;
  level: PriceLevel | null = null;
  leaves = 0;
  filled = 0;
  owner = 0;
  id = 0;
  book: OrderBook | null = null;
  side: Side = Side.BUY;
  type: OrderType = OrderType.LIMIT;
  tif: TimeInForce = TimeInForce.GTC;
  price = 0;
  stopPrice = 0;
  quantity = 0;
  postOnly = false;
  stp: Stp = Stp.NONE;
  /** MARKET and STOP_MARKET: the price protection in basis points (Command.protection). */
  protection = 0;
  /** Sequence of the command that put the order where it is in its queue. */
  priority = 0;
  waiting = false;
  /** The owner's other resting orders on the same side of the same book (BookSide.ownedBy). */
  ownerPrev: Order | null = null;
  ownerNext: Order | null = null;

  /** A copy of the order's state for queries. */
  view(): OrderView {
    return {
      orderId: this.id,
      ownerId: this.owner,
      symbol: (this.book as OrderBook).symbol,
      side: this.side,
      orderType: this.type,
      tif: this.tif,
      price: this.price,
      stopPrice: this.stopPrice,
      quantity: this.quantity,
      leaves: this.leaves,
      filled: this.filled,
      postOnly: this.postOnly,
      stp: this.stp,
      protection: this.protection,
      status: this.waiting
        ? OrderStatus.WAITING_TRIGGER
        : this.filled === 0
          ? OrderStatus.NEW
          : OrderStatus.PARTIALLY_FILLED,
      priority: this.priority,
    };
  }
}

/** A free list of Order objects, so that a warm engine allocates none per command. */
export class OrderPool {
  private readonly free: Order[] = [];

  take(): Order {
    return this.free.pop() ?? new Order();
  }

  give(order: Order): void {
    order.level = null;
    order.prev = null;
    order.next = null;
    order.waiting = false;
    this.free.push(order);
  }
}
