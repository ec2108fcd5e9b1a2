// The writer's backlog as XINFO tells it: nothing left once the group has been given the stream's
// last id, whatever Redis's `lag` says — it can be stale (seen after a restart from the AOF, and
// made here with XGROUP SETID … ENTRIESREAD) — and never more than the ids left.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { Redis } from 'ioredis';
import { WRITER_GROUP } from '../../src/queue/keys.js';
import { writerBacklog, writerGroup } from '../../src/queue/stream-info.js';
import { freshRedis } from '../support/services.js';

let redis: Redis;
let stream: string;
let cleanup: () => Promise<void>;
before(async () => {
  const r = await freshRedis();
  redis = r.redis;
  stream = `{${r.prefix}s0}:orders`;
  cleanup = () => r.cleanup();
});
after(async () => {
  await cleanup();
});

it('counts pending and undelivered entries, and no stale lag once all is delivered', async () => {
  await redis.xgroup('CREATE', stream, WRITER_GROUP, '0', 'MKSTREAM');
  for (let seq = 1; seq <= 5; seq++) await redis.xadd(stream, `0-${seq}`, 'c', '{}');
  assert.equal(await writerBacklog(redis, stream), 5);

  const read = (await redis.xreadgroup(
    'GROUP',
    WRITER_GROUP,
    'w',
    'COUNT',
    3,
    'STREAMS',
    stream,
    '>',
  )) as [string, [string, string[]][]][];
  const ids = (read[0]?.[1] ?? []).map(([id]) => id);
  assert.equal(ids.length, 3);
  // Three delivered and pending, two never delivered.
  assert.equal(await writerBacklog(redis, stream), 5);
  await redis.xack(stream, WRITER_GROUP, ...ids);
  assert.equal(await writerBacklog(redis, stream), 2);

  // Everything delivered and acknowledged, but Redis's count of entries read is wrong.
  await redis.xgroup('SETID', stream, WRITER_GROUP, '$', 'ENTRIESREAD', 0);
  assert.equal((await writerGroup(redis, stream))?.lag, 5, 'Redis should report the stale lag');
  assert.equal(await writerBacklog(redis, stream), 0);

  // New entries after it: counted by their ids, not by the stale lag (5 + 2).
  for (let seq = 6; seq <= 7; seq++) await redis.xadd(stream, `0-${seq}`, 'c', '{}');
  assert.equal(await writerBacklog(redis, stream), 2);
});
