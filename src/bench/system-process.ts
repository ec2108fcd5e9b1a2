// The system under test as the bench starts it: `node dist/src/cli/main.js start` in a child
// process, exactly as a user runs it, on a free port. Either with its own Redis and PostgreSQL
// under a fresh DATA_DIR (so the Redis durability setting is ours to choose), or, when the
// environment names servers (REDIS_URL and DATABASE_URL, as under the test runner), against those
// with a fresh key prefix and a fresh database, both removed afterwards.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { connect } from '../db/client.js';
import type { Sql } from '../db/client.js';
import { freePort } from '../infra/free-port.js';
import { deletePrefix } from '../queue/delete-prefix.js';

export type OrderPath = 'queue' | 'sync';
export type AppendFsync = 'everysec' | 'always';

export interface SystemSpec {
  mode: OrderPath;
  appendfsync: AppendFsync;
  /** Extra settings (WRITER_BATCH_SIZE…). */
  env?: Record<string, string>;
}

/** A gateway to measure, with what the probes need to look behind it. */
export interface Target {
  name: string;
  url: string;
  adminToken: string;
  mode: OrderPath;
  /** `unknown` when the bench did not start the Redis. */
  appendfsync: AppendFsync | 'unknown';
  /** Redis and PostgreSQL of the system, for the probes; undefined when not known (--url). */
  redisUrl: string | undefined;
  databaseUrl: string | undefined;
  redisPrefix: string;
  /** Pid of the matchbox process (its children are the engine and, when local, the servers). */
  pid: number | undefined;
  /** DATA_DIR of the local servers; undefined when the bench did not start them. */
  dataDir: string | undefined;
  env: Record<string, string>;
  stop(): Promise<void>;
}

const MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/** Servers named by the environment (both needed), or undefined: the bench starts its own. */
export function givenServers(): { redisUrl: string; databaseUrl: string } | undefined {
  const redisUrl = process.env.REDIS_URL ?? '';
  const databaseUrl = process.env.DATABASE_URL ?? '';
  return redisUrl !== '' && databaseUrl !== '' ? { redisUrl, databaseUrl } : undefined;
}

/** A new database on the server of `url`; resolves to its URL and a function that drops it. */
export async function freshDatabase(
  url: string,
  stem: string,
): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${stem}_${randomBytes(5).toString('hex')}`;
  const admin: Sql = connect(url, { max: 1 });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(url);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    async drop() {
      const a: Sql = connect(url, { max: 1 });
      try {
        await a.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await a.end();
      }
    },
  };
}

async function deleteRunKeys(redisUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  try {
    await deletePrefix(redis, prefix);
  } finally {
    redis.disconnect();
  }
}

/** Waits for the child's banner; resolves to its lines (URL, Redis, PostgreSQL). */
function banner(child: ChildProcess, timeoutMs: number): Promise<Map<string, string>> {
  return new Promise((done, fail) => {
    let out = '';
    let err = '';
    const timer = setTimeout(
      () => finish(new Error(`no banner within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const finish = (e?: Error): void => {
      clearTimeout(timer);
      child.stdout?.removeListener('data', onOut);
      if (e !== undefined) fail(new Error(`${e.message}\n${err.slice(-2000)}${out.slice(-2000)}`));
    };
    const onOut = (s: string): void => {
      out += s;
      if (!out.includes('Stop with Ctrl-C')) return;
      const lines = new Map<string, string>();
      const url = /running at (\S+)/.exec(out)?.[1];
      const redis = /Redis:\s+(\S+)/.exec(out)?.[1];
      const pg = /PostgreSQL:\s+(\S+)/.exec(out)?.[1];
      if (url !== undefined) lines.set('url', url);
      if (redis !== undefined) lines.set('redis', redis);
      if (pg !== undefined) lines.set('postgres', pg);
      finish();
      done(lines);
    };
    child.stdout?.setEncoding('utf8').on('data', onOut);
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      err = (err + s).slice(-8000);
    });
    child.once('exit', (code, signal) =>
      finish(new Error(`matchbox start exited (${code ?? signal}) before it was ready`)),
    );
  });
}

/** Starts `matchbox start` for `spec`; `dataRoot` holds the local servers' files. */
export async function startSystem(spec: SystemSpec, dataRoot: string): Promise<Target> {
  const name = `${spec.mode}-${spec.appendfsync}${spec.env?.WRITER_BATCH_SIZE !== undefined ? `-batch${spec.env.WRITER_BATCH_SIZE}` : ''}`;
  const adminToken = randomBytes(18).toString('base64url');
  const given = givenServers();
  const env: Record<string, string> = {
    PORT: String(await freePort()),
    ENGINE_ADDRESS: `127.0.0.1:${await freePort()}`,
    LOG_LEVEL: 'warn',
    MATCHBOX_ADMIN_TOKEN: adminToken,
    ...(spec.env ?? {}),
  };
  const cleanups: (() => Promise<void>)[] = [];
  let dataDir: string | undefined;
  if (given !== undefined) {
    const db = await freshDatabase(given.databaseUrl, 'mbbench');
    cleanups.push(() => db.drop());
    const prefix = `mbbench-${randomBytes(5).toString('hex')}`;
    cleanups.push(() => deleteRunKeys(given.redisUrl, prefix));
    Object.assign(env, { REDIS_URL: given.redisUrl, DATABASE_URL: db.url, REDIS_PREFIX: prefix });
  } else {
    // A fresh folder each time: every system starts from empty books and tables.
    dataDir = resolve(dataRoot, name);
    rmSync(dataDir, { recursive: true, force: true });
    Object.assign(env, { DATA_DIR: dataDir, REDIS_APPENDFSYNC: spec.appendfsync });
    delete env.REDIS_PREFIX;
  }
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  if (given === undefined) {
    delete childEnv.REDIS_URL;
    delete childEnv.DATABASE_URL;
    delete childEnv.REDIS_PREFIX;
  }
  const args = [MAIN, 'start', '--mode', spec.mode];
  const child = spawn(process.execPath, args, {
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const lines = await banner(child, 120_000);
    // The system's own log (warnings and errors), kept for when a figure needs explaining.
    mkdirSync(resolve(dataRoot, 'logs'), { recursive: true });
    const log = createWriteStream(resolve(dataRoot, 'logs', `${name}.log`));
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    const url = lines.get('url');
    if (url === undefined) throw new Error('matchbox start printed no URL');
    return {
      name,
      url,
      adminToken,
      mode: spec.mode,
      appendfsync: given === undefined ? spec.appendfsync : 'unknown',
      redisUrl: lines.get('redis'),
      databaseUrl: lines.get('postgres'),
      redisPrefix: env.REDIS_PREFIX ?? 'mb',
      pid: child.pid,
      dataDir,
      env,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
