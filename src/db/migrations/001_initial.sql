-- matchbox schema, version 1. Money and quantities are NUMERIC; ids are UUIDs (v7, time-ordered).

CREATE TABLE users (
  id           uuid PRIMARY KEY,
  -- The compact number the engine uses for self-trade prevention.
  no           bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  name         text NOT NULL,
  -- SHA-256 of the API key; the key itself is shown once and never stored.
  api_key_hash bytea NOT NULL UNIQUE,
  created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE instruments (
  symbol     text PRIMARY KEY CHECK (symbol ~ '^[A-Z0-9._-]{1,16}$'),
  tick_size  numeric NOT NULL CHECK (tick_size > 0),
  lot_size   numeric NOT NULL CHECK (lot_size > 0),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
  id                    uuid PRIMARY KEY,
  client_order_id       text,
  user_id               uuid NOT NULL REFERENCES users (id),
  symbol                text NOT NULL REFERENCES instruments (symbol),
  side                  text NOT NULL CHECK (side IN ('BUY', 'SELL')),
  type                  text NOT NULL CHECK (type IN ('LIMIT', 'MARKET', 'STOP_LIMIT', 'STOP_MARKET')),
  time_in_force         text NOT NULL CHECK (time_in_force IN ('GTC', 'IOC', 'FOK')),
  quantity              numeric NOT NULL CHECK (quantity > 0),
  price                 numeric,
  stop_price            numeric,
  post_only             boolean NOT NULL DEFAULT false,
  self_trade_prevention text NOT NULL DEFAULT 'NONE',
  filled_quantity       numeric NOT NULL DEFAULT 0 CHECK (filled_quantity >= 0 AND filled_quantity <= quantity),
  average_fill_price    numeric,
  status                text NOT NULL,
  reject_reason         text,
  -- Sequence of the order's PLACE command in its shard (its engine id), and of the last command
  -- that changed it: an upsert only applies a newer version.
  shard                 text NOT NULL,
  seq                   bigint NOT NULL,
  version               bigint NOT NULL DEFAULT 0,
  notional              numeric NOT NULL DEFAULT 0,
  created_at            timestamptz NOT NULL,
  updated_at            timestamptz NOT NULL
);
-- A client_order_id is unique per user for good.
CREATE UNIQUE INDEX orders_user_client_order_id ON orders (user_id, client_order_id)
  WHERE client_order_id IS NOT NULL;
CREATE INDEX orders_user_created ON orders (user_id, created_at DESC);
CREATE INDEX orders_user_status_created ON orders (user_id, status, created_at DESC);
CREATE INDEX orders_symbol_created ON orders (symbol, created_at DESC);

CREATE TABLE trades (
  id             uuid PRIMARY KEY,
  shard          text NOT NULL,
  seq            bigint NOT NULL,
  trade_no       integer NOT NULL,
  symbol         text NOT NULL REFERENCES instruments (symbol),
  price          numeric NOT NULL CHECK (price > 0),
  quantity       numeric NOT NULL CHECK (quantity > 0),
  taker_side     text NOT NULL CHECK (taker_side IN ('BUY', 'SELL')),
  taker_order_id uuid NOT NULL,
  maker_order_id uuid NOT NULL,
  taker_user_id  uuid NOT NULL,
  maker_user_id  uuid NOT NULL,
  executed_at    timestamptz NOT NULL,
  UNIQUE (shard, seq, trade_no)
);
CREATE INDEX trades_symbol_executed ON trades (symbol, executed_at DESC);
CREATE INDEX trades_taker_order ON trades (taker_order_id);
CREATE INDEX trades_maker_order ON trades (maker_order_id);

CREATE TABLE engine_snapshots (
  shard    text NOT NULL,
  seq      bigint NOT NULL,
  taken_at timestamptz NOT NULL DEFAULT now(),
  data     bytea NOT NULL,
  PRIMARY KEY (shard, seq)
);
