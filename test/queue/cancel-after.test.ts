// The cancel-all-after switches (src/queue/cancel-after.ts) against real Redis: a switch claimed
// and not reported fired is claimed again once its lease runs out, and its mass cancel is queued
// once per shard however often it fires; one re-armed while being fired stays armed; and a switch
// sent again after a Redis restart is written only over an older one.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { pino } from 'pino';
import { CancelAfterSweeper } from '../../src/queue/cancel-after.js';
import { layoutKey, shardLayout } from '../../src/queue/keys.js';
import { OrderQueue } from '../../src/queue/order-queue.js';
import { freshRedis } from '../support/services.js';
import { waitFor } from '../engine-service/helpers.js';
import { sleep } from './orders.js';

let r: Awaited<ReturnType<typeof freshRedis>>;
let queue: OrderQueue;
before(async () => {
  r = await freshRedis();
  queue = new OrderQueue(r.redis, {
    prefix: r.prefix,
    shards: 2,
    highWater: 1_000,
    idempotencyTtlS: 60,
  });
  await r.redis.set(layoutKey(r.prefix), shardLayout(2));
});
after(() => r.cleanup());

const USER = '0190a1b2-0000-7000-8000-000000000001';

/** The mass-cancel entries on each shard's stream: `<id> <side>`. */
async function massCancels(): Promise<string[][]> {
  return Promise.all(
    queue.shards.map(async (k) =>
      (await r.redis.xrange(k.orders, '-', '+')).map(([, f]) => {
        const c = JSON.parse(f[1] as string) as { k: string; id: string; side: string };
        return `${c.k} ${c.id} ${c.side}`;
      }),
    ),
  );
}

it('fires a switch whose firing was cut short once its lease runs out, queuing its cancel once per shard', async () => {
  const { set } = await queue.cancelAfter.set(USER, 7, 1_000);
  assert.deepEqual((await queue.cancelAfter.due(100, 10)).due, [], 'due before its time');
  await sleep(1_100);
  // A gateway claims it with a short lease, queues its cancel, and dies before marking it fired.
  const first = await queue.cancelAfter.due(200, 10);
  assert.deepEqual(first.due, [set]);
  assert.deepEqual((await queue.cancelAfter.due(200, 10)).due, [], 'claimed twice in its lease');
  const fire = { id: set.fireId, userId: USER, ownerNo: 7, at: first.now };
  assert.equal((await queue.cancelAll(fire, Date.now() + 750)).kind, 'queued');

  // Another gateway's sweep takes it over after the lease: the cancel is there already.
  const sweeper = new CancelAfterSweeper(queue, pino({ level: 'silent' }), 50);
  sweeper.start();
  try {
    await waitFor(
      'the switch marked fired',
      async () => (await queue.cancelAfter.get(USER)).timeoutMs === 0,
      5_000,
    );
  } finally {
    await sweeper.stop();
  }
  const entries = [`cancel_all ${set.fireId} BUY`, `cancel_all ${set.fireId} SELL`];
  assert.deepEqual(await massCancels(), [entries, entries]);
  assert.deepEqual((await queue.cancelAfter.due(200, 10)).due, []);
});

it('leaves armed a switch re-armed while it was being fired', async () => {
  const user = '0190a1b2-0000-7000-8000-000000000002';
  await queue.cancelAfter.set(user, 8, 1_000);
  await sleep(1_100);
  const [claimed] = (await queue.cancelAfter.due(5_000, 10)).due;
  assert.ok(claimed !== undefined);
  const again = await queue.cancelAfter.set(user, 8, 60_000);
  assert.equal(await queue.cancelAfter.fired(claimed), false);
  const state = await queue.cancelAfter.get(user);
  assert.deepEqual([state.timeoutMs, state.triggerAt], [60_000, again.state.triggerAt]);
  // Its new trigger is what the sweep waits for: not due now.
  assert.deepEqual((await queue.cancelAfter.due(5_000, 10)).due, []);
});

it('writes a switch sent again only over an older one', async () => {
  const user = '0190a1b2-0000-7000-8000-000000000003';
  const armed = await queue.cancelAfter.set(user, 9, 30_000);
  const disarmed = await queue.cancelAfter.set(user, 9, 0);
  // Redis has both: the arm sent again changes nothing, nor does the disarm.
  assert.equal(await queue.cancelAfter.resend(armed.set), false);
  assert.equal(await queue.cancelAfter.resend(disarmed.set), false);
  assert.equal((await queue.cancelAfter.get(user)).timeoutMs, 0);

  // Redis lost both (its keys gone): each comes back in turn, as set.
  await r.redis.del(`${r.prefix}:cancel-after`, `${r.prefix}:cancel-after:due`);
  assert.equal(await queue.cancelAfter.resend(armed.set), true);
  const back = await queue.cancelAfter.get(user);
  assert.deepEqual([back.timeoutMs, back.triggerAt], [30_000, armed.state.triggerAt]);
  assert.equal(await queue.cancelAfter.resend(disarmed.set), true);
  assert.equal((await queue.cancelAfter.get(user)).timeoutMs, 0);

  // Sent again in the other order (by two gateways): the disarm is remembered, and the older
  // arm does not overwrite it.
  await r.redis.del(`${r.prefix}:cancel-after`, `${r.prefix}:cancel-after:due`);
  assert.equal(await queue.cancelAfter.resend(disarmed.set), true);
  assert.equal(await queue.cancelAfter.resend(armed.set), false);
  assert.equal((await queue.cancelAfter.get(user)).timeoutMs, 0);
  // A new arm is set after what Redis holds, whatever its clock says.
  const later = await queue.cancelAfter.set(user, 9, 5_000);
  assert.ok(BigInt(later.set.setUs) > BigInt(disarmed.set.setUs));
});
