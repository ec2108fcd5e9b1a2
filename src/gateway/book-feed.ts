// The order books that market-data streams (GET /v1/market/events) follow. A symbol's top levels
// are read from its engine when a batch of the engine's work touched the symbol, at most once per
// BOOK_INTERVAL_MS however many streams follow it, and each stream is sent the book only when its
// own top levels changed: a conflated book, as it stands, never a backlog of old ones.
import type { Logger } from 'pino';
import type { ParsedBatch } from '../queue/order-feed.js';

/** The least time between two reads of one symbol's book. */
export const BOOK_INTERVAL_MS = 100;

export interface BookLevel {
  price: string;
  quantity: string;
}

/** A book as GET /v1/instruments/{symbol}/book answers it. */
export interface BookData {
  symbol: string;
  bids: BookLevel[];
  asks: BookLevel[];
  sequence: number;
}

/** One stream's interest in one symbol. */
export interface BookWatcher {
  /** Levels a side it is sent. */
  readonly depth: number;
  send(book: BookData): void;
}

export interface BookWatch {
  /** Sends the book at the next read even if unchanged (after a resync). */
  again(): void;
  stop(): void;
}

interface WatchedBook {
  readonly symbol: string;
  /** Each watcher and the text of the levels it was last sent (undefined: none yet). */
  readonly watchers: Map<BookWatcher, string | undefined>;
  /** Something may have changed since the last read began. */
  dirty: boolean;
  timer: NodeJS.Timeout | undefined;
  reading: boolean;
  /** When the last read began (ms, monotonic). */
  readAt: number;
  failing: boolean;
}

export class BookFeed {
  private readonly books = new Map<string, WatchedBook>();
  private stopped = false;

  constructor(
    private readonly read: (symbol: string, depth: number) => Promise<BookData>,
    private readonly logger: Logger,
    private readonly intervalMs = BOOK_INTERVAL_MS,
  ) {}

  /** Follows `symbol` for `watcher`, which is sent the book at the next read (soon). */
  watch(symbol: string, watcher: BookWatcher): BookWatch {
    let book = this.books.get(symbol);
    if (book === undefined) {
      book = {
        symbol,
        watchers: new Map(),
        dirty: false,
        timer: undefined,
        reading: false,
        readAt: -Infinity,
        failing: false,
      };
      this.books.set(symbol, book);
    }
    const watched = book;
    watched.watchers.set(watcher, undefined);
    this.mark(watched);
    return {
      again: () => {
        if (!watched.watchers.has(watcher)) return;
        watched.watchers.set(watcher, undefined);
        this.mark(watched);
      },
      stop: () => {
        watched.watchers.delete(watcher);
        if (watched.watchers.size > 0 || this.books.get(symbol) !== watched) return;
        clearTimeout(watched.timer);
        this.books.delete(symbol);
      },
    };
  }

  /** A batch of the engine's work, read live: the books it touched are to be read again. */
  touched(batch: ParsedBatch): void {
    if (this.books.size === 0) return;
    for (const symbol of batch.symbols()) {
      const book = this.books.get(symbol);
      if (book !== undefined) this.mark(book);
    }
  }

  stop(): void {
    this.stopped = true;
    for (const book of this.books.values()) clearTimeout(book.timer);
    this.books.clear();
  }

  private mark(book: WatchedBook): void {
    book.dirty = true;
    this.schedule(book);
  }

  private schedule(book: WatchedBook): void {
    if (book.timer !== undefined || book.reading || this.stopped) return;
    const wait = Math.max(0, book.readAt + this.intervalMs - performance.now());
    book.timer = setTimeout(() => {
      book.timer = undefined;
      void this.readBook(book);
    }, wait);
  }

  private async readBook(book: WatchedBook): Promise<void> {
    if (this.books.get(book.symbol) !== book) return;
    book.dirty = false;
    book.reading = true;
    book.readAt = performance.now();
    let depth = 1;
    for (const w of book.watchers.keys()) depth = Math.max(depth, w.depth);
    try {
      const data = await this.read(book.symbol, depth);
      if (book.failing) this.logger.info({ symbol: book.symbol }, 'market data: book read again');
      book.failing = false;
      // Worked out once a depth, and handed to every watcher of that depth as the same object.
      const byDepth = new Map<number, { text: string; data: BookData }>();
      for (const [w, last] of book.watchers) {
        // Came since the read began, wanting more levels: the next read is for it.
        if (w.depth > depth) continue;
        let shown = byDepth.get(w.depth);
        if (shown === undefined) {
          const bids = data.bids.slice(0, w.depth);
          const asks = data.asks.slice(0, w.depth);
          shown = {
            text: JSON.stringify([bids, asks]),
            data: { symbol: data.symbol, bids, asks, sequence: data.sequence },
          };
          byDepth.set(w.depth, shown);
        }
        if (shown.text === last) continue;
        book.watchers.set(w, shown.text);
        w.send(shown.data);
      }
    } catch (err) {
      if (!book.failing) {
        this.logger.warn(
          { err, symbol: book.symbol },
          'market data: cannot read the book; retrying',
        );
      }
      book.failing = true;
      book.dirty = true;
    } finally {
      book.reading = false;
      if (book.dirty && this.books.get(book.symbol) === book) this.schedule(book);
    }
  }
}
