-- Two guards on the engine's snapshots (see src/engine-service/snapshot-store.ts).
--
-- The snapshot the batch writer has trimmed the order stream to: the engine can replay the
-- stream from it and from no older one, so pruning keeps it beside the newest few. The writer
-- pins one only at or below a W that Redis holds in its AOF, which a Redis restart cannot take
-- back, so a rollback never deletes it either.
ALTER TABLE engine_snapshots ADD COLUMN IF NOT EXISTS pinned boolean NOT NULL DEFAULT false;

-- A shard's snapshot epoch, advanced by each engine start and each rollback: a snapshot is stored
-- only under the epoch its state was taken in, so a write begun before a rollback (of commands a
-- restarted Redis may no longer hold) or by an engine since replaced stores nothing.
CREATE TABLE IF NOT EXISTS engine_epochs (
  shard text PRIMARY KEY,
  epoch bigint NOT NULL
);
