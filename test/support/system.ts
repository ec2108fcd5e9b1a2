// The whole system in one test process, against the real Redis and PostgreSQL of the test run:
// a fresh database and key prefix each, the engine service in-process on a free port, the
// gateway on a free port, and a small HTTP client for api-v1.md.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/config.js';
import type { Config } from '../../src/config/config.js';
import { startSystem } from '../../src/system/system.js';
import type { RunningSystem } from '../../src/system/system.js';
import { freshDatabase, freshPrefix, redisUrl } from './services.js';
import type { TestDatabase } from './services.js';

export interface TestSystem {
  url: string;
  system: RunningSystem;
  db: TestDatabase;
  config: Config;
  adminToken: string;
  /** A new user's API key. */
  user(name?: string): Promise<{ id: string; key: string }>;
  api(key: string | undefined, method: string, path: string, body?: unknown): Promise<Answer>;
  stop(): Promise<void>;
}

export interface Answer {
  status: number;
  headers: Headers;
  // Tests look into answers freely; the shapes are asserted, not assumed.
  body: Record<string, unknown> & {
    error?: { code: string; message: string; details?: unknown[] };
  };
}

/** Polls `check` until it returns a value (not undefined) or `ms` pass. */
export async function eventually<T>(check: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Each order's status and reason (`NEW null`, `CANCELED CANCELED_BY_OWNER`) read through the API
 * once none of them is PENDING, in the order given.
 */
export function settledStatuses(
  t: Pick<TestSystem, 'api'>,
  key: string,
  orders: readonly { id: string }[],
): Promise<string[]> {
  return eventually(async () => {
    const out: string[] = [];
    for (const o of orders) {
      const r = await t.api(key, 'GET', `/v1/orders/${o.id}`);
      assert.equal(r.status, 200);
      if (r.body.status === 'PENDING') return undefined;
      out.push(`${r.body.status as string} ${String(r.body.reject_reason)}`);
    }
    return out;
  });
}

/** A small client for api-v1.md against the gateway at `url`. */
export function apiOf(url: string): TestSystem['api'] {
  return async (
    key: string | undefined,
    method: string,
    path: string,
    body?: unknown,
  ): Promise<Answer> => {
    const headers: Record<string, string> = {};
    if (key !== undefined) headers.authorization = `Bearer ${key}`;
    let payload: string | undefined;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const res = await fetch(url + path, { method, headers, body: payload });
    const text = await res.text();
    return {
      status: res.status,
      headers: res.headers,
      body: text.length > 0 && text.startsWith('{') ? (JSON.parse(text) as Answer['body']) : {},
    };
  };
}

export async function startTestSystem(env: Record<string, string> = {}): Promise<TestSystem> {
  const db = await freshDatabase();
  const adminToken = randomBytes(18).toString('base64url');
  const config = loadConfig({
    REDIS_URL: redisUrl(),
    DATABASE_URL: db.url,
    REDIS_PREFIX: freshPrefix(),
    PORT: '0',
    ENGINE_ADDRESS: '127.0.0.1:0',
    WRITER_FLUSH_MS: '50',
    MATCHBOX_ADMIN_TOKEN: adminToken,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...env,
  });
  const logger = pino({ level: config.logLevel });
  const system = await startSystem(
    config,
    { engine: true, dispatcher: true, writer: true, gateway: true },
    logger,
  );
  const url = system.url as string;

  const api = apiOf(url);

  return {
    url,
    system,
    db,
    config,
    adminToken,
    api,
    async user(name = 'user') {
      const r = await api(adminToken, 'POST', '/v1/admin/users', { name });
      if (r.status !== 201) throw new Error(`user creation answered ${r.status}`);
      return { id: r.body.id as string, key: r.body.api_key as string };
    },
    async stop() {
      await system.stop();
      await db.drop();
    },
  };
}
