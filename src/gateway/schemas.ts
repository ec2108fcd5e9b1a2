// Each body and answer of api-v1.md defined once: the same schema validates the request, gives
// the handler its TypeScript type, serialises the answer and is the OpenAPI entry.
import { Type } from 'typebox';
import type { Static } from 'typebox';
import { SYMBOL } from '../config/config.js';
import { MAX_PROTECTION } from '../engine/types.js';
import { MAX_TIMEOUT_MS, MIN_TIMEOUT_MS } from '../queue/cancel-after.js';
import { ORDER_TYPES, SIDES, STATUSES, STP_MODES, TIFS } from '../queue/records.js';

const Symbol_ = Type.String({
  pattern: SYMBOL.source,
  description: '1–16 of A-Z 0-9 . - _ (not `.` or `..`)',
});
const Uuid = Type.String({ format: 'uuid' });
const Time = Type.String({ format: 'date-time', description: 'ISO 8601 UTC, milliseconds' });
/** A request decimal: a string such as "187.25" or a JSON number. */
const DecimalIn = Type.Union([Type.String({ maxLength: 40 }), Type.Number()], {
  description: 'Decimal string or JSON number',
});
const DecimalOut = Type.String({ description: 'Exact decimal, no exponent' });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) =>
  Type.Union([t, Type.Null()]);

export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      code: Type.String(),
      message: Type.String(),
      details: Type.Optional(
        Type.Array(Type.Object({ field: Type.String(), message: Type.String() })),
      ),
    }),
  },
  { $id: 'Error' },
);

export const OrderRequest = Type.Object(
  {
    symbol: Symbol_,
    side: Type.Enum(SIDES),
    type: Type.Enum(ORDER_TYPES),
    quantity: DecimalIn,
    price: Type.Optional(Nullable(DecimalIn)),
    stop_price: Type.Optional(Nullable(DecimalIn)),
    post_only: Type.Optional(Type.Boolean()),
    self_trade_prevention: Type.Optional(Type.Enum(STP_MODES)),
    time_in_force: Type.Optional(Type.Enum(TIFS)),
    client_order_id: Type.Optional(
      Nullable(Type.String({ pattern: '^[A-Za-z0-9._:-]{1,64}$', maxLength: 64 })),
    ),
  },
  { additionalProperties: false },
);
export type OrderRequest = Static<typeof OrderRequest>;

export const AmendRequest = Type.Object(
  {
    price: Type.Optional(DecimalIn),
    quantity: Type.Optional(
      Type.Union([Type.String({ maxLength: 40 }), Type.Number()], {
        description: 'The new total quantity, filled included (as FIX’s OrderQty)',
      }),
    ),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    description:
      'A new price, a new total quantity, or both. The same price with no more quantity keeps the order’s place in its queue; a new price or a larger quantity puts it at the back, at its (new) price, where it trades first if it crosses.',
  },
);
export type AmendRequest = Static<typeof AmendRequest>;

export const Order = Type.Object({
  id: Uuid,
  client_order_id: Nullable(Type.String()),
  user_id: Uuid,
  symbol: Type.String(),
  side: Type.Enum(SIDES),
  type: Type.Enum(ORDER_TYPES),
  time_in_force: Type.Enum(TIFS),
  quantity: DecimalOut,
  price: Nullable(DecimalOut),
  stop_price: Nullable(DecimalOut),
  post_only: Type.Boolean(),
  self_trade_prevention: Type.Enum(STP_MODES),
  filled_quantity: DecimalOut,
  average_fill_price: Nullable(DecimalOut),
  status: Type.Enum(STATUSES),
  reject_reason: Nullable(Type.String()),
  created_at: Time,
  updated_at: Time,
});

export const OrderId = Type.Object({ id: Uuid });
export const OrderList = Type.Object({ orders: Type.Array(Order) });
export const OrderListQuery = Type.Object(
  {
    status: Type.Optional(Type.Enum(['OPEN', 'CLOSED', 'ALL'] as const)),
    symbol: Type.Optional(Symbol_),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
  },
  { additionalProperties: false },
);
export type OrderListQuery = Static<typeof OrderListQuery>;

export const MassCancelQuery = Type.Object(
  {
    symbol: Type.Optional({ ...Symbol_, description: 'Only this symbol’s orders (default: all)' }),
    side: Type.Optional(Type.Enum(SIDES, { description: 'Only this side (default: both)' })),
  },
  { additionalProperties: false },
);
export type MassCancelQuery = Static<typeof MassCancelQuery>;
export const MassCancelAccepted = Type.Object({
  symbol: Nullable(Type.String()),
  side: Nullable(Type.Enum(SIDES)),
  requested_at: Time,
});

export const CancelAfterRequest = Type.Object(
  {
    timeout_ms: Type.Integer({
      minimum: 0,
      maximum: MAX_TIMEOUT_MS,
      description: `Milliseconds from now, ${MIN_TIMEOUT_MS} to ${MAX_TIMEOUT_MS}; 0 disarms`,
    }),
  },
  { additionalProperties: false },
);
export type CancelAfterRequest = Static<typeof CancelAfterRequest>;
export const CancelAfterState = Type.Object({
  timeout_ms: Type.Integer({ description: 'As last armed; 0 when not armed' }),
  trigger_at: Nullable(Time),
  fired_at: Nullable(Time),
  current_time: Time,
});

export const Fills = Type.Object({
  fills: Type.Array(
    Type.Object({
      trade_id: Uuid,
      price: DecimalOut,
      quantity: DecimalOut,
      liquidity: Type.Enum(['MAKER', 'TAKER'] as const),
      executed_at: Time,
    }),
  ),
});

export const UserRequest = Type.Object(
  // No control characters: PostgreSQL's text cannot hold NUL, and a name is shown, not parsed.
  { name: Type.String({ minLength: 1, maxLength: 100, pattern: '^[^\\u0000-\\u001f\\u007f]+$' }) },
  { additionalProperties: false },
);
export const User = Type.Object({ id: Uuid, name: Type.String(), api_key: Type.String() });
export const UserId = Type.Object({ id: Uuid });
export const UserHalt = Type.Object({
  id: Uuid,
  name: Type.String(),
  halted: Type.Boolean(),
  halted_at: Nullable(Time),
});

const PROTECTION =
  'Price protection of MARKET and STOP_MARKET orders: how far from the best opposite price, in ' +
  'basis points of it, they may trade; the rest is canceled (PRICE_PROTECTION). 0: none';
const ProtectionBps = (description: string) =>
  Type.Integer({ minimum: 0, maximum: MAX_PROTECTION, description });
export const InstrumentRequest = Type.Object(
  {
    tick_size: DecimalIn,
    lot_size: DecimalIn,
    market_protection_bps: Type.Optional(
      ProtectionBps(`${PROTECTION}. Left out: kept (0 when new)`),
    ),
  },
  { additionalProperties: false },
);
export type InstrumentRequest = Static<typeof InstrumentRequest>;
export const Instrument = Type.Object({
  symbol: Type.String(),
  tick_size: DecimalOut,
  lot_size: DecimalOut,
  market_protection_bps: ProtectionBps(PROTECTION),
});
export const SymbolParam = Type.Object({ symbol: Symbol_ });
export const Instruments = Type.Object({ instruments: Type.Array(Instrument) });

export const BookQuery = Type.Object(
  { depth: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) },
  { additionalProperties: false },
);
const Level = Type.Object({ price: DecimalOut, quantity: DecimalOut });
export const Book = Type.Object({
  symbol: Type.String(),
  bids: Type.Array(Level),
  asks: Type.Array(Level),
  sequence: Type.Integer(),
});
export type Book = Static<typeof Book>;

export const MarketEventsQuery = Type.Object(
  {
    symbols: Type.String({
      minLength: 1,
      maxLength: 1000,
      description: 'The symbols to follow, comma-separated (up to 50): `AAPL,MSFT`',
    }),
    depth: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 100, description: 'Book levels a side (default 10)' }),
    ),
  },
  { additionalProperties: false },
);

export const TradesQuery = Type.Object(
  { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) },
  { additionalProperties: false },
);
/** Candle intervals, by name, in seconds. */
export const CANDLE_INTERVALS = {
  '1m': 60,
  '5m': 300,
  '15m': 900,
  '30m': 1_800,
  '1h': 3_600,
  '4h': 14_400,
  '1d': 86_400,
} as const;

export const CandlesQuery = Type.Object(
  {
    interval: Type.Enum(
      Object.fromEntries(Object.keys(CANDLE_INTERVALS).map((k) => [k, k])) as {
        [K in keyof typeof CANDLE_INTERVALS]: K;
      },
      { description: 'Each candle’s span: 1m, 5m, 15m, 30m, 1h, 4h or 1d (UTC)' },
    ),
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 1000, description: 'Intervals (default 100)' }),
    ),
    end_time: Type.Optional({
      ...Time,
      description: 'The last interval is the one that holds this time (default: now)',
    }),
  },
  { additionalProperties: false },
);
export const Candles = Type.Object({
  symbol: Type.String(),
  interval: Type.String(),
  candles: Type.Array(
    Type.Object({
      open_time: Time,
      open: DecimalOut,
      high: DecimalOut,
      low: DecimalOut,
      close: DecimalOut,
      volume: DecimalOut,
      quote_volume: DecimalOut,
      trades: Type.Integer(),
    }),
  ),
});

export const Trades = Type.Object({
  trades: Type.Array(
    Type.Object({
      id: Uuid,
      price: DecimalOut,
      quantity: DecimalOut,
      taker_side: Type.Enum(SIDES),
      executed_at: Time,
    }),
  ),
});

const Component = Type.Enum(['ok', 'down'] as const);
export const Ready = Type.Object({
  ready: Type.Boolean(),
  layout: Type.Object({
    /**
     * The shard layout this gateway routes orders by: the hash, SHARDS and any SHARD_PINS
     * (`fnv1a/1`, `fnv1a/2;AAPL=0`).
     */
    routes_by: Type.String(),
    /**
     * The layout Redis records (`changing:…` during a change); null when none is recorded or
     * Redis did not answer.
     */
    recorded: Type.Union([Type.String(), Type.Null()]),
  }),
  shards: Type.Array(
    Type.Object({
      shard: Type.String(),
      /** The last sequence queued in the shard's order stream. */
      head: Type.Integer(),
      /** The last sequence its engine applied; null when the engine did not answer. */
      applied: Type.Union([Type.Integer(), Type.Null()]),
    }),
  ),
});

export const Health = Type.Object({
  status: Type.Enum(['ok', 'degraded'] as const),
  components: Type.Object({ redis: Component, postgres: Component, engine: Component }),
});
