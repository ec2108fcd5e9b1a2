// /ready: true only once every engine has applied its stream to within READY_MAX_LAG commands of
// the head; a load balancer keeps traffic away until then.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually, startTestSystem } from '../support/system.js';
import type { TestSystem } from '../support/system.js';

describe('/ready', () => {
  let t: TestSystem;
  before(async () => {
    t = await startTestSystem({ READY_MAX_LAG: '0' });
  });
  after(async () => {
    await t.stop();
  });

  const order = { symbol: 'AMZN', side: 'BUY', type: 'LIMIT', quantity: '1', price: '5.00' };

  it('is ready when the engine stands at the head, and not while it lags behind', async () => {
    const u = await t.user();
    assert.equal((await t.api(u.key, 'POST', '/v1/orders', order)).status, 201);
    const ready = await eventually(async () => {
      const r = await t.api(undefined, 'GET', '/ready');
      return r.status === 200 ? r : undefined;
    });
    const [shard] = ready.body.shards as { shard: string; head: number; applied: number }[];
    assert.equal(ready.body.ready, true);
    assert.equal(shard?.shard, 's0');
    assert.equal(shard?.applied, shard?.head);

    // Nothing dispatched any more: the head moves on, the engine does not.
    await t.system.dispatchers[0]?.stop();
    assert.equal((await t.api(u.key, 'POST', '/v1/orders', order)).status, 201);
    const lagging = await t.api(undefined, 'GET', '/ready');
    assert.equal(lagging.status, 503);
    assert.equal(lagging.body.ready, false);
    const [behind] = lagging.body.shards as { head: number; applied: number }[];
    assert.equal((behind?.head ?? 0) - (behind?.applied ?? 0), 1);
  });
});
