import type { Order } from './order.js';
import { PriceLevel } from './price-level.js';
import type { DepthLevel } from './types.js';

/**
 * One side of a book: its price levels sorted from worst to best, so the best level is the last
 * element (O(1) to read and to remove), plus a map from price to level for O(1) joins. New levels
 * are inserted by binary search; activity clusters near the touch, at the cheap end of the array.
 */
export class BookSide {
  /** Worst first, best last. */
  readonly levels: PriceLevel[] = [];
  private readonly byPrice = new Map<number, PriceLevel>();
  private readonly spareLevels: PriceLevel[] = [];
  /**
   * Each owner's resting orders on this side, as a list through the orders (in no order): a mass
   * cancel finds them without walking the book.
   */
  private readonly owners = new Map<number, Order>();

  /** `isBid`: higher prices are better; otherwise lower prices are. */
  constructor(readonly isBid: boolean) {}

  /** The best level, or undefined when the side is empty. */
  best(): PriceLevel | undefined {
    return this.levels[this.levels.length - 1];
  }

  /** True when `price` is at least as good as the best level's price for an order on the other side. */
  reaches(price: number): boolean {
    const best = this.best();
    if (best === undefined) return false;
    return this.isBid ? price <= best.price : price >= best.price;
  }

  /**
   * Puts an order at the back of the queue at its price; false, with nothing changed, when the
   * level's total would pass 2^53 - 1 lots and stop being exact.
   */
  add(order: Order): boolean {
    let level = this.byPrice.get(order.price);
    if (level === undefined) level = this.openLevel(order.price);
    else if (level.total > Number.MAX_SAFE_INTEGER - order.leaves) return false;
    level.append(order);
    // Behind the owner's first order (the list has no order), so that the map changes only
    // for an owner's first order on the side.
    const first = this.owners.get(order.owner);
    if (first === undefined) {
      this.owners.set(order.owner, order);
    } else {
      const after = first.ownerNext;
      order.ownerPrev = first;
      order.ownerNext = after;
      if (after !== null) after.ownerPrev = order;
      first.ownerNext = order;
    }
    return true;
  }

  /** Takes an order out of its queue, dropping the level when it empties. */
  remove(order: Order): void {
    const level = order.level as PriceLevel;
    level.unlink(order);
    if (level.count === 0) this.closeLevel(level);
    const { ownerPrev, ownerNext } = order;
    if (ownerNext !== null) ownerNext.ownerPrev = ownerPrev;
    if (ownerPrev !== null) ownerPrev.ownerNext = ownerNext;
    else if (ownerNext !== null) this.owners.set(order.owner, ownerNext);
    else this.owners.delete(order.owner);
    order.ownerPrev = null;
    order.ownerNext = null;
  }

  /** Appends the resting orders of `owner` on this side to `out`, in no particular order. */
  ownedBy(owner: number, out: Order[]): void {
    for (let o = this.owners.get(owner) ?? null; o !== null; o = o.ownerNext) out.push(o);
  }

  /** The best `n` levels, best first. */
  depth(n: number): DepthLevel[] {
    const out: DepthLevel[] = [];
    for (let i = this.levels.length - 1; i >= 0 && out.length < n; i--) {
      const level = this.levels[i] as PriceLevel;
      out.push({ price: level.price, quantity: level.total, orders: level.count });
    }
    return out;
  }

  private openLevel(price: number): PriceLevel {
    const level = this.spareLevels.pop() ?? new PriceLevel();
    level.price = price;
    const levels = this.levels;
    // First index whose level is better than `price`: the new level goes just before it.
    let lo = 0;
    let hi = levels.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const p = (levels[mid] as PriceLevel).price;
      if (this.isBid ? p > price : p < price) hi = mid;
      else lo = mid + 1;
    }
    if (lo === levels.length) levels.push(level);
    else levels.splice(lo, 0, level);
    this.byPrice.set(price, level);
    return level;
  }

  private closeLevel(level: PriceLevel): void {
    const levels = this.levels;
    if (levels[levels.length - 1] === level) {
      levels.pop();
    } else {
      let lo = 0;
      let hi = levels.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        const p = (levels[mid] as PriceLevel).price;
        if (this.isBid ? p >= level.price : p <= level.price) hi = mid;
        else lo = mid + 1;
      }
      levels.splice(lo, 1);
    }
    this.byPrice.delete(level.price);
    level.head = null;
    level.tail = null;
    level.total = 0;
    level.count = 0;
    this.spareLevels.push(level);
  }
}
