// The composition root: the one place that knows the whole pipeline and wires it, in order.
// Everything else receives what it needs. `stop()` undoes it in reverse, draining as it goes.
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { connect } from '../db/client.js';
import type { Sql } from '../db/client.js';
import { seedDefaultInstruments } from '../db/instruments.js';
import { migrate } from '../db/migrate.js';
import { finishedOrders } from '../db/orders.js';
import { Dispatcher } from '../dispatcher/dispatcher.js';
import { shardAddress } from '../engine-service/address.js';
import { EngineClient } from '../engine-service/client.js';
import { startEngineService } from '../engine-service/server.js';
import type { EngineService } from '../engine-service/server.js';
import { buildGateway, closeGateway } from '../gateway/app.js';
import type { EngineView } from '../gateway/store.js';
import { OrderQueue } from '../queue/order-queue.js';
import type { ShardPlacement } from '../queue/keys.js';
import { adoptShardLayout, followShardLayout, recordedShardLayout } from '../queue/shard-layout.js';
import { CancelAfterSweeper } from '../queue/cancel-after.js';
import { restoreHalts } from '../queue/halts.js';
import { BatchWriter } from '../writer/batch-writer.js';
import { untilReachable } from '../db/pg-errors.js';
import { pgGatewayStore } from './pg-gateway-store.js';

export interface Components {
  /** Run the engine service(s) inside this process (tests, single-process deployments). */
  engine: boolean;
  dispatcher: boolean;
  writer: boolean;
  gateway: boolean;
}

export interface RunningSystem {
  /** The gateway's base URL, when it runs here. */
  url: string | undefined;
  sql: Sql;
  redis: Redis;
  queue: OrderQueue;
  engines: EngineClient[];
  dispatchers: Dispatcher[];
  writer: BatchWriter | undefined;
  stop(): Promise<void>;
}

/** How often a gateway puts back the halted users PostgreSQL holds and Redis lacks. */
const HALTS_EVERY_MS = 5_000;

/** One engine client per shard, seen by the gateway as a single view routed by symbol. */
function engineView(clients: EngineClient[], placement: ShardPlacement): EngineView {
  return {
    depth: (symbol, levels) =>
      (clients[placement.of(symbol)] as EngineClient).depth(symbol, levels),
    lastApplied: () => Promise.all(clients.map((c) => c.lastApplied())),
  };
}

/** Starts the components asked for against the configured Redis and PostgreSQL. */
export async function startSystem(
  config: Config,
  components: Components,
  logger: Logger,
): Promise<RunningSystem> {
  if (config.redisUrl === undefined || config.databaseUrl === undefined) {
    throw new Error('REDIS_URL and DATABASE_URL must be set (matchbox start sets them itself)');
  }
  const stops: (() => Promise<void>)[] = [];
  const stop = async (): Promise<void> => {
    for (const s of stops.reverse()) {
      await s().catch((err: unknown) => logger.error({ err }, 'error while stopping'));
    }
  };
  try {
    // 1. PostgreSQL: schema and default instruments. A part started (or restarted by its
    // supervisor) while PostgreSQL is down waits for it rather than exiting.
    const sql = connect(config.databaseUrl, { max: 8 });
    stops.push(() => sql.end({ timeout: 5 }));
    await untilReachable('PostgreSQL', logger, async () => {
      await migrate(sql);
      await seedDefaultInstruments(sql);
    });

    // 2. Redis: refuse one that could lose accepted orders. Commands fail fast while it is
    // unreachable (no offline queue), so a request answers 503 instead of hanging.
    const redis = new Redis(config.redisUrl, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 1000,
      lazyConnect: true,
      // No auto-pipelining: it holds each script until the event loop's check phase, which cost
      // one client ~15 µs per order here (p50 160 → 145 µs). Concurrent submits are coalesced
      // by OrderQueue's WriteCoalescer instead, which writes a lone command at once.
      enableAutoPipelining: false,
    });
    redis.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis connection error'));
    await redis.connect();
    stops.push(async () => {
      redis.disconnect();
      await Promise.resolve();
    });
    // Why the layout could not be put back (PostgreSQL down, or the copies differ): said once
    // per cause, not per refused order.
    let restoreFailure: string | undefined;
    const restoreLayout = () =>
      recordedShardLayout(redis, sql, config.redisPrefix).then(
        (layout) => {
          restoreFailure = undefined;
          return layout;
        },
        (err: unknown) => {
          // By code where there is one: a refused connection to several addresses is an
          // AggregateError with no message.
          const e = err as { code?: unknown; message?: unknown };
          const cause = String(e.code ?? e.message ?? err);
          if (cause !== restoreFailure) {
            restoreFailure = cause;
            logger.error({ err }, 'the shard layout could not be put back in Redis');
          }
          throw err;
        },
      );
    const queue = new OrderQueue(redis, {
      prefix: config.redisPrefix,
      shards: config.shards,
      pins: config.shardPins,
      highWater: config.highWater,
      idempotencyTtlS: config.idempotencyTtlS,
      restoreLayout,
      restoreHalts: () => restoreHalts(redis, sql, config.redisPrefix),
      finished: {
        orders: (ids) => finishedOrders(sql, ids),
        expireAfterMs: config.statusTtlS * 1000,
      },
      onRequeue: (r) => {
        const fields = {
          requeued: r.requeued.length,
          cancels: r.cancels,
          replaces: r.replaces,
          mass_cancels: r.massCancels,
          cancel_afters: r.cancelAfters,
          present: r.present,
          finished: r.finished.length,
          unchecked: r.unchecked,
          superseded: r.superseded,
          failed: r.failed,
          ...(r.requeued.length > 0 ? { order_ids: r.requeued } : {}),
        };
        if (r.failed.length > 0) {
          logger.error(fields, 'Redis restarted; accepted orders could not be queued again');
        } else if (r.unchecked > 0) {
          logger.warn(
            fields,
            'Redis restarted after a long outage and PostgreSQL did not say which orders are finished; Redis alone decided what to queue again',
          );
        } else if (
          r.requeued.length > 0 ||
          r.cancels.length > 0 ||
          r.replaces.length > 0 ||
          r.massCancels.length > 0 ||
          r.cancelAfters.length > 0 ||
          r.superseded.length > 0
        ) {
          logger.warn(fields, 'Redis restarted without orders it had accepted; queued them again');
        } else logger.info(fields, 'Redis restarted; every order accepted just before is there');
      },
    });
    await queue.checkDurability();
    // The gateway refuses a SHARDS (or shard hash) that would move a symbol with resting orders
    // to another engine, and records the layout otherwise; the other parts follow the record.
    if (components.gateway) {
      // Before any order is taken: the halted users a Redis that lost its last writes (or came
      // back empty) lacks.
      await restoreHalts(redis, sql, config.redisPrefix);
      await adoptShardLayout(redis, sql, config.redisPrefix, queue.placement, logger);
    } else await followShardLayout(redis, sql, config.redisPrefix, queue.placement);
    // Advice only: a Redis that will not say (CONFIG renamed away) is not refused for it.
    await queue.advice().then(
      (advice) => {
        if (advice !== undefined) logger.warn(advice);
      },
      (err: unknown) => logger.warn({ err }, 'could not read Redis hash-max-listpack-value'),
    );
    // The background components block on stream reads and must ride out a Redis restart: their
    // own connection, with no command timeout and retries without end.
    const workerRedis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    workerRedis.on('error', (err: Error) =>
      logger.warn({ err: err.message }, 'redis connection error (workers)'),
    );
    stops.push(async () => {
      workerRedis.disconnect();
      await Promise.resolve();
    });

    // 3. Engine service(s), when they run in this process.
    const addresses = queue.shards.map((_, n) => shardAddress(config.engineAddress, n));
    if (components.engine) {
      for (let n = 0; n < config.shards; n++) {
        const service: EngineService = await startEngineService({
          shard: n,
          address: addresses[n] as string,
          sql,
          databaseUrl: config.databaseUrl,
          snapshotEvery: config.snapshotEvery,
          snapshotIntervalMs: config.snapshotIntervalMs,
          logger: logger.child({ component: 'engine', shard: n }),
        });
        addresses[n] = `127.0.0.1:${service.port}`;
        stops.push(() => service.stop());
      }
    }
    const engines = addresses.map((a, n) => new EngineClient(a, n, { deadlineMs: 2_000 }));
    stops.push(async () => {
      for (const e of engines) e.close();
      await Promise.resolve();
    });

    // 4. Dispatchers: one per shard, stream → engine → event stream and status cache.
    const dispatchers: Dispatcher[] = [];
    if (components.dispatcher) {
      for (let n = 0; n < config.shards; n++) {
        const d = new Dispatcher({
          shard: n,
          redis: workerRedis,
          prefix: config.redisPrefix,
          sql,
          engine: engines[n] as EngineClient,
          batchSize: config.dispatchBatch,
          // Sync mode is the latency-bound baseline: waiting for company would only slow it.
          lingerMs: config.orderPath === 'sync' ? 0 : config.dispatchLingerMs,
          leaseMs: config.dispatchLeaseMs,
          ...(config.dispatchLeaseId === undefined ? {} : { leaseId: config.dispatchLeaseId }),
          logger: logger.child({ component: 'dispatcher' }),
        });
        d.start();
        dispatchers.push(d);
        stops.push(() => d.stop());
      }
    }

    // 5. Batch writer: both streams of every shard → PostgreSQL.
    let writer: BatchWriter | undefined;
    if (components.writer) {
      writer = new BatchWriter({
        redis: workerRedis,
        sql,
        keys: queue.shards,
        flushMs: config.writerFlushMs,
        batchSize: config.writerBatchSize,
        statusTtlS: config.statusTtlS,
        leaseMs: config.writerLeaseMs,
        ...(config.writerLeaseId === undefined ? {} : { leaseId: config.writerLeaseId }),
        logger: logger.child({ component: 'writer' }),
      });
      await writer.start();
      const w = writer;
      stops.push(() => w.stop());
    }

    // 6. Gateway: last to start, first to stop (in-flight requests are answered first).
    let url: string | undefined;
    if (components.gateway) {
      const app = await buildGateway({
        config,
        queue,
        redis,
        store: pgGatewayStore(sql, queue.placement),
        engine: engineView(engines, queue.placement),
        logger: logger.child({ component: 'gateway' }),
        pingRedis: async () => {
          await redis.ping();
        },
      });
      await app.listen({ host: config.host, port: config.port });
      const address = app.server.address();
      const port = typeof address === 'object' && address !== null ? address.port : config.port;
      url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
      stops.push(() => closeGateway(app));
      // Halted users PostgreSQL holds and Redis lacks (its write failed after PostgreSQL's, or a
      // restart lost it) are put back within HALTS_EVERY_MS; none is ever taken out here.
      let haltsFailure = false;
      let restoring: Promise<unknown> | undefined;
      const halts = setInterval(() => {
        // One at a time: a PostgreSQL that hangs holds the next.
        restoring ??= restoreHalts(redis, sql, config.redisPrefix)
          .then(
            () => (haltsFailure = false),
            (err: unknown) => {
              if (!haltsFailure) logger.warn({ err }, 'could not put back the halted users');
              haltsFailure = true;
            },
          )
          .finally(() => (restoring = undefined));
      }, HALTS_EVERY_MS);
      halts.unref();
      stops.push(() => {
        clearInterval(halts);
        return Promise.resolve();
      });
      // Cancel-all-after: every gateway fires the switches that ran out (queue/cancel-after.ts).
      const sweeper = new CancelAfterSweeper(queue, logger.child({ component: 'gateway' }));
      sweeper.start();
      stops.push(() => sweeper.stop());
    }
    return { url, sql, redis, queue, engines, dispatchers, writer, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
