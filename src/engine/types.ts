// The matching core's vocabulary: commands in, execution reports out.
// Everything is an integer: prices are ticks, quantities are lots, ids are compact numbers chosen
// by the caller. Enumerations are small integers so that commands and events keep one hidden
// class each and compare without string work on the hot path.

export const Side = { BUY: 0, SELL: 1 } as const;
export type Side = (typeof Side)[keyof typeof Side];

export const OrderType = { LIMIT: 0, MARKET: 1, STOP_LIMIT: 2, STOP_MARKET: 3 } as const;
export type OrderType = (typeof OrderType)[keyof typeof OrderType];

export const TimeInForce = { GTC: 0, IOC: 1, FOK: 2 } as const;
export type TimeInForce = (typeof TimeInForce)[keyof typeof TimeInForce];

/** Self-trade prevention, decided by the incoming (taker) order's mode. */
export const Stp = { NONE: 0, CANCEL_NEWEST: 1, CANCEL_OLDEST: 2, CANCEL_BOTH: 3 } as const;
export type Stp = (typeof Stp)[keyof typeof Stp];

/** The widest price protection (Command.protection), in basis points: 100% of the best price. */
export const MAX_PROTECTION = 10_000;

export const CommandType = { PLACE: 0, CANCEL: 1, REPLACE: 2, FORGET: 3, CANCEL_ALL: 4 } as const;
export type CommandType = (typeof CommandType)[keyof typeof CommandType];

/**
 * One input to the engine. A single shape for all command types (unused fields are 0/false) so
 * that the hot path sees one hidden class.
 *
 * - PLACE: every field is read.
 * - CANCEL: `orderId` is the order to cancel, `ownerId` must be its owner.
 * - REPLACE: `orderId`, `ownerId`, and the new `price` and total `quantity` (filled included);
 *   0 for either keeps the order's own, as it is when the command is applied.
 * - FORGET: `symbol` only. Its book is dropped if it holds no order (resting or waiting), its last
 *   trade price with it; one that holds any is kept. No report. For a symbol that comes back to
 *   this engine from another (src/queue/shard-layout.ts): what this engine last knew of it is stale.
 * - CANCEL_ALL: `ownerId`, `side`, and `symbol` ('' for every symbol of this engine). Every live
 *   order of that owner on that side, resting or waiting for its trigger, is canceled
 *   (CANCELED_BY_OWNER), book by book in listing order, each book's best level first and its stops
 *   after; nothing is refused, and a CANCEL_ALL that finds nothing reports nothing.
 */
export interface Command {
  type: CommandType;
  /** Strictly increasing across all commands; a command at or below the last applied is ignored. */
  seq: number;
  /** Milliseconds since the epoch, assigned before the engine; the engine never reads a clock. */
  ts: number;
  symbol: string;
  orderId: number;
  ownerId: number;
  side: Side;
  orderType: OrderType;
  tif: TimeInForce;
  /** Limit price in ticks (LIMIT, STOP_LIMIT, REPLACE: 0 keeps the order's); 0 otherwise. */
  price: number;
  /** Stop price in ticks (STOP_MARKET, STOP_LIMIT); 0 otherwise. */
  stopPrice: number;
  /** Lots. */
  quantity: number;
  postOnly: boolean;
  stp: Stp;
  /**
   * MARKET and STOP_MARKET only (0 otherwise): the venue's price protection, in basis points
   * (1–10,000; 0 for none). Such an order trades no further from the opposite side's best price,
   * as it stands when the order comes to match, than this fraction of it (rounded toward that
   * price); what is left then is canceled (PRICE_PROTECTION).
   */
  protection: number;
}

export const EventKind = {
  /** The order is valid and live: resting, waiting for its stop, or about to match. */
  ACCEPTED: 0,
  /** The order was refused; nothing of it exists in the engine. */
  REJECTED: 1,
  /** A fill between an incoming (taker) and a resting (maker) order. */
  TRADE: 2,
  /** The order is done with `leaves` > 0 never to trade (by its owner, IOC rest, FOK, STP). */
  CANCELED: 3,
  /** A resting order's price or quantity changed. */
  REPLACED: 4,
  /** A stop order's stop price was reached; it now enters the book as MARKET or LIMIT. */
  TRIGGERED: 5,
  /** A cancel command was refused; the order it named is unchanged. */
  CANCEL_REJECTED: 6,
  /** A replace command was refused; the order it named is unchanged. */
  REPLACE_REJECTED: 7,
} as const;
export type EventKind = (typeof EventKind)[keyof typeof EventKind];

export const Reason = {
  NONE: 0,
  // Rejections of a PLACE.
  UNKNOWN_SYMBOL: 1,
  INVALID_QUANTITY: 2,
  INVALID_PRICE: 3,
  INVALID_STOP_PRICE: 4,
  INVALID_TIME_IN_FORCE: 5,
  INVALID_POST_ONLY: 6,
  DUPLICATE_ORDER_ID: 7,
  POST_ONLY_WOULD_TRADE: 8,
  INVALID_ORDER: 9,
  // Why an order ended CANCELED.
  CANCELED_BY_OWNER: 20,
  /** The unfilled rest of an IOC or MARKET order. */
  IOC_REMAINDER: 21,
  /** An FOK order that could not fill whole; nothing traded. */
  FOK_NOT_FILLABLE: 22,
  SELF_TRADE_PREVENTION: 23,
  /** A GTC rest that would take the lots at its price past 2^53 - 1 (where totals stop being exact). */
  LEVEL_QUANTITY_LIMIT: 24,
  /** The rest of a MARKET order whose next trade would have been past its price protection. */
  PRICE_PROTECTION: 25,
  // Refusals of a CANCEL or REPLACE.
  UNKNOWN_ORDER: 40,
  NOT_REPLACEABLE: 41,
  QUANTITY_AT_OR_BELOW_FILLED: 42,
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];

/**
 * An execution report. One shape for every kind; fields that do not apply are 0 (or -1 for ids).
 * The engine reuses these objects between commands: copy what you keep.
 *
 * For every kind, `orderId`/`ownerId`/`side` name the order the report is about (for TRADE: the
 * taker), `leaves` and `filled` are that order's open and filled lots after the event.
 * - ACCEPTED: `price`/`stopPrice`/`quantity` as placed.
 * - TRADE: `price` and `quantity` of the fill; `maker*` fields describe the resting order, with
 *   its own leaves and filled after the fill; `tradeNo` numbers the trades of one command from 0,
 *   so (`seq`, `tradeNo`) is the trade's id.
 * - CANCELED: `quantity` is the lots canceled (the leaves before the cancel); `leaves` is then 0.
 * - REPLACED: `price` and `quantity` are the new ones.
 * - REJECTED/CANCEL_REJECTED/REPLACE_REJECTED: `reason` says why.
 */
export interface ExecutionReport {
  kind: EventKind;
  seq: number;
  ts: number;
  symbol: string;
  orderId: number;
  ownerId: number;
  side: Side;
  price: number;
  stopPrice: number;
  quantity: number;
  leaves: number;
  filled: number;
  reason: Reason;
  tradeNo: number;
  makerOrderId: number;
  makerOwnerId: number;
  makerLeaves: number;
  makerFilled: number;
}

/** An aggregated price level of the L2 view. */
export interface DepthLevel {
  price: number;
  quantity: number;
  orders: number;
}

export interface Depth {
  symbol: string;
  bids: DepthLevel[];
  asks: DepthLevel[];
  /** The last sequence the engine applied when the view was taken. */
  seq: number;
}

export const OrderStatus = {
  NEW: 0,
  PARTIALLY_FILLED: 1,
  /** A stop order waiting for its trigger. */
  WAITING_TRIGGER: 2,
} as const;
export type OrderStatus = (typeof OrderStatus)[keyof typeof OrderStatus];

/** A live order as the engine holds it. Orders that are done are not kept. */
export interface OrderView {
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
  status: OrderStatus;
  /** Sequence of the command that last gave the order its place in the queue. */
  priority: number;
}
