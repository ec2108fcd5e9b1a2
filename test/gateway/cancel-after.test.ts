// The dead man's switch (`/v1/orders/cancel-all-after`) through HTTP against real Redis and
// PostgreSQL, on two engine shards: once it runs out, every open order of the caller on both
// engines is canceled and no one else's; armed again in time, or disarmed, it cancels nothing; an
// order placed after it fired stays; and every refusal changes nothing.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { eventually, settledStatuses, startTestSystem } from '../support/system.js';
import type { TestSystem } from '../support/system.js';

type Order = Record<string, unknown> & { id: string; status: string };

const PATH = '/v1/orders/cancel-all-after';

describe('the dead man’s switch (cancel-all-after)', () => {
  let t: TestSystem;
  let alice: { id: string; key: string };
  let bob: { id: string; key: string };

  before(async () => {
    // AAPL and MSFT on different engines: the switch's cancel reaches both.
    t = await startTestSystem({ SHARDS: '2', SHARD_PINS: 'AAPL=0,MSFT=1' });
    [alice, bob] = await Promise.all([t.user('alice'), t.user('bob')]);
  });
  after(() => t.stop());

  async function submit(key: string, symbol: string, side: string, price: string): Promise<Order> {
    const r = await t.api(key, 'POST', '/v1/orders', {
      symbol,
      side,
      type: 'LIMIT',
      quantity: '1',
      price,
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body as Order;
  }

  const statuses = (key: string, orders: Order[]) => settledStatuses(t, key, orders);

  const arm = (key: string, timeout: number) => t.api(key, 'PUT', PATH, { timeout_ms: timeout });

  it('cancels all the caller’s open orders on every engine once it runs out, and no one else’s', async () => {
    const mine = [
      await submit(alice.key, 'AAPL', 'BUY', '150.00'),
      await submit(alice.key, 'MSFT', 'SELL', '450.00'),
    ];
    const bobs = [await submit(bob.key, 'AAPL', 'BUY', '149.00')];
    assert.deepEqual(await statuses(alice.key, mine), ['NEW null', 'NEW null']);
    // Bob's own switch, armed for long: his orders stay.
    assert.equal((await arm(bob.key, 600_000)).status, 200);

    const r = await arm(alice.key, 1_000);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const armedAt = Date.parse(r.body.current_time as string);
    assert.equal(r.body.timeout_ms, 1_000);
    assert.equal(Date.parse(r.body.trigger_at as string), armedAt + 1_000);
    const read = await t.api(alice.key, 'GET', PATH);
    assert.equal(read.status, 200);
    assert.deepEqual(
      [read.body.timeout_ms, read.body.trigger_at, read.body.fired_at],
      [1_000, r.body.trigger_at, null],
    );

    // It runs out: both orders are canceled, by their owner, no earlier than its trigger.
    const canceled = await eventually(async () => {
      const s = await statuses(alice.key, mine);
      return s.every((x) => x.startsWith('CANCELED')) ? s : undefined;
    });
    assert.deepEqual(canceled, ['CANCELED CANCELED_BY_OWNER', 'CANCELED CANCELED_BY_OWNER']);
    for (const o of mine) {
      const got = await t.api(alice.key, 'GET', `/v1/orders/${o.id}`);
      assert.ok(Date.parse(got.body.updated_at as string) >= armedAt + 1_000);
    }
    // Fired, it is no longer armed, and says when it fired; bob's is armed, and his order stands.
    const fired = await eventually(async () => {
      const g = await t.api(alice.key, 'GET', PATH);
      return g.body.fired_at === null ? undefined : g;
    });
    assert.deepEqual([fired.body.timeout_ms, fired.body.trigger_at], [0, null]);
    assert.ok(Date.parse(fired.body.fired_at as string) >= armedAt + 1_000);
    assert.equal((await t.api(bob.key, 'GET', PATH)).body.timeout_ms, 600_000);
    assert.deepEqual(await statuses(bob.key, bobs), ['NEW null']);

    // An order placed after it fired is not touched by it.
    const later = await submit(alice.key, 'AAPL', 'BUY', '151.00');
    await sleep(1_500);
    assert.deepEqual(await statuses(alice.key, [later]), ['NEW null']);
    assert.equal((await t.api(bob.key, 'DELETE', PATH)).status, 200);
  });

  it('armed again before it runs out, or disarmed, cancels nothing', async () => {
    const resting = await submit(alice.key, 'MSFT', 'BUY', '400.00');
    assert.deepEqual(await statuses(alice.key, [resting]), ['NEW null']);
    // A client alive: it pushes the trigger back every 0.5 s, for three times the timeout.
    const first = await arm(alice.key, 2_000);
    assert.equal(first.status, 200);
    let last = first;
    const until = Date.now() + 6_000;
    while (Date.now() < until) {
      await sleep(500);
      last = await arm(alice.key, 2_000);
      assert.equal(last.status, 200);
    }
    assert.ok(
      Date.parse(last.body.trigger_at as string) > Date.parse(first.body.trigger_at as string),
    );
    assert.deepEqual(await statuses(alice.key, [resting]), ['NEW null']);

    // Disarmed (PUT 0, then DELETE: both answer the switch unarmed) and left past its time.
    const off = await arm(alice.key, 0);
    assert.equal(off.status, 200);
    assert.deepEqual([off.body.timeout_ms, off.body.trigger_at], [0, null]);
    await arm(alice.key, 2_000);
    const deleted = await t.api(alice.key, 'DELETE', PATH);
    assert.equal(deleted.status, 200);
    assert.deepEqual([deleted.body.timeout_ms, deleted.body.trigger_at], [0, null]);
    await sleep(3_000);
    assert.deepEqual(await statuses(alice.key, [resting]), ['NEW null']);
  });

  it('refuses bad requests with 4xx and changes nothing', async () => {
    const resting = await submit(bob.key, 'AAPL', 'SELL', '210.00');
    assert.deepEqual(await statuses(bob.key, [resting]), ['NEW null']);
    const cases: [string | undefined, unknown, number, string][] = [
      [bob.key, { timeout_ms: 999 }, 400, 'VALIDATION_ERROR'],
      [bob.key, { timeout_ms: -1 }, 400, 'VALIDATION_ERROR'],
      [bob.key, { timeout_ms: 86_400_001 }, 400, 'VALIDATION_ERROR'],
      [bob.key, { timeout_ms: 1500.5 }, 400, 'VALIDATION_ERROR'],
      [bob.key, { timeout_ms: '5000' }, 400, 'VALIDATION_ERROR'],
      [bob.key, {}, 400, 'VALIDATION_ERROR'],
      [bob.key, { timeout_ms: 5_000, symbol: 'AAPL' }, 400, 'VALIDATION_ERROR'],
      [undefined, { timeout_ms: 1_000 }, 401, 'UNAUTHORIZED'],
      ['not-a-key', { timeout_ms: 1_000 }, 401, 'UNAUTHORIZED'],
    ];
    for (const [key, body, status, code] of cases) {
      const r = await t.api(key, 'PUT', PATH, body);
      assert.equal(r.status, status, `${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
      const error = r.body.error as { code: string; details?: { field: string }[] };
      assert.equal(error.code, code, JSON.stringify(body));
      if (status === 400 && Object.keys(body as object).length > 0) {
        assert.ok(
          error.details?.some((d) => d.field.includes('timeout_ms') || d.field.includes('symbol')),
        );
      }
    }
    assert.equal((await t.api(undefined, 'GET', PATH)).status, 401);
    // None armed a switch: bob's is unarmed, and his order outlives the shortest timeout.
    const read = await t.api(bob.key, 'GET', PATH);
    assert.deepEqual([read.body.timeout_ms, read.body.trigger_at], [0, null]);
    await sleep(1_500);
    assert.deepEqual(await statuses(bob.key, [resting]), ['NEW null']);
  });
});
