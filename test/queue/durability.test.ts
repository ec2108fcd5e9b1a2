// The gateway refuses a Redis that could lose accepted orders, and says why; and advises on one
// that keeps its status cache in more memory than it needs.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { Redis } from 'ioredis';
import { startLocalRedis } from '../../src/infra/local-redis.js';
import type { LocalRedis } from '../../src/infra/local-redis.js';
import { OrderQueue } from '../../src/queue/order-queue.js';

let server: LocalRedis;
let dir: string;
let redis: Redis;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mb-durability-'));
  server = await startLocalRedis({ dir });
  redis = new Redis(server.url);
});
after(async () => {
  redis.disconnect();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('accepts AOF with noeviction, refuses eviction and a Redis without AOF', async () => {
  const queue = new OrderQueue(redis, {
    prefix: 'mb',
    shards: 1,
    highWater: 10,
    idempotencyTtlS: 60,
  });
  await queue.checkDurability();

  await redis.config('SET', 'maxmemory-policy', 'allkeys-lru');
  await assert.rejects(queue.checkDurability(), /maxmemory-policy is allkeys-lru.*noeviction/);
  await redis.config('SET', 'maxmemory-policy', 'noeviction');

  await redis.config('SET', 'appendonly', 'no');
  await assert.rejects(queue.checkDurability(), /append-only file.*appendonly yes/);
  await redis.config('SET', 'appendonly', 'yes');
  await queue.checkDurability();
});

it('advises a Redis that keeps status hashes as hash tables, and not one that keeps them compact', async () => {
  const queue = new OrderQueue(redis, {
    prefix: 'mb',
    shards: 1,
    highWater: 10,
    idempotencyTtlS: 60,
  });
  assert.equal(await queue.advice(), undefined, 'the project-local Redis is set right');
  await redis.config('SET', 'hash-max-listpack-value', '64');
  try {
    assert.match((await queue.advice()) ?? '', /hash-max-listpack-value is 64.*1024/);
  } finally {
    await redis.config('SET', 'hash-max-listpack-value', '1024');
  }
});
