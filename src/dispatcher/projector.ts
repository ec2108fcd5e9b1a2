// Execution reports → the pipeline's records: the new state of every order a batch changed, its
// trades and each side's fills. Pure and deterministic (times come from the commands), so a
// replay projects the same records and tests can run it beside an in-process engine.
import { EventKind, Reason } from '../engine/types.js';
import type { ExecutionReport } from '../engine/types.js';
import { SIDES, tradeFill, tradeId } from '../queue/records.js';
import type {
  CommandRecord,
  CommandRefusal,
  Fill,
  OrderState,
  StatusName,
  TradeRecord,
} from '../queue/records.js';
import type { InstrumentScales } from './instruments.js';

const REASON_NAMES = new Map<number, string>(Object.entries(Reason).map(([k, v]) => [v, k]));

/** The name of an engine Reason, as `reject_reason` shows it. */
export const reasonName = (r: number): string => REASON_NAMES.get(r) ?? `REASON_${r}`;

export interface ProjectedBatch {
  firstSeq: number;
  lastSeq: number;
  /** Every order the batch changed, in its final state, by engine id, in order of first change. */
  orders: Map<number, OrderState>;
  trades: TradeRecord[];
  /** New fills by order id (UUID), oldest first. */
  fills: Map<string, Fill[]>;
  /** Cancels and amends the engine refused, in order. */
  refusals: CommandRefusal[];
  /**
   * Sequences of refusals that name no cancel or amend of the batch, and of rejections that name
   * no order (an engine speaking another version of the protocol, as one that does not know
   * CANCEL_ALL): passed over, as they change no order; the dispatcher logs them.
   */
  unexplained?: number[];
}

/** A cancel or amend of the batch: whose, and of which order (the engine's report has neither). */
export type OrderRequest = Pick<CommandRefusal, 'kind' | 'order_id' | 'user_id' | 'symbol'>;

/** The request a cancel or amend record makes; undefined for any other record. */
export function orderRequest(record: CommandRecord): OrderRequest | undefined {
  if (record.k !== 'cancel' && record.k !== 'replace') return undefined;
  const { order_id, user_id, symbol } = record;
  return { kind: record.k === 'cancel' ? 'cancel' : 'amend', order_id, user_id, symbol };
}

export interface ProjectionInput {
  shard: number;
  firstSeq: number;
  lastSeq: number;
  /** Open orders before the batch, by engine id; read, never modified. */
  open: ReadonlyMap<number, OrderState>;
  /** The orders the batch's PLACE commands carry (their `seq` set), by engine id. */
  placed: ReadonlyMap<number, OrderState>;
  /** The batch's cancels and amends, by sequence. */
  requests: ReadonlyMap<number, OrderRequest>;
  /** The reports of the commands firstSeq..lastSeq, in order. */
  reports: readonly ExecutionReport[];
  scales(symbol: string): InstrumentScales;
}

/** Projects one batch's reports onto copies of the orders they name. */
export function project(input: ProjectionInput): ProjectedBatch {
  const orders = new Map<number, OrderState>();
  const trades: TradeRecord[] = [];
  const fills = new Map<string, Fill[]>();
  const refusals: CommandRefusal[] = [];
  const unexplained: number[] = [];

  const touch = (id: number, r: ExecutionReport): OrderState => {
    let o = orders.get(id);
    if (o === undefined) {
      const before = input.placed.get(id) ?? input.open.get(id);
      if (before === undefined) throw new Error(`report seq ${r.seq} names unknown order ${id}`);
      o = { ...before };
      orders.set(id, o);
    }
    o.version = r.seq;
    // The time of the request that changed it: a mass cancel's (or a fired switch's) may be from
    // just before an order it cancels was accepted; the order is never changed before it was made.
    const at = new Date(r.ts).toISOString();
    o.updated_at = at < o.created_at ? o.created_at : at;
    return o;
  };
  const close = (o: OrderState, status: StatusName, reason: number): void => {
    o.status = status;
    o.reject_reason = reasonName(reason);
  };
  const fill = (o: OrderState, filled: number, leaves: number, r: ExecutionReport): void => {
    const { tick, lot } = input.scales(o.symbol);
    o.filled_lots = filled;
    o.notional = (BigInt(o.notional) + BigInt(r.price) * BigInt(r.quantity)).toString();
    o.filled_quantity = lot.toDecimal(filled);
    o.average_fill_price = tick.averagePrice(BigInt(o.notional), BigInt(filled));
    o.status = leaves === 0 ? 'FILLED' : 'PARTIALLY_FILLED';
  };

  for (const r of input.reports) {
    switch (r.kind) {
      case EventKind.ACCEPTED:
        touch(r.orderId, r).status = 'NEW';
        break;
      case EventKind.REJECTED:
        // A command the engine refused whole that places no order (a CANCEL_ALL an engine from
        // before it does not know): no order changes.
        if (!orders.has(r.orderId) && !input.placed.has(r.orderId) && !input.open.has(r.orderId)) {
          unexplained.push(r.seq);
          break;
        }
        close(touch(r.orderId, r), 'REJECTED', r.reason);
        break;
      case EventKind.CANCELED:
        close(touch(r.orderId, r), 'CANCELED', r.reason);
        break;
      case EventKind.REPLACED: {
        // The new price and total quantity; its status (NEW or PARTIALLY_FILLED) is unchanged.
        const o = touch(r.orderId, r);
        const { tick, lot } = input.scales(o.symbol);
        o.price_ticks = r.price;
        o.price = tick.toDecimal(r.price);
        o.quantity_lots = r.quantity;
        o.quantity = lot.toDecimal(r.quantity);
        break;
      }
      case EventKind.TRADE: {
        const taker = touch(r.orderId, r);
        const maker = touch(r.makerOrderId, r);
        fill(taker, r.filled, r.leaves, r);
        fill(maker, r.makerFilled, r.makerLeaves, r);
        const { tick, lot } = input.scales(r.symbol);
        const trade: TradeRecord = {
          id: tradeId(r.ts, input.shard, r.seq, r.tradeNo),
          seq: r.seq,
          trade_no: r.tradeNo,
          symbol: r.symbol,
          price: tick.toDecimal(r.price),
          quantity: lot.toDecimal(r.quantity),
          taker_side: SIDES[r.side],
          taker_order_id: taker.id,
          maker_order_id: maker.id,
          taker_user_id: taker.user_id,
          maker_user_id: maker.user_id,
          executed_at: taker.updated_at,
        };
        trades.push(trade);
        addFill(fills, taker.id, trade, 'TAKER');
        addFill(fills, maker.id, trade, 'MAKER');
        break;
      }
      case EventKind.CANCEL_REJECTED:
      case EventKind.REPLACE_REJECTED: {
        // No order changes; its owner is told (on its live updates) which request was refused.
        const req = input.requests.get(r.seq);
        if (req === undefined) {
          unexplained.push(r.seq);
          break;
        }
        refusals.push({
          seq: r.seq,
          ...req,
          reason: reasonName(r.reason),
          at: new Date(r.ts).toISOString(),
        });
        break;
      }
      default:
        // TRIGGERED: a stop stays NEW until it trades.
        break;
    }
  }
  return {
    firstSeq: input.firstSeq,
    lastSeq: input.lastSeq,
    orders,
    trades,
    fills,
    refusals,
    ...(unexplained.length > 0 ? { unexplained } : {}),
  };
}

function addFill(
  fills: Map<string, Fill[]>,
  orderId: string,
  t: TradeRecord,
  liquidity: Fill['liquidity'],
): void {
  const fill = tradeFill(t, liquidity);
  const list = fills.get(orderId);
  if (list === undefined) fills.set(orderId, [fill]);
  else list.push(fill);
}

/** Whether an order status is final (FILLED, CANCELED, REJECTED). */
export const isFinal = (s: StatusName): boolean =>
  s === 'FILLED' || s === 'CANCELED' || s === 'REJECTED';

/** Folds a written batch into the open orders: final ones leave, the rest take their new state. */
export function commit(open: Map<number, OrderState>, batch: ProjectedBatch): void {
  for (const [id, o] of batch.orders) {
    if (isFinal(o.status)) open.delete(id);
    else open.set(id, o);
  }
}
