// The writer's backlog as XINFO tells it: nothing left once the group has been given the stream's
// last id, whatever Redis's `lag` says — it can be stale (seen after a restart from the AOF, and
// made here with XGROUP SETID … ENTRIESREAD) — and never more than the ids left. And the trim
// below an id: exact, in calls of bounded size.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { Redis } from 'ioredis';
import { WRITER_GROUP } from '../../src/queue/keys.js';
import { TRIM_STEP, trimBelow, writerBacklog, writerGroup } from '../../src/queue/stream-info.js';
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

it('trims exactly below an id, never more than a step and a node per call', async () => {
  const key = `${stream}:trim`;
  const total = 2_000;
  const [, nodeEntries] = (await redis.config('GET', 'stream-node-max-entries')) as [
    string,
    string,
  ];
  for (let from = 1; from <= total; from += 500) {
    const batch = redis.pipeline();
    for (let seq = from; seq < from + 500; seq++) batch.xadd(key, `0-${seq}`, 'c', `{"n":${seq}}`);
    await batch.exec();
  }
  // Each call's count of removed entries, from the real server's replies.
  const perCall: number[] = [];
  const xtrim = redis.xtrim.bind(redis) as (...args: unknown[]) => Promise<number>;
  const spied = Object.assign(Object.create(redis) as Redis, {
    xtrim: async (...args: unknown[]) => {
      const n = await xtrim(...args);
      perCall.push(n);
      return n;
    },
  });
  // 1,234 falls inside a node: the entries below it in that node go too, and no entry above.
  assert.equal(await trimBelow(spied, key, '0-1234'), 1233);
  const first = (await redis.xrange(key, '-', '+', 'COUNT', 1)) as [string, string[]][];
  assert.equal(first[0]?.[0], '0-1234');
  assert.equal(await redis.xlen(key), total - 1233);
  assert.ok(perCall.length > 1233 / TRIM_STEP, `calls: ${perCall.join(', ')}`);
  assert.ok(
    Math.max(...perCall) <= Math.max(TRIM_STEP, Number(nodeEntries)),
    `calls: ${perCall.join(', ')}`,
  );

  // Nothing below the id: nothing removed.
  assert.equal(await trimBelow(redis, key, '0-1234'), 0);
  assert.equal(await redis.xlen(key), total - 1233);
  await redis.del(key);
});
