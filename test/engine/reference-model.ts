// A slow reference implementation of docs/engine-rules.md, written to be obviously correct rather
// than fast: every book side is a plain array re-sorted after each change, everything else is a
// linear scan. The differential test runs it side by side with the real engine and compares every
// report, so it shares nothing with src/engine but the types.
//
// Readings of the rules where docs/engine-rules.md leaves room (the engine must agree):
// - Order ids are global across symbols: DUPLICATE_ORDER_ID, CANCEL and REPLACE look the id up
//   among all live orders. CANCEL/REPLACE check only id and owner; the command's symbol is not
//   compared with the order's.
// - A command whose seq is not a safe integer is ignored like an old one (it cannot be "above" in
//   a meaningful way); a command of an unknown type is REJECTED INVALID_ORDER, echoing it.
// - Enumerations out of range include non-integers (tif 0.5 is not a time in force).
// - depth(symbol, n) with n <= 0 gives empty sides.
// - Every report of a command carries that command's `seq` and `ts`, including the reports of the
//   stop orders it triggers.
// - REJECTED, CANCEL_REJECTED and REPLACE_REJECTED echo the command: its symbol, orderId, ownerId,
//   side, price, stopPrice and quantity as given (even out-of-range values), leaves 0, filled 0.
// - ACCEPTED: price/stopPrice/quantity as placed, leaves = quantity, filled 0.
// - TRIGGERED: the order's price, stopPrice, quantity, leaves (= quantity) and filled (0).
// - TRADE: taker's id/owner/side, fill price and quantity, taker leaves/filled after the fill,
//   stopPrice 0, reason NONE, maker fields set; every non-TRADE report has tradeNo 0, maker ids -1
//   and maker leaves/filled 0.
// - CANCELED (by owner, IOC remainder, FOK, STP, either side of STP): the order's own price and
//   stopPrice (a MARKET order's price is 0), quantity = leaves before, leaves 0, its filled.
// - REPLACED: the order's symbol/side/stopPrice, the new price and total quantity, leaves = new
//   quantity - filled, its filled.
// - A triggered stop becomes the LIMIT/MARKET order it stands for ("enters as a LIMIT"): `order()`
//   shows that orderType from then on, but it keeps its stopPrice, which every later report of it
//   (TRIGGERED, CANCELED, REPLACED) carries. Resting, it can be replaced (it is no longer "a stop
//   order still waiting").
// - OrderView.priority: the PLACE seq for a resting order or a waiting stop, the triggering
//   command's seq for a triggered STOP_LIMIT that rests, the REPLACE seq after a replace that lost
//   the place; a replace that keeps the place keeps it. status: WAITING_TRIGGER for a waiting stop,
//   else PARTIALLY_FILLED when filled > 0, else NEW.
// - POST_ONLY_WOULD_TRADE compares prices only (a buy at or above the best ask, a sell at or below
//   the best bid), whoever owns the opposite order and whatever the STP mode.
// - INVALID_ORDER checks side ∈ {0,1}, orderType ∈ 0..3, tif ∈ 0..2, stp ∈ 0..3; the owner id is
//   not checked.
// - FOK is decided before anything trades; when the count falls short, the only reports after
//   ACCEPTED (or TRIGGERED) are CANCELED FOK_NOT_FILLABLE with the whole quantity.
// - A REPLACE that loses the place leaves the book, trades as an incoming GTC LIMIT order under its
//   own STP mode if the new price crosses (STP can then cancel it, as the newest), rests at the back
//   at the new price with what is left, and its trades trigger stops like any others. Reports:
//   REPLACED, TRADEs / STP CANCELEDs, then the triggered stops' reports.
// - A GTC rest that would take the lots at its price past 2^53 - 1 is canceled instead
//   (LEVEL_QUANTITY_LIMIT), so that every level total stays exact.
// - Stops: each trade price, in the order the trades happened, moves the waiting stops it reaches
//   onto the trigger queue (buys by stop price ascending, then sells by stop price descending, ties
//   by arrival); an order's trades trigger once that order is done matching (resting or canceled).
import {
  CommandType,
  EventKind,
  OrderStatus,
  OrderType,
  Reason,
  Side,
  Stp,
  TimeInForce,
} from '../../src/engine/types.js';
import type {
  Command,
  Depth,
  DepthLevel,
  ExecutionReport,
  OrderView,
} from '../../src/engine/types.js';

interface RefOrder {
  orderId: number;
  ownerId: number;
  symbol: string;
  side: Side;
  orderType: OrderType;
  tif: TimeInForce;
  price: number;
  stopPrice: number;
  quantity: number;
  leaves: number;
  filled: number;
  postOnly: boolean;
  stp: Stp;
  protection: number;
  waiting: boolean;
  priority: number;
  /** Global counter value when the order last joined a queue (book) or the stop list. */
  arrival: number;
}

interface RefBook {
  symbol: string;
  bids: RefOrder[];
  asks: RefOrder[];
  stops: RefOrder[];
  lastTradePrice: number | undefined;
}

/** What one command is doing while it runs: where reports go and the running trade number. */
interface Run {
  cmd: Command;
  out: ExecutionReport[];
  tradeNo: number;
}

function isSafeAtLeast(v: number, min: number): boolean {
  return Number.isSafeInteger(v) && v >= min;
}

function inRange(v: number, max: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= max;
}

function isMarketType(o: RefOrder): boolean {
  return o.orderType === OrderType.MARKET || o.orderType === OrderType.STOP_MARKET;
}

function isStopType(t: OrderType): boolean {
  return t === OrderType.STOP_LIMIT || t === OrderType.STOP_MARKET;
}

export class ReferenceEngine {
  private readonly books: RefBook[] = [];
  private seq = 0;
  private arrivals = 0;

  listInstrument(symbol: string): void {
    if (this.book(symbol) === undefined) {
      this.books.push({ symbol, bids: [], asks: [], stops: [], lastTradePrice: undefined });
    }
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** The reports of one command; [] when its sequence is old and it is ignored. */
  apply(cmd: Command): ExecutionReport[] {
    if (!Number.isSafeInteger(cmd.seq) || cmd.seq <= this.seq) return [];
    this.seq = cmd.seq;
    const run: Run = { cmd, out: [], tradeNo: 0 };
    if (cmd.type === CommandType.PLACE) this.place(run);
    else if (cmd.type === CommandType.CANCEL) this.cancel(run);
    else if (cmd.type === CommandType.REPLACE) this.replace(run);
    else if (cmd.type === CommandType.FORGET) this.forget(cmd.symbol);
    else if (cmd.type === CommandType.CANCEL_ALL && inRange(cmd.side, 1)) this.cancelAll(run);
    else this.echoReject(run, EventKind.REJECTED, Reason.INVALID_ORDER);
    return run.out;
  }

  /** FORGET: the book goes if it holds no order at all (resting or waiting); no report. */
  private forget(symbol: string): void {
    const book = this.book(symbol);
    if (book === undefined || book.bids.length + book.asks.length + book.stops.length > 0) return;
    this.books.splice(this.books.indexOf(book), 1);
  }

  depth(symbol: string, n: number): Depth | undefined {
    const book = this.book(symbol);
    if (book === undefined) return undefined;
    return {
      symbol,
      bids: levels(book.bids, n),
      asks: levels(book.asks, n),
      seq: this.seq,
    };
  }

  order(id: number): OrderView | undefined {
    const o = this.findLive(id);
    return o === undefined ? undefined : view(o);
  }

  liveOrders(): OrderView[] {
    const all: OrderView[] = [];
    for (const b of this.books) {
      for (const o of [...b.bids, ...b.asks, ...b.stops]) all.push(view(o));
    }
    return all;
  }

  get restingCount(): number {
    let n = 0;
    for (const b of this.books) n += b.bids.length + b.asks.length;
    return n;
  }

  // --- commands -------------------------------------------------------------------------------

  private place(run: Run): void {
    const cmd = run.cmd;
    const reason = this.placeRejection(cmd);
    if (reason !== Reason.NONE) {
      this.echoReject(run, EventKind.REJECTED, reason);
      return;
    }
    const book = this.book(cmd.symbol) as RefBook;
    const o: RefOrder = {
      orderId: cmd.orderId,
      ownerId: cmd.ownerId,
      symbol: cmd.symbol,
      side: cmd.side,
      orderType: cmd.orderType,
      tif: cmd.tif,
      price: cmd.price,
      stopPrice: cmd.stopPrice,
      quantity: cmd.quantity,
      leaves: cmd.quantity,
      filled: 0,
      postOnly: cmd.postOnly,
      stp: cmd.stp,
      protection: cmd.protection,
      waiting: false,
      priority: cmd.seq,
      arrival: 0,
    };
    this.report(run, EventKind.ACCEPTED, o, o.price, o.quantity, Reason.NONE);
    const queue: RefOrder[] = [];
    if (isStopType(o.orderType)) {
      if (book.lastTradePrice !== undefined && reaches(o, book.lastTradePrice)) {
        becomeTriggered(o);
        this.report(run, EventKind.TRIGGERED, o, o.price, o.quantity, Reason.NONE);
        this.trigger(book, this.execute(run, book, o), queue);
      } else {
        o.waiting = true;
        o.arrival = ++this.arrivals;
        book.stops.push(o);
      }
    } else {
      this.trigger(book, this.execute(run, book, o), queue);
    }
    this.workTriggered(run, book, queue);
  }

  private cancel(run: Run): void {
    const cmd = run.cmd;
    const o = this.findLive(cmd.orderId);
    if (o === undefined || o.ownerId !== cmd.ownerId) {
      this.echoReject(run, EventKind.CANCEL_REJECTED, Reason.UNKNOWN_ORDER);
      return;
    }
    this.remove(o);
    this.canceled(run, o, Reason.CANCELED_BY_OWNER);
  }

  /**
   * CANCEL_ALL: the owner's live orders on the side, on the command's symbol ('' for all, in
   * listing order): resting ones best price first, then by time priority (the sequence that gave
   * each its place), then by id; then waiting stops in the order they would trigger.
   */
  private cancelAll(run: Run): void {
    const { ownerId, side, symbol } = run.cmd;
    for (const book of this.books.filter((b) => symbol === '' || b.symbol === symbol)) {
      const resting = (side === Side.BUY ? book.bids : book.asks)
        .filter((o) => o.ownerId === ownerId)
        .sort(
          (a, b) =>
            (side === Side.BUY ? b.price - a.price : a.price - b.price) ||
            a.priority - b.priority ||
            a.orderId - b.orderId,
        );
      const stops = book.stops
        .filter((s) => s.side === side && s.ownerId === ownerId)
        .sort((a, b) =>
          side === Side.BUY
            ? a.stopPrice - b.stopPrice || a.arrival - b.arrival
            : b.stopPrice - a.stopPrice || a.arrival - b.arrival,
        );
      for (const o of [...resting, ...stops]) {
        this.remove(o);
        this.canceled(run, o, Reason.CANCELED_BY_OWNER);
      }
    }
  }

  private replace(run: Run): void {
    const cmd = run.cmd;
    const o = this.findLive(cmd.orderId);
    // A price or quantity of 0 stands for the order's own.
    const price = cmd.price === 0 ? o?.price : cmd.price;
    const quantity = cmd.quantity === 0 ? o?.quantity : cmd.quantity;
    let reason: Reason = Reason.NONE;
    if (o === undefined || o.ownerId !== cmd.ownerId) reason = Reason.UNKNOWN_ORDER;
    else if (o.waiting) reason = Reason.NOT_REPLACEABLE;
    else if (!isSafeAtLeast(price as number, 1)) reason = Reason.INVALID_PRICE;
    else if (!isSafeAtLeast(quantity as number, 1)) reason = Reason.INVALID_QUANTITY;
    else if ((quantity as number) <= o.filled) reason = Reason.QUANTITY_AT_OR_BELOW_FILLED;
    else if (o.postOnly && this.wouldCross(o.symbol, o.side, price as number)) {
      reason = Reason.POST_ONLY_WOULD_TRADE;
    }
    if (o === undefined || reason !== Reason.NONE) {
      this.echoReject(run, EventKind.REPLACE_REJECTED, reason);
      return;
    }
    const [p, q] = [price as number, quantity as number];
    const book = this.book(o.symbol) as RefBook;
    const keepsPlace = p === o.price && q <= o.quantity;
    o.price = p;
    o.quantity = q;
    o.leaves = q - o.filled;
    this.report(run, EventKind.REPLACED, o, o.price, o.quantity, Reason.NONE);
    if (keepsPlace) return;
    this.remove(o);
    o.priority = cmd.seq;
    const queue: RefOrder[] = [];
    this.trigger(book, this.execute(run, book, o), queue);
    this.workTriggered(run, book, queue);
  }

  private placeRejection(cmd: Command): Reason {
    if (
      !isSafeAtLeast(cmd.orderId, 0) ||
      !inRange(cmd.side, 1) ||
      !inRange(cmd.orderType, 3) ||
      !inRange(cmd.tif, 2) ||
      !inRange(cmd.stp, 3) ||
      !inRange(cmd.protection, 10_000) ||
      (cmd.protection !== 0 &&
        cmd.orderType !== OrderType.MARKET &&
        cmd.orderType !== OrderType.STOP_MARKET)
    ) {
      return Reason.INVALID_ORDER;
    }
    if (this.book(cmd.symbol) === undefined) return Reason.UNKNOWN_SYMBOL;
    if (this.findLive(cmd.orderId) !== undefined) return Reason.DUPLICATE_ORDER_ID;
    if (!isSafeAtLeast(cmd.quantity, 1)) return Reason.INVALID_QUANTITY;
    const t = cmd.orderType;
    const hasLimit = t === OrderType.LIMIT || t === OrderType.STOP_LIMIT;
    if (hasLimit ? !isSafeAtLeast(cmd.price, 1) : cmd.price !== 0) return Reason.INVALID_PRICE;
    if (isStopType(t) ? !isSafeAtLeast(cmd.stopPrice, 1) : cmd.stopPrice !== 0) {
      return Reason.INVALID_STOP_PRICE;
    }
    const marketLike = t === OrderType.MARKET || t === OrderType.STOP_MARKET;
    if (marketLike && cmd.tif === TimeInForce.GTC) return Reason.INVALID_TIME_IN_FORCE;
    if (cmd.postOnly && !(t === OrderType.LIMIT && cmd.tif === TimeInForce.GTC)) {
      return Reason.INVALID_POST_ONLY;
    }
    if (cmd.postOnly && this.wouldCross(cmd.symbol, cmd.side, cmd.price)) {
      return Reason.POST_ONLY_WOULD_TRADE;
    }
    return Reason.NONE;
  }

  // --- matching -------------------------------------------------------------------------------

  /**
   * Matches `taker` (not in any book) against the opposite side, then rests or cancels what is
   * left. Returns the prices of its trades, in order, for the stop triggers.
   */
  private execute(run: Run, book: RefBook, taker: RefOrder): number[] {
    const prices: number[] = [];
    const opposite = taker.side === Side.BUY ? book.asks : book.bids;
    // Price protection: a band around the opposite best as the order comes to match, in BigInt.
    sortBook(book);
    const best = opposite[0];
    let limit: number | undefined = isMarketType(taker) ? undefined : taker.price;
    if (isMarketType(taker) && taker.protection > 0 && best !== undefined) {
      const band = Number((BigInt(best.price) * BigInt(taker.protection)) / 10_000n);
      limit = taker.side === Side.BUY ? best.price + band : best.price - band;
    }
    const acceptable = (p: number): boolean =>
      limit === undefined || (taker.side === Side.BUY ? p <= limit : p >= limit);
    const selfTrade = (m: RefOrder): boolean =>
      taker.stp !== Stp.NONE && m.ownerId === taker.ownerId;

    if (taker.tif === TimeInForce.FOK) {
      let available = 0;
      for (const m of opposite) {
        if (!acceptable(m.price)) break;
        if (selfTrade(m)) {
          if (taker.stp === Stp.CANCEL_OLDEST) continue;
          break;
        }
        available += m.leaves;
      }
      if (available < taker.leaves) {
        this.canceled(run, taker, Reason.FOK_NOT_FILLABLE);
        return prices;
      }
    }

    while (taker.leaves > 0) {
      sortBook(book);
      const m = opposite[0];
      if (m === undefined || !acceptable(m.price)) break;
      if (selfTrade(m)) {
        if (taker.stp === Stp.CANCEL_NEWEST) {
          this.canceled(run, taker, Reason.SELF_TRADE_PREVENTION);
          return prices;
        }
        this.remove(m);
        this.canceled(run, m, Reason.SELF_TRADE_PREVENTION);
        if (taker.stp === Stp.CANCEL_BOTH) {
          this.canceled(run, taker, Reason.SELF_TRADE_PREVENTION);
          return prices;
        }
        continue;
      }
      const q = Math.min(taker.leaves, m.leaves);
      taker.leaves -= q;
      taker.filled += q;
      m.leaves -= q;
      m.filled += q;
      book.lastTradePrice = m.price;
      prices.push(m.price);
      this.trade(run, taker, m, q);
      if (m.leaves === 0) this.remove(m);
    }

    if (taker.leaves > 0) {
      if (taker.tif === TimeInForce.FOK) throw new Error('reference model: FOK check let one by');
      if (isMarketType(taker) && taker.protection > 0 && opposite.length > 0) {
        this.canceled(run, taker, Reason.PRICE_PROTECTION);
      } else if (isMarketType(taker) || taker.tif === TimeInForce.IOC) {
        this.canceled(run, taker, Reason.IOC_REMAINDER);
      } else {
        const side = taker.side === Side.BUY ? book.bids : book.asks;
        const atPrice = side
          .filter((o) => o.price === taker.price)
          .reduce((sum, o) => sum + BigInt(o.leaves), 0n);
        if (atPrice + BigInt(taker.leaves) > BigInt(Number.MAX_SAFE_INTEGER)) {
          this.canceled(run, taker, Reason.LEVEL_QUANTITY_LIMIT);
        } else {
          taker.arrival = ++this.arrivals;
          side.push(taker);
          sortBook(book);
        }
      }
    }
    return prices;
  }

  /** Moves the waiting stops each price reaches, price by price, to the end of `queue`. */
  private trigger(book: RefBook, prices: number[], queue: RefOrder[]): void {
    for (const p of prices) {
      const buys = book.stops
        .filter((s) => s.side === Side.BUY && reaches(s, p))
        .sort((a, b) => a.stopPrice - b.stopPrice || a.arrival - b.arrival);
      const sells = book.stops
        .filter((s) => s.side === Side.SELL && reaches(s, p))
        .sort((a, b) => b.stopPrice - a.stopPrice || a.arrival - b.arrival);
      for (const s of [...buys, ...sells]) {
        book.stops.splice(book.stops.indexOf(s), 1);
        s.waiting = false;
        queue.push(s);
      }
    }
  }

  private workTriggered(run: Run, book: RefBook, queue: RefOrder[]): void {
    for (let s = queue.shift(); s !== undefined; s = queue.shift()) {
      s.priority = run.cmd.seq;
      becomeTriggered(s);
      this.report(run, EventKind.TRIGGERED, s, s.price, s.quantity, Reason.NONE);
      this.trigger(book, this.execute(run, book, s), queue);
    }
  }

  private wouldCross(symbol: string, side: Side, price: number): boolean {
    const book = this.book(symbol) as RefBook;
    sortBook(book);
    if (side === Side.BUY) {
      const ask = book.asks[0];
      return ask !== undefined && price >= ask.price;
    }
    const bid = book.bids[0];
    return bid !== undefined && price <= bid.price;
  }

  // --- state ----------------------------------------------------------------------------------

  private book(symbol: string): RefBook | undefined {
    return this.books.find((b) => b.symbol === symbol);
  }

  private findLive(id: number): RefOrder | undefined {
    for (const b of this.books) {
      const o = [...b.bids, ...b.asks, ...b.stops].find((x) => x.orderId === id);
      if (o !== undefined) return o;
    }
    return undefined;
  }

  private remove(o: RefOrder): void {
    for (const b of this.books) {
      for (const list of [b.bids, b.asks, b.stops]) {
        const i = list.indexOf(o);
        if (i >= 0) list.splice(i, 1);
      }
    }
  }

  // --- reports --------------------------------------------------------------------------------

  private report(
    run: Run,
    kind: EventKind,
    o: RefOrder,
    price: number,
    quantity: number,
    reason: Reason,
  ): ExecutionReport {
    const r = blank(run.cmd, kind);
    r.symbol = o.symbol;
    r.orderId = o.orderId;
    r.ownerId = o.ownerId;
    r.side = o.side;
    r.price = price;
    r.stopPrice = o.stopPrice;
    r.quantity = quantity;
    r.leaves = o.leaves;
    r.filled = o.filled;
    r.reason = reason;
    run.out.push(r);
    return r;
  }

  private canceled(run: Run, o: RefOrder, reason: Reason): void {
    const lots = o.leaves;
    o.leaves = 0;
    this.report(run, EventKind.CANCELED, o, o.price, lots, reason);
  }

  private trade(run: Run, taker: RefOrder, maker: RefOrder, q: number): void {
    const r = this.report(run, EventKind.TRADE, taker, maker.price, q, Reason.NONE);
    r.stopPrice = 0;
    r.tradeNo = run.tradeNo++;
    r.makerOrderId = maker.orderId;
    r.makerOwnerId = maker.ownerId;
    r.makerLeaves = maker.leaves;
    r.makerFilled = maker.filled;
  }

  private echoReject(run: Run, kind: EventKind, reason: Reason): void {
    const c = run.cmd;
    const r = blank(c, kind);
    r.orderId = c.orderId;
    r.ownerId = c.ownerId;
    r.side = c.side;
    r.price = c.price;
    r.stopPrice = c.stopPrice;
    r.quantity = c.quantity;
    r.reason = reason;
    run.out.push(r);
  }
}

/** A triggered stop enters as the plain order it stands for, keeping its stop price. */
function becomeTriggered(s: RefOrder): void {
  s.orderType = s.orderType === OrderType.STOP_LIMIT ? OrderType.LIMIT : OrderType.MARKET;
}

/** Does trade price `p` reach stop order `s`'s stop price? */
function reaches(s: RefOrder, p: number): boolean {
  return s.side === Side.BUY ? p >= s.stopPrice : p <= s.stopPrice;
}

function sortBook(book: RefBook): void {
  book.bids.sort((a, b) => b.price - a.price || a.arrival - b.arrival);
  book.asks.sort((a, b) => a.price - b.price || a.arrival - b.arrival);
}

/** Aggregates a side already sorted best first. */
function levels(side: RefOrder[], n: number): DepthLevel[] {
  const out: DepthLevel[] = [];
  for (const o of side) {
    const last = out[out.length - 1];
    if (last !== undefined && last.price === o.price) {
      last.quantity += o.leaves;
      last.orders += 1;
    } else {
      if (out.length >= n) break;
      out.push({ price: o.price, quantity: o.leaves, orders: 1 });
    }
  }
  return out;
}

function view(o: RefOrder): OrderView {
  let status: OrderStatus = OrderStatus.NEW;
  if (o.waiting) status = OrderStatus.WAITING_TRIGGER;
  else if (o.filled > 0) status = OrderStatus.PARTIALLY_FILLED;
  return {
    orderId: o.orderId,
    ownerId: o.ownerId,
    symbol: o.symbol,
    side: o.side,
    orderType: o.orderType,
    tif: o.tif,
    price: o.price,
    stopPrice: o.stopPrice,
    quantity: o.quantity,
    leaves: o.leaves,
    filled: o.filled,
    postOnly: o.postOnly,
    stp: o.stp,
    protection: o.protection,
    status,
    priority: o.priority,
  };
}

/** A report with the same key order as the engine's pooled reports and every field neutral. */
function blank(cmd: Command, kind: EventKind): ExecutionReport {
  return {
    kind,
    seq: cmd.seq,
    ts: cmd.ts,
    symbol: cmd.symbol,
    orderId: -1,
    ownerId: -1,
    side: Side.BUY,
    price: 0,
    stopPrice: 0,
    quantity: 0,
    leaves: 0,
    filled: 0,
    reason: Reason.NONE,
    tradeNo: 0,
    makerOrderId: -1,
    makerOwnerId: -1,
    makerLeaves: 0,
    makerFilled: 0,
  };
}
