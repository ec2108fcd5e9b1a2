-- An engine snapshot is stored as it is, not compressed by PostgreSQL (pglz). Compressing one is
-- CPU the engine, the dispatcher and the writer share with PostgreSQL on a small machine: a
-- snapshot of 264,000 resting orders (about 5 MB) took the backend 80–100 ms of CPU to store
-- compressed, against 30 ms as it is, and a fill waits while it runs. The cost is room: three
-- snapshots a shard are kept, about 20 bytes a resting order each, where pglz made them a third
-- of that. Rows already stored keep their form; both read back the same.
ALTER TABLE engine_snapshots ALTER COLUMN data SET STORAGE EXTERNAL;
