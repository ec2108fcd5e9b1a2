// skip-written-2.lua against a real Redis: the writer's group on an order stream moves past
// entries whose outcomes are written — only forward, never from below the kept bound, never past
// what the group was delivered of the event stream — and the lag Redis reports stays exact.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { Redis } from 'ioredis';
import { WRITER_GROUP, shardKeys } from '../../src/queue/keys.js';
import { writerGroup } from '../../src/queue/stream-info.js';
import { withWriterScripts } from '../../src/writer/batch-writer.js';
import type { SkipScript } from '../../src/writer/batch-writer.js';
import { freshRedis } from '../support/services.js';

let r: Awaited<ReturnType<typeof freshRedis>>;
let redis: Redis & SkipScript;
const stream = () => shardKeys(r.prefix, 0).orders;
const events = () => shardKeys(r.prefix, 0).events;
const skip = (kept: number, target: number) =>
  redis.mbSkipWritten(stream(), events(), WRITER_GROUP, kept, target);
const eventsDelivered = (seq: number) => redis.xgroup('SETID', events(), WRITER_GROUP, `0-${seq}`);

before(async () => {
  r = await freshRedis();
  redis = withWriterScripts(r.redis);
});
after(async () => {
  await r.cleanup();
});

async function group(): Promise<{ delivered: string; lag: unknown; pending: number }> {
  const g = (await writerGroup(redis, stream())) as Record<string, unknown>;
  return { delivered: String(g['last-delivered-id']), lag: g.lag, pending: Number(g.pending) };
}

it('moves the group forward only, from at or past the kept bound, with an exact lag', async () => {
  const pipeline = redis.pipeline();
  for (let seq = 1; seq <= 600; seq++) pipeline.xadd(stream(), `0-${seq}`, 'c', `{"n":${seq}}`);
  await pipeline.exec();
  await redis.xgroup('CREATE', stream(), WRITER_GROUP, '0');
  await redis.xgroup('CREATE', events(), WRITER_GROUP, '0', 'MKSTREAM');
  await eventsDelivered(400);

  // PLACEs at or below 1 must be read: nothing moves while the group stands below.
  assert.equal(await skip(1, 500), 0);
  assert.deepEqual(await group(), { delivered: '0-0', lag: 600, pending: 0 });

  // Read up to 0-1, then pass over 2..400 unread: not to 500, past the outcomes delivered here.
  await redis.xreadgroup('GROUP', WRITER_GROUP, 'w', 'COUNT', 1, 'STREAMS', stream(), '>');
  assert.equal(await skip(1, 500), 399);
  assert.deepEqual(await group(), { delivered: '0-400', lag: 200, pending: 1 });

  // Never backwards, never past the end.
  await eventsDelivered(700);
  assert.equal(await skip(0, 300), 0);
  assert.equal(await skip(0, 10_000), 200);
  assert.deepEqual(await group(), { delivered: '0-600', lag: 0, pending: 1 });

  // What comes next is delivered as usual.
  await redis.xadd(stream(), '0-601', 'c', '{"n":601}');
  assert.equal((await group()).lag, 1);
  const next = (await redis.xreadgroup('GROUP', WRITER_GROUP, 'w', 'STREAMS', stream(), '>')) as [
    string,
    [string, string[]][],
  ][];
  assert.deepEqual(
    next[0]?.[1].map(([id]) => id),
    ['0-601'],
  );
});
