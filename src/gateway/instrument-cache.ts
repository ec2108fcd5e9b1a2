// Listed instruments in memory, so that validating an order costs no I/O. An unknown symbol
// reloads from PostgreSQL at most once a second (another gateway may have listed it).
import { instrumentScales } from './order-builder.js';
import type { InstrumentScales } from './order-builder.js';
import type { InstrumentRow } from './store.js';

export class InstrumentCache {
  private readonly bySymbol = new Map<string, InstrumentScales>();
  private lastReload = 0;

  constructor(private readonly load: () => Promise<InstrumentRow[]>) {}

  async reload(): Promise<void> {
    this.lastReload = Date.now();
    for (const row of await this.load()) this.put(row);
  }

  put(row: InstrumentRow): void {
    this.bySymbol.set(row.symbol, instrumentScales(row.symbol, row.tick_size, row.lot_size));
  }

  /** The instrument, or undefined when the symbol is not listed. */
  async get(symbol: string): Promise<InstrumentScales | undefined> {
    const hit = this.bySymbol.get(symbol);
    if (hit !== undefined || Date.now() - this.lastReload < 1000) return hit;
    await this.reload();
    return this.bySymbol.get(symbol);
  }
}
