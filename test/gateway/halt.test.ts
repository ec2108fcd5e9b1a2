// The admin's kill switch (`PUT`/`DELETE /v1/admin/users/{id}/halt`) through HTTP against real
// Redis and PostgreSQL, on two engine shards: a halt cancels every open order of the user and
// refuses their new orders until resumed, touches no one else, and survives Redis losing its state.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { haltedKey, layoutKey } from '../../src/queue/keys.js';
import { eventually, startTestSystem } from '../support/system.js';
import type { TestSystem } from '../support/system.js';

type Order = Record<string, unknown> & { id: string; status: string };

describe('halting a user’s trading', () => {
  let t: TestSystem;
  let alice: { id: string; key: string };
  let bob: { id: string; key: string };

  before(async () => {
    t = await startTestSystem({ SHARDS: '2', SHARD_PINS: 'AAPL=0,MSFT=1' });
    [alice, bob] = await Promise.all([t.user('alice'), t.user('bob')]);
  });
  after(() => t.stop());

  const limit = (symbol: string, side: string, price: string) => ({
    symbol,
    side,
    type: 'LIMIT',
    quantity: '1',
    price,
  });
  async function submit(key: string, body: Record<string, unknown>): Promise<Order> {
    const r = await t.api(key, 'POST', '/v1/orders', body);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body as Order;
  }
  /** The order's status and reason once it is `status`. */
  const until = (key: string, id: string, status: string) =>
    eventually(async () => {
      const r = await t.api(key, 'GET', `/v1/orders/${id}`);
      return r.body.status === status ? `${status} ${String(r.body.reject_reason)}` : undefined;
    });
  const halt = (id: string, method: 'PUT' | 'DELETE') => haltAs(t.adminToken, id, method);
  const haltAs = (token: string | undefined, id: string, method: 'PUT' | 'DELETE') =>
    t.api(token, method, `/v1/admin/users/${id}/halt`);

  it('cancels the user’s open orders on every engine and refuses new ones until resumed', async () => {
    const open = [
      await submit(alice.key, limit('AAPL', 'BUY', '150.00')),
      await submit(alice.key, limit('MSFT', 'SELL', '350.00')),
      await submit(alice.key, {
        symbol: 'MSFT',
        side: 'SELL',
        type: 'STOP_MARKET',
        quantity: '1',
        stop_price: '300.00',
      }),
    ];
    const bobs = await submit(bob.key, limit('AAPL', 'BUY', '149.00'));
    for (const o of open) await until(alice.key, o.id, 'NEW');

    const r = await halt(alice.id, 'PUT');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual([r.body.id, r.body.name, r.body.halted], [alice.id, 'alice', true]);
    assert.equal(typeof r.body.halted_at, 'string');
    for (const o of open) {
      assert.equal(await until(alice.key, o.id, 'CANCELED'), 'CANCELED CANCELED_BY_OWNER');
    }
    const refused = await t.api(alice.key, 'POST', '/v1/orders', limit('AAPL', 'BUY', '150.00'));
    assert.equal(refused.status, 403);
    assert.equal((refused.body.error as { code: string }).code, 'TRADING_HALTED');
    // Reads still answer; bob trades on, his order untouched.
    assert.equal((await t.api(alice.key, 'GET', '/v1/orders')).status, 200);
    await submit(bob.key, limit('MSFT', 'BUY', '340.00'));
    assert.equal(await until(bob.key, bobs.id, 'NEW'), 'NEW null');
    // Halted again: the same time, and a second cancel of nothing.
    const again = await halt(alice.id, 'PUT');
    assert.deepEqual([again.status, again.body.halted_at], [200, r.body.halted_at]);
    const [stored] = await t.db.sql<{ halted_at: Date | null }[]>`
      SELECT halted_at FROM users WHERE id = ${alice.id}`;
    assert.equal(stored?.halted_at?.toISOString(), r.body.halted_at);

    const resumed = await halt(alice.id, 'DELETE');
    assert.equal(resumed.status, 200, JSON.stringify(resumed.body));
    assert.deepEqual([resumed.body.halted, resumed.body.halted_at], [false, null]);
    const back = await submit(alice.key, limit('AAPL', 'BUY', '150.00'));
    assert.equal(await until(alice.key, back.id, 'NEW'), 'NEW null');
  });

  it('keeps a halt through a Redis that lost its state', async () => {
    assert.equal((await halt(alice.id, 'PUT')).status, 200);
    // As a Redis that came back empty: no layout, no halted users. The first submit puts both
    // back from PostgreSQL, the halts first.
    const redis = new Redis(t.config.redisUrl as string);
    try {
      await redis.del(layoutKey(t.config.redisPrefix), haltedKey(t.config.redisPrefix));
    } finally {
      redis.disconnect();
    }
    const refused = await t.api(alice.key, 'POST', '/v1/orders', limit('MSFT', 'BUY', '300.00'));
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    await submit(bob.key, limit('MSFT', 'BUY', '300.00'));
    // Redis lost the halt alone (its write failed after PostgreSQL's, say): the gateway puts it
    // back within seconds.
    const direct = new Redis(t.config.redisUrl as string);
    try {
      await direct.del(haltedKey(t.config.redisPrefix));
      await eventually(async () =>
        (await direct.sismember(haltedKey(t.config.redisPrefix), alice.id)) === 1
          ? true
          : undefined,
      );
    } finally {
      direct.disconnect();
    }
    assert.equal((await halt(alice.id, 'DELETE')).status, 200);
    await submit(alice.key, limit('MSFT', 'BUY', '300.00'));
  });

  it('answers 404 for no such user, 400 for no id, 401 without the admin token', async () => {
    const cases: [string, string | undefined, number, string][] = [
      ['01a25200-c031-75f2-8822-a0898b154194', t.adminToken, 404, 'NOT_FOUND'],
      ['alice', t.adminToken, 400, 'VALIDATION_ERROR'],
      [bob.id, bob.key, 401, 'UNAUTHORIZED'],
      [bob.id, undefined, 401, 'UNAUTHORIZED'],
    ];
    for (const [id, token, status, code] of cases) {
      for (const method of ['PUT', 'DELETE'] as const) {
        const r = await haltAs(token, id, method);
        assert.equal(r.status, status, `${method} ${id}: ${JSON.stringify(r.body)}`);
        assert.equal((r.body.error as { code: string }).code, code);
      }
    }
    // Bob was never halted.
    await submit(bob.key, limit('AAPL', 'SELL', '400.00'));
  });
});
