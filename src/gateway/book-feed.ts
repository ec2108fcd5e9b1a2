// The order books that market-data streams (GET /v1/market/events) follow. A symbol's top levels
// are read from its engine when a batch of the engine's work touched the symbol, at most once per
// BOOK_INTERVAL_MS however many streams follow it, and each stream is sent the book when its own
// top levels changed, or the symbol traded (so that a book at or past each trade's sequence
// comes): a conflated book, as it stands, never a backlog of old ones.
import type { Logger } from 'pino';
import type { ParsedBatch } from '../queue/order-feed.js';
import type { Book } from './schemas.js';

/** The least time between two reads of one symbol's book. */
const BOOK_INTERVAL_MS = 100;

/** A book as GET /v1/instruments/{symbol}/book answers it. */
export type BookData = Book;

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

interface Watching {
  /** The text of the levels it was last sent (undefined: none yet). */
  last: string | undefined;
  /** Times it asked to be sent the book again (again()), and of those, the last one answered. */
  asked: number;
  answered: number;
}

interface WatchedBook {
  readonly symbol: string;
  readonly watchers: Map<BookWatcher, Watching>;
  /** Something may have changed since the last read began. */
  dirty: boolean;
  /**
   * The next read goes to every watcher, changed or not: the symbol traded (a book with the
   * trade's sequence is owed even when its levels look as before).
   */
  forced: boolean;
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
        forced: false,
        timer: undefined,
        reading: false,
        readAt: -Infinity,
        failing: false,
      };
      this.books.set(symbol, book);
    }
    const watched = book;
    const watching: Watching = { last: undefined, asked: 0, answered: 0 };
    watched.watchers.set(watcher, watching);
    this.mark(watched);
    return {
      again: () => {
        if (!watched.watchers.has(watcher)) return;
        // Counted, not only forgotten: a read under way now may have begun before the reason to
        // send again, and its book is then no answer to it.
        watching.asked++;
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
      if (book === undefined) continue;
      if (batch.tradesOf(symbol).length > 0) book.forced = true;
      this.mark(book);
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
    const forced = book.forced;
    book.forced = false;
    book.reading = true;
    book.readAt = performance.now();
    let depth = 1;
    // What each watcher had asked for when the read began: a book read from now answers that.
    const asked = new Map<BookWatcher, number>();
    for (const [w, watching] of book.watchers) {
      depth = Math.max(depth, w.depth);
      asked.set(w, watching.asked);
    }
    try {
      const data = await this.read(book.symbol, depth);
      if (book.failing) this.logger.info({ symbol: book.symbol }, 'market data: book read again');
      book.failing = false;
      // Worked out once a depth, and handed to every watcher of that depth as the same object.
      const byDepth = new Map<number, { text: string; data: BookData }>();
      for (const [w, watching] of book.watchers) {
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
        const answers = asked.get(w) ?? watching.asked;
        if (shown.text === watching.last && !forced && watching.answered >= answers) continue;
        watching.last = shown.text;
        watching.answered = answers;
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
      book.forced ||= forced;
    } finally {
      book.reading = false;
      if (book.dirty && this.books.get(book.symbol) === book) this.schedule(book);
    }
  }
}
