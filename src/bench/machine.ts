// The machine a run measured: CPU, cores, memory, OS, Node, and the Redis and PostgreSQL versions
// the system actually ran against (asked of the servers, not of the binaries on the path).
import { cpus, release, totalmem, type } from 'node:os';
import { Redis } from 'ioredis';
import { connect } from '../db/client.js';

export interface Machine {
  cpu: string;
  cores: number;
  ram_gib: number;
  os: string;
  node: string;
  redis: string;
  postgres: string;
}

export async function describeMachine(
  redisUrl: string | undefined,
  databaseUrl: string | undefined,
): Promise<Machine> {
  let redis = 'unknown';
  let postgres = 'unknown';
  if (redisUrl !== undefined) {
    const r = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    try {
      const info = await r.info('server');
      redis = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
    } catch {
      // Left unknown: the report says so.
    } finally {
      r.disconnect();
    }
  }
  if (databaseUrl !== undefined) {
    const sql = connect(databaseUrl, { max: 1 });
    try {
      const [row] = await sql<{ v: string }[]>`SELECT current_setting('server_version') AS v`;
      postgres = row?.v ?? 'unknown';
    } catch {
      // Left unknown.
    } finally {
      await sql.end({ timeout: 1 });
    }
  }
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    ram_gib: Math.round(totalmem() / 2 ** 30),
    os: `${type()} ${release()}`,
    node: process.version,
    redis,
    postgres,
  };
}
