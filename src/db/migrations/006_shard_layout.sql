-- The shard layout (src/queue/shard-layout.ts): how symbols are placed on the engines, `<hash>/<N>`.
-- Redis holds the copy every accept is checked against; this row is the one kept when Redis loses
-- it (a Redis that came back empty, or the marker of a change whose part died), so that the key is
-- put back as it was rather than taken by whichever gateway writes first.
CREATE TABLE IF NOT EXISTS shard_layout (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  layout text NOT NULL,
  changed_at timestamptz NOT NULL DEFAULT now()
);
