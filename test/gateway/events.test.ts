// The caller's live order updates (`GET /v1/events`) over real HTTP, against real Redis and
// PostgreSQL: what the engine does to a user's orders reaches that user alone, a reconnect with
// Last-Event-ID goes on where it stopped, and whatever cannot be followed is a resync, never a gap
// passed over.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { MAX_HELD, Outbox } from '../../src/gateway/routes/events.js';
import { shardKeys } from '../../src/queue/keys.js';
import { openEvents } from '../support/events.js';
import type { EventStream, StreamEvent } from '../support/events.js';
import { eventually, startTestSystem } from '../support/system.js';
import type { TestSystem } from '../support/system.js';

type Order = Record<string, unknown> & { id: string; status: string };

describe('live order updates', () => {
  let t: TestSystem;
  let redis: Redis;
  let alice: { id: string; key: string };
  let bob: { id: string; key: string };
  const open: EventStream[] = [];

  before(async () => {
    t = await startTestSystem({ STREAMS_PER_USER: '2' });
    redis = new Redis(t.config.redisUrl as string);
    [alice, bob] = await Promise.all([t.user('alice'), t.user('bob')]);
  });
  after(async () => {
    for (const s of open) s.close();
    redis.disconnect();
    await t.stop();
  });

  async function events(key: string | undefined, lastEventId?: string): Promise<EventStream> {
    const s = await openEvents(t.url, key, lastEventId);
    open.push(s);
    return s;
  }

  async function submit(key: string, body: Record<string, unknown>): Promise<Order> {
    const r = await t.api(key, 'POST', '/v1/orders', body);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body as Order;
  }

  const sell = (quantity: string, price: string) => ({
    symbol: 'AAPL',
    side: 'SELL',
    type: 'LIMIT',
    quantity,
    price,
  });
  const marketBuy = (quantity: string) => ({
    symbol: 'AAPL',
    side: 'BUY',
    type: 'MARKET',
    quantity,
  });

  /** The order as GET answers it once it is in `status`. */
  const when = (key: string, id: string, status: string): Promise<Order> =>
    eventually(async () => {
      const r = await t.api(key, 'GET', `/v1/orders/${id}`);
      return r.body.status === status ? (r.body as Order) : undefined;
    });

  /** The events' kinds and what they are about, to compare whole sequences. */
  const summary = (list: StreamEvent[]) =>
    list.map((e) =>
      e.event === 'fill'
        ? `fill ${e.data.order_id as string} ${e.data.quantity as string}@${e.data.price as string} ${e.data.liquidity as string}`
        : e.event === 'order'
          ? `order ${e.data.id as string} ${e.data.status as string} ${e.data.filled_quantity as string}`
          : e.event,
    );

  it('sends each user what the engine did to their orders, and their fills, and nothing of others', async () => {
    const a = await events(alice.key);
    const b = await events(bob.key);
    assert.equal(a.status, 200);
    assert.equal(a.headers.get('content-type'), 'text/event-stream');
    // A stream ends only when the gateway stops: its connection is not kept for another request.
    assert.equal(a.headers.get('connection'), 'close');
    const ready = await a.next();
    assert.equal(ready.event, 'ready');
    // Redis's run, then the last sequence read on the one shard.
    assert.match(ready.id ?? '', /^[0-9a-f]{12}:[0-9]+$/);
    assert.equal((await b.next()).event, 'ready');

    const ask = await submit(alice.key, sell('10', '190.00'));
    const accepted = await a.next();
    assert.deepEqual(summary([accepted]), [`order ${ask.id} NEW 0`]);
    assert.equal(accepted.data.price, '190.00');
    assert.ok(accepted.id !== undefined, 'the last event of a batch carries the position');

    const buy = await submit(bob.key, marketBuy('4'));
    const aliceSaw = await a.until((e) => e.event === 'order');
    assert.deepEqual(summary(aliceSaw), [
      `fill ${ask.id} 4@190.00 MAKER`,
      `order ${ask.id} PARTIALLY_FILLED 4`,
    ]);
    const bobSaw = await b.until((e) => e.event === 'order');
    assert.deepEqual(summary(bobSaw), [
      `fill ${buy.id} 4@190.00 TAKER`,
      `order ${buy.id} FILLED 4`,
    ]);

    // The fill is the one GET /fills shows, and the order the one GET shows.
    const fill = aliceSaw[0] as StreamEvent;
    const fills = (await t.api(alice.key, 'GET', `/v1/orders/${ask.id}/fills`)).body
      .fills as Record<string, unknown>[];
    assert.deepEqual(
      { ...fill.data },
      { ...fills[0], order_id: ask.id, symbol: 'AAPL', side: 'SELL' },
    );
    assert.deepEqual(bobSaw[1]?.data, (await t.api(bob.key, 'GET', `/v1/orders/${buy.id}`)).body);

    // A cancel is an order event too; bob's stream has nothing of it.
    assert.equal((await t.api(alice.key, 'DELETE', `/v1/orders/${ask.id}`)).status, 202);
    assert.deepEqual(summary([await a.next()]), [`order ${ask.id} CANCELED 4`]);
    await assert.rejects(b.next(500), /no event/);
    a.close();
    b.close();
  });

  it('goes on after Last-Event-ID, without a gap or a repeat', async () => {
    const first = await events(alice.key);
    await first.next();
    const one = await submit(alice.key, sell('1', '191.00'));
    await first.until((e) => e.event === 'order' && e.data.id === one.id);
    const from = first.lastId as string;
    first.close();

    // While alice is away: one order placed, one filled against, one canceled.
    const two = await submit(alice.key, sell('2', '192.00'));
    await when(alice.key, two.id, 'NEW');
    await submit(bob.key, marketBuy('1'));
    await when(alice.key, one.id, 'FILLED');
    assert.equal((await t.api(alice.key, 'DELETE', `/v1/orders/${two.id}`)).status, 202);
    await when(alice.key, two.id, 'CANCELED');

    const again = await events(alice.key, from);
    assert.equal((await again.next()).event, 'ready');
    const missed = await again.until((e) => e.event === 'order' && e.data.status === 'CANCELED');
    assert.deepEqual(summary(missed), [
      `order ${two.id} NEW 0`,
      `fill ${one.id} 1@191.00 MAKER`,
      `order ${one.id} FILLED 1`,
      `order ${two.id} CANCELED 0`,
    ]);
    // And then live.
    const three = await submit(alice.key, sell('3', '193.00'));
    assert.deepEqual(summary([await again.next()]), [`order ${three.id} NEW 0`]);
    again.close();
  });

  it('is a resync when what followed Last-Event-ID is no longer kept, or is not a position of this Redis', async () => {
    const s = await events(alice.key);
    await s.next();
    const one = await submit(alice.key, sell('1', '194.00'));
    await s.until((e) => e.event === 'order' && e.data.id === one.id);
    const from = s.lastId as string;
    s.close();
    // Two batches after it; the first is then trimmed, the second kept.
    const two = await submit(alice.key, sell('1', '195.00'));
    await when(alice.key, two.id, 'NEW');
    const three = await submit(alice.key, sell('1', '195.50'));
    await when(alice.key, three.id, 'NEW');
    const keys = shardKeys(t.config.redisPrefix, 0);
    // The writer trims what it has in PostgreSQL: here, once it has it all, trimmed by hand.
    await eventually(async () => {
      const groups = (await redis.xinfo('GROUPS', keys.events)) as unknown[][];
      const writer = groups.map((g) => g.map(String)).find((g) => g[1] === 'writer') ?? [];
      const field = (name: string) => writer[writer.indexOf(name) + 1];
      return field('pending') === '0' && field('lag') === '0' ? true : undefined;
    });
    const seq = Number(from.split(':')[1]);
    const after = await redis.xrange(keys.events, `0-${seq + 1}`, '+');
    assert.ok(after.length >= 2, `${after.length} batches after the position`);
    await redis.xtrim(keys.events, 'MINID', (after[1] as [string, string[]])[0]);

    const gap = await events(alice.key, from);
    assert.equal((await gap.next()).event, 'ready');
    const resync = await gap.next();
    assert.equal(resync.event, 'resync');
    assert.match(resync.data.reason as string, /no longer kept/);
    // After it, live again from the head.
    const four = await submit(alice.key, sell('1', '196.00'));
    assert.deepEqual(summary([await gap.next()]), [`order ${four.id} NEW 0`]);
    gap.close();

    // A position of another Redis run (this one restarted since), or none at all.
    for (const [id, reason] of [
      [`000000000000:${seq}`, /restarted/],
      ['not-a-position', /not a position/],
    ] as const) {
      const other = await events(alice.key, id);
      assert.equal((await other.next()).event, 'ready');
      const e = await other.next();
      assert.equal(e.event, 'resync');
      assert.match(e.data.reason as string, reason);
      other.close();
    }
  });

  it('tells the owner of a cancel or an amend the engine refused', async () => {
    const s = await events(alice.key);
    try {
      await s.next();
      // An amend of a post-only order to a price that would trade: refused, the order unchanged.
      const bid = await submit(bob.key, { ...sell('1', '150.00'), side: 'BUY' });
      await when(bob.key, bid.id, 'NEW');
      const maker = await submit(alice.key, { ...sell('1', '199.00'), post_only: true });
      await s.until((e) => e.event === 'order' && e.data.id === maker.id);
      const r = await t.api(alice.key, 'PATCH', `/v1/orders/${maker.id}`, { price: '150.00' });
      assert.equal(r.status, 202);
      const refused = await s.next();
      assert.equal(refused.event, 'amend_rejected');
      assert.deepEqual(
        [refused.data.order_id, refused.data.symbol, refused.data.reason],
        [maker.id, 'AAPL', 'POST_ONLY_WOULD_TRADE'],
      );
      assert.ok(refused.id !== undefined);

      // Two cancels of one order, both taken while it was open: the engine refuses the second.
      // (Should the first be applied before the second is sent, that one is 409; go again.)
      for (let attempt = 0; ; attempt++) {
        const o = await submit(alice.key, sell('1', '198.00'));
        await s.until((e) => e.event === 'order' && e.data.id === o.id);
        const both = await Promise.all([
          t.api(alice.key, 'DELETE', `/v1/orders/${o.id}`),
          t.api(alice.key, 'DELETE', `/v1/orders/${o.id}`),
        ]);
        const seen = await s.until((e) => e.event === 'order' && e.data.id === o.id);
        assert.equal(seen.at(-1)?.data.status, 'CANCELED');
        if (both.every((a) => a.status === 202)) {
          const e = await s.next();
          assert.equal(e.event, 'cancel_rejected');
          assert.deepEqual([e.data.order_id, e.data.reason], [o.id, 'UNKNOWN_ORDER']);
          break;
        }
        assert.ok(attempt < 10, 'the two cancels were never both taken');
      }
    } finally {
      s.close();
    }
  });

  it('is a resync when the gateway loses its connection to Redis', async () => {
    const s = await events(bob.key);
    await s.next();
    const reader = await eventually(async () =>
      String(await redis.client('LIST'))
        .split('\n')
        .find((line) => / name=matchbox-event-feed /.test(line)),
    );
    await redis.client('KILL', 'ID', /id=([0-9]+)/.exec(reader)?.[1] as string);
    const resync = await s.next();
    assert.equal(resync.event, 'resync');
    // It reads on: bob's next order comes through.
    const next = await submit(bob.key, sell('1', '197.00'));
    assert.deepEqual(summary([await s.next()]), [`order ${next.id} NEW 0`]);
    s.close();
  });

  it('answers 401 without a key and 429 past the streams a user may open, in the error shape', async () => {
    const none = await events(undefined);
    assert.equal(none.status, 401);
    assert.equal((none.error?.error as { code: string }).code, 'UNAUTHORIZED');

    // Three at once, two allowed.
    const opened = await Promise.all([events(bob.key), events(bob.key), events(bob.key)]);
    assert.deepEqual(opened.map((s) => s.status).sort(), [200, 200, 429]);
    const [one, two] = opened.filter((s) => s.status === 200) as [EventStream, EventStream];
    const refused = opened.find((s) => s.status === 429) as EventStream;
    assert.equal((refused.error?.error as { code: string }).code, 'RATE_LIMITED');
    assert.equal(refused.headers.get('retry-after'), '1');
    await Promise.all([one.next(), two.next()]);
    one.close();
    // Closed, it no longer counts.
    await eventually(async () => {
      const s = await openEvents(t.url, bob.key);
      s.close();
      return s.status === 200 ? true : undefined;
    });
    two.close();
  });
});

describe('live order updates across shards', () => {
  let t: TestSystem;
  let stopped = false;

  before(async () => {
    t = await startTestSystem({ SHARDS: '2', SHARD_PINS: 'AAPL=0,MSFT=1' });
  });
  after(async () => {
    if (!stopped) await t.stop();
  });

  it('gives a position per shard, and goes on after it on each', async () => {
    const alice = await t.user('alice');
    const place = async (symbol: string, price: string): Promise<string> => {
      const r = await t.api(alice.key, 'POST', '/v1/orders', {
        symbol,
        side: 'SELL',
        type: 'LIMIT',
        quantity: '1',
        price,
      });
      assert.equal(r.status, 201);
      return r.body.id as string;
    };
    const s = await openEvents(t.url, alice.key);
    try {
      assert.match((await s.next()).id ?? '', /^[0-9a-f]{12}:[0-9]+,[0-9]+$/);
      const aapl = await place('AAPL', '100.00');
      const msft = await place('MSFT', '200.00');
      const live = [await s.next(), await s.next()].map((e) => e.data.id).sort();
      assert.deepEqual(live, [aapl, msft].sort());
      const from = s.lastId as string;
      s.close();

      // Away: one order on each shard.
      const later = [await place('MSFT', '201.00'), await place('AAPL', '101.00')];
      await eventually(async () => {
        const r = await t.api(alice.key, 'GET', '/v1/orders?status=OPEN');
        const open = r.body.orders as { id: string; status: string }[];
        return later.every((id) => open.some((o) => o.id === id && o.status === 'NEW'))
          ? true
          : undefined;
      });
      const again = await openEvents(t.url, alice.key, from);
      try {
        assert.equal((await again.next()).event, 'ready');
        const missed = [await again.next(), await again.next()];
        assert.deepEqual(
          missed.map((e) => e.event),
          ['order', 'order'],
        );
        assert.deepEqual(missed.map((e) => e.data.id).sort(), [...later].sort());
        await assert.rejects(again.next(300), /no event/);
      } finally {
        again.close();
      }
    } finally {
      s.close();
    }
  });

  it('is a resync when a shard’s live events do not follow on', async () => {
    const alice = await t.user('alice');
    const s = await openEvents(t.url, alice.key);
    try {
      await s.next();
      // What a Redis that went back would look like to the reader: a batch that does not begin
      // just after the last one. (The last test of this system: its shard 1 is then spoilt.)
      const keys = shardKeys(t.config.redisPrefix, 1);
      const w = Number((await t.system.redis.get(keys.written)) ?? 0);
      const batch = `{"first_seq":${w + 5},"last_seq":${w + 6},"orders":[],"trades":[]}`;
      await t.system.redis.xadd(keys.events, `0-${w + 6}`, 'b', batch);
      const e = await s.next();
      assert.equal(e.event, 'resync');
      assert.match(e.data.reason as string, /shard 1 does not follow on/);
      assert.match(e.id ?? '', new RegExp(`,${w + 6}$`));
    } finally {
      s.close();
    }
  });

  it(
    'ends its streams, and a connection that asked nothing, when the gateway stops',
    { timeout: 30_000 },
    async () => {
      const alice = await t.user('alice');
      const s = await openEvents(t.url, alice.key);
      await s.next();
      // A client's spare connection (a browser's preconnect): Node's server does not count it
      // idle, and without the gateway's own care would wait its headers timeout (60 s) for it.
      const spare = connect(Number(new URL(t.url).port), '127.0.0.1');
      await once(spare, 'connect');
      const spareClosed = once(spare, 'close');
      stopped = true;
      await t.stop();
      await s.ended;
      await spareClosed;
    },
  );
});

describe('an event stream’s outbox', () => {
  it('hands over everything held in one piece, in order, and ends past MAX_HELD', async () => {
    const out = new Outbox();
    out.open('7');
    out.resync('why', '8');
    assert.equal(
      await out.take(),
      'retry: 1000\nid: 7\nevent: ready\ndata: {}\n\nid: 8\nevent: resync\ndata: {"reason":"why"}\n\n',
    );
    const order = { id: 'x'.repeat(1000) } as never;
    let pushed = 0;
    let cutOff = 0;
    out.onOverflow = () => cutOff++;
    while (!out.overflowed) {
      out.send([{ event: 'order', data: order }], String(++pushed));
    }
    // Each frame is a little over 1,000 characters: the cap is MAX_HELD, not a count.
    assert.ok(pushed > MAX_HELD / 1100 && pushed <= MAX_HELD / 1000 + 1, `${pushed} pushed`);
    // Nothing of it is written: the client is cut off and reconnects from the last id it read.
    assert.equal(cutOff, 1);
    assert.equal(await out.take(), undefined);
  });

  it('has room for a catch-up until a quarter of MAX_HELD waits, then once it is taken', async () => {
    const out = new Outbox();
    const big = { id: 'y'.repeat(MAX_HELD / 4) } as never;
    await out.room();
    out.send([{ event: 'order', data: big }], '1');
    let roomy = false;
    const room = out.room().then(() => (roomy = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(roomy, false);
    assert.match((await out.take()) ?? '', /^id: 1\nevent: order\n/);
    await room;
    assert.equal(roomy, true);
  });
});
