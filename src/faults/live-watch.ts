// Each load user's live updates (`GET /v1/events`), and the public market data of the load's
// symbols (`GET /v1/market/events`), followed through the fault, as a client does: reconnecting
// with Last-Event-ID whenever the stream breaks. After the case, what the streams promised is
// checked against PostgreSQL: since the last `resync` (or the first `ready`), every fill of the
// user's orders arrived, and each order changed since then arrived last in the state PostgreSQL
// holds; every trade of the symbols arrived; and the last book of each symbol is the engine's. A
// gap passed over without a resync fails the case.
import { createParser } from 'eventsource-parser';
import type { Sql } from '../db/client.js';
import { parsePosition } from '../queue/order-feed.js';
import type { ApiOrder } from '../queue/records.js';
import type { LoadUser } from './load.js';

const RECONNECT_MS = 200;

interface Stream {
  lastId: string | undefined;
  /** Shard 0's sequence of the last resync's position (or the first ready's): checked from it. */
  from: number | undefined;
  events: number;
  resyncs: number;
  connects: number;
}

interface Follower extends Stream {
  user: LoadUser;
  fills: Set<string>;
  orders: Map<string, ApiOrder>;
}

/** A market-data stream of the load's symbols. */
interface MarketFollower extends Stream {
  symbols: readonly string[];
  trades: Set<string>;
  /** The last book of each symbol, as its levels' text. */
  books: Map<string, string>;
}

export interface LiveSummary {
  events: number;
  resyncs: number;
  /** Streams opened, the first of each user's included. */
  connects: number;
  /** Fills and order states since the last resync checked against PostgreSQL. */
  fillsChecked: number;
  ordersChecked: number;
  /** The market-data stream's: its events, resyncs, streams opened, trades checked. */
  market: { events: number; resyncs: number; connects: number; tradesChecked: number };
}

/** A decimal as text without trailing fractional zeros, to compare PostgreSQL's with the API's. */
const plain = (d: string): string => (d.includes('.') ? d.replace(/\.?0+$/, '') : d);

/** The levels of a book event or answer, as text to compare. */
const levelsOf = (book: Record<string, unknown>): string => JSON.stringify([book.bids, book.asks]);

export class LiveWatch {
  private readonly followers: Follower[];
  private readonly market: MarketFollower;
  private readonly controller = new AbortController();
  private readonly running: Promise<void>[];

  constructor(
    private readonly url: string,
    users: LoadUser[],
    symbols: readonly string[],
  ) {
    const stream = (): Stream => ({
      lastId: undefined,
      from: undefined,
      events: 0,
      resyncs: 0,
      connects: 0,
    });
    this.followers = users.map((user) => ({
      ...stream(),
      user,
      fills: new Set(),
      orders: new Map(),
    }));
    this.market = { ...stream(), symbols, trades: new Set(), books: new Map() };
    this.running = this.followers.map((f) =>
      this.follow(f, '/v1/events', f.user.key, {
        restart: () => {
          f.fills.clear();
          f.orders.clear();
        },
        event: (event, data) => {
          if (event === 'fill') f.fills.add(data.trade_id as string);
          else if (event === 'order') f.orders.set(data.id as string, data as unknown as ApiOrder);
        },
      }),
    );
    const m = this.market;
    this.running.push(
      this.follow(m, `/v1/market/events?symbols=${symbols.join(',')}`, undefined, {
        restart: () => m.trades.clear(),
        event: (event, data) => {
          if (event === 'trade') m.trades.add(data.id as string);
          else if (event === 'book') m.books.set(data.symbol as string, levelsOf(data));
        },
      }),
    );
  }

  private async follow(
    f: Stream,
    path: string,
    key: string | undefined,
    on: {
      /** A resync, or the first ready: what came before is no longer the stream's to answer for. */
      restart(): void;
      event(event: string, data: Record<string, unknown>): void;
    },
  ): Promise<void> {
    const signal = this.controller.signal;
    const parser = createParser({
      onEvent: (m) => {
        if (m.id !== undefined) f.lastId = m.id;
        f.events++;
        const data = JSON.parse(m.data) as Record<string, unknown>;
        if (m.event === 'resync' || (m.event === 'ready' && f.from === undefined)) {
          if (m.event === 'resync') f.resyncs++;
          // What came before is the client's to read afresh; the stream answers for what follows.
          f.from = parsePosition(m.id ?? '', 1)?.seqs[0] ?? 0;
          on.restart();
        } else on.event(m.event ?? 'message', data);
      },
    });
    while (!signal.aborted) {
      try {
        const headers: Record<string, string> = {};
        if (key !== undefined) headers.authorization = `Bearer ${key}`;
        if (f.lastId !== undefined) headers['last-event-id'] = f.lastId;
        const res = await fetch(`${this.url}${path}`, { headers, signal });
        if (res.status === 200 && res.body !== null) {
          f.connects++;
          parser.reset();
          const decoder = new TextDecoder();
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            parser.feed(decoder.decode(chunk, { stream: true }));
          }
        } else await res.body?.cancel();
      } catch {
        // The gateway was killed, or is not up yet: as EventSource, try again shortly.
      }
      if (!signal.aborted) await new Promise((r) => setTimeout(r, RECONNECT_MS));
    }
  }

  /**
   * Waits (up to `ms`) until every user's stream holds what PostgreSQL says it must, then stops;
   * returns the problems found (the first few of each user) and the counts.
   */
  async check(sql: Sql, ms: number): Promise<{ problems: string[]; summary: LiveSummary }> {
    const deadline = Date.now() + ms;
    let found = await this.findProblems(sql);
    while (found.problems.length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      found = await this.findProblems(sql);
    }
    await this.stop();
    const sum = (k: 'events' | 'resyncs' | 'connects'): number =>
      this.followers.reduce((n, f) => n + f[k], 0);
    const m = this.market;
    return {
      problems: found.problems,
      summary: {
        events: sum('events'),
        resyncs: sum('resyncs'),
        connects: sum('connects'),
        fillsChecked: found.fills,
        ordersChecked: found.orders,
        market: {
          events: m.events,
          resyncs: m.resyncs,
          connects: m.connects,
          tradesChecked: found.trades,
        },
      },
    };
  }

  /** What the streams lack now, and how many fills and orders that looked at. */
  private async findProblems(
    sql: Sql,
  ): Promise<{ problems: string[]; fills: number; orders: number; trades: number }> {
    const problems: string[] = [];
    let fills = 0;
    let orders = 0;
    for (const f of this.followers) {
      const from = f.from;
      if (from === undefined) {
        problems.push(`${f.user.id}: the stream never opened`);
        continue;
      }
      const trades = await sql<{ id: string }[]>`
        SELECT id FROM trades
        WHERE (taker_user_id = ${f.user.id} OR maker_user_id = ${f.user.id}) AND seq > ${from}`;
      const missing = trades.filter((t) => !f.fills.has(t.id));
      fills += trades.length;
      if (missing.length > 0) {
        problems.push(
          `${f.user.id}: ${missing.length} of ${trades.length} fills since ${from} never came (${missing[0]?.id} …)`,
        );
      }
      const changed = await sql<
        {
          id: string;
          status: string;
          filled_quantity: string;
          quantity: string;
          price: string | null;
        }[]
      >`
        SELECT id, status, filled_quantity::text, quantity::text, price::text FROM orders
        WHERE user_id = ${f.user.id} AND version > ${from}`;
      orders += changed.length;
      if (trades.length + changed.length === 0) {
        // A resync late in the case (or every reconnect one) would leave nothing to check.
        problems.push(`${f.user.id}: nothing changed after its last resync at ${from}`);
      }
      // Status and filled quantity, and what an amend changes: quantity and price.
      const wrong = changed.filter((o) => {
        const seen = f.orders.get(o.id);
        return (
          seen === undefined ||
          seen.status !== o.status ||
          plain(seen.filled_quantity) !== plain(o.filled_quantity) ||
          plain(seen.quantity) !== plain(o.quantity) ||
          (seen.price === null ? null : plain(seen.price)) !==
            (o.price === null ? null : plain(o.price))
        );
      });
      const o = wrong[0];
      if (o !== undefined) {
        const seen = f.orders.get(o.id);
        problems.push(
          `${f.user.id}: ${wrong.length} of ${changed.length} orders changed since ${from} last came in another state ` +
            `(${o.id}: ${seen === undefined ? 'never' : `${seen.status} ${seen.filled_quantity} of ${seen.quantity} at ${seen.price}`}, ` +
            `PostgreSQL ${o.status} ${o.filled_quantity} of ${o.quantity} at ${o.price})`,
        );
      }
    }
    const market = await this.marketProblems(sql);
    problems.push(...market.problems);
    return { problems, fills, orders, trades: market.trades };
  }

  /**
   * What the market-data stream lacks now: a trade of its symbols since its last resync that never
   * came, or a symbol whose last book is not the engine's book now (the system is quiet by then).
   */
  private async marketProblems(sql: Sql): Promise<{ problems: string[]; trades: number }> {
    const m = this.market;
    const from = m.from;
    if (from === undefined)
      return { problems: ['market data: the stream never opened'], trades: 0 };
    const problems: string[] = [];
    const trades = await sql<{ id: string }[]>`
      SELECT id FROM trades WHERE symbol = ANY(${m.symbols as string[]}) AND seq > ${from}`;
    const missing = trades.filter((t) => !m.trades.has(t.id));
    if (missing.length > 0) {
      problems.push(
        `market data: ${missing.length} of ${trades.length} trades since ${from} never came (${missing[0]?.id} …)`,
      );
    }
    if (trades.length === 0)
      problems.push(`market data: no trade after its last resync at ${from}`);
    for (const symbol of m.symbols) {
      let engine: string;
      try {
        const res = await fetch(`${this.url}/v1/instruments/${symbol}/book?depth=10`);
        engine = levelsOf((await res.json()) as Record<string, unknown>);
      } catch (err) {
        // Looked at again until the check's time is up, as any other problem.
        problems.push(`market data: ${symbol}'s book could not be read (${String(err)})`);
        continue;
      }
      const last = m.books.get(symbol);
      if (last !== engine) {
        problems.push(
          `market data: ${symbol}'s last book ${last ?? 'never came'}, the engine's ${engine}`,
        );
      }
    }
    return { problems, trades: trades.length };
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await Promise.all(this.running);
  }
}
