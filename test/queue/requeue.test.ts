// With `appendfsync everysec` Redis answers a script before its AOF write whenever a background
// fsync is still running; killed in that moment, it restarts without orders the gateway had
// already answered 201. The gateway queues again what it accepted in the seconds before the
// connection broke: once each, and only what Redis lost. Real Redis, killed with SIGKILL; the lost
// tail is made by cutting its AOF back to where it stood, as a postponed write leaves it.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { Redis } from 'ioredis';
import { startLocalRedis } from '../../src/infra/local-redis.js';
import type { LocalRedis } from '../../src/infra/local-redis.js';
import { OrderQueue } from '../../src/queue/order-queue.js';
import type { RequeueReport } from '../../src/queue/recent-accepts.js';
import type { OrderState } from '../../src/queue/records.js';
import { order, sleep } from './orders.js';

let server: LocalRedis;
let dir: string;
let redis: Redis;
let direct: Redis;
let queue: OrderQueue;
const reports: RequeueReport[] = [];

/** The AOF file Redis appends to (Redis 7 keeps a base file and an increment). */
function incrementFile(): string {
  const aofDir = join(dir, 'appendonlydir');
  const name = readdirSync(aofDir).find((f) => f.endsWith('.incr.aof'));
  assert.ok(name !== undefined, `no incremental AOF in ${aofDir}`);
  return join(aofDir, name);
}

async function until(what: string, ok: () => boolean | Promise<boolean>): Promise<void> {
  const limit = Date.now() + 15_000;
  while (!(await ok())) {
    if (Date.now() > limit) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mb-requeue-'));
  server = await startLocalRedis({ dir, appendfsync: 'everysec' });
  // As the gateway's client: no offline queue, a command timeout, reconnects.
  redis = new Redis(server.url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 1_000,
    enableAutoPipelining: false,
    lazyConnect: true,
  });
  redis.on('error', () => undefined);
  await redis.connect();
  direct = new Redis(server.url, { lazyConnect: true });
  direct.on('error', () => undefined);
  queue = new OrderQueue(redis, {
    prefix: 'mb',
    shards: 1,
    highWater: 1_000,
    idempotencyTtlS: 60,
    onRequeue: (r) => reports.push(r),
  });
});
after(async () => {
  redis.disconnect();
  direct.disconnect();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

const streamIds = async (): Promise<string[]> => {
  const entries = await direct.xrange(queue.shards[0]?.orders as string, '-', '+');
  return entries.map(([, fields]) => {
    const command = JSON.parse(fields[1] as string) as { order: OrderState };
    return command.order.id;
  });
};

it('a reconnect to the same Redis queues nothing again', async () => {
  const kept = [order(1), order(2)];
  for (const o of kept) assert.equal((await queue.submit(o, Date.now() + 750)).kind, 'accepted');
  await direct.connect();
  const before = await streamIds();
  // The gateway's connection is closed under it; the client reconnects to the same server.
  await direct.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
  await until('the reconnect', () => redis.status === 'ready');
  await sleep(200);
  await queue.requeued();
  assert.deepEqual(reports, []);
  assert.deepEqual(await streamIds(), before);
});

it('queues again, once each, the accepted orders a restarted Redis lost', async () => {
  const survived = [order(3), order(4), order(5)];
  for (const o of survived) {
    assert.equal((await queue.submit(o, Date.now() + 750)).kind, 'accepted');
  }
  // Where the AOF stood: Redis wrote it before answering (no fsync was in progress here).
  await sleep(50);
  const aof = incrementFile();
  const cut = statSync(aof).size;
  const lost = [order(6), order(7), order(8), order(9)];
  for (const o of lost) assert.equal((await queue.submit(o, Date.now() + 750)).kind, 'accepted');
  await sleep(50);
  assert.ok(statSync(aof).size > cut);

  server.kill('SIGKILL');
  await server.exited();
  // The writes of the last four, postponed behind a slow fsync, never reached the file.
  truncateSync(aof, cut);
  await server.restart();
  await direct.quit().catch(() => undefined);
  direct = new Redis(server.url);
  const restarted = await streamIds();
  for (const o of lost) assert.ok(!restarted.includes(o.id), 'the cut AOF still holds an order');

  await until('the re-queue report', () => reports.length > 0);
  await queue.requeued();
  assert.equal(reports.length, 1);
  const [report] = reports as [RequeueReport];
  assert.deepEqual(
    report.requeued,
    lost.map((o) => o.id),
  );
  // The earlier orders (accepted within the window too) were found where they were.
  assert.ok(report.present >= survived.length, `${report.present} found`);
  assert.deepEqual(report.superseded, []);
  assert.deepEqual(report.failed, []);

  const ids = await streamIds();
  const queued = 2 + survived.length + lost.length;
  assert.equal(ids.length, queued);
  assert.equal(new Set(ids).size, ids.length, 'an order is in the stream twice');
  for (const o of [...survived, ...lost]) {
    assert.ok(ids.includes(o.id), `${o.id} is not queued`);
    assert.equal(await direct.hget(queue.shards[0]?.order(o.id) as string, 's'), 'PENDING');
  }
  // Submitted again by a client that never got its answer: the same order, not a second one.
  const again = await queue.submit(lost[0] as OrderState, Date.now() + 750);
  assert.equal(again.kind, 'accepted');
  assert.equal((await streamIds()).length, queued);
});
