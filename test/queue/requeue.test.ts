// With `appendfsync everysec` Redis answers a script before its AOF write whenever a background
// fsync is still running; killed in that moment, it restarts without orders the gateway had
// already answered 201. The gateway queues again what it accepted in the seconds before the
// connection broke: once each, and only what Redis lost. Real Redis, killed with SIGKILL; the lost
// tail is made by cutting its AOF back to where it stood, as a postponed write leaves it.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { Redis } from 'ioredis';
import { v7 as uuidv7 } from 'uuid';
import { finishedOrders } from '../../src/db/orders.js';
import { createUser, setUserHalt } from '../../src/db/users.js';
import { startLocalRedis } from '../../src/infra/local-redis.js';
import type { LocalRedis } from '../../src/infra/local-redis.js';
import { layoutKey, shardLayout } from '../../src/queue/keys.js';
import { restoreHalts } from '../../src/queue/halts.js';
import { OrderQueue } from '../../src/queue/order-queue.js';
import type { MassCancel, MassCancelResult, SubmitResult } from '../../src/queue/order-queue.js';
import type { RequeueReport } from '../../src/queue/recent-accepts.js';
import type { OrderState } from '../../src/queue/records.js';
import { arrange, orderState, putOrder } from '../db/fixtures.js';
import { freshDatabase } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';
import { waitFor } from '../engine-service/helpers.js';
import { order, sleep } from './orders.js';

const WINDOW_MS = 2_000;
let server: LocalRedis;
let dir: string;
let redis: Redis;
let direct: Redis;
let queue: OrderQueue;
let db: TestDatabase;
/** PostgreSQL takes the question and never answers. */
let hang = false;
const reports: RequeueReport[] = [];

/** The AOF file Redis appends to (Redis 7 keeps a base file and an increment). */
function incrementFile(): string {
  const aofDir = join(dir, 'appendonlydir');
  const name = readdirSync(aofDir).find((f) => f.endsWith('.incr.aof'));
  assert.ok(name !== undefined, `no incremental AOF in ${aofDir}`);
  return join(aofDir, name);
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
  db = await freshDatabase();
  queue = new OrderQueue(redis, {
    prefix: 'mb',
    shards: 1,
    highWater: 1_000,
    idempotencyTtlS: 60,
    onRequeue: (r) => reports.push(r),
    requeueWindowMs: WINDOW_MS,
    // The shard layout, put back as a gateway with one shard would find it.
    restoreLayout: () => redis.set(layoutKey('mb'), shardLayout(1)),
    restoreHalts: () => restoreHalts(redis, db.sql, 'mb'),
    // So short that every restart here counts as a long outage: PostgreSQL is always asked.
    finished: {
      orders: (ids) =>
        hang ? new Promise<Set<string>>(() => undefined) : finishedOrders(db.sql, ids),
      expireAfterMs: 1_000,
    },
  });
});
after(async () => {
  redis.disconnect();
  direct.disconnect();
  await db.drop();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The stream's commands: the ids of the orders placed, and of those canceled, in stream order. */
const commands = async (): Promise<{ placed: string[]; canceled: string[] }> => {
  const entries = await direct.xrange(queue.shards[0]?.orders as string, '-', '+');
  const out = { placed: [] as string[], canceled: [] as string[] };
  for (const [, fields] of entries) {
    const c = JSON.parse(fields[1] as string) as {
      k: string;
      order?: OrderState;
      order_id?: string;
    };
    if (c.k === 'place') out.placed.push((c.order as OrderState).id);
    else if (c.k === 'cancel') out.canceled.push(c.order_id as string);
  }
  return out;
};
const streamIds = async (): Promise<string[]> => (await commands()).placed;

it('a reconnect to the same Redis queues nothing again', async () => {
  const kept = [order(1), order(2)];
  for (const o of kept) assert.equal((await queue.submit(o, Date.now() + 750)).kind, 'accepted');
  await direct.connect();
  const before = await streamIds();
  // The gateway's connection is closed under it; the client reconnects to the same server.
  const reconnected = once(redis, 'ready');
  await direct.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
  await reconnected;
  await sleep(0); // the check's INFO is queued behind the 'ready' handlers
  await queue.requeued();
  assert.deepEqual(reports, []);
  assert.deepEqual(await streamIds(), before);
});

/**
 * Until Redis has written out its AOF buffer. With `appendfsync everysec` it answers first and
 * postpones the write, up to 2 s, while a background fsync runs: on a slow disk a fixed pause
 * read the file's size before orders already answered were in it.
 */
async function aofWritten(): Promise<void> {
  await waitFor(
    'the AOF buffer written',
    async () => /^aof_buffer_length:0\r?$/m.test(await direct.info('persistence')),
    5_000,
  );
}

/**
 * kill -9, the AOF cut back to `size` bytes (writes postponed behind a slow fsync), restart.
 * Returns the cut AOF's text, read before the restart: what Redis starts from. (The stream read
 * after the restart would race the gateway's re-queue, which may already have sent the lost.)
 */
async function crashLosingTail(aof: string, size: number): Promise<string> {
  server.kill('SIGKILL');
  await server.exited();
  truncateSync(aof, size);
  const kept = readFileSync(aof, 'utf8');
  await server.restart();
  direct.disconnect();
  direct = new Redis(server.url);
  direct.on('error', () => undefined);
  return kept;
}

it('queues again, once each, the accepted orders a restarted Redis lost', async () => {
  // Accepted longer than the window (2 s here) before the break: not sent again.
  const old = [order(10), order(11)];
  for (const o of old) assert.equal((await queue.submit(o, Date.now() + 750)).kind, 'accepted');
  await sleep(WINDOW_MS + 1_000);
  const survived = [order(3), order(4), order(5)];
  for (const o of survived) {
    assert.equal((await queue.submit(o, Date.now() + 750)).kind, 'accepted');
  }
  // Where the AOF stands once Redis has written out what it answered.
  await aofWritten();
  const aof = incrementFile();
  const cut = statSync(aof).size;
  const lost = [order(6), order(7), order(8), order(9)];
  for (const o of lost) assert.equal((await queue.submit(o, Date.now() + 750)).kind, 'accepted');
  await aofWritten();
  assert.ok(statSync(aof).size > cut);
  await sleep(1_000);

  const kept = await crashLosingTail(aof, cut);
  for (const o of lost) assert.ok(!kept.includes(o.id), 'the cut AOF still holds an order');
  await waitFor('the re-queue report', () => reports.length > 0, 15_000);
  await queue.requeued();
  const requeuedAt = Date.now();
  assert.equal(reports.length, 1);
  assert.deepEqual(reports[0], {
    requeued: lost.map((o) => o.id),
    cancels: [],
    replaces: [],
    massCancels: [],
    cancelAfters: [],
    present: survived.length,
    finished: [],
    unchecked: 0,
    superseded: [],
    failed: [],
  });

  const ids = await streamIds();
  const queued = 2 + old.length + survived.length + lost.length;
  assert.equal(ids.length, queued);
  assert.equal(new Set(ids).size, ids.length, 'an order is in the stream twice');
  for (const o of [...old, ...survived, ...lost]) {
    assert.ok(ids.includes(o.id), `${o.id} is not queued`);
    assert.equal(await direct.hget(queue.shards[0]?.order(o.id) as string, 's'), 'PENDING');
  }
  // Submitted again by a client that never got its answer: the same order, not a second one.
  const again = await queue.submit(lost[0] as OrderState, Date.now() + 750);
  assert.equal(again.kind, 'accepted');
  assert.equal((await streamIds()).length, queued);

  // The new Redis loses the re-queued writes too, more than the window after their first
  // accept: they are in the window again from when they were re-queued.
  await sleep(Math.max(0, requeuedAt + 1_200 - Date.now()));
  await crashLosingTail(aof, cut);
  await waitFor('the second report', () => reports.length > 1, 15_000);
  await queue.requeued();
  assert.deepEqual(reports[1], {
    requeued: lost.map((o) => o.id),
    cancels: [],
    replaces: [],
    massCancels: [],
    cancelAfters: [],
    present: 0,
    finished: [],
    unchecked: 0,
    superseded: [],
    failed: [],
  });
  const afterSecond = await streamIds();
  assert.equal(new Set(afterSecond).size, afterSecond.length, 'an order is in the stream twice');
  for (const o of lost) assert.ok(afterSecond.includes(o.id), `${o.id} is not queued`);
});

it('sends again the cancels Redis lost, after their orders', async () => {
  const [a, b, c] = [order(21), order(22), order(23)];
  for (const o of [a, b]) assert.equal((await queue.submit(o, Date.now() + 750)).kind, 'accepted');
  await aofWritten();
  const aof = incrementFile();
  const cut = statSync(aof).size;
  // Lost: the cancel of an order that survived, and an order placed and canceled.
  const cancel = async (o: OrderState): Promise<void> => {
    const r = await queue.cancel(o.id, o.user_id, o.owner_no, new Date());
    assert.equal(r.kind, 'queued');
  };
  await cancel(a);
  assert.equal((await queue.submit(c, Date.now() + 750)).kind, 'accepted');
  await cancel(c);
  await aofWritten();
  assert.ok(readFileSync(aof, 'utf8').includes('"k":"cancel"'), 'the AOF holds the cancels');
  const seen = reports.length;

  const kept = await crashLosingTail(aof, cut);
  assert.ok(!kept.includes('"k":"cancel"'), 'the cut AOF still holds a cancel');
  assert.ok(!kept.includes(c.id), 'the cut AOF still holds the order placed after the cut');
  await waitFor('the re-queue report', () => reports.length > seen, 15_000);
  await queue.requeued();
  const report = reports[seen] as RequeueReport;
  assert.deepEqual(report.requeued, [c.id]);
  assert.deepEqual(report.cancels, [a.id, c.id]);
  assert.deepEqual(report.failed, []);
  const after = await commands();
  assert.deepEqual(after.canceled, [a.id, c.id]);
  // c's cancel follows c in the stream, as they were accepted.
  const entries = await direct.xrange(queue.shards[0]?.orders as string, '-', '+');
  const at = (k: string, id: string): number =>
    entries.findIndex(([, f]) => {
      const x = JSON.parse(f[1] as string) as { k: string; order?: OrderState; order_id?: string };
      return x.k === k && (x.order?.id ?? x.order_id) === id;
    });
  assert.ok(at('place', c.id) < at('cancel', c.id));
});

it('sends again a mass cancel Redis lost, in its place among the orders, and never one it kept', async () => {
  const [a, b, c] = [order(31), order(32), order(33)];
  const mass = (side?: 'BUY' | 'SELL'): MassCancel => ({
    id: uuidv7(),
    userId: a.user_id,
    ownerNo: a.owner_no,
    ...(side === undefined ? {} : { side }),
    at: new Date(),
  });
  const cancelAll = async (m: MassCancel): Promise<void> =>
    assert.equal((await queue.cancelAll(m, Date.now() + 750)).kind, 'queued');
  assert.equal((await queue.submit(a, Date.now() + 750)).kind, 'accepted');
  // Kept: in the window, but in Redis after the restart, so not queued twice.
  const kept = mass();
  await cancelAll(kept);
  await aofWritten();
  const aof = incrementFile();
  const cut = statSync(aof).size;
  // Lost: an order, a mass cancel of the buys, an order after it.
  assert.equal((await queue.submit(b, Date.now() + 750)).kind, 'accepted');
  const lost = mass('BUY');
  await cancelAll(lost);
  assert.equal((await queue.submit(c, Date.now() + 750)).kind, 'accepted');
  await aofWritten();
  const seen = reports.length;

  const left = await crashLosingTail(aof, cut);
  assert.ok(!left.includes(lost.id), 'the cut AOF still holds the lost mass cancel');
  await waitFor('the re-queue report', () => reports.length > seen, 15_000);
  await queue.requeued();
  const report = reports[seen] as RequeueReport;
  assert.deepEqual(report.requeued, [b.id, c.id]);
  assert.deepEqual(report.massCancels, [lost.id]);
  assert.deepEqual(report.failed, []);
  // The stream: a, the kept mass cancel once (an entry per side), b, the lost one's BUY entry
  // alone, then c.
  const entries = await direct.xrange(queue.shards[0]?.orders as string, '-', '+');
  const stream = entries.map(([, f]) => {
    const x = JSON.parse(f[1] as string) as {
      k: string;
      order?: OrderState;
      id?: string;
      side?: string;
    };
    return x.k === 'place' ? (x.order as OrderState).id : `${x.k} ${x.id} ${x.side}`;
  });
  // This test's entries (an earlier test's cancels, still in the window, are sent again too).
  const ours = (e: string): boolean => [a.id, b.id, c.id].includes(e) || e.startsWith('cancel_all');
  const tail = stream.slice(stream.indexOf(a.id)).filter(ours);
  assert.deepEqual(tail, [
    a.id,
    `cancel_all ${kept.id} BUY`,
    `cancel_all ${kept.id} SELL`,
    b.id,
    `cancel_all ${lost.id} BUY`,
    c.id,
  ]);
});

it('writes again a cancel-all-after Redis lost, and never over one it kept', async () => {
  const [u, v] = [uuidv7(), uuidv7()];
  // Kept: u's switch armed (in the window, so sent again, and found there).
  await queue.setCancelAfter(u, 41, 60_000);
  await aofWritten();
  const aof = incrementFile();
  const cut = statSync(aof).size;
  // Lost: u's disarm, and v's arm.
  await queue.setCancelAfter(u, 41, 0);
  const armed = await queue.setCancelAfter(v, 42, 30_000);
  assert.equal(armed.kind, 'set');
  await aofWritten();
  const seen = reports.length;

  const left = await crashLosingTail(aof, cut);
  assert.ok(!left.includes(v), 'the cut AOF still holds the lost arm');
  await waitFor('the re-queue report', () => reports.length > seen, 15_000);
  await queue.requeued();
  const report = reports[seen] as RequeueReport;
  assert.deepEqual(report.cancelAfters, [u, v]);
  assert.deepEqual(report.failed, []);
  // u disarmed, as last set; v armed, counting down again from its return (the outage was not
  // its client's), so no earlier than it was answered.
  assert.equal((await queue.cancelAfter.get(u)).timeoutMs, 0);
  const back = await queue.cancelAfter.get(v);
  assert.equal(back.timeoutMs, 30_000);
  const answered = armed.kind === 'set' ? armed.state.triggerAt : undefined;
  assert.ok((back.triggerAt?.getTime() ?? 0) >= (answered?.getTime() ?? Infinity));
});

it('after a restart, a mass cancel follows the orders sent again, and an order a lost mass cancel', async () => {
  const a = order(34);
  // Orders of the same user as a.
  const [o, n] = [order(35), order(36)].map((x) => ({
    ...x,
    user_id: a.user_id,
    owner_no: a.owner_no,
  })) as [OrderState, OrderState];
  const mass = (side?: 'BUY' | 'SELL'): MassCancel => ({
    id: uuidv7(),
    userId: a.user_id,
    ownerNo: a.owner_no,
    ...(side === undefined ? {} : { side }),
    at: new Date(),
  });
  assert.equal((await queue.submit(a, Date.now() + 750)).kind, 'accepted');
  await aofWritten();
  const aof = incrementFile();
  const cut = statSync(aof).size;
  // Lost: an order, then a mass cancel.
  assert.equal((await queue.submit(o, Date.now() + 750)).kind, 'accepted');
  const lost = mass();
  assert.equal((await queue.cancelAll(lost, Date.now() + 750)).kind, 'queued');
  await aofWritten();
  const seen = reports.length;
  // The moment the connection is back, before the re-queue has sent anything: a mass cancel
  // (which must come after the lost order o, to cancel it) and an order (which must come after
  // the lost mass cancel, not to be canceled by it).
  const later = mass('SELL');
  const racing = new Promise<[SubmitResult, MassCancelResult]>((resolve) => {
    redis.once('ready', () => {
      const deadline = Date.now() + 2_000;
      resolve(Promise.all([queue.submit(n, deadline), queue.cancelAll(later, deadline)]));
    });
  });
  await crashLosingTail(aof, cut);
  const [placed, canceled] = await racing;
  assert.deepEqual([placed.kind, canceled.kind], ['accepted', 'queued']);
  await waitFor('the re-queue report', () => reports.length > seen, 15_000);
  const report = reports[seen] as RequeueReport;
  assert.deepEqual([report.requeued, report.massCancels], [[o.id], [lost.id]]);
  const entries = await direct.xrange(queue.shards[0]?.orders as string, '-', '+');
  const stream = entries.map(([, f]) => {
    const x = JSON.parse(f[1] as string) as { k: string; order?: OrderState; id?: string };
    return x.k === 'place' ? (x.order as OrderState).id : `${x.k} ${x.id}`;
  });
  const at = (what: string): number => stream.indexOf(what);
  assert.ok(at(o.id) >= 0 && at(o.id) < at(`cancel_all ${later.id}`), stream.join('\n'));
  assert.ok(at(`cancel_all ${lost.id}`) >= 0, stream.join('\n'));
  assert.ok(stream.lastIndexOf(`cancel_all ${lost.id}`) < at(n.id), stream.join('\n'));
});

it('refuses a halted user’s new orders and amends; after a restart puts a lost halt back first, and cancels an order taken before it', async () => {
  const u = await createUser(db.sql, 'halted');
  const mine = (x: OrderState): OrderState => ({ ...x, user_id: u.id, owner_no: u.no });
  const [a, b, c, d] = [order(41), order(42), order(43), order(44)].map(mine) as [
    OrderState,
    OrderState,
    OrderState,
    OrderState,
  ];
  const submit = async (o: OrderState): Promise<string> =>
    (await queue.submit(o, Date.now() + 750)).kind;
  const halt = async (halted: boolean): Promise<void> => {
    await setUserHalt(db.sql, u.id, halted);
    await queue.setHalted(u.id, halted);
  };
  assert.equal(await submit(a), 'accepted');
  await halt(true);
  assert.equal(await submit(b), 'halted');
  const amend = {
    orderId: a.id,
    userId: u.id,
    ownerNo: u.no,
    symbol: a.symbol,
    priceTicks: 0,
    quantityLots: 100,
    at: new Date(),
  };
  assert.equal((await queue.replace(amend, Date.now() + 750)).kind, 'halted');
  // Another user's order is taken; a cancel of the halted user's too.
  assert.equal(await submit(order(45)), 'accepted');
  assert.equal((await queue.cancel(a.id, u.id, u.no, new Date())).kind, 'queued');
  await halt(false);
  assert.equal(await submit(b), 'accepted');

  // Lost: an order, then the halt after it.
  await aofWritten();
  const aof = incrementFile();
  const cut = statSync(aof).size;
  assert.equal(await submit(c), 'accepted');
  await halt(true);
  await aofWritten();
  const seen = reports.length;
  // The first order on the new connection waits for the halts to be put back from PostgreSQL.
  const racing = new Promise<SubmitResult>((resolve) => {
    redis.once('ready', () => resolve(queue.submit(d, Date.now() + 2_000)));
  });
  await crashLosingTail(aof, cut);
  assert.equal((await racing).kind, 'halted');
  await waitFor('the re-queue report', () => reports.length > seen, 15_000);
  await queue.requeued();
  assert.deepEqual((reports[seen] as RequeueReport).requeued, [c.id]);
  // c, accepted before the halt, is queued again, and canceled right behind it.
  const entries = await direct.xrange(queue.shards[0]?.orders as string, '-', '+');
  const kinds = entries.map(([, f]) => {
    const x = JSON.parse(f[1] as string) as { k: string; order?: OrderState; order_id?: string };
    return `${x.k} ${x.order?.id ?? x.order_id}`;
  });
  const at = kinds.indexOf(`place ${c.id}`);
  assert.ok(at >= 0 && kinds[at + 1] === `cancel ${c.id}`, kinds.slice(at).join('\n'));
  await halt(false);
});

it('sends again only the amends Redis lost, never one that a later amend supersedes', async () => {
  await sleep(WINDOW_MS + 500); // the earlier tests' orders and cancels out of the window
  const a = order(31);
  assert.equal((await queue.submit(a, Date.now() + 750)).kind, 'accepted');
  const amend = async (priceTicks: number, o = a, quantityLots = 0): Promise<void> => {
    const r = await queue.replace(
      {
        orderId: o.id,
        userId: o.user_id,
        ownerNo: o.owner_no,
        symbol: o.symbol,
        priceTicks,
        quantityLots,
        at: new Date(),
      },
      Date.now() + 750,
    );
    assert.equal(r.kind, 'queued');
  };
  /** The order's amends in the stream, in stream order: price, and the engine id named. */
  const amendsOf = async (o: OrderState): Promise<[number, number][]> =>
    (await direct.xrange(queue.shards[0]?.orders as string, '-', '+')).flatMap(([, f]) => {
      const x = JSON.parse(f[1] as string) as {
        k: string;
        order_id?: string;
        price_ticks?: number;
        target_seq?: number;
      };
      return x.k === 'replace' && x.order_id === o.id
        ? [[x.price_ticks as number, x.target_seq as number] as [number, number]]
        : [];
    });
  const amends = async (): Promise<number[]> => (await amendsOf(a)).map(([price]) => price);
  const fieldsOf = async (o: OrderState): Promise<[number, number][]> =>
    (await direct.xrange(queue.shards[0]?.orders as string, '-', '+')).flatMap(([, f]) => {
      const x = JSON.parse(f[1] as string) as Record<string, unknown>;
      return x.k === 'replace' && x.order_id === o.id
        ? [[x.price_ticks as number, x.quantity_lots as number] as [number, number]]
        : [];
    });

  // Both amends survive: neither is sent again. (Sent blindly, the first would follow the
  // second and take the order back to its price.)
  await amend(101);
  await amend(102);
  await aofWritten();
  const aof = incrementFile();
  let seen = reports.length;
  await crashLosingTail(aof, statSync(aof).size);
  await waitFor('the re-queue report', () => reports.length > seen, 15_000);
  await queue.requeued();
  assert.deepEqual((reports[seen] as RequeueReport).replaces, []);
  assert.deepEqual(await amends(), [101, 102]);

  // The first of two survives, the second is lost: the second alone is sent again.
  await sleep(WINDOW_MS + 500);
  await amend(103);
  await aofWritten();
  const aof2 = incrementFile();
  const cut = statSync(aof2).size;
  await amend(104);
  await aofWritten();
  seen = reports.length;
  const kept = await crashLosingTail(aof2, cut);
  assert.ok(!kept.includes('"price_ticks":104'), 'the cut AOF still holds the second amend');
  await waitFor('the re-queue report', () => reports.length > seen, 15_000);
  await queue.requeued();
  assert.deepEqual((reports[seen] as RequeueReport).replaces, [a.id]);
  assert.deepEqual((reports[seen] as RequeueReport).failed, []);
  assert.deepEqual(await amends(), [101, 102, 103, 104]);

  // An order and its amend both lost, and the sequence numbers they had taken by others (another
  // gateway's accept, lost with them): the amend sent again names the order's new engine id.
  await sleep(WINDOW_MS + 500);
  const aof3 = incrementFile();
  await aofWritten();
  const cut3 = statSync(aof3).size;
  await direct.incr(queue.shards[0]?.seq as string);
  const b = order(32);
  assert.equal((await queue.submit(b, Date.now() + 750)).kind, 'accepted');
  const before = Number(await direct.hget(queue.shards[0]?.order(b.id) as string, 'q'));
  await amend(105, b);
  await aofWritten();
  seen = reports.length;
  await crashLosingTail(aof3, cut3);
  await waitFor('the re-queue report', () => reports.length > seen, 15_000);
  await queue.requeued();
  assert.deepEqual((reports[seen] as RequeueReport).requeued, [b.id]);
  assert.deepEqual((reports[seen] as RequeueReport).replaces, [b.id]);
  const now = Number(await direct.hget(queue.shards[0]?.order(b.id) as string, 'q'));
  assert.equal(now, before - 1);
  assert.deepEqual(await amendsOf(b), [[105, now]]);

  // Two amends lost, and while the re-queue waits for PostgreSQL a new amend of the quantity
  // through another gateway: the first is sent again with its price alone, the second (quantity
  // only) not at all. One through this gateway waits for the re-queue (past 2 s, a 503).
  await sleep(WINDOW_MS + 500);
  const c = order(33);
  assert.equal((await queue.submit(c, Date.now() + 750)).kind, 'accepted');
  await aofWritten();
  const aof4 = incrementFile();
  const cut4 = statSync(aof4).size;
  await amend(106, c, 40);
  await amend(0, c, 41);
  seen = reports.length;
  hang = true;
  try {
    const back = once(redis, 'ready');
    await crashLosingTail(aof4, cut4);
    await back;
    await assert.rejects(amend(0, c, 44), { name: 'RequeuePendingError' });
    const other = new OrderQueue(direct, {
      prefix: 'mb',
      shards: 1,
      highWater: 1_000,
      idempotencyTtlS: 60,
    });
    const r = await other.replace(
      {
        orderId: c.id,
        userId: c.user_id,
        ownerNo: c.owner_no,
        symbol: c.symbol,
        priceTicks: 0,
        quantityLots: 45,
        at: new Date(),
      },
      Date.now() + 750,
    );
    assert.equal(r.kind, 'queued');
    await queue.requeued();
  } finally {
    hang = false;
  }
  const report = reports[seen] as RequeueReport;
  assert.deepEqual([report.replaces, report.superseded], [[c.id], [c.id]]);
  assert.deepEqual(await fieldsOf(c), [
    [0, 45],
    [106, 0],
  ]);
});

it('after a long outage, does not queue again an order final in PostgreSQL that expired from Redis', async () => {
  await sleep(WINDOW_MS + 500); // the earlier tests' orders out of the window
  const { alice } = await arrange(db.sql);
  const [done, open, waiting] = [orderState(alice), orderState(alice), orderState(alice)];
  for (const o of [done, open, waiting]) {
    assert.equal((await queue.submit(o, Date.now() + 750)).kind, 'accepted');
  }
  // `done`: matched, final and written; its status hash expired (STATUS_TTL_S after the writer's
  // commit, while Redis was down). `open`: written resting, and then lost by Redis (which keeps
  // an open order's hash for good): it must be queued again.
  await putOrder(db.sql, {
    ...done,
    seq: 1,
    version: 2,
    status: 'CANCELED',
    reject_reason: 'IOC_REMAINDER',
  });
  await putOrder(db.sql, { ...open, seq: 2, version: 1, status: 'NEW' });
  for (const o of [done, open]) await direct.del(queue.shards[0]?.order(o.id) as string);
  await aofWritten();
  const aof = incrementFile();
  const seen = reports.length;

  await crashLosingTail(aof, statSync(aof).size);
  await waitFor('the re-queue report', () => reports.length > seen, 15_000);
  await queue.requeued();
  assert.deepEqual(reports[seen], {
    requeued: [open.id],
    cancels: [],
    replaces: [],
    massCancels: [],
    cancelAfters: [],
    present: 1,
    finished: [done.id],
    unchecked: 0,
    superseded: [],
    failed: [],
  });
  const placed = await streamIds();
  assert.equal(placed.filter((id) => id === done.id).length, 1, 'a finished order queued twice');
  assert.equal(placed.filter((id) => id === open.id).length, 2, 'the lost open order, again');
  assert.equal(placed.filter((id) => id === waiting.id).length, 1);
});

it('when PostgreSQL takes the question and never answers, lets Redis decide after 5 s', async () => {
  await sleep(WINDOW_MS + 500);
  const o = order(40);
  assert.equal((await queue.submit(o, Date.now() + 750)).kind, 'accepted');
  await aofWritten();
  const aof = incrementFile();
  const seen = reports.length;
  hang = true;
  try {
    await crashLosingTail(aof, statSync(aof).size);
    await waitFor('the re-queue report', () => reports.length > seen, 15_000);
    await queue.requeued();
  } finally {
    hang = false;
  }
  assert.deepEqual(reports[seen], {
    requeued: [],
    cancels: [],
    replaces: [],
    massCancels: [],
    cancelAfters: [],
    present: 1,
    finished: [],
    unchecked: 1,
    superseded: [],
    failed: [],
  });
});

it('sends again a cancel taken by one gateway once another has sent its lost order again', async () => {
  await sleep(WINDOW_MS + 500);
  // Gateway B, beside this one (A): its own connection, and no PostgreSQL to ask, so its re-queue
  // runs at once while A's waits for PostgreSQL.
  const b = new Redis(server.url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 1_000,
    enableAutoPipelining: false,
  });
  b.on('error', () => undefined);
  const reportsB: RequeueReport[] = [];
  const gatewayB = new OrderQueue(b, {
    prefix: 'mb',
    shards: 1,
    highWater: 1_000,
    idempotencyTtlS: 60,
    onRequeue: (r) => reportsB.push(r),
    requeueWindowMs: WINDOW_MS,
  });
  try {
    await once(b, 'ready');
    await aofWritten();
    const aof = incrementFile();
    const cut = statSync(aof).size;
    // Both lost: x, accepted by A, and its cancel, accepted by B.
    const x = order(60);
    assert.equal((await queue.submit(x, Date.now() + 750)).kind, 'accepted');
    assert.equal((await gatewayB.cancel(x.id, x.user_id, x.owner_no, new Date())).kind, 'queued');
    await aofWritten();
    hang = true;
    try {
      await crashLosingTail(aof, cut);
      // B finds x missing and keeps trying; A sends x again after its 5 s wait for PostgreSQL.
      await waitFor('B sends the cancel again', () => reportsB.length >= 2, 15_000);
      await queue.requeued();
    } finally {
      hang = false;
    }
    assert.deepEqual(
      reportsB.map((r) => [r.cancels, r.failed]),
      [
        [[], []],
        [[x.id], []],
      ],
    );
    const after = await commands();
    assert.deepEqual([after.placed.at(-1), after.canceled.at(-1)], [x.id, x.id]);
    const entries = await direct.xrange(queue.shards[0]?.orders as string, '-', '+');
    const last = (k: string): number => {
      let found = -1;
      entries.forEach(([, f], i) => {
        const c = JSON.parse(f[1] as string) as {
          k: string;
          order?: OrderState;
          order_id?: string;
        };
        if (c.k === k && (c.order?.id ?? c.order_id) === x.id) found = i;
      });
      return found;
    };
    assert.ok(last('place') < last('cancel'), 'the cancel follows its order');
  } finally {
    b.disconnect();
  }
});

it('a read or a cancel of a lost order waits for the re-queue rather than answer "no such order"', async () => {
  await sleep(WINDOW_MS + 500);
  await aofWritten();
  const aof = incrementFile();
  const cut = statSync(aof).size;
  const [o, p] = [order(50), order(51)];
  for (const x of [o, p]) assert.equal((await queue.submit(x, Date.now() + 750)).kind, 'accepted');
  await aofWritten();
  const seen = reports.length;

  // Asked the moment the gateway's connection is back, while the re-queue asks PostgreSQL.
  const ready = once(redis, 'ready');
  await crashLosingTail(aof, cut);
  await ready;
  const [read, cancel] = await Promise.all([
    queue.getOrder(o.id),
    queue.cancel(p.id, p.user_id, p.owner_no, new Date()),
  ]);
  assert.equal(read?.id, o.id);
  assert.equal(read?.status, 'PENDING');
  assert.equal(cancel.kind, 'queued');
  await queue.requeued();
  assert.deepEqual((reports[seen] as RequeueReport).requeued, [o.id, p.id]);
  // Queued once, after its order.
  const entries = (await direct.xrange(queue.shards[0]?.orders as string, '-', '+')).map(
    ([, f]) => JSON.parse(f[1] as string) as { k: string; order?: OrderState; order_id?: string },
  );
  const of = (k: string) =>
    entries.flatMap((x, i) => (x.k === k && (x.order?.id ?? x.order_id) === p.id ? [i] : []));
  assert.equal(of('place').length, 1);
  assert.equal(of('cancel').length, 1);
  assert.ok((of('place')[0] as number) < (of('cancel')[0] as number));

  // A re-queue that takes longer than the wait: unknown for now, not missing.
  await sleep(WINDOW_MS + 500);
  const q = order(52);
  await aofWritten();
  const cut2 = statSync(aof).size;
  assert.equal((await queue.submit(q, Date.now() + 750)).kind, 'accepted');
  await aofWritten();
  hang = true;
  try {
    const back = once(redis, 'ready');
    await crashLosingTail(aof, cut2);
    await back;
    await assert.rejects(queue.getOrder(q.id), { name: 'RequeuePendingError' });
    await queue.requeued();
  } finally {
    hang = false;
  }
  assert.equal((await queue.getOrder(q.id))?.id, q.id);
});
