-- No query reads orders by symbol alone (a user's listing filters by user first; a symbol's
-- trades come from `trades`), and every index costs the batch writer on each insert and update.
DROP INDEX IF EXISTS orders_symbol_created;
