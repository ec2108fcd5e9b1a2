-- Price protection of an instrument's MARKET and STOP_MARKET orders (docs/engine-rules.md): how
-- far from the opposite side's best price, in basis points of it, such an order may trade when it
-- comes to match; what it cannot fill within that is canceled (PRICE_PROTECTION). 0: none.
ALTER TABLE instruments ADD COLUMN IF NOT EXISTS market_protection_bps integer NOT NULL DEFAULT 0
  CHECK (market_protection_bps BETWEEN 0 AND 10000);
