// Market data: instruments, the L2 book from the engine, recent trades.
import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import type { GatewayContext } from '../app.js';
import { ApiError } from '../errors.js';
import { newestFirst } from '../newest-first.js';
import { Book, BookQuery, Instruments, SymbolParam, Trades, TradesQuery } from '../schemas.js';
import type { TradeRow } from '../store.js';

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
        const instrument = await ctx.instruments.get(req.params.symbol);
        if (instrument === undefined) throw new ApiError('NOT_FOUND');
        const depth = await ctx.engine.depth(instrument.symbol, req.query.depth ?? 20);
        const level = (l: { price: number; quantity: number }) => ({
          price: instrument.ticks.toDecimal(l.price),
          quantity: instrument.lots.toDecimal(l.quantity),
        });
        return {
          symbol: instrument.symbol,
          bids: depth.bids.map(level),
          asks: depth.asks.map(level),
          sequence: depth.seq,
        };
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
