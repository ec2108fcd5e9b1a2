-- The snapshot the batch writer has trimmed the order stream to: the engine can replay the
-- stream from it and from no older one, so pruning keeps it beside the newest few. The writer
-- pins one only at or below a W that Redis holds in its AOF, which a Redis restart cannot take
-- back, so a rollback never deletes it either (see src/engine-service/snapshot-store.ts).
ALTER TABLE engine_snapshots ADD COLUMN pinned boolean NOT NULL DEFAULT false;
