// Applies the SQL files of src/db/migrations in name order, each once, each in its own
// transaction, under an advisory lock so that processes starting together do not race.
import { readFile, readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Sql } from './client.js';

/** Works from src/db (tsx) and from dist/src/db (compiled): the SQL stays in src/db/migrations. */
const MIGRATIONS = fileURLToPath(new URL('../../../src/db/migrations/', import.meta.url));
const MIGRATIONS_SRC = fileURLToPath(new URL('./migrations/', import.meta.url));
const LOCK_ID = 0x6d62_7831;

async function migrationsDir(): Promise<string> {
  try {
    await readdir(MIGRATIONS);
    return MIGRATIONS;
  } catch {
    return MIGRATIONS_SRC;
  }
}

/** Applies pending migrations; returns the names applied. */
export async function migrate(sql: Sql): Promise<string[]> {
  const dir = await migrationsDir();
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  const applied: string[] = [];
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${LOCK_ID})`;
    await tx`CREATE TABLE IF NOT EXISTS schema_migrations (
      name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`;
    const done = new Set(
      (await tx<{ name: string }[]>`SELECT name FROM schema_migrations`).map((r) => r.name),
    );
    for (const file of files) {
      if (done.has(file)) continue;
      await tx.unsafe(await readFile(dir + file, 'utf8'));
      await tx`INSERT INTO schema_migrations (name) VALUES (${file})`;
      applied.push(file);
    }
  });
  return applied;
}
