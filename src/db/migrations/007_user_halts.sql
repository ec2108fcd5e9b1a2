-- A user's trading halt (the admin kill switch: PUT /v1/admin/users/{id}/halt). Redis holds the
-- set every submit and amend is checked against; this column is the one kept when Redis loses it,
-- put back before the shard layout (queue/shard-layout.ts), so before any order is taken again.
ALTER TABLE users ADD COLUMN IF NOT EXISTS halted_at timestamptz;
CREATE INDEX IF NOT EXISTS users_halted ON users (no) WHERE halted_at IS NOT NULL;
