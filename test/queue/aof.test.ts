// What the batch writer waits for before it commits: Redis has written to its AOF everything it
// held, and is still the Redis the entries came from. A write of tens of megabytes makes the next
// background fsync long, and with `appendfsync everysec` Redis postpones its AOF writes behind it
// while answering; the wait must outlast that. Real Redis, its own AOF read back from the disk.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { startLocalRedis } from '../../src/infra/local-redis.js';
import type { LocalRedis } from '../../src/infra/local-redis.js';
import { RedisRestartedError, aofWritten, runIdOf } from '../../src/queue/aof.js';

describe('aofWritten', () => {
  let dir: string;
  let server: LocalRedis;
  let redis: Redis;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mb-aof-'));
    server = await startLocalRedis({ dir, appendfsync: 'everysec' });
    redis = new Redis(server.url, { maxRetriesPerRequest: null });
    redis.on('error', () => undefined);
    // No rewrite moves what is written into a new base file while the test reads the AOF.
    await redis.config('SET', 'auto-aof-rewrite-percentage', '0');
  });
  after(async () => {
    redis.disconnect();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Everything in the AOF files on disk. */
  const onDisk = (): string => {
    const aofDir = join(dir, 'appendonlydir');
    return readdirSync(aofDir)
      .map((f) => readFileSync(join(aofDir, f), 'latin1'))
      .join('');
  };

  it('returns once what Redis held is in the AOF file, also behind a long fsync', async () => {
    const runId = await runIdOf(redis);
    const big = 'x'.repeat(32 * 1024 * 1024);
    for (let round = 0; round < 4; round++) {
      await redis.set(`big-${round % 2}`, big);
      const markers = Array.from({ length: 20 }, (_, i) => `marker-${round}-${i}-${Date.now()}`);
      for (const m of markers) await redis.set(m, '1');
      await aofWritten(redis, runId);
      const text = onDisk();
      for (const m of markers) assert.ok(text.includes(m), `${m} is in the AOF`);
    }
  });

  it('refuses once another Redis answers: a restart, or a run_id not its own', async () => {
    const runId = await runIdOf(redis);
    await assert.rejects(aofWritten(redis, 'another'), RedisRestartedError);
    await server.restart();
    await assert.rejects(aofWritten(redis, runId), RedisRestartedError);
    const now = await runIdOf(redis);
    assert.notEqual(now, runId);
    await redis.set('after', '1');
    await aofWritten(redis, now);
  });
});
