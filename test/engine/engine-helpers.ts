// Readable views of engine output for scenario tests: each report as one line of text, and each
// book as its levels, so that a test states the whole expected outcome of a step.
import assert from 'node:assert/strict';
import { EventBuffer } from '../../src/engine/event-buffer.js';
import { MatchingEngine } from '../../src/engine/matching-engine.js';
import { EventKind, Reason } from '../../src/engine/types.js';
import type { Command, ExecutionReport } from '../../src/engine/types.js';
import { DEFAULT_SYMBOL } from './commands.js';

const kindName = Object.fromEntries(Object.entries(EventKind).map(([k, v]) => [v, k]));
const reasonName = Object.fromEntries(Object.entries(Reason).map(([k, v]) => [v, k]));

/** One report as a line: `TRADE #4 x #1 2@101 leaves 1/0`, `CANCELED #5 3 IOC_REMAINDER`, … */
export function line(e: ExecutionReport): string {
  const kind = kindName[e.kind] as string;
  switch (e.kind) {
    case EventKind.ACCEPTED:
    case EventKind.TRIGGERED:
      return `${kind} #${e.orderId}`;
    case EventKind.TRADE:
      return `TRADE #${e.orderId} x #${e.makerOrderId} ${e.quantity}@${e.price} leaves ${e.leaves}/${e.makerLeaves}`;
    case EventKind.CANCELED:
      return `CANCELED #${e.orderId} ${e.quantity} ${reasonName[e.reason]}`;
    case EventKind.REPLACED:
      return `REPLACED #${e.orderId} ${e.quantity}@${e.price} leaves ${e.leaves}`;
    default:
      return `${kind} #${e.orderId} ${reasonName[e.reason]}`;
  }
}

/** An engine with symbols listed and a step function that returns the reports as lines. */
export class Harness {
  readonly out = new EventBuffer();
  /** Full copies of the last step's reports. */
  last: ExecutionReport[] = [];

  constructor(
    symbols: string[] = [DEFAULT_SYMBOL],
    readonly engine = new MatchingEngine(),
  ) {
    for (const s of symbols) this.engine.listInstrument(s);
  }

  /** Applies the commands in order and returns all their reports as lines. */
  run(...cmds: Command[]): string[] {
    this.out.clear();
    for (const c of cmds) this.engine.apply(c, this.out);
    this.last = this.out.toArray();
    checkConsistency(this.engine);
    return this.last.map(line);
  }

  /** Both sides as `quantity@price` per level, best first. */
  book(symbol = DEFAULT_SYMBOL): { bids: string[]; asks: string[] } {
    const d = this.engine.depth(symbol, 1000);
    assert.ok(d, `symbol ${symbol} is listed`);
    return {
      bids: d.bids.map((l) => `${l.quantity}@${l.price}`),
      asks: d.asks.map((l) => `${l.quantity}@${l.price}`),
    };
  }
}

/**
 * The engine's internal consistency, checked after every step: books not crossed, levels sorted
 * and equal to the sum of their orders' leaves, every live order's leaves + filled = quantity.
 */
export function checkConsistency(engine: MatchingEngine): void {
  const live = engine.liveOrders();
  for (const symbol of engine.symbols()) {
    const d = engine.depth(symbol, Number.MAX_SAFE_INTEGER);
    assert.ok(d);
    const bid = d.bids[0];
    const ask = d.asks[0];
    if (bid && ask)
      assert.ok(bid.price < ask.price, `${symbol} crossed: ${bid.price} ≥ ${ask.price}`);
    for (let i = 1; i < d.bids.length; i++) {
      assert.ok(
        (d.bids[i - 1] as { price: number }).price > (d.bids[i] as { price: number }).price,
      );
    }
    for (let i = 1; i < d.asks.length; i++) {
      assert.ok(
        (d.asks[i - 1] as { price: number }).price < (d.asks[i] as { price: number }).price,
      );
    }
    for (const [levels, side] of [
      [d.bids, 0],
      [d.asks, 1],
    ] as const) {
      for (const level of levels) {
        const at = live.filter(
          (o) =>
            o.symbol === symbol && o.side === side && o.status !== 2 && o.price === level.price,
        );
        assert.equal(
          level.quantity,
          at.reduce((s, o) => s + o.leaves, 0),
        );
        assert.equal(level.orders, at.length);
        assert.ok(level.quantity > 0);
      }
    }
  }
  let resting = 0;
  for (const o of live) {
    assert.equal(o.leaves + o.filled, o.quantity, `order ${o.orderId} leaves + filled`);
    assert.ok(o.leaves > 0);
    if (o.status !== 2) resting++;
  }
  assert.equal(engine.restingCount, resting);
}
