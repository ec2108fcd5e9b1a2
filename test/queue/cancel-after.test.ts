// The cancel-all-after switches (src/queue/cancel-after.ts) against real Redis: a switch claimed
// and not marked fired is claimed again once its lease runs out, and its mass cancel is queued
// once per shard however often it fires; running out is final (an arm that comes after fires it
// first); an outage restarts every countdown; and a switch sent again after a Redis restart is
// written only over an older one.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { pino } from 'pino';
import { CancelAfterSweeper } from '../../src/queue/cancel-after.js';
import type { CancelAfterSwitch } from '../../src/queue/cancel-after.js';
import { layoutKey, shardLayout } from '../../src/queue/keys.js';
import { OrderQueue } from '../../src/queue/order-queue.js';
import { freshRedis } from '../support/services.js';
import { waitFor } from '../engine-service/helpers.js';
import { sleep } from './orders.js';

const OUTAGE_MS = 3_000;
let r: Awaited<ReturnType<typeof freshRedis>>;
let queue: OrderQueue;
before(async () => {
  r = await freshRedis();
  queue = new OrderQueue(r.redis, {
    prefix: r.prefix,
    shards: 2,
    highWater: 1_000,
    idempotencyTtlS: 60,
    // Room for a loaded machine between this file's sweeps; the outage test waits longer.
    switchOutageMs: OUTAGE_MS,
  });
  await r.redis.set(layoutKey(r.prefix), shardLayout(2));
});
after(() => r.cleanup());

let users = 0;
const newUser = (): string => `0190a1b2-0000-7000-8000-${String(++users).padStart(12, '0')}`;

/** Arms (or disarms) through the queue, as the route does; the switch as set. */
async function arm(user: string, owner: number, timeoutMs: number) {
  const s = await queue.cancelAfter.set(user, owner, timeoutMs);
  assert.equal(s.kind, 'set');
  return s;
}

/** A sweep that is not the first after an outage (the last sweep was under 2 s ago). */
async function sweep(leaseMs: number): Promise<CancelAfterSwitch[]> {
  const claimed = await queue.cancelAfter.due(leaseMs, 100);
  assert.equal(claimed.outage, false, 'an outage where none was');
  return claimed.due;
}

/** The mass-cancel entries on each shard's stream with this id: `<side>`. */
async function massCancels(id: string): Promise<string[][]> {
  return Promise.all(
    queue.shards.map(async (k) =>
      (await r.redis.xrange(k.orders, '-', '+'))
        .map(([, f]) => JSON.parse(f[1] as string) as { k: string; id: string; side: string })
        .filter((c) => c.k === 'cancel_all' && c.id === id)
        .map((c) => c.side),
    ),
  );
}

it('fires a switch whose firing was cut short once its lease runs out, queuing its cancel once per shard', async () => {
  const user = newUser();
  await queue.cancelAfter.due(200, 100); // the first sweep: an outage, nothing claimed
  const armed = await arm(user, 7, 1_000);
  if (armed.kind !== 'set') return;
  assert.deepEqual(await sweep(200), [], 'due before its time');
  await sleep(1_100);
  // A gateway claims it with a short lease, queues its cancel, and dies before marking it fired.
  const [claimed] = await sweep(1_000);
  assert.deepEqual(claimed, armed.set);
  assert.deepEqual(await sweep(1_000), [], 'claimed twice in its lease');
  const fire = { id: armed.set.fireId, userId: user, ownerNo: 7, at: new Date() };
  assert.equal((await queue.cancelAll(fire, Date.now() + 750)).kind, 'queued');

  // Another gateway's sweep takes it over after the lease: the cancel is there already.
  const sweeper = new CancelAfterSweeper(queue, pino({ level: 'silent' }), 50);
  sweeper.start();
  try {
    await waitFor(
      'the switch marked fired',
      async () => (await queue.cancelAfter.get(user)).firedAt !== undefined,
      5_000,
    );
  } finally {
    await sweeper.stop();
  }
  assert.deepEqual(await massCancels(armed.set.fireId), [
    ['BUY', 'SELL'],
    ['BUY', 'SELL'],
  ]);
  const state = await queue.cancelAfter.get(user);
  assert.deepEqual([state.timeoutMs, state.triggerAt], [0, undefined]);
  assert.ok((state.firedAt?.getTime() ?? 0) >= (armed.state.triggerAt?.getTime() ?? Infinity));
});

it('fires first a switch that ran out when it is armed again, claimed or not, then arms it', async () => {
  for (const claimedFirst of [false, true]) {
    const user = newUser();
    await queue.cancelAfter.due(5_000, 100);
    const armed = await arm(user, 8, 1_000);
    if (armed.kind !== 'set') return;
    await sleep(1_100);
    // Ran out: a sweep has claimed it (and is slow to fire it), or none has come yet.
    const claimed = claimedFirst ? await sweep(5_000) : [];
    assert.equal(claimed.length, claimedFirst ? 1 : 0);
    const again = await queue.setCancelAfter(user, 8, 60_000);
    assert.equal(again.kind, 'set');
    if (again.kind !== 'set') return;
    // The cancel is queued before the arm is answered: it takes nothing sent after the answer.
    assert.equal(again.fired?.switch.fireId, armed.set.fireId);
    assert.deepEqual(await massCancels(armed.set.fireId), [
      ['BUY', 'SELL'],
      ['BUY', 'SELL'],
    ]);
    assert.equal(again.state.timeoutMs, 60_000);
    const state = await queue.cancelAfter.get(user);
    assert.deepEqual(state.triggerAt, again.state.triggerAt);
    // The slow sweep's mark finds the new switch, and leaves it.
    if (claimed[0] !== undefined) {
      assert.equal(await queue.cancelAfter.fired(claimed[0]), undefined);
    }
    assert.deepEqual(await sweep(5_000), []);
  }
});

it('after an outage, counts every armed switch down again from its end instead of firing it', async () => {
  const [user, idle] = [newUser(), newUser()];
  await queue.cancelAfter.due(200, 100);
  const armed = await arm(user, 9, 1_000);
  await arm(idle, 9, 1_000);
  if (armed.kind !== 'set') return;
  // No sweep for longer than an outage: both ran out while no gateway could take an arm.
  await sleep(OUTAGE_MS + 300);
  const during = await queue.cancelAfter.get(user);
  assert.ok((during.triggerAt?.getTime() ?? 0) >= during.now.getTime() + 1_000);
  // The client arms again: not run out (it counts down from now), so armed, and the outage over.
  const again = await arm(user, 9, 1_000);
  if (again.kind !== 'set') return;
  const first = await queue.cancelAfter.due(200, 100);
  assert.equal(first.outage, false);
  // The other, whose client has not come back, counts down again from the outage's end.
  assert.deepEqual([first.due, first.pushedBack], [[], 1]);
  const idleState = await queue.cancelAfter.get(idle);
  assert.ok((idleState.triggerAt?.getTime() ?? 0) >= again.state.now.getTime() + 1_000);
  await sleep(1_100);
  const claimed = await sweep(200);
  assert.deepEqual(claimed.map((x) => x.userId).sort(), [user, idle].sort());
  for (const c of claimed) assert.ok((await queue.cancelAfter.fired(c)) instanceof Date);

  // A Redis that restarted (another run_id than the last sweep's) is an outage too: a switch
  // not run out by then counts down from it, when it comes due.
  const other = newUser();
  await arm(other, 10, 3_000);
  await sleep(2_500);
  await r.redis.set(`${r.prefix}:cancel-after:swept`, `0123abcd ${Date.now()}`);
  const restarted = await queue.cancelAfter.due(200, 100);
  assert.equal(restarted.outage, true);
  const pushed = await queue.cancelAfter.get(other);
  assert.ok((pushed.triggerAt?.getTime() ?? 0) >= restarted.now.getTime() + 3_000);
  // Its own time has come: it is pushed back, not fired.
  await sleep(600);
  assert.deepEqual(await sweep(200), []);

  // One that had run out by the last sweep before an outage fires after it all the same, and
  // one pushed back by an earlier outage is pushed back by a later one.
  const late = newUser();
  const ran = await arm(late, 11, 1_000);
  if (ran.kind !== 'set') return;
  await sleep(1_100);
  await r.redis.set(`${r.prefix}:cancel-after:swept`, `0123abcd ${Date.now()}`);
  const after = await queue.cancelAfter.due(200, 100);
  assert.equal(after.outage, true);
  assert.deepEqual(
    after.due.map((x) => x.userId),
    [late],
  );
  const twice = await queue.cancelAfter.get(other);
  assert.ok((twice.triggerAt?.getTime() ?? 0) >= after.now.getTime() + 3_000);
});

it('writes a switch sent again only over an older one, and never one too old to tell', async () => {
  const user = newUser();
  const armed = await arm(user, 9, 30_000);
  const disarmed = await arm(user, 9, 0);
  if (armed.kind !== 'set' || disarmed.kind !== 'set') return;
  // Redis has both: the arm sent again changes nothing, nor does the disarm.
  assert.equal(await queue.cancelAfter.resend(armed.set), false);
  assert.equal(await queue.cancelAfter.resend(disarmed.set), false);
  assert.equal((await queue.cancelAfter.get(user)).timeoutMs, 0);

  const lose = () => r.redis.del(`${r.prefix}:cancel-after`, `${r.prefix}:cancel-after:due`);
  // Redis lost both: each comes back in turn, the arm counting down from now.
  await lose();
  const resentAt = (await queue.cancelAfter.get(user)).now.getTime();
  assert.equal(await queue.cancelAfter.resend(armed.set), true);
  const back = await queue.cancelAfter.get(user);
  assert.equal(back.timeoutMs, 30_000);
  assert.ok((back.triggerAt?.getTime() ?? 0) >= resentAt + 30_000);
  assert.equal(await queue.cancelAfter.resend(disarmed.set), true);
  assert.equal((await queue.cancelAfter.get(user)).timeoutMs, 0);

  // Sent again in the other order (by two gateways): the disarm is remembered, and the older
  // arm does not overwrite it.
  await lose();
  assert.equal(await queue.cancelAfter.resend(disarmed.set), true);
  assert.equal(await queue.cancelAfter.resend(armed.set), false);
  assert.equal((await queue.cancelAfter.get(user)).timeoutMs, 0);

  // One set longer ago than a disarmed switch is remembered is not written.
  await lose();
  const old = { ...armed.set, setUs: String(BigInt(armed.set.setUs) - 11n * 60_000_000n) };
  assert.equal(await queue.cancelAfter.resend(old), false);
  assert.equal((await queue.cancelAfter.get(user)).timeoutMs, 0);

  // A new arm is set after what Redis holds, whatever its clock says.
  await queue.cancelAfter.resend(disarmed.set);
  const later = await arm(user, 9, 5_000);
  if (later.kind !== 'set') return;
  assert.ok(BigInt(later.set.setUs) > BigInt(disarmed.set.setUs));
});
