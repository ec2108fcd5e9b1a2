// Real servers for tests, isolated by fresh names: a new database per call (migrated), a new Redis
// key prefix per call. REDIS_URL and DATABASE_URL name the servers (`npm test` starts
// project-local ones when they are not given; see src/infra).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { connect } from '../../src/db/client.js';
import type { Sql } from '../../src/db/client.js';
import { migrate } from '../../src/db/migrate.js';
import { startLocalRedis } from '../../src/infra/local-redis.js';
import type { LocalRedis } from '../../src/infra/local-redis.js';
import { deletePrefix } from '../../src/queue/delete-prefix.js';

export function redisUrl(): string {
  return process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
}

export function databaseUrl(): string {
  return process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
}

/** A key prefix no other test uses. */
export function freshPrefix(): string {
  return `mbtest-${randomBytes(6).toString('hex')}`;
}

export interface TestDatabase {
  url: string;
  sql: Sql;
  drop(): Promise<void>;
}

/** A new, migrated database on the test server; `drop()` removes it. */
export async function freshDatabase(): Promise<TestDatabase> {
  const name = `mbtest_${randomBytes(6).toString('hex')}`;
  const admin = connect(databaseUrl(), { max: 1 });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(databaseUrl());
  url.pathname = `/${name}`;
  const sql = connect(url.toString());
  await migrate(sql);
  return {
    url: url.toString(),
    sql,
    async drop() {
      await sql.end({ timeout: 1 });
      const a = connect(databaseUrl(), { max: 1 });
      await a.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}

/** A Redis connection and a fresh prefix; `cleanup()` deletes the prefix's keys and quits. */
export async function freshRedis(url = redisUrl()): Promise<{
  redis: Redis;
  prefix: string;
  cleanup(): Promise<void>;
}> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  await redis.ping();
  const prefix = freshPrefix();
  return {
    redis,
    prefix,
    async cleanup() {
      await deletePrefix(redis, prefix);
      redis.disconnect();
    },
  };
}

/**
 * A Redis server of the test's own (AOF, fsync every second, in a new temporary folder), for a
 * test that kills or restarts it; `remove()` stops it and deletes the folder.
 */
export async function ownRedis(
  name: string,
): Promise<{ server: LocalRedis; remove: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), `mb-${name}-`));
  const server = await startLocalRedis({ dir, appendfsync: 'everysec' });
  return {
    server,
    remove: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
