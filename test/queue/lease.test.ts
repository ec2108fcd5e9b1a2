// A shard's lease (src/queue/lease.ts) on its own: its term tells a holder whether the lease was
// taken anew, so that another may have held it in between, though this holder's view never lapsed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { ShardLease } from '../../src/queue/lease.js';
import { freshRedis } from '../support/services.js';
import { quietLogger, sleep, waitFor } from '../engine-service/helpers.js';

describe('shard lease', () => {
  let redis: Redis;
  let prefix: string;
  let cleanup: () => Promise<void>;
  before(async () => {
    const r = await freshRedis();
    ({ redis, prefix } = r);
    cleanup = () => r.cleanup();
  });
  after(async () => {
    await cleanup();
  });

  const lease = (key: string, id?: string): ShardLease =>
    new ShardLease({
      redis,
      key,
      // Renewed every second: a renewal late by two seconds, on a busy machine, is a lapse.
      ms: 3_000,
      role: 'writer',
      idSetting: 'WRITER_LEASE_ID',
      ...(id === undefined ? {} : { id }),
      logger: quietLogger(),
      onChange: () => undefined,
    });

  it('keeps its term while renewed, and counts one more each time it is taken anew', async () => {
    const key = `${prefix}:{s0}:writer-lease`;
    const l = lease(key);
    l.start();
    try {
      await waitFor('taken', () => l.held());
      assert.equal(l.term, 1);
      assert.equal(await redis.get(key), l.fence, 'the key holds its value');
      // Renewed a few times (every second): the same term.
      await sleep(2_500);
      assert.equal(l.term, 1);
      // Another takes it and gives it up between two renewals: taken anew.
      await redis.set(key, 'another', 'PX', 60_000);
      await waitFor('lost', () => !l.held());
      await redis.del(key);
      await waitFor('taken again', () => l.held());
      assert.equal(l.term, 2);
      // Gone from Redis (expired, say) between two renewals, unseen here: taken anew as well.
      await redis.del(key);
      await waitFor('taken anew', () => l.term === 3);
      assert.equal(await redis.get(key), l.fence);
      assert.ok(l.held());
    } finally {
      await l.stop();
    }
    assert.equal(await redis.exists(key), 0, 'given up at the stop');
  });

  it('takes a lease held under its id anew: the dead process’s, not its own', async () => {
    const key = `${prefix}:{s1}:writer-lease`;
    await redis.set(key, 'host-a|the-dead-one', 'PX', 60_000);
    const l = lease(key, 'host-a');
    l.start();
    try {
      await waitFor('taken back', () => l.held());
      assert.equal(l.term, 1);
      assert.match(l.fence, /^host-a\|/);
      assert.notEqual(l.fence, 'host-a|the-dead-one');
    } finally {
      await l.stop();
    }
  });
});
