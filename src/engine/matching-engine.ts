import type { EventBuffer } from './event-buffer.js';
import { OrderPool } from './order.js';
import type { Order } from './order.js';
import { OrderBook } from './order-book.js';
import { OrderIndex } from './order-index.js';
import type { PriceLevel } from './price-level.js';
import { captureSnapshot, decodeSnapshot, encodeSnapshot } from './snapshot.js';
import type { SnapshotCapture } from './snapshot.js';
import { StopBook } from './stop-book.js';
import {
  CommandType,
  EventKind,
  MAX_PROTECTION,
  OrderType,
  Reason,
  Side,
  Stp,
  TimeInForce,
} from './types.js';
import type { Command, Depth, OrderView } from './types.js';

const { BUY } = Side;
const { ACCEPTED, REJECTED, TRADE, CANCELED, REPLACED, TRIGGERED } = EventKind;

/** Best (highest) bid first, then time priority, then id. */
const bidsFirst = (a: Order, b: Order): number =>
  b.price - a.price || a.priority - b.priority || a.id - b.id;
/** Best (lowest) ask first, then time priority, then id. */
const asksFirst = (a: Order, b: Order): number =>
  a.price - b.price || a.priority - b.priority || a.id - b.id;

function isCount(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 1;
}

/**
 * How far a MARKET order with price protection `bps` may trade from the opposite side's `best`
 * price: best ± ⌊best × bps / 10,000⌋ ticks (the band rounded toward the best), in integers only.
 */
export function protectedLimit(buy: boolean, best: number, bps: number): number {
  const band = Math.floor(best / 10_000) * bps + Math.floor(((best % 10_000) * bps) / 10_000);
  return buy ? Math.min(best + band, Number.MAX_SAFE_INTEGER) : best - band;
}

/**
 * The worst price a taker may trade at, given the opposite side's best level: its own limit price,
 * a protected MARKET order's band from that level's price, or undefined for any price.
 */
function reach(taker: Order, best: PriceLevel | undefined): number | undefined {
  if (taker.type !== OrderType.MARKET) return taker.price;
  if (taker.protection === 0 || best === undefined) return undefined;
  return protectedLimit(taker.side === BUY, best.price, taker.protection);
}

/**
 * The matching core: a deterministic state machine over integer ticks and lots. `apply` takes one
 * command and appends its execution reports to an EventBuffer; nothing here reads a clock or does
 * I/O, so the same commands always give the same reports. The rules are in docs/engine-rules.md.
 */
export class MatchingEngine {
  private readonly books = new Map<string, OrderBook>();
  /** Every live order, resting or waiting for its trigger, by id. */
  private readonly index = new OrderIndex();
  private readonly pool = new OrderPool();
  private seqNo = 0;
  private resting = 0;

  // Per-command scratch state, reused so that a command allocates nothing.
  private out!: EventBuffer;
  private cmdSeq = 0;
  private cmdTs = 0;
  private tradeNo = 0;
  /** Trade prices of the current command, read by the stop trigger loop. */
  private readonly tradePrices: number[] = [];
  private readonly triggered: Order[] = [];

  /** Lists a symbol (idempotent). Orders for unlisted symbols are rejected. */
  listInstrument(symbol: string): void {
    if (!this.books.has(symbol)) this.books.set(symbol, new OrderBook(symbol));
  }

  /** The listed symbols, in listing order. */
  symbols(): string[] {
    return [...this.books.keys()];
  }

  /** The last applied sequence (0 before any). */
  get lastSeq(): number {
    return this.seqNo;
  }

  /** Number of orders resting in books (waiting stops excluded). */
  get restingCount(): number {
    return this.resting;
  }

  /** Orders resting in each symbol's book (both sides; waiting stops excluded). */
  restingBySymbol(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const [symbol, book] of this.books) {
      let n = 0;
      for (const side of [book.bids, book.asks]) for (const level of side.levels) n += level.count;
      counts.set(symbol, n);
    }
    return counts;
  }

  /**
   * Applies one command, appending its reports to `out` (which is not cleared first). Returns false,
   * with no report, when the command's sequence is not above the last applied one.
   */
  apply(cmd: Command, out: EventBuffer): boolean {
    if (!Number.isSafeInteger(cmd.seq) || cmd.seq <= this.seqNo) return false;
    this.seqNo = cmd.seq;
    this.out = out;
    this.cmdSeq = cmd.seq;
    this.cmdTs = cmd.ts;
    this.tradeNo = 0;
    // Setting an array's length is a runtime call even when it is already 0.
    if (this.tradePrices.length !== 0) this.tradePrices.length = 0;
    if (this.triggered.length !== 0) this.triggered.length = 0;
    switch (cmd.type) {
      case CommandType.PLACE:
        this.place(cmd);
        break;
      case CommandType.CANCEL:
        this.cancel(cmd);
        break;
      case CommandType.REPLACE:
        this.replace(cmd);
        break;
      case CommandType.FORGET:
        this.forget(cmd.symbol);
        break;
      case CommandType.CANCEL_ALL:
        this.cancelAll(cmd);
        break;
      default:
        this.rejectCommand(REJECTED, cmd, Reason.INVALID_ORDER);
    }
    return true;
  }

  /** Best `levels` aggregated levels per side, best first; undefined for an unlisted symbol. */
  depth(symbol: string, levels: number): Depth | undefined {
    const book = this.books.get(symbol);
    if (book === undefined) return undefined;
    return {
      symbol,
      bids: book.bids.depth(levels),
      asks: book.asks.depth(levels),
      seq: this.seqNo,
    };
  }

  /** A live order (resting, or waiting for its trigger), or undefined. */
  order(orderId: number): OrderView | undefined {
    return this.index.get(orderId)?.view();
  }

  /** Every live order, in no particular order. */
  liveOrders(): OrderView[] {
    const views: OrderView[] = [];
    for (const o of this.index.orders()) views.push(o.view());
    return views;
  }

  /** The whole state as compact bytes; `MatchingEngine.restore` continues from it exactly. */
  snapshot(): Uint8Array {
    return encodeSnapshot(this.seqNo, this.books);
  }

  /** The whole state copied flat, for `encodeInSteps` to make the same bytes from later. */
  capture(): SnapshotCapture {
    return captureSnapshot(this.seqNo, this.books);
  }

  /** An engine in the state a snapshot was taken in. */
  static restore(bytes: Uint8Array): MatchingEngine {
    const engine = new MatchingEngine();
    const state = decodeSnapshot(bytes, () => engine.pool.take());
    engine.seqNo = state.seq;
    for (const book of state.books) {
      engine.books.set(book.symbol, book);
      for (const side of [book.bids, book.asks]) {
        for (const level of side.levels) {
          for (let o = level.head; o !== null; o = o.next) engine.index.set(o.id, o);
          engine.resting += level.count;
        }
      }
      for (const o of book.stops.buys) engine.index.set(o.id, o);
      for (const o of book.stops.sells) engine.index.set(o.id, o);
    }
    return engine;
  }

  // ---- commands ------------------------------------------------------------------------------

  /** Drops the book of `symbol` if it holds no order (see CommandType.FORGET). */
  private forget(symbol: string): void {
    const book = this.books.get(symbol);
    if (book === undefined || book.stops.size > 0) return;
    if (book.bids.levels.length > 0 || book.asks.levels.length > 0) return;
    this.books.delete(symbol);
  }

  private place(cmd: Command): void {
    const book = this.books.get(cmd.symbol);
    const reason = this.checkPlace(cmd, book);
    if (book === undefined || reason !== Reason.NONE) {
      this.rejectCommand(REJECTED, cmd, reason);
      return;
    }
    const o = this.pool.take();
    o.id = cmd.orderId;
    o.owner = cmd.ownerId;
    o.book = book;
    o.side = cmd.side;
    o.type = cmd.orderType;
    o.tif = cmd.tif;
    o.price = cmd.price;
    o.stopPrice = cmd.stopPrice;
    o.quantity = cmd.quantity;
    o.leaves = cmd.quantity;
    o.filled = 0;
    o.postOnly = cmd.postOnly;
    o.stp = cmd.stp;
    o.protection = cmd.protection;
    o.priority = cmd.seq;
    this.report(ACCEPTED, o, o.price, o.quantity, Reason.NONE);

    if (o.type === OrderType.STOP_LIMIT || o.type === OrderType.STOP_MARKET) {
      const last = book.lastTradePrice;
      if (last === 0 || !StopBook.reached(o.side, o.stopPrice, last)) {
        o.waiting = true;
        book.stops.add(o);
        this.index.set(o.id, o);
        return;
      }
      this.trigger(o);
    }
    this.execute(o, book);
    if (this.tradePrices.length > 0) this.runTriggers(book);
  }

  /** The first rule of docs/engine-rules.md that a PLACE breaks, or NONE. */
  private checkPlace(cmd: Command, book: OrderBook | undefined): Reason {
    const { orderType: type, tif, side, stp, protection } = cmd;
    if (
      !Number.isSafeInteger(cmd.orderId) ||
      cmd.orderId < 0 ||
      (side !== Side.BUY && side !== Side.SELL) ||
      !Number.isInteger(type) ||
      !(type >= OrderType.LIMIT && type <= OrderType.STOP_MARKET) ||
      !Number.isInteger(tif) ||
      !(tif >= TimeInForce.GTC && tif <= TimeInForce.FOK) ||
      !Number.isInteger(stp) ||
      !(stp >= Stp.NONE && stp <= Stp.CANCEL_BOTH) ||
      !Number.isInteger(protection) ||
      !(protection >= 0 && protection <= MAX_PROTECTION) ||
      (protection !== 0 && type !== OrderType.MARKET && type !== OrderType.STOP_MARKET)
    ) {
      return Reason.INVALID_ORDER;
    }
    if (book === undefined) return Reason.UNKNOWN_SYMBOL;
    if (this.index.has(cmd.orderId)) return Reason.DUPLICATE_ORDER_ID;
    if (!isCount(cmd.quantity)) return Reason.INVALID_QUANTITY;
    const priced = type === OrderType.LIMIT || type === OrderType.STOP_LIMIT;
    if (priced ? !isCount(cmd.price) : cmd.price !== 0) return Reason.INVALID_PRICE;
    const stop = type === OrderType.STOP_LIMIT || type === OrderType.STOP_MARKET;
    if (stop ? !isCount(cmd.stopPrice) : cmd.stopPrice !== 0) return Reason.INVALID_STOP_PRICE;
    if (!priced && tif === TimeInForce.GTC) return Reason.INVALID_TIME_IN_FORCE;
    if (cmd.postOnly && (type !== OrderType.LIMIT || tif !== TimeInForce.GTC)) {
      return Reason.INVALID_POST_ONLY;
    }
    if (cmd.postOnly && book.wouldTrade(side, cmd.price)) return Reason.POST_ONLY_WOULD_TRADE;
    return Reason.NONE;
  }

  private cancel(cmd: Command): void {
    const o = this.index.get(cmd.orderId);
    if (o === undefined || o.owner !== cmd.ownerId) {
      this.rejectCommand(EventKind.CANCEL_REJECTED, cmd, Reason.UNKNOWN_ORDER);
      return;
    }
    const book = o.book as OrderBook;
    if (o.waiting) book.stops.remove(o);
    else this.unrest(book, o);
    this.index.delete(o.id);
    this.finish(o, Reason.CANCELED_BY_OWNER);
  }

  /** Cancels every live order of `cmd.ownerId` on `cmd.side` (see CommandType.CANCEL_ALL). */
  private cancelAll(cmd: Command): void {
    if (cmd.side !== Side.BUY && cmd.side !== Side.SELL) {
      this.rejectCommand(REJECTED, cmd, Reason.INVALID_ORDER);
      return;
    }
    const one = cmd.symbol === '' ? undefined : this.books.get(cmd.symbol);
    if (cmd.symbol !== '' && one === undefined) return;
    for (const book of one === undefined ? this.books.values() : [one]) {
      // The owner's resting orders from its own list (not a walk of the book), in the order the
      // rules give: best price first, then time priority, then id.
      const side = book.own(cmd.side);
      const mine = this.triggered; // scratch: empty between commands
      side.ownedBy(cmd.ownerId, mine);
      if (mine.length > 1) mine.sort(side.isBid ? bidsFirst : asksFirst);
      for (const o of mine) {
        this.unrest(book, o);
        this.index.delete(o.id);
        this.finish(o, Reason.CANCELED_BY_OWNER);
      }
      mine.length = 0;
      const stops = cmd.side === Side.BUY ? book.stops.buys : book.stops.sells;
      const canceled = this.triggered; // scratch: empty between commands
      let kept = 0;
      for (const o of stops) {
        if (o.owner === cmd.ownerId) canceled.push(o);
        else stops[kept++] = o;
      }
      stops.length = kept;
      // Next to trigger first, as they would have triggered.
      for (let i = canceled.length - 1; i >= 0; i--) {
        const o = canceled[i] as Order;
        this.index.delete(o.id);
        this.finish(o, Reason.CANCELED_BY_OWNER);
      }
      canceled.length = 0;
    }
  }

  private replace(cmd: Command): void {
    const o = this.index.get(cmd.orderId);
    // 0 keeps the order's own: what it is when the command is applied, not when it was sent.
    const price = cmd.price === 0 && o !== undefined ? o.price : cmd.price;
    const quantity = cmd.quantity === 0 && o !== undefined ? o.quantity : cmd.quantity;
    let reason: Reason = Reason.NONE;
    if (o === undefined || o.owner !== cmd.ownerId) reason = Reason.UNKNOWN_ORDER;
    else if (o.waiting) reason = Reason.NOT_REPLACEABLE;
    else if (!isCount(price)) reason = Reason.INVALID_PRICE;
    else if (!isCount(quantity)) reason = Reason.INVALID_QUANTITY;
    else if (quantity <= o.filled) reason = Reason.QUANTITY_AT_OR_BELOW_FILLED;
    else if (o.postOnly && this.bookOf(o).wouldTrade(o.side, price)) {
      reason = Reason.POST_ONLY_WOULD_TRADE;
    }
    if (o === undefined || reason !== Reason.NONE) {
      this.rejectCommand(EventKind.REPLACE_REJECTED, cmd, reason);
      return;
    }
    const book = this.bookOf(o);
    const leaves = quantity - o.filled;
    if (price === o.price && quantity <= o.quantity) {
      // A smaller order at the same price keeps its place in the queue.
      (o.level as PriceLevel).total += leaves - o.leaves;
      o.quantity = quantity;
      o.leaves = leaves;
      this.report(REPLACED, o, o.price, o.quantity, Reason.NONE);
      return;
    }
    this.unrest(book, o);
    this.index.delete(o.id);
    o.price = price;
    o.quantity = quantity;
    o.leaves = leaves;
    o.priority = cmd.seq;
    this.report(REPLACED, o, o.price, o.quantity, Reason.NONE);
    this.execute(o, book);
    if (this.tradePrices.length > 0) this.runTriggers(book);
  }

  // ---- matching ------------------------------------------------------------------------------

  /**
   * Matches an incoming order that is in no book and not indexed, then rests it (a LIMIT GTC with
   * leaves) or ends it.
   */
  private execute(taker: Order, book: OrderBook): void {
    if (taker.tif === TimeInForce.FOK && this.fillable(taker, book) < taker.leaves) {
      this.finish(taker, Reason.FOK_NOT_FILLABLE);
      return;
    }
    if (this.match(taker, book)) return;
    if (taker.leaves === 0) {
      this.pool.give(taker);
    } else if (taker.type === OrderType.LIMIT && taker.tif === TimeInForce.GTC) {
      if (!book.own(taker.side).add(taker)) {
        this.finish(taker, Reason.LEVEL_QUANTITY_LIMIT);
        return;
      }
      this.index.set(taker.id, taker);
      this.resting++;
    } else {
      // A protected MARKET order that stopped with the other side not empty stopped at its band.
      const stopped = taker.protection > 0 && book.opposite(taker.side).best() !== undefined;
      this.finish(taker, stopped ? Reason.PRICE_PROTECTION : Reason.IOC_REMAINDER);
    }
  }

  /**
   * Trades the taker against the opposite side while prices allow. Returns true when self-trade
   * prevention ended the taker (it is then already reported and released).
   */
  private match(taker: Order, book: OrderBook): boolean {
    const opposite = book.opposite(taker.side);
    const buy = taker.side === BUY;
    const limit = reach(taker, opposite.best());
    const stp = taker.stp;
    const recordPrices = book.stops.size > 0;
    while (taker.leaves > 0) {
      const level = opposite.best();
      if (level === undefined) break;
      const price = level.price;
      if (limit !== undefined && (buy ? price > limit : price < limit)) break;
      let maker = level.head;
      while (maker !== null) {
        const next = maker.next;
        if (stp !== Stp.NONE && maker.owner === taker.owner) {
          if (stp === Stp.CANCEL_NEWEST) {
            this.finish(taker, Reason.SELF_TRADE_PREVENTION);
            return true;
          }
          this.unrest(book, maker);
          this.index.delete(maker.id);
          this.finish(maker, Reason.SELF_TRADE_PREVENTION);
          if (stp === Stp.CANCEL_BOTH) {
            this.finish(taker, Reason.SELF_TRADE_PREVENTION);
            return true;
          }
          maker = next;
          continue;
        }
        const qty = taker.leaves < maker.leaves ? taker.leaves : maker.leaves;
        taker.leaves -= qty;
        taker.filled += qty;
        maker.leaves -= qty;
        maker.filled += qty;
        level.total -= qty;
        book.lastTradePrice = price;
        if (recordPrices) this.tradePrices.push(price);
        const r = this.out.emit(
          TRADE,
          this.cmdSeq,
          this.cmdTs,
          book.symbol,
          taker.id,
          taker.owner,
          taker.side,
          price,
          0,
          qty,
          taker.leaves,
          taker.filled,
          Reason.NONE,
        );
        r.tradeNo = this.tradeNo++;
        r.makerOrderId = maker.id;
        r.makerOwnerId = maker.owner;
        r.makerLeaves = maker.leaves;
        r.makerFilled = maker.filled;
        if (maker.leaves === 0) {
          this.unrest(book, maker);
          this.index.delete(maker.id);
          this.pool.give(maker);
        }
        if (taker.leaves === 0) return false;
        maker = next;
      }
    }
    return false;
  }

  /** What an FOK taker could fill now, counting own orders as its STP mode would treat them. */
  private fillable(taker: Order, book: OrderBook): number {
    const levels = book.opposite(taker.side).levels;
    const buy = taker.side === BUY;
    const limit = reach(taker, levels[levels.length - 1]);
    let sum = 0;
    for (let i = levels.length - 1; i >= 0; i--) {
      const level = levels[i] as PriceLevel;
      if (limit !== undefined && (buy ? level.price > limit : level.price < limit)) break;
      for (let m = level.head; m !== null; m = m.next) {
        if (taker.stp !== Stp.NONE && m.owner === taker.owner) {
          if (taker.stp === Stp.CANCEL_OLDEST) continue;
          return sum;
        }
        sum += m.leaves;
        if (sum >= taker.leaves) return sum;
      }
    }
    return sum;
  }

  /** Works the stops that this command's trades reach until no trade triggers any more. */
  private runTriggers(book: OrderBook): void {
    const prices = this.tradePrices;
    const queue = this.triggered;
    let p = 0;
    let q = 0;
    for (;;) {
      while (p < prices.length) book.stops.collect(prices[p++] as number, queue);
      if (q === queue.length) return;
      const o = queue[q++] as Order;
      this.index.delete(o.id);
      o.waiting = false;
      o.priority = this.cmdSeq;
      this.trigger(o);
      this.execute(o, book);
    }
  }

  /** Turns a stop into the order it becomes once triggered, and reports it. */
  private trigger(o: Order): void {
    o.type = o.type === OrderType.STOP_LIMIT ? OrderType.LIMIT : OrderType.MARKET;
    this.report(TRIGGERED, o, o.price, o.quantity, Reason.NONE);
  }

  // ---- helpers -------------------------------------------------------------------------------

  private bookOf(o: Order): OrderBook {
    return o.book as OrderBook;
  }

  private unrest(book: OrderBook, o: Order): void {
    book.unrest(o);
    this.resting--;
  }

  /** Reports an order CANCELED with its leaves, and releases it (it must be out of every book). */
  private finish(o: Order, reason: Reason): void {
    const canceled = o.leaves;
    o.leaves = 0;
    this.report(CANCELED, o, o.price, canceled, reason);
    this.pool.give(o);
  }

  private report(kind: EventKind, o: Order, price: number, quantity: number, reason: Reason): void {
    this.out.emit(
      kind,
      this.cmdSeq,
      this.cmdTs,
      (o.book as OrderBook).symbol,
      o.id,
      o.owner,
      o.side,
      price,
      o.stopPrice,
      quantity,
      o.leaves,
      o.filled,
      reason,
    );
  }

  /** Reports a refused command with the command's own fields. */
  private rejectCommand(kind: EventKind, cmd: Command, reason: Reason): void {
    this.out.emit(
      kind,
      cmd.seq,
      cmd.ts,
      cmd.symbol,
      cmd.orderId,
      cmd.ownerId,
      cmd.side,
      cmd.price,
      cmd.stopPrice,
      cmd.quantity,
      0,
      0,
      reason,
    );
  }
}
