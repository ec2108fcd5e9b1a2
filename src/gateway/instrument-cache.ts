// Listed instruments in memory, so that validating an order costs no I/O. An unknown symbol
// reloads from PostgreSQL at most once a second (another gateway may have listed it). Once
// started, the cache also reads every instrument again every few seconds (another gateway may have
// changed one's price protection); what it holds serves meanwhile, and while PostgreSQL is down.
import { instrumentScales } from './order-builder.js';
import type { InstrumentScales } from './order-builder.js';
import type { InstrumentRow } from './store.js';

/** How long a change made through another gateway may take to reach this one's orders. */
export const INSTRUMENT_REFRESH_MS = 5_000;

export class InstrumentCache {
  private readonly bySymbol = new Map<string, InstrumentScales>();
  /**
   * Ticks at each read begun and each put. Each instrument holds the tick of what it was last set
   * from, so that a read never undoes a put, or a read, that came after it began.
   */
  private clock = 0;
  private readonly setAt = new Map<string, number>();
  private lastReload = 0;
  private refreshing = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly load: () => Promise<InstrumentRow[]>,
    /** A background read failed; the instruments held stay in use. */
    private readonly onRefreshError: (err: unknown) => void,
    private readonly refreshMs = INSTRUMENT_REFRESH_MS,
  ) {}

  async reload(): Promise<void> {
    this.lastReload = Date.now();
    const began = this.begin();
    this.apply(await this.load(), began);
  }

  /** Marks the start of a read of every instrument, for `apply`. */
  begin(): number {
    return ++this.clock;
  }

  /** Takes what a read begun at `began` found, but for instruments set from anything newer. */
  apply(rows: readonly InstrumentRow[], began: number): void {
    for (const row of rows) if ((this.setAt.get(row.symbol) ?? 0) < began) this.set(row, began);
  }

  /** An instrument as PostgreSQL has just answered a change of it. */
  put(row: InstrumentRow): void {
    this.set(row, ++this.clock);
  }

  private set(row: InstrumentRow, at: number): void {
    this.setAt.set(row.symbol, at);
    this.bySymbol.set(
      row.symbol,
      instrumentScales(row.symbol, row.tick_size, row.lot_size, row.market_protection_bps),
    );
  }

  /** The instrument, or undefined when the symbol is not listed. */
  async get(symbol: string): Promise<InstrumentScales | undefined> {
    const hit = this.bySymbol.get(symbol);
    if (hit !== undefined || Date.now() - this.lastReload < 1000) return hit;
    await this.reload();
    return this.bySymbol.get(symbol);
  }

  /** Reads every instrument again every `refreshMs`, in the background, until stopped. */
  start(): void {
    this.timer ??= setInterval(() => this.refresh(), this.refreshMs).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One read at a time: a slow PostgreSQL does not pile them up. */
  private refresh(): void {
    if (this.refreshing) return;
    this.refreshing = true;
    this.reload()
      .catch(this.onRefreshError)
      .finally(() => {
        this.refreshing = false;
      });
  }
}
