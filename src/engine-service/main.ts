// Process entry of one engine shard: `node dist/src/engine-service/main.js`. Shard from env SHARD
// (default 0); it listens on ENGINE_ADDRESS's port + shard. SIGTERM or SIGINT: final snapshot,
// then exit 0.
import { pino } from 'pino';
import { loadConfig } from '../config/config.js';
import { connect } from '../db/client.js';
import { startMetricsServer } from '../metrics/metrics-server.js';
import { shardAddress } from './address.js';
import { untilReachable } from '../db/pg-errors.js';
import { startEngineService } from './server.js';
import type { EngineService } from './server.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = pino({ level: config.logLevel, name: 'engine' });
  const databaseUrl = config.databaseUrl;
  if (databaseUrl === undefined) {
    logger.fatal('DATABASE_URL must be set: the engine keeps its snapshots in PostgreSQL');
    process.exit(2);
  }
  const shard = Number(process.env.SHARD ?? '0');
  if (!Number.isInteger(shard) || shard < 0 || shard >= config.shards) {
    logger.fatal(`SHARD=${process.env.SHARD} is not a shard of 0..${config.shards - 1}`);
    process.exit(2);
  }
  const metrics = await startMetricsServer(
    config.metricsHost,
    config.metricsPort === 0 ? 0 : config.metricsPort + shard,
    'engine',
    logger,
  );
  const sql = connect(databaseUrl, { max: 2 });
  // Its state is in PostgreSQL: started while that is down, it waits for it.
  let service: EngineService | undefined;
  await untilReachable('PostgreSQL', logger, async () => {
    service = await startEngineService({
      shard,
      address: shardAddress(config.engineAddress, shard),
      sql,
      databaseUrl,
      snapshotEvery: config.snapshotEvery,
      snapshotIntervalMs: config.snapshotIntervalMs,
      logger,
    });
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    (service as EngineService)
      .stop()
      .then(() => sql.end({ timeout: 5 }))
      .then(() => metrics?.close())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, 'stop failed');
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // Started by `matchbox start`: stop (with a final snapshot) once that process is gone.
  const parent = Number(process.env.MATCHBOX_PARENT_PID);
  if (Number.isInteger(parent) && parent > 0) {
    setInterval(() => {
      if (process.ppid !== parent) stop('parent exited');
    }, 500).unref();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
