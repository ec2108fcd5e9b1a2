// The project-local Redis and PostgreSQL of `matchbox start` (and of `npm test`, through
// with-services): `<dataDir>/redis` and `<dataDir>/pg`, kept between runs, one matchbox at a time.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { CpuLayout } from './cpu-layout.js';
import { lockDataDir } from './data-lock.js';
import { startLocalPostgres } from './local-postgres.js';
import type { LocalPostgres } from './local-postgres.js';
import { startLocalRedis } from './local-redis.js';
import type { AppendFsync, LocalRedis } from './local-redis.js';
import { ensureServerPackages } from './packages.js';

export interface LocalServicesOptions {
  dataDir: string;
  /** Start a Redis (false when REDIS_URL names one). */
  redis: boolean;
  /** Start a PostgreSQL (false when DATABASE_URL names one). */
  postgres: boolean;
  /** Redis's AOF fsync policy; default `everysec`. */
  appendfsync?: AppendFsync;
  /**
   * Where Redis runs: its main thread on the order path's CPUs, its background threads and AOF
   * rewrites on the others. Unset: wherever the kernel puts it.
   */
  layout?: CpuLayout;
}

export interface LocalServices {
  /** The local Redis's URL; undefined when not asked for. */
  redisUrl: string | undefined;
  /** The local Redis's Unix socket, when it has one. */
  redisSocket: string | undefined;
  /** The local PostgreSQL's `matchbox` database; undefined when not asked for. */
  databaseUrl: string | undefined;
  redis: LocalRedis | undefined;
  postgres: LocalPostgres | undefined;
  /** Stops both (PostgreSQL and Redis in parallel) and releases the data folder. */
  stop(): Promise<void>;
}

/**
 * Starts what is asked for. Throws ServiceSetupError (print its message, exit 1) when the server
 * packages are missing and cannot be installed, or another matchbox uses `dataDir`.
 */
export async function startLocalServices(options: LocalServicesOptions): Promise<LocalServices> {
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const unlock = lockDataDir(dataDir);
  try {
    // Both packages in one apt-get run when both are missing.
    const bin = ensureServerPackages({ redis: options.redis, postgres: options.postgres });
    const [redis, postgres] = await Promise.allSettled([
      options.redis
        ? startLocalRedis({
            dir: join(dataDir, 'redis'),
            appendfsync: options.appendfsync ?? 'everysec',
            ...(bin.redisServer === undefined ? {} : { redisServer: bin.redisServer }),
            ...(options.layout === undefined
              ? {}
              : { cpus: { server: options.layout.front, background: options.layout.back } }),
          })
        : undefined,
      options.postgres
        ? startLocalPostgres({
            dir: join(dataDir, 'pg'),
            ...(bin.postgres === undefined ? {} : { binaries: bin.postgres }),
          })
        : undefined,
    ]);
    const started = { redis: settled(redis), postgres: settled(postgres) };
    const stop = async () => {
      await Promise.all([started.redis?.stop(), started.postgres?.stop()]);
      unlock();
    };
    const failed = [redis, postgres].find((r) => r.status === 'rejected');
    if (failed !== undefined) {
      await Promise.all([started.redis?.stop(), started.postgres?.stop()]);
      throw failed.reason;
    }
    return {
      redisUrl: started.redis?.url,
      redisSocket: started.redis?.socketPath,
      databaseUrl: started.postgres?.url,
      ...started,
      stop,
    };
  } catch (err) {
    unlock();
    throw err;
  }
}

function settled<T>(result: PromiseSettledResult<T>): T | undefined {
  return result.status === 'fulfilled' ? result.value : undefined;
}
