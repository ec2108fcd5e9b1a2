// The same workload through nodejs-order-book (npm), for the side-by-side figure of
// `npm run bench:engine -- --compare`. Its cancel scans the price level's queue, so deep books
// make it slow: it is timed on the first `cap` commands after the prefill (the start of the
// warm-up stream, the same mix, whose every cancel names an order that is live at that point).

import { OrderBook, Side as ObSide } from 'nodejs-order-book';
import { performance } from 'node:perf_hooks';
import { CommandType, OrderType, Side } from '../engine/types.js';
import type { CommandColumns, Workload } from './engine-workload.js';

function play(books: OrderBook[], cols: CommandColumns, limit: number): number {
  const n = Math.min(limit, cols.length);
  for (let i = 0; i < n; i++) {
    const book = books[cols.symbol[i] as number] as OrderBook;
    const id = String(cols.orderId[i]);
    if (cols.type[i] === CommandType.CANCEL) {
      book.cancel(id);
      continue;
    }
    const side = cols.side[i] === Side.BUY ? ObSide.BUY : ObSide.SELL;
    const size = cols.quantity[i] as number;
    if (cols.orderType[i] === OrderType.MARKET) book.market({ side, size });
    else book.limit({ side, id, size, price: cols.price[i] as number });
  }
  return n;
}

export interface CompareResult {
  commands_per_sec: number;
  measured_commands: number;
}

/** Prefills nodejs-order-book's books, then times up to `cap` commands of the mix. */
export function measureNodejsOrderBook(w: Workload, cap: number): CompareResult {
  const books = w.symbols.map(() => new OrderBook());
  play(books, w.prefill, Number.MAX_SAFE_INTEGER);
  const t0 = performance.now();
  const n = play(books, w.warmup, cap);
  const seconds = (performance.now() - t0) / 1000;
  return { commands_per_sec: Math.round(n / seconds), measured_commands: n };
}
