import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { WriteCoalescer } from '../../src/queue/write-coalescer.js';
import { freshRedis } from '../support/services.js';

describe('WriteCoalescer', () => {
  let redis: Redis;
  let prefix: string;
  let cleanup: () => Promise<void>;

  before(async () => {
    const r = await freshRedis();
    redis = r.redis;
    prefix = r.prefix;
    cleanup = () => r.cleanup();
  });
  after(() => cleanup());

  it('writes a lone command at once, without corking the socket', async () => {
    const writes = new WriteCoalescer(redis);
    const reply = writes.send(() => redis.incr(`${prefix}:lone`));
    assert.equal(redis.stream.writableCorked, 0);
    assert.equal(await reply, 1);
  });

  it('sends the commands of one turn in one write while others are in flight', async () => {
    const writes = new WriteCoalescer(redis);
    const first = writes.send(() => redis.incr(`${prefix}:n`));
    const rest = Array.from({ length: 99 }, () => writes.send(() => redis.incr(`${prefix}:n`)));
    assert.equal(redis.stream.writableCorked, 1, 'corked behind the first');
    const replies = await Promise.all([first, ...rest]);
    assert.deepEqual(
      replies.sort((a, b) => a - b),
      Array.from({ length: 100 }, (_, i) => i + 1),
      'every command ran once and got its own reply',
    );
    assert.equal(redis.stream.writableCorked, 0, 'uncorked after the turn');
    assert.equal(await writes.send(() => redis.get(`${prefix}:n`)), '100');
  });
});
