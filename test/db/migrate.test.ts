import assert from 'node:assert/strict';
import { it } from 'node:test';
import { migrate } from '../../src/db/migrate.js';
import { freshDatabase } from '../support/services.js';

it('creates the schema once, and a second run applies nothing', async () => {
  const db = await freshDatabase();
  try {
    const tables = await db.sql<{ table_name: string }[]>`
      SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'
      ORDER BY table_name`;
    assert.deepEqual(
      tables.map((t) => t.table_name),
      [
        'engine_epochs',
        'engine_snapshots',
        'instruments',
        'orders',
        'schema_migrations',
        'shard_layout',
        'trades',
        'users',
      ],
    );
    assert.deepEqual(await migrate(db.sql), []);
    const [column] = await db.sql<{ type: string }[]>`
      SELECT data_type AS type FROM information_schema.columns
      WHERE table_name = 'orders' AND column_name = 'quantity'`;
    assert.equal(column?.type, 'numeric');
  } finally {
    await db.drop();
  }
});
