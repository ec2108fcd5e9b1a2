// Price protection of MARKET orders, end to end: an operator sets it on an instrument, a MARKET
// or triggered STOP_MARKET order trades no further from the best price than it allows and the rest
// is canceled with reason PRICE_PROTECTION; orders with a limit price are untouched by it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InstrumentCache } from '../../src/gateway/instrument-cache.js';
import { listInstruments, upsertInstrument } from '../../src/db/instruments.js';
import { eventually, settledStatuses, startTestSystem } from '../support/system.js';
import type { TestSystem } from '../support/system.js';
import { freshDatabase } from '../support/services.js';

type Body = Record<string, unknown>;

for (const mode of ['queue', 'sync'] as const)
  describe(`price protection (${mode})`, () => {
    let t: TestSystem;
    let alice: { id: string; key: string };
    let bob: { id: string; key: string };
    let carol: { id: string; key: string };

    before(async () => {
      t = await startTestSystem({ ORDER_PATH: mode });
      [alice, bob, carol] = await Promise.all([t.user('alice'), t.user('bob'), t.user('carol')]);
    });
    after(() => t.stop());

    const admin = (body: Body) => t.api(t.adminToken, 'PUT', '/v1/admin/instruments/PROT', body);
    const submit = async (key: string, body: Body): Promise<{ id: string }> => {
      const r = await t.api(key, 'POST', '/v1/orders', { symbol: 'PROT', ...body });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return r.body as { id: string };
    };
    const sell = (quantity: string, price: string) =>
      submit(alice.key, { side: 'SELL', type: 'LIMIT', quantity, price });
    const order = async (key: string, id: string): Promise<Body> =>
      (await t.api(key, 'GET', `/v1/orders/${id}`)).body;
    const asks = async (): Promise<string[]> => {
      const r = await t.api(alice.key, 'GET', '/v1/instruments/PROT/book');
      const levels = r.body.asks as { price: string; quantity: string }[];
      return levels.map((l) => `${l.quantity}@${l.price}`);
    };

    it('is set on an instrument, and shown with it', async () => {
      const listed = await admin({ tick_size: '0.01', lot_size: '1', market_protection_bps: 500 });
      assert.equal(listed.status, 201, JSON.stringify(listed.body));
      assert.equal(listed.body.market_protection_bps, 500);
      const all = await t.api(alice.key, 'GET', '/v1/instruments');
      const rows = all.body.instruments as Body[];
      assert.deepEqual(
        rows.map((i) => `${i.symbol as string} ${i.market_protection_bps as number}`),
        ['AAPL 0', 'AMZN 0', 'GOOG 0', 'MSFT 0', 'PROT 500', 'TSLA 0'],
      );
      // Left out: kept. Out of range: refused, naming the field, and nothing changes.
      const again = await admin({ tick_size: '0.01', lot_size: '1' });
      assert.equal(again.status, 200);
      assert.equal(again.body.market_protection_bps, 500);
      for (const bad of [10_001, -1, 2.5, '500']) {
        const r = await admin({ tick_size: '0.01', lot_size: '1', market_protection_bps: bad });
        assert.equal(r.status, 400, String(bad));
        assert.equal(r.body.error?.code, 'VALIDATION_ERROR');
        assert.match(JSON.stringify(r.body.error?.details), /market_protection_bps/);
      }
      const sizes = await admin({ tick_size: '0.05', lot_size: '1', market_protection_bps: 0 });
      assert.equal(sizes.status, 409);
      const [row] = await t.db.sql`
        SELECT market_protection_bps FROM instruments WHERE symbol = 'PROT'`;
      assert.equal(row?.market_protection_bps, 500);
    });

    it('stops a MARKET order at its band and cancels the rest; limit orders rest as ever', async () => {
      const makers = [
        await sell('2', '100.00'),
        await sell('2', '105.00'),
        await sell('5', '105.01'),
      ];
      assert.deepEqual(await settledStatuses(t, alice.key, makers), [
        'NEW null',
        'NEW null',
        'NEW null',
      ]);
      // 5% of the best ask (100.00) is 5.00: up to 105.00, not 105.01.
      const buy = await submit(bob.key, { side: 'BUY', type: 'MARKET', quantity: '8' });
      assert.deepEqual(await settledStatuses(t, bob.key, [buy]), ['CANCELED PRICE_PROTECTION']);
      const done = await order(bob.key, buy.id);
      assert.equal(done.filled_quantity, '4');
      assert.equal(done.average_fill_price, '102.50');
      const fills = (await t.api(bob.key, 'GET', `/v1/orders/${buy.id}/fills`)).body
        .fills as Body[];
      assert.deepEqual(
        fills.map((f) => `${f.quantity as string}@${f.price as string}`),
        ['2@100.00', '2@105.00'],
      );
      assert.deepEqual(await asks(), ['5@105.01']);
      // PostgreSQL holds the same.
      await eventually(async () => {
        const [row] = await t.db.sql`
          SELECT status, reject_reason, filled_quantity::text FROM orders WHERE id = ${buy.id}`;
        return row?.status === 'CANCELED' ? row : undefined;
      }).then((row) => {
        assert.deepEqual([row.reject_reason, row.filled_quantity], ['PRICE_PROTECTION', '4']);
      });
    });

    it('bands a STOP_MARKET order from the best price when it triggers', async () => {
      // Last trade 105.00; the stop waits for 105.01.
      const stop = await submit(bob.key, {
        side: 'BUY',
        type: 'STOP_MARKET',
        stop_price: '105.01',
        quantity: '8',
      });
      assert.deepEqual(await settledStatuses(t, bob.key, [stop]), ['NEW null']);
      // A stop keeps the protection it was accepted with: turning it off now does not free it.
      const off = await admin({ tick_size: '0.01', lot_size: '1', market_protection_bps: 0 });
      assert.deepEqual([off.status, off.body.market_protection_bps], [200, 0]);
      // 5% of 105.01 is 5.2505: up to 110.26, so 110.26 trades and 110.27 does not.
      const far = [await sell('1', '110.26'), await sell('3', '110.27')];
      assert.deepEqual(await settledStatuses(t, alice.key, far), ['NEW null', 'NEW null']);
      const trigger = await submit(carol.key, {
        side: 'BUY',
        type: 'LIMIT',
        quantity: '1',
        price: '105.01',
      });
      assert.deepEqual(await settledStatuses(t, carol.key, [trigger]), ['FILLED null']);
      const done = await eventually(async () => {
        const o = await order(bob.key, stop.id);
        return o.status === 'CANCELED' ? o : undefined;
      });
      assert.deepEqual(
        [done.reject_reason, done.filled_quantity],
        ['PRICE_PROTECTION', '5'],
        JSON.stringify(done),
      );
      assert.deepEqual(await asks(), ['3@110.27']);
    });

    it('lets MARKET orders sweep again once the protection is set to 0', async () => {
      const off = await admin({ tick_size: '0.01', lot_size: '1' });
      assert.equal(off.status, 200);
      assert.equal(off.body.market_protection_bps, 0);
      await sell('2', '150.00');
      const buy = await submit(bob.key, { side: 'BUY', type: 'MARKET', quantity: '5' });
      assert.deepEqual(await settledStatuses(t, bob.key, [buy]), ['FILLED null']);
      assert.equal((await order(bob.key, buy.id)).average_fill_price, '126.162');
      assert.deepEqual(await asks(), []);
    });
  });

describe('instrument cache', () => {
  it('does not let a read that began before a change, or before a newer read, undo it', async () => {
    const row = (bps: number) => ({
      symbol: 'ABC',
      tick_size: '0.01',
      lot_size: '1',
      market_protection_bps: bps,
    });
    // Each read waits for its answer, given in any order.
    const pending: ((rows: ReturnType<typeof row>[]) => void)[] = [];
    const answer = (rows: ReturnType<typeof row>[], which = 0) =>
      pending.splice(which, 1)[0]?.(rows);
    const cache = new InstrumentCache(
      () => new Promise((resolve) => pending.push(resolve)),
      (err) => assert.fail(String(err)),
    );
    const first = cache.reload();
    answer([row(0)]);
    await first;
    // A read begins, then an admin's change is answered, then the read's older answer comes.
    const slow = cache.reload();
    cache.put(row(400));
    answer([row(0)]);
    await slow;
    assert.equal((await cache.get('ABC'))?.protectionBps, 400);
    // A read that began after the change is taken.
    const next = cache.reload();
    answer([row(100)]);
    await next;
    assert.equal((await cache.get('ABC'))?.protectionBps, 100);
    // Two reads: the later one's answer (another gateway's change) comes first and stays.
    const older = cache.reload();
    const newer = cache.reload();
    answer([row(700)], 1);
    await newer;
    answer([row(100)]);
    await older;
    assert.equal((await cache.get('ABC'))?.protectionBps, 700);
  });

  it('reads again what another gateway changed, and keeps what it held when it cannot', async () => {
    const db = await freshDatabase();
    const errors: unknown[] = [];
    let failing = false;
    const cache = new InstrumentCache(
      async () => {
        if (failing) throw new Error('PostgreSQL is down');
        return listInstruments(db.sql);
      },
      (err) => errors.push(err),
      50,
    );
    try {
      await upsertInstrument(db.sql, { symbol: 'ABC', tick_size: '0.01', lot_size: '1' });
      await cache.reload();
      cache.start();
      assert.equal((await cache.get('ABC'))?.protectionBps, 0);
      await upsertInstrument(db.sql, {
        symbol: 'ABC',
        tick_size: '0.01',
        lot_size: '1',
        market_protection_bps: 300,
      });
      await eventually(async () =>
        (await cache.get('ABC'))?.protectionBps === 300 ? true : undefined,
      );
      failing = true;
      await eventually(async () => {
        assert.equal((await cache.get('ABC'))?.protectionBps, 300);
        return errors.length > 0 ? true : undefined;
      });
      assert.match(String(errors[0]), /PostgreSQL is down/);
    } finally {
      cache.stop();
      await db.drop();
    }
  });
});
