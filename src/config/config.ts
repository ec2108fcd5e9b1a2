// Every setting of matchbox: read from the environment once at start, validated, typed. A bad
// value stops the process with a line that names the variable. The README's configuration table
// is this list.

/** The most engine shards SHARDS may name. */
export const MAX_SHARDS = 256;

type Parse<T> = (raw: string) => T | undefined;

interface Setting<T, D extends T | undefined = T | undefined> {
  env: string;
  default: D;
  parse: Parse<T>;
  /** What a valid value looks like, for the error message. */
  expect: string;
  doc: string;
}

const int =
  (min: number, max = Number.MAX_SAFE_INTEGER): Parse<number> =>
  (raw) => {
    if (!/^-?[0-9]+$/.test(raw)) return undefined;
    const n = Number(raw);
    return Number.isSafeInteger(n) && n >= min && n <= max ? n : undefined;
  };
const text: Parse<string> = (raw) => (raw.length > 0 ? raw : undefined);
/** A process's identity in a lease: `|` ends it in the lease's value (src/queue/lease.ts). */
const leaseIdentity: Parse<string> = (raw) =>
  raw.length > 0 && !raw.includes('|') ? raw : undefined;
const oneOf =
  <T extends string>(...values: T[]): Parse<T> =>
  (raw) =>
    (values as string[]).includes(raw) ? (raw as T) : undefined;
const url =
  (...protocols: string[]): Parse<string> =>
  (raw) => {
    try {
      return protocols.includes(new URL(raw).protocol) ? raw : undefined;
    } catch {
      return undefined;
    }
  };

/**
 * A listed instrument's symbol: 1–16 of A-Z 0-9 . - _, but not `.` or `..`, which a URL's path
 * cannot carry as a segment (clients resolve them away: `/v1/instruments/../book`).
 */
export const SYMBOL = /^(?!\.\.?$)[A-Z0-9._-]{1,16}$/;
/** `SYMBOL=n,…`: each symbol once, n a shard number (checked against SHARDS by loadConfig). */
const shardPins: Parse<ReadonlyMap<string, number>> = (raw) => {
  const pins = new Map<string, number>();
  for (const pair of raw.split(',')) {
    const [symbol = '', n = '', ...rest] = pair.trim().split('=');
    const shard = int(0, MAX_SHARDS - 1)(n);
    if (rest.length > 0 || !SYMBOL.test(symbol) || shard === undefined || pins.has(symbol)) {
      return undefined;
    }
    pins.set(symbol, shard);
  }
  return pins;
};

function setting<T>(
  env: string,
  def: T,
  parse: Parse<T>,
  expect: string,
  doc: string,
): Setting<T, T> {
  return { env, default: def, parse, expect, doc };
}

/** A setting with no default: absent means "not configured". */
function optional<T>(
  env: string,
  parse: Parse<T>,
  expect: string,
  doc: string,
): Setting<T, undefined> {
  return { env, default: undefined, parse, expect, doc };
}

/** Every setting, in the order of the README's table. */
export const SETTINGS = {
  host: setting(
    'HOST',
    '127.0.0.1',
    text,
    'a host name or address',
    'Address the gateway listens on.',
  ),
  port: setting('PORT', 8080, int(0, 65535), 'a port 0–65535', 'Port of the gateway.'),
  redisUrl: optional(
    'REDIS_URL',
    (raw) => (raw.startsWith('/') ? raw : url('redis:', 'rediss:')(raw)),
    'a redis:// URL or the absolute path of a Unix socket',
    'Redis to use (a URL, or the path of its Unix socket); unset: `npm start`/`npm test` start a project-local one under `.data/` (`npm start` talks to it through its Unix socket).',
  ),
  databaseUrl: optional(
    'DATABASE_URL',
    url('postgres:', 'postgresql:'),
    'a postgres:// URL',
    'PostgreSQL to use; unset: a project-local cluster under `.data/`.',
  ),
  redisAppendfsync: setting(
    'REDIS_APPENDFSYNC',
    'everysec',
    oneOf('everysec', 'always'),
    '`everysec` or `always`',
    'AOF fsync policy of the Redis that `matchbox start` runs itself (unused with `REDIS_URL`): `always` makes a 201 survive a power cut.',
  ),
  orderPath: setting(
    'ORDER_PATH',
    'queue',
    oneOf('queue', 'sync'),
    '`queue` or `sync`',
    '`queue`: answer once the order is in Redis. `sync`: the seed\u2019s baseline — write to PostgreSQL and wait for the engine before answering.',
  ),
  shards: setting(
    'SHARDS',
    1,
    int(1, MAX_SHARDS),
    `an integer 1–${MAX_SHARDS}`,
    'Engine shards (symbols are hashed onto them unless SHARD_PINS places them; a change that would move a symbol with open orders is refused).',
  ),
  shardPins: setting(
    'SHARD_PINS',
    new Map<string, number>() as ReadonlyMap<string, number>,
    shardPins,
    '`SYMBOL=n` pairs separated by commas, each symbol once, n a shard below SHARDS',
    'Symbols placed on a shard of your choice rather than by the hash (`AAPL=0,MSFT=1`): a busy symbol on an engine of its own, or a few symbols spread evenly. Every part must have the same; a change is taken as one of `SHARDS`.',
  ),
  engineAddress: setting(
    'ENGINE_ADDRESS',
    '127.0.0.1:50051',
    text,
    'host:port',
    'gRPC address of the engine service (shard n listens on port + n).',
  ),
  snapshotEvery: setting(
    'ENGINE_SNAPSHOT_EVERY',
    100_000,
    int(1),
    'a positive integer',
    'The engine snapshots its state after this many commands…',
  ),
  snapshotIntervalMs: setting(
    'ENGINE_SNAPSHOT_INTERVAL_MS',
    30_000,
    int(100),
    'milliseconds ≥ 100',
    '…or after this long with any command applied, whichever first.',
  ),
  dispatchBatch: setting(
    'DISPATCH_BATCH',
    250,
    int(1, 100_000),
    'an integer 1–100000',
    'Most commands the dispatcher sends the engine in one batch (its outputs are one Redis script, which every other client waits behind).',
  ),
  dispatchLingerMs: setting(
    'DISPATCH_LINGER_MS',
    2,
    int(0, 1000),
    'milliseconds 0–1000',
    'After a busy read (8 commands or more, short of a full batch) the dispatcher waits this long for more, so batches stay large under load; a quieter read is dispatched at once (queue mode only; sync mode never waits).',
  ),
  dispatchLeaseMs: setting(
    'DISPATCH_LEASE_MS',
    3_000,
    int(300, 600_000),
    'milliseconds 300–600000',
    'One dispatcher runs each shard, the one holding its lease in Redis; another started beside it stands by, and takes over this long after the first dies (a moment after its stop).',
  ),
  dispatchLeaseId: optional(
    'DISPATCH_LEASE_ID',
    leaseIdentity,
    'text without |',
    'The dispatcher’s identity in the lease; unset: new at each start. Restarted with the same, it takes its lease back at once, not at expiry: give it to one process and the one replacing it (`matchbox start` does for its own).',
  ),
  writerLeaseMs: setting(
    'WRITER_LEASE_MS',
    3_000,
    int(300, 600_000),
    'milliseconds 300–600000',
    'One batch writer writes each shard, the one holding its writer lease in Redis; another started beside it stands by, and takes over this long after the first dies (a moment after its stop), writing first what the dead one held unwritten.',
  ),
  writerLeaseId: optional(
    'WRITER_LEASE_ID',
    leaseIdentity,
    'text without |',
    'The writer’s identity in its lease, as DISPATCH_LEASE_ID is the dispatcher’s: restarted with the same, it takes its lease back at once: give it to one process and the one replacing it, never to two running (`matchbox start` gives its own one).',
  ),
  writerFlushMs: setting(
    'WRITER_FLUSH_MS',
    1_000,
    int(1),
    'milliseconds ≥ 1',
    'The batch writer commits at least this often…',
  ),
  writerBatchSize: setting(
    'WRITER_BATCH_SIZE',
    50,
    int(1, 100_000),
    'an integer 1–100000',
    '…or as soon as this many stream records wait, whichever first (behind a backlog one commit takes what is waiting, up to 10,000 records or 32 MB).',
  ),
  highWater: setting(
    'QUEUE_HIGH_WATER',
    500_000,
    int(1),
    'a positive integer',
    'Commands waiting in a shard\u2019s stream above which POST /v1/orders, and an amend, answer 503 OVERLOADED.',
  ),
  statusTtlS: setting(
    'STATUS_TTL_S',
    60,
    // A gateway that lost a submit's reply reads the order's status hash for up to ~3 s after.
    // (After a Redis restart that followed a long outage, its re-queue asks PostgreSQL which
    // orders it holds final: one that expired during the outage is not queued twice; see
    // recent-accepts.ts.)
    int(60),
    'seconds ≥ 60',
    'How long a final order stays in the Redis status cache once PostgreSQL has it (reads then go to PostgreSQL).',
  ),
  idempotencyTtlS: setting(
    'IDEMPOTENCY_TTL_S',
    7 * 86_400,
    int(1),
    'seconds ≥ 1',
    'How long Redis remembers a client_order_id (PostgreSQL\u2019s unique index keeps it for good).',
  ),
  redisPrefix: setting(
    'REDIS_PREFIX',
    'mb',
    text,
    'a non-empty string',
    'Prefix of every Redis key.',
  ),
  adminToken: optional(
    'MATCHBOX_ADMIN_TOKEN',
    (raw) => (raw.length >= 16 ? raw : undefined),
    'at least 16 characters',
    'Token of the admin routes; unset: `npm start` makes one and says where it is.',
  ),
  bodyLimit: setting(
    'BODY_LIMIT',
    16_384,
    int(256, 10_485_760),
    'bytes 256–10485760',
    'Largest request body.',
  ),
  rateLimit: setting(
    'RATE_LIMIT_PER_S',
    50_000,
    int(0),
    'an integer ≥ 0 (0: off)',
    'Requests per second per API key before 429 RATE_LIMITED.',
  ),
  streamsPerUser: setting(
    'STREAMS_PER_USER',
    8,
    int(1, 10_000),
    'an integer 1–10000',
    'Most `GET /v1/events` streams one user may have open on one gateway before 429 RATE_LIMITED.',
  ),
  marketStreams: setting(
    'MARKET_STREAMS',
    1_000,
    int(1, 100_000),
    'an integer 1–100000',
    'Most `GET /v1/market/events` streams open on one gateway before 503 OVERLOADED.',
  ),
  marketStreamsPerAddress: setting(
    'MARKET_STREAMS_PER_ADDRESS',
    16,
    int(1, 100_000),
    'an integer 1–100000',
    'Most `GET /v1/market/events` streams open on one gateway from one client address before 429 RATE_LIMITED (behind a proxy: from the proxy).',
  ),
  logLevel: setting(
    'LOG_LEVEL',
    'info',
    oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
    'fatal, error, warn, info, debug, trace or silent',
    'Log level (pino); pretty in a terminal, JSON otherwise.',
  ),
  metricsHost: setting(
    'METRICS_HOST',
    '127.0.0.1',
    text,
    'a host name or address',
    'Address of the Prometheus endpoint of the processes other than the gateway (which serves `/metrics` itself).',
  ),
  metricsPort: setting(
    'METRICS_PORT',
    9464,
    int(0, 65535),
    'a port 0–65535 (0: off)',
    '`GET /metrics` of `matchbox dispatcher`, `writer`, `pipeline` and `engine` (shard n on port + n). `matchbox start` gives the dispatcher this port, the writer the next and engine shard n the one after + n.',
  ),
  readyMaxLag: setting(
    'READY_MAX_LAG',
    1000,
    int(0),
    'an integer ≥ 0',
    '`/ready` is true once every engine has applied its stream to within this many commands of the head.',
  ),
  cpuLayout: setting(
    'CPU_LAYOUT',
    'auto',
    oneOf('auto', 'off'),
    '`auto` or `off`',
    '`matchbox start` on 2+ CPUs: `auto` runs the gateway and its local Redis on the first CPU and the engine, dispatcher, writer and local PostgreSQL on the others (taskset); `off` leaves placement to the kernel.',
  ),
  dataDir: setting(
    'DATA_DIR',
    '.data',
    text,
    'a path',
    'Where the project-local Redis and PostgreSQL keep their files.',
  ),
} as const;

type Settings = typeof SETTINGS;
export type Config = {
  [K in keyof Settings]: Settings[K] extends Setting<infer T, infer D>
    ? D extends undefined
      ? T | undefined
      : T
    : never;
};

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
  }
}

/** Reads and validates every setting; throws ConfigError naming the first bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(SETTINGS) as [string, Setting<unknown, unknown>][]) {
    const raw = env[s.env];
    if (raw === undefined || raw === '') {
      out[key] = s.default;
      continue;
    }
    const value = s.parse(raw);
    if (value === undefined) {
      throw new ConfigError(
        s.env,
        `${s.env}=${JSON.stringify(raw)} is not valid: expected ${s.expect}`,
      );
    }
    out[key] = value;
  }
  const config = out as Config;
  for (const [symbol, n] of config.shardPins) {
    if (n >= config.shards) {
      throw new ConfigError(
        'SHARD_PINS',
        `SHARD_PINS pins ${symbol} to shard ${n}, but SHARDS=${config.shards} has shards 0–${config.shards - 1}`,
      );
    }
  }
  return config;
}
