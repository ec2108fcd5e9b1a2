import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { startLocalRedis } from '../../src/infra/local-redis.js';
import type { LocalRedis } from '../../src/infra/local-redis.js';
import { STATUS_HASH_MAX_VALUE } from '../../src/queue/keys.js';
import type { OrderState } from '../../src/queue/records.js';

/** A client that fails fast instead of retrying forever against a killed server. */
function client(server: LocalRedis): Redis {
  return new Redis(server.url, { maxRetriesPerRequest: 0, commandTimeout: 2_000 });
}

async function config(redis: Redis, name: string): Promise<string | undefined> {
  const [, value] = (await redis.config('GET', name)) as string[];
  return value;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mb-redis-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('local Redis', () => {
  it('runs with AOF on and noeviction, and keeps a write through SIGKILL and restart', () =>
    withDir(async (dir) => {
      const server = await startLocalRedis({ dir, appendfsync: 'always' });
      try {
        assert.match(server.url, /^redis:\/\/127\.0\.0\.1:[0-9]+$/);
        let redis = client(server);
        assert.equal(await config(redis, 'appendonly'), 'yes');
        assert.equal(await config(redis, 'appendfsync'), 'always');
        assert.equal(await config(redis, 'maxmemory-policy'), 'noeviction');
        assert.equal(await config(redis, 'save'), '');
        assert.equal(await config(redis, 'dir'), dir);
        await redis.set('order', 'accepted');
        redis.disconnect();

        const { port, pid } = server;
        server.kill('SIGKILL');
        await server.exited();
        await server.restart();
        assert.equal(server.port, port);
        assert.notEqual(server.pid, pid);
        redis = client(server);
        assert.equal(await redis.get('order'), 'accepted');
        redis.disconnect();
      } finally {
        await server.stop();
      }
    }));

  it("keeps an order's status hash compact, one with every field long included", () =>
    withDir(async (dir) => {
      const server = await startLocalRedis({ dir });
      const id = '0192f3a4-5b6c-7d8e-9fab-0123456789ab';
      const at = '2026-12-06T17:46:00.123Z';
      const decimal = '1'.repeat(40); // as long as a request's decimal strings may be
      const big = Number.MAX_SAFE_INTEGER;
      const longest: OrderState = {
        ...{ id, client_order_id: 'x'.repeat(64), user_id: id, symbol: 'ABCDEFGHIJKLMNOP' },
        ...{ side: 'SELL', type: 'STOP_LIMIT', time_in_force: 'GTC', quantity: decimal },
        ...{ price: decimal, stop_price: decimal, post_only: true },
        ...{ self_trade_prevention: 'CANCEL_NEWEST', filled_quantity: decimal },
        ...{ average_fill_price: decimal, status: 'PARTIALLY_FILLED' },
        ...{ reject_reason: 'SELF_TRADE_PREVENTION', created_at: at, updated_at: at },
        ...{ seq: big, version: big, owner_no: big, quantity_lots: big, price_ticks: big },
        ...{ stop_ticks: big, filled_lots: big, notional: '9'.repeat(40) },
      };
      const json = JSON.stringify(longest);
      assert.ok(json.length <= STATUS_HASH_MAX_VALUE, `${json.length} bytes`);
      const redis = client(server);
      try {
        // The fields the submit and batch scripts write.
        await redis.hset('{s0}:o:1', 'j', json, 's', 'PARTIALLY_FILLED', 'u', id, 'q', String(big));
        assert.equal(await redis.object('ENCODING', '{s0}:o:1'), 'listpack');
      } finally {
        redis.disconnect();
        await server.stop();
      }
    }));

  it('defaults to appendfsync everysec, and a SIGSTOPped server resumes and stops', () =>
    withDir(async (dir) => {
      const server = await startLocalRedis({ dir });
      try {
        const redis = client(server);
        assert.equal(await config(redis, 'appendfsync'), 'everysec');
        server.kill('SIGSTOP');
        const hung = new Redis(server.url, { commandTimeout: 200, maxRetriesPerRequest: 0 });
        await assert.rejects(hung.ping(), /timed out/);
        hung.disconnect();
        server.kill('SIGCONT');
        assert.equal(await redis.ping(), 'PONG');
        redis.disconnect();
        server.kill('SIGSTOP');
      } finally {
        await server.stop(); // must not hang on the stopped process
      }
    }));

  it('shuts down a server left running on its folder, and keeps its data', () =>
    withDir(async (dir) => {
      // `orphan` stands for the Redis of a matchbox that was killed and never stopped it.
      const orphan = await startLocalRedis({ dir, appendfsync: 'always' });
      const first = client(orphan);
      await first.set('order', 'kept');
      first.disconnect();
      const server = await startLocalRedis({ dir });
      try {
        await orphan.exited();
        const redis = client(server);
        assert.equal(await redis.get('order'), 'kept');
        redis.disconnect();
      } finally {
        await server.stop();
        await orphan.stop();
      }
    }));
});
