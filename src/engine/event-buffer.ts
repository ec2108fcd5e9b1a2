import type { EventKind, ExecutionReport, Reason, Side } from './types.js';

function blankReport(): ExecutionReport {
  return {
    kind: 0,
    seq: 0,
    ts: 0,
    symbol: '',
    orderId: -1,
    ownerId: -1,
    side: 0,
    price: 0,
    stopPrice: 0,
    quantity: 0,
    leaves: 0,
    filled: 0,
    reason: 0,
    tradeNo: 0,
    makerOrderId: -1,
    makerOwnerId: -1,
    makerLeaves: 0,
    makerFilled: 0,
  };
}

/**
 * Where the engine writes its execution reports. The report objects are pooled and reused after
 * `clear()`, so a warm engine allocates nothing per command; a consumer that keeps a report past
 * the next `clear()` must copy it (`toArray()` does).
 */
export class EventBuffer {
  private readonly pool: ExecutionReport[] = [];
  private size = 0;

  /** Number of reports written since the last `clear()`. */
  get length(): number {
    return this.size;
  }

  /** The i-th report since the last `clear()`. */
  at(i: number): ExecutionReport {
    if (i < 0 || i >= this.size) throw new RangeError(`no report ${i} of ${this.size}`);
    return this.pool[i] as ExecutionReport;
  }

  /** Forgets the reports written so far; their objects will be reused. */
  clear(): void {
    this.size = 0;
  }

  /** Copies of the reports written since the last `clear()`. */
  toArray(): ExecutionReport[] {
    const copies: ExecutionReport[] = new Array<ExecutionReport>(this.size);
    for (let i = 0; i < this.size; i++) copies[i] = { ...(this.pool[i] as ExecutionReport) };
    return copies;
  }

  /** Appends a report about one order; trade fields are reset. */
  emit(
    kind: EventKind,
    seq: number,
    ts: number,
    symbol: string,
    orderId: number,
    ownerId: number,
    side: Side,
    price: number,
    stopPrice: number,
    quantity: number,
    leaves: number,
    filled: number,
    reason: Reason,
  ): ExecutionReport {
    let r = this.pool[this.size];
    if (r === undefined) {
      r = blankReport();
      this.pool.push(r);
    }
    this.size++;
    r.kind = kind;
    r.seq = seq;
    r.ts = ts;
    r.symbol = symbol;
    r.orderId = orderId;
    r.ownerId = ownerId;
    r.side = side;
    r.price = price;
    r.stopPrice = stopPrice;
    r.quantity = quantity;
    r.leaves = leaves;
    r.filled = filled;
    r.reason = reason;
    r.tradeNo = 0;
    r.makerOrderId = -1;
    r.makerOwnerId = -1;
    r.makerLeaves = 0;
    r.makerFilled = 0;
    return r;
  }
}
