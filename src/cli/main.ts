// `matchbox <command>`: the whole system, or one part of it for deployment.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { ConfigError, loadConfig } from '../config/config.js';
import type { Config } from '../config/config.js';
import { connect } from '../db/client.js';
import { migrate } from '../db/migrate.js';
import { createUser } from '../db/users.js';
import { EngineClient } from '../engine-service/client.js';
import { shardAddress } from '../engine-service/address.js';
import { allowedCpus, boundCommand, pin, planLayout } from '../infra/cpu-layout.js';
import type { CpuLayout } from '../infra/cpu-layout.js';
import { startLocalServices } from '../infra/local-services.js';
import { startMetricsServer } from '../metrics/metrics-server.js';
import { ShardPlacement } from '../queue/keys.js';
import { adoptShardLayout } from '../queue/shard-layout.js';
import type { LocalServices } from '../infra/local-services.js';
import { startSystem } from '../system/system.js';
import type { Components } from '../system/system.js';

const HELP = `matchbox — order submission and matching

Usage: matchbox <command> [options]

Commands:
  start                 the whole system: Redis and PostgreSQL (project-local under .data/
                        unless REDIS_URL and DATABASE_URL are set), the engine in its own
                        process, and the gateway, dispatcher and batch writer
  engine                one engine shard's gRPC service (SHARD, default 0)
  gateway               the HTTP gateway only
  dispatcher            the dispatchers only (one per shard)
  writer                the batch writer only
  pipeline              the dispatchers and the batch writer in one process
  users create NAME     create a user and print its API key (shown once)
  migrate               apply database migrations
  bench [options]       the performance report (see npm run bench; --quick, --json, --scenario)

Options:
  --mode queue|sync     order path (same as ORDER_PATH)
  -h, --help            this help

Every setting is an environment variable; see the README's configuration table.`;

function logger(config: Config, name: string): Logger {
  const pretty = process.stdout.isTTY && config.logLevel !== 'silent';
  return pino({
    name,
    level: config.logLevel,
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true } } } : {}),
  });
}

/** Runs until SIGINT/SIGTERM, then calls `stop` once and exits with its outcome. */
function untilSignal(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    const force = setTimeout(() => {
      log.error('did not stop within 10 s; exiting');
      process.exit(1);
    }, 10_000);
    force.unref();
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
}

/** The admin token: MATCHBOX_ADMIN_TOKEN, else one kept in the data folder. */
function adminToken(config: Config): { token: string; where: string } {
  if (config.adminToken !== undefined)
    return { token: config.adminToken, where: 'MATCHBOX_ADMIN_TOKEN' };
  const file = join(resolve(config.dataDir), 'admin-token');
  if (!existsSync(file)) {
    mkdirSync(resolve(config.dataDir), { recursive: true });
    writeFileSync(file, randomBytes(24).toString('base64url') + '\n', { mode: 0o600 });
  }
  return { token: readFileSync(file, 'utf8').trim(), where: file };
}

const ENGINE_MAIN = fileURLToPath(new URL('../engine-service/main.js', import.meta.url));
const CLI_MAIN = fileURLToPath(import.meta.url);

/**
 * The writer's young generation: semi-spaces of up to 64 MB rather than V8's 16. What the writer
 * holds between its reads and its flush (the entries' text, each batch parsed, the column arrays)
 * outlived the default's scavenges, was copied into the old generation and collected there: a
 * fifth of the writer's busy time in the bench's writer scenario. With 64 MB its CPU per row
 * written fell from a median of 19 µs to 14 (that scenario's drain, runs interleaved,
 * 2026-12-06). It costs up to 96 MB more memory, and longer scavenges, which only delay a flush.
 */
const WRITER_NODE_FLAGS = ['--max-semi-space-size=64'];

/**
 * Keeps one child process running, restarted a second after it dies unasked. Its own process
 * group: a terminal's Ctrl-C reaches matchbox alone, which then stops the parts in order
 * (gateway, then dispatcher, then writer, then engine). MATCHBOX_PARENT_PID makes the child stop
 * itself should matchbox die without stopping it.
 */
function supervise(
  name: string,
  args: string[],
  env: Record<string, string | undefined>,
  log: Logger,
  cpus?: string,
  nodeFlags: readonly string[] = [],
): () => Promise<void> {
  let child: ChildProcess | undefined;
  let stopping = false;
  const [command, ...argv] = boundCommand(cpus, [process.execPath, ...nodeFlags, ...args]) as [
    string,
  ];
  const run = (): void => {
    child = spawn(command, argv, {
      env: { ...process.env, ...env, MATCHBOX_PARENT_PID: String(process.pid) },
      stdio: ['ignore', 'inherit', 'inherit'],
      detached: true,
    });
    child.on('exit', (code, signal) => {
      if (stopping) return;
      log.warn({ process: name, code, signal }, 'process exited; restarting in 1 s');
      setTimeout(run, 1000);
    });
  };
  run();
  return async () => {
    stopping = true;
    const c = child;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((done) => {
      c.once('exit', () => done());
      c.kill('SIGTERM');
    });
  };
}

/** Stops this process (through `stop`) once the matchbox that started it is gone. */
function watchParent(stop: () => void): void {
  const parent = Number(process.env.MATCHBOX_PARENT_PID);
  if (!Number.isInteger(parent) || parent <= 0) return;
  setInterval(() => {
    if (process.ppid !== parent) stop();
  }, 500).unref();
}

async function waitForEngine(config: Config, shard: number): Promise<void> {
  const client = new EngineClient(shardAddress(config.engineAddress, shard), shard, {
    deadlineMs: 500,
  });
  try {
    await client.waitReady();
  } finally {
    client.close();
  }
}

/**
 * Binds this process (the gateway) and the local PostgreSQL (its postmaster and what it has
 * forked; later backends inherit it) as the layout says; the local Redis was started bound. A
 * refusal is logged and the system runs unbound.
 */
function applyLayout(
  layout: CpuLayout,
  services: LocalServices | undefined,
  log: Logger,
): CpuLayout | undefined {
  const refusals = [
    services?.postgres && pin(services.postgres.pid, layout.back, true),
    pin(process.pid, layout.front),
  ].filter((r): r is string => typeof r === 'string');
  if (refusals.length > 0) {
    // Where binding is refused, children started through taskset would fail too.
    log.warn({ errors: refusals }, 'could not bind processes to CPUs; running unbound');
    return undefined;
  }
  log.info(
    { orderPath: layout.front, background: layout.back },
    'CPUs: gateway and local Redis on the order-path CPU; engine, dispatcher, writer and local PostgreSQL on the others',
  );
  return layout;
}

async function start(config: Config): Promise<void> {
  const log = logger(config, 'matchbox');
  const cpus = config.cpuLayout === 'auto' ? allowedCpus() : undefined;
  if (config.cpuLayout === 'auto' && cpus === undefined) {
    log.warn('taskset (util-linux) is not available: CPU_LAYOUT=auto places nothing');
  }
  const planned = planLayout(config.cpuLayout, cpus);
  let services: LocalServices | undefined;
  if (config.redisUrl === undefined || config.databaseUrl === undefined) {
    services = await startLocalServices({
      dataDir: config.dataDir,
      redis: config.redisUrl === undefined,
      postgres: config.databaseUrl === undefined,
      appendfsync: config.redisAppendfsync,
      ...(planned === undefined ? {} : { layout: planned }),
    });
  }
  const layout = planned === undefined ? undefined : applyLayout(planned, services, log);
  const admin = adminToken(config);
  const full: Config = {
    ...config,
    // The local Redis through its Unix socket: cheaper per round trip than loopback TCP.
    redisUrl: config.redisUrl ?? services?.redisSocket ?? services?.redisUrl,
    databaseUrl: config.databaseUrl ?? services?.databaseUrl,
    adminToken: admin.token,
  };
  // The schema must exist before the engine loads its snapshots.
  const sql = connect(full.databaseUrl as string, { max: 1 });
  const redis = new Redis(full.redisUrl as string, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on('error', (err: Error) => log.warn({ err: err.message }, 'redis connection error'));
  let refused: { err: unknown } | undefined;
  try {
    await migrate(sql);
    // Before any part starts: a SHARDS that would strand resting orders stops everything here.
    await redis.connect();
    const placement = new ShardPlacement(full.shards, full.shardPins);
    await adoptShardLayout(redis, sql, full.redisPrefix, placement, log);
  } catch (err) {
    refused = { err };
  } finally {
    redis.disconnect();
    await sql.end();
  }
  if (refused !== undefined) {
    await services?.stop();
    throw refused.err;
  }
  // Four processes: the engine; the dispatcher; the writer; and this one, the gateway alone, so
  // that answering clients never waits behind a batch. The dispatcher and the writer are apart
  // so that a large flush (thousands of records concatenated, sent and acknowledged) never holds
  // up the dispatch of the next batch, which is what a fill waits on.
  const children = {
    DATABASE_URL: full.databaseUrl,
    REDIS_URL: full.redisUrl,
    // --mode is a flag of this process only; the children read the environment.
    ORDER_PATH: full.orderPath,
  };
  const stopEngines: (() => Promise<void>)[] = [];
  // Prometheus endpoints: the dispatcher on METRICS_PORT, the writer on the next port, engine
  // shard n on the one after + n (each engine adds its shard to the port it is given).
  const metricsPort = (offset: number): string =>
    String(full.metricsPort === 0 ? 0 : full.metricsPort + offset);
  for (let n = 0; n < full.shards; n++) {
    stopEngines.push(
      supervise(
        `engine ${n}`,
        [ENGINE_MAIN],
        { ...children, SHARD: String(n), METRICS_PORT: metricsPort(2) },
        log,
        layout?.back,
      ),
    );
    await waitForEngine(full, n);
  }
  // One identity for every dispatcher and writer this process starts: the one restarted after a
  // death takes the dead one's lease back at once, not when it expires.
  const ownId = `matchbox-start:${process.pid}:${randomBytes(6).toString('hex')}`;
  const leaseId = full.dispatchLeaseId ?? ownId;
  const stopDispatcher = supervise(
    'dispatcher',
    [CLI_MAIN, 'dispatcher'],
    { ...children, METRICS_PORT: metricsPort(0), DISPATCH_LEASE_ID: leaseId },
    log,
    layout?.back,
  );
  const stopWriter = supervise(
    'writer',
    [CLI_MAIN, 'writer'],
    { ...children, METRICS_PORT: metricsPort(1), WRITER_LEASE_ID: full.writerLeaseId ?? ownId },
    log,
    layout?.back,
    WRITER_NODE_FLAGS,
  );
  const system = await startSystem(
    full,
    { engine: false, dispatcher: false, writer: false, gateway: true },
    log,
  );
  const url = system.url as string;
  console.log(`
matchbox is running at ${url}  (order path: ${full.orderPath})
  API docs:     ${url}/docs
  metrics:      ${url}/metrics${full.metricsPort === 0 ? '' : `, dispatcher :${metricsPort(0)}, writer :${metricsPort(1)}, engine :${metricsPort(2)}${full.shards > 1 ? '+shard' : ''} (/metrics)`}
  admin token:  ${admin.where === 'MATCHBOX_ADMIN_TOKEN' ? 'from MATCHBOX_ADMIN_TOKEN' : `in ${admin.where}`}
  Redis:        ${full.redisUrl}${services?.redisSocket !== undefined && full.redisUrl === services.redisSocket ? `  (also ${services.redisUrl})` : ''}
  PostgreSQL:   ${full.databaseUrl}

Try it:
  KEY=$(curl -s -X POST ${url}/v1/admin/users -H "Authorization: Bearer $(cat ${admin.where === 'MATCHBOX_ADMIN_TOKEN' ? '<(echo $MATCHBOX_ADMIN_TOKEN)' : admin.where})" \\
        -H 'Content-Type: application/json' -d '{"name":"alice"}' | sed -E 's/.*"api_key":"([^"]+)".*/\\1/')
  curl -s -X POST ${url}/v1/orders -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \\
        -d '{"symbol":"AAPL","side":"BUY","type":"LIMIT","quantity":"10","price":"187.25"}'

Stop with Ctrl-C.`);
  untilSignal(log, async () => {
    await system.stop();
    // The dispatcher's last batch is written before the writer's last flush.
    await stopDispatcher();
    await stopWriter();
    for (const s of stopEngines) await s();
    await services?.stop();
  });
}

/** The commands that run one part of the system against given Redis and PostgreSQL. */
const PARTS: Record<string, Components> = {
  gateway: { engine: false, dispatcher: false, writer: false, gateway: true },
  dispatcher: { engine: false, dispatcher: true, writer: false, gateway: false },
  writer: { engine: false, dispatcher: false, writer: true, gateway: false },
  pipeline: { engine: false, dispatcher: true, writer: true, gateway: false },
};

async function part(config: Config, components: Components, name: string): Promise<void> {
  // Armed before anything starts: a part whose start waits (on an engine, say) must not outlive
  // a matchbox that died meanwhile. Before the handlers below, SIGTERM simply ends it.
  watchParent(() => process.kill(process.pid, 'SIGTERM'));
  const log = logger(config, name);
  // The gateway serves /metrics itself; the others have an endpoint of their own.
  const metrics = components.gateway
    ? undefined
    : await startMetricsServer(config.metricsHost, config.metricsPort, name, log);
  const system = await startSystem(config, components, log);
  if (system.url !== undefined) log.info({ url: system.url }, 'gateway listening');
  untilSignal(log, async () => {
    await system.stop();
    await metrics?.close();
  });
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'bench') {
    // run-bench reads its own options from process.argv.
    process.argv = [process.argv[0] as string, 'run-bench', ...argv.slice(1)];
    await import('../bench/run-bench.js');
    return;
  }
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { mode: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const [command, ...rest] = positionals;
  if (values.help === true || command === undefined || command === 'help') {
    console.log(HELP);
    return;
  }
  const env = { ...process.env };
  if (values.mode !== undefined) env.ORDER_PATH = values.mode;
  const config = loadConfig(env);
  const single = PARTS[command];
  if (single !== undefined) return part(config, single, command);
  switch (command) {
    case 'start':
      return start(config);
    case 'engine':
      await import('../engine-service/main.js');
      return;
    case 'migrate':
    case 'users': {
      if (config.databaseUrl === undefined)
        throw new ConfigError('DATABASE_URL', 'DATABASE_URL must be set');
      const sql = connect(config.databaseUrl, { max: 1 });
      try {
        if (command === 'migrate') {
          const applied = await migrate(sql);
          console.log(
            applied.length === 0 ? 'schema is up to date' : `applied ${applied.join(', ')}`,
          );
        } else if (rest[0] === 'create' && rest[1] !== undefined) {
          await migrate(sql);
          const user = await createUser(sql, rest[1]);
          console.log(JSON.stringify({ id: user.id, name: user.name, api_key: user.api_key }));
        } else {
          throw new Error('usage: matchbox users create NAME');
        }
      } finally {
        await sql.end();
      }
      return;
    }
    default:
      throw new Error(`unknown command ${command}; see matchbox --help`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof ConfigError) console.error(`matchbox: ${err.message}`);
  else console.error(`matchbox: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(err instanceof ConfigError ? 2 : 1);
});
