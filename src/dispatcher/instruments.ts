// Tick and lot sizes of the listed instruments, from PostgreSQL, as Scales: the dispatcher turns
// the engine's ticks and lots back into the API's decimals with them.
import type { Sql } from '../db/client.js';
import { fromPostgres } from '../db/pg-errors.js';
import { Scale } from '../engine/scale.js';

export interface InstrumentScales {
  tick: Scale;
  lot: Scale;
}

export class Instruments {
  private readonly scales = new Map<string, InstrumentScales>();

  constructor(private readonly sql: Sql) {}

  /** Whether the instruments were read at least once. */
  get loaded(): boolean {
    return this.scales.size > 0;
  }

  /**
   * (Re)reads every instrument. Its failure is marked PostgreSQL's, for the dispatcher's count
   * of failures by dependency.
   */
  async load(): Promise<void> {
    let rows: { symbol: string; tick_size: string; lot_size: string }[];
    try {
      rows = await this.sql<typeof rows>`
        SELECT symbol, tick_size::text AS tick_size, lot_size::text AS lot_size FROM instruments`;
    } catch (err) {
      throw fromPostgres(err);
    }
    for (const r of rows) {
      this.scales.set(r.symbol, { tick: new Scale(r.tick_size), lot: new Scale(r.lot_size) });
    }
  }

  /** Makes sure every symbol is known, reloading once if one is not; throws if still unknown. */
  async ensure(symbols: Iterable<string>): Promise<void> {
    let reloaded = false;
    for (const s of symbols) {
      if (this.scales.has(s)) continue;
      if (!reloaded) {
        await this.load();
        reloaded = true;
      }
      if (!this.scales.has(s)) {
        throw fromPostgres(new Error(`instrument ${s} is not in PostgreSQL`));
      }
    }
  }

  /** The scales of a known symbol (call `ensure` first). */
  get(symbol: string): InstrumentScales {
    const s = this.scales.get(symbol);
    if (s === undefined) throw new Error(`instrument ${symbol} not loaded`);
    return s;
  }
}
