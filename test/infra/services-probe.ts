// Run by with-services.test.ts under with-services (with MATCHBOX_PROBE=1): proves the command
// sees servers that answer, by printing one JSON line with the URLs it was given and what each
// server said. `node --test dist/test/` also loads every file here; without the flag it does nothing.
import { Redis } from 'ioredis';
import { connect } from '../../src/db/client.js';

async function probe(): Promise<void> {
  const redisUrl = process.env.REDIS_URL ?? '';
  const databaseUrl = process.env.DATABASE_URL ?? '';
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 0 });
  const sql = connect(databaseUrl, { max: 1 });
  const [ping, [row]] = await Promise.all([
    redis.ping(),
    sql<{ db: string }[]>`SELECT current_database() AS db`,
  ]);
  redis.disconnect();
  await sql.end({ timeout: 1 });
  console.log(JSON.stringify({ redisUrl, databaseUrl, ping, db: row?.db }));
}

if (process.env.MATCHBOX_PROBE === '1') await probe();
