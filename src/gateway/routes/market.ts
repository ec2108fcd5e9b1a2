// Market data: instruments, the L2 book from the engine, recent trades, and all of it live.
import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { isIPv4, isIPv6 } from 'node:net';
import { SYMBOL } from '../../config/config.js';
import { errorCode } from '../../db/pg-errors.js';
import { marketTrades } from '../../queue/order-feed.js';
import type { GatewayContext } from '../app.js';
import type { BookData, BookWatch } from '../book-feed.js';
import { ApiError } from '../errors.js';
import { newestFirst } from '../newest-first.js';
import {
  Book,
  BookQuery,
  CANDLE_INTERVALS,
  Candles,
  CandlesQuery,
  Instruments,
  MarketEventsQuery,
  SymbolParam,
  Trades,
  TradesQuery,
} from '../schemas.js';
import type { TradeRow } from '../store.js';
import { Outbox, lastEventId, serveStream } from './events.js';

/** Candle requests one gateway runs at once. */
const CANDLE_READS = 2;

/** Levels a side a market-data stream is sent unless it asks for another depth. */
const STREAM_DEPTH = 10;
/** Symbols one market-data stream may follow. */
const MAX_STREAM_SYMBOLS = 50;

/** The top `depth` levels of each side of a listed symbol's book; undefined if not listed. */
export async function readBook(
  ctx: GatewayContext,
  symbol: string,
  depth: number,
): Promise<BookData | undefined> {
  const instrument = await ctx.instruments.get(symbol);
  if (instrument === undefined) return undefined;
  const book = await ctx.engine.depth(instrument.symbol, depth);
  const level = (l: { price: number; quantity: number }) => ({
    price: instrument.ticks.toDecimal(l.price),
    quantity: instrument.lots.toDecimal(l.quantity),
  });
  return {
    symbol: instrument.symbol,
    bids: book.bids.map(level),
    asks: book.asks.map(level),
    sequence: book.seq,
  };
}

/**
 * Whom a public stream is counted against: an IPv4 address, or an IPv6 address's /64 (one host
 * commonly holds a whole /64, and could otherwise open streams from each of its addresses).
 */
export function addressKey(ip: string): string {
  if (!isIPv6(ip)) return ip;
  const mapped = /^::ffff:([0-9.]+)$/i.exec(ip);
  if (mapped !== null && isIPv4(mapped[1] as string)) return mapped[1] as string;
  const [head = '', tail = ''] = ip.toLowerCase().split('::');
  const left = head === '' ? [] : head.split(':');
  const right = ip.includes('::') ? (tail === '' ? [] : tail.split(':')) : [];
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

/** The symbols of a stream's `symbols`: each once, each listed, or a 400 naming the field. */
async function streamSymbols(ctx: GatewayContext, text: string): Promise<string[]> {
  const symbols = [...new Set(text.split(','))];
  const bad = symbols.find((s) => !SYMBOL.test(s));
  if (bad !== undefined || symbols.length > MAX_STREAM_SYMBOLS) {
    throw new ApiError('VALIDATION_ERROR', 'symbols is not a list of symbols.', [
      {
        field: 'querystring.symbols',
        message:
          bad === undefined
            ? `names more than ${MAX_STREAM_SYMBOLS} symbols`
            : `${JSON.stringify(bad)} is not a symbol`,
      },
    ]);
  }
  for (const symbol of symbols) {
    if ((await ctx.instruments.get(symbol)) === undefined) {
      throw new ApiError('UNKNOWN_SYMBOL', `${symbol} is not a listed instrument.`, [
        { field: 'querystring.symbols', message: `${symbol} is not listed` },
      ]);
    }
  }
  return symbols;
}

const errors = { 400: { $ref: 'Error#' }, 404: { $ref: 'Error#' }, 503: { $ref: 'Error#' } };

export function marketRoutes(ctx: GatewayContext): FastifyPluginCallbackTypebox {
  return (app, _options, done) => {
    app.get(
      '/v1/instruments',
      { schema: { summary: 'Listed instruments', security: [], response: { 200: Instruments } } },
      async () => {
        const began = ctx.instruments.begin();
        const rows = await ctx.store.listInstruments();
        ctx.instruments.apply(rows, began);
        return { instruments: rows };
      },
    );

    app.get(
      '/v1/instruments/:symbol/book',
      {
        schema: {
          summary: 'Aggregated L2 book, best levels first',
          security: [],
          params: SymbolParam,
          querystring: BookQuery,
          response: { 200: Book, ...errors },
        },
      },
      async (req) => {
        const book = await readBook(ctx, req.params.symbol, req.query.depth ?? 20);
        if (book === undefined) throw new ApiError('NOT_FOUND');
        return book;
      },
    );

    const streams = { open: ctx.metrics.marketStreams, dropped: ctx.metrics.marketStreamsDropped };
    /** Candle requests under way (at most CANDLE_READS). */
    let candleReads = 0;
    /** Market-data streams open, by the address they come from. */
    const byAddress = new Map<string, number>();
    app.get(
      '/v1/market/events',
      {
        schema: {
          summary: 'Trades and order books, live (text/event-stream)',
          description:
            'Server-Sent Events, public. `trade`: each trade of the symbols, in the order it was ' +
            'made, with the engine’s `sequence`. `book`: a symbol’s top `depth` levels a side as ' +
            'they stand, at once and then whenever they change or the symbol trades (at most ' +
            'about ten a second a symbol: a book stands for every change before it; one at or ' +
            'past a trade’s `sequence` shows it). `resync`: trades may have been missed; the ' +
            'books follow afresh. `ready`, ' +
            '`heartbeat`: the position. Each id is a position: sent back as `Last-Event-ID`, the ' +
            'trades go on after it.',
          security: [],
          querystring: MarketEventsQuery,
          response: {
            200: {
              description: 'An endless text/event-stream.',
              content: { 'text/event-stream': { schema: { type: 'string' } } },
            },
            400: { $ref: 'Error#' },
            429: { $ref: 'Error#' },
            503: { $ref: 'Error#' },
          },
        },
      },
      async (req, reply) => {
        const symbols = await streamSymbols(ctx, req.query.symbols);
        const depth = req.query.depth ?? STREAM_DEPTH;
        // Public, so counted by the address it comes from as well as in all.
        const address = addressKey(req.ip);
        const mine = byAddress.get(address) ?? 0;
        const perAddress = ctx.config.marketStreamsPerAddress;
        if (mine >= perAddress) {
          throw new ApiError(
            'RATE_LIMITED',
            `At most ${perAddress} market-data streams may be open from one address; close one first.`,
            undefined,
            1,
          );
        }
        byAddress.set(address, mine + 1);
        let watches: BookWatch[] = [];
        try {
          const most = ctx.config.marketStreams;
          const out = new Outbox();
          const sub = await ctx.feed.subscribe(marketTrades(symbols), lastEventId(req), out, most);
          if (sub === 'full') {
            throw new ApiError(
              'OVERLOADED',
              `At most ${most} market-data streams may be open on this gateway; retry later.`,
              undefined,
              1,
            );
          }
          if (sub !== 'stopped') {
            watches = symbols.map((symbol) =>
              ctx.books.watch(symbol, { depth, send: (book) => out.book(symbol, book) }),
            );
          }
          // Whatever may have been missed, each book comes again as it stands.
          out.onResync = () => {
            for (const w of watches) w.again();
          };
          await serveStream(req, reply, out, sub, streams, { symbols, address });
        } finally {
          for (const w of watches) w.stop();
          const left = (byAddress.get(address) ?? 1) - 1;
          if (left === 0) byAddress.delete(address);
          else byAddress.set(address, left);
        }
      },
    );

    app.get(
      '/v1/instruments/:symbol/candles',
      {
        schema: {
          summary: 'Candles (open, high, low, close, volume), oldest first',
          description:
            'The `limit` intervals up to the one that holds `end_time` (default now), aligned to ' +
            'UTC; an interval without a trade has no candle. Of the trades PostgreSQL holds: the ' +
            'batch writer has each within about a second.',
          security: [],
          params: SymbolParam,
          querystring: CandlesQuery,
          response: { 200: Candles, ...errors },
        },
      },
      async (req) => {
        const symbol = req.params.symbol;
        if ((await ctx.instruments.get(symbol)) === undefined) throw new ApiError('NOT_FOUND');
        const { interval } = req.query;
        const ms = CANDLE_INTERVALS[interval] * 1000;
        const end = req.query.end_time === undefined ? Date.now() : Date.parse(req.query.end_time);
        // A time the format allows and a Date cannot hold (a leap second).
        if (!Number.isFinite(end)) {
          throw new ApiError('VALIDATION_ERROR', 'end_time is not a time this system can use.', [
            { field: 'querystring.end_time', message: 'is not a usable time' },
          ]);
        }
        const last = Math.floor(end / ms) * ms;
        const first = last - ((req.query.limit ?? 100) - 1) * ms;
        // They share PostgreSQL's pool with the orders: a few at a time per gateway.
        if (candleReads >= CANDLE_READS) {
          throw new ApiError(
            'OVERLOADED',
            'Too many candle requests at once on this gateway; retry.',
            undefined,
            1,
          );
        }
        candleReads++;
        try {
          const candles = await ctx.store.candles(
            symbol,
            ms / 1000,
            new Date(first),
            new Date(last),
          );
          return { symbol, interval, candles };
        } catch (err) {
          if (errorCode(err) !== '57014') throw err;
          throw new ApiError(
            'OVERLOADED',
            'These candles take too long to make; ask for fewer or shorter intervals.',
            undefined,
            1,
          );
        } finally {
          candleReads--;
        }
      },
    );

    app.get(
      '/v1/instruments/:symbol/trades',
      {
        schema: {
          summary: 'Recent trades, newest first',
          security: [],
          params: SymbolParam,
          querystring: TradesQuery,
          response: { 200: Trades, ...errors },
        },
      },
      async (req) => {
        const symbol = req.params.symbol;
        if ((await ctx.instruments.get(symbol)) === undefined) throw new ApiError('NOT_FOUND');
        const limit = req.query.limit ?? 100;
        const [cached, stored] = await Promise.all([
          ctx.queue.recentTrades(symbol, limit),
          ctx.store.recentTrades(symbol, limit),
        ]);
        const byId = new Map<string, TradeRow>();
        for (const t of [...stored, ...cached]) byId.set(t.id, t);
        const trades = [...byId.values()]
          .sort(newestFirst((t) => t.executed_at))
          .slice(0, limit)
          .map((t) => ({
            id: t.id,
            price: t.price,
            quantity: t.quantity,
            taker_side: t.taker_side,
            executed_at: t.executed_at,
          }));
        return { trades };
      },
    );
    done();
  };
}
