// The public market-data stream (`GET /v1/market/events`) over real HTTP, against real Redis and
// PostgreSQL: every trade of the symbols followed, in order and nothing of others; each book as
// it stands whenever its top levels change; a reconnect with Last-Event-ID goes on after the last
// trade it saw; bad requests change nothing and say why.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { Agent } from 'undici';
import type { Dispatcher } from 'undici';
import { openStream } from '../support/events.js';
import type { EventStream, StreamEvent } from '../support/events.js';
import { eventually, startTestSystem } from '../support/system.js';
import type { TestSystem } from '../support/system.js';

type Level = { price: string; quantity: string };

describe('market-data stream', () => {
  let t: TestSystem;
  let redis: Redis;
  let alice: { id: string; key: string };
  let bob: { id: string; key: string };
  const open: EventStream[] = [];

  before(async () => {
    t = await startTestSystem({ MARKET_STREAMS: '3', MARKET_STREAMS_PER_ADDRESS: '2' });
    redis = new Redis(t.config.redisUrl as string);
    [alice, bob] = await Promise.all([t.user('alice'), t.user('bob')]);
  });
  after(async () => {
    for (const s of open) s.close();
    redis.disconnect();
    await t.stop();
  });

  async function market(
    query: string,
    lastEventId?: string,
    from?: Dispatcher,
  ): Promise<EventStream> {
    const s = await openStream(`${t.url}/v1/market/events?${query}`, undefined, lastEventId, from);
    open.push(s);
    return s;
  }

  async function submit(key: string, body: Record<string, unknown>): Promise<{ id: string }> {
    const r = await t.api(key, 'POST', '/v1/orders', body);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body as { id: string };
  }
  const sell = (symbol: string, quantity: string, price: string) =>
    submit(alice.key, { symbol, side: 'SELL', type: 'LIMIT', quantity, price });
  const buy = (symbol: string, quantity: string) =>
    submit(bob.key, { symbol, side: 'BUY', type: 'MARKET', quantity });

  /** The book events' levels, as `price×quantity` text, to compare whole books. */
  const levels = (e: StreamEvent, side: 'bids' | 'asks') =>
    (e.data[side] as Level[]).map((l) => `${l.quantity}@${l.price}`);
  const isBook = (symbol: string, asks: string[]) => (e: StreamEvent) =>
    e.event === 'book' &&
    e.data.symbol === symbol &&
    JSON.stringify(levels(e, 'asks')) === JSON.stringify(asks);
  const trades = (list: StreamEvent[]) =>
    list
      .filter((e) => e.event === 'trade')
      .map(
        (e) => `${e.data.symbol as string} ${e.data.quantity as string}@${e.data.price as string}`,
      );

  it('sends each trade of the symbols followed and each book as it stands, nothing of others', async () => {
    const s = await market('symbols=AAPL,MSFT&depth=2');
    assert.equal(s.status, 200);
    assert.equal(s.headers.get('content-type'), 'text/event-stream');
    const ready = await s.next();
    assert.equal(ready.event, 'ready');
    assert.match(ready.id ?? '', /^[0-9a-f]{12}:[0-9]+$/);
    // Each book at once, as it stands: empty.
    const first = [await s.next(), await s.next()];
    assert.deepEqual(first.map((e) => `${e.event} ${e.data.symbol as string}`).sort(), [
      'book AAPL',
      'book MSFT',
    ]);
    for (const e of first) {
      assert.deepEqual([e.data.bids, e.data.asks], [[], []]);
      assert.equal(typeof e.data.sequence, 'number');
      assert.equal(e.id, undefined, 'a book is no position');
    }

    await sell('AAPL', '10', '190.00');
    await sell('AAPL', '5', '191.00');
    await sell('AAPL', '3', '192.00');
    // Two levels a side, as asked: the third is not shown.
    await s.until(isBook('AAPL', ['10@190.00', '5@191.00']));

    // A symbol not followed trades: nothing of it comes.
    await sell('GOOG', '2', '140.00');
    await buy('GOOG', '2');
    await buy('AAPL', '4');
    const upTo = await s.until(isBook('AAPL', ['6@190.00', '5@191.00']));
    assert.deepEqual(trades(upTo), ['AAPL 4@190.00']);
    assert.ok(upTo.every((e) => e.data.symbol !== 'GOOG'));

    // The trade is the one GET /trades shows, with its symbol and the engine's sequence, and
    // nothing of either side's orders or users.
    const trade = upTo.find((e) => e.event === 'trade') as StreamEvent;
    assert.ok(trade.id !== undefined, 'a batch’s last event carries the position');
    const shown = (await t.api(undefined, 'GET', '/v1/instruments/AAPL/trades?limit=1')).body
      .trades as Record<string, unknown>[];
    const { sequence } = trade.data;
    assert.ok(typeof sequence === 'number' && sequence > 0);
    assert.deepEqual({ ...trade.data }, { ...shown[0], symbol: 'AAPL', sequence });
    // The book that shows it is at or past the trade's sequence.
    assert.ok((upTo.at(-1)?.data.sequence as number) >= sequence);

    // One MARKET order through two levels: both trades, in order, then the book after both.
    await buy('AAPL', '8');
    const swept = await s.until(isBook('AAPL', ['3@191.00', '3@192.00']));
    assert.deepEqual(trades(swept), ['AAPL 6@190.00', 'AAPL 2@191.00']);
    s.close();
  });

  it('goes on after Last-Event-ID with the trades it missed, without a repeat', async () => {
    const s = await market('symbols=MSFT');
    await s.until((e) => e.event === 'book');
    await sell('MSFT', '10', '400.00');
    await buy('MSFT', '1');
    await s.until((e) => e.event === 'trade');
    const from = s.lastId as string;
    s.close();

    await buy('MSFT', '2');
    await buy('MSFT', '3');
    const again = await market('symbols=MSFT', from);
    assert.equal((await again.next()).event, 'ready');
    const caught = await again.until((e) => e.event === 'trade' && e.data.quantity === '3');
    assert.deepEqual(trades(caught), ['MSFT 2@400.00', 'MSFT 3@400.00']);
    // And the book as it stands now, read apart from the trades: before, between or after them.
    if (!again.seen.some(isBook('MSFT', ['4@400.00'])))
      await again.until(isBook('MSFT', ['4@400.00']));
    await buy('MSFT', '4');
    const live = await again.until((e) => e.event === 'trade');
    assert.deepEqual(trades(live), ['MSFT 4@400.00']);
    again.close();
  });

  it('sends the books again after a resync (the gateway lost its connection to Redis)', async () => {
    const s = await market('symbols=AMZN');
    await s.until((e) => e.event === 'book');
    const reader = await eventually(async () =>
      String(await redis.client('LIST'))
        .split('\n')
        .find((line) => / name=matchbox-event-feed /.test(line)),
    );
    await redis.client('KILL', 'ID', /id=([0-9]+)/.exec(reader)?.[1] as string);
    const resync = await s.next();
    assert.equal(resync.event, 'resync');
    // The book, unchanged, comes again: a client that cleared its state on resync has it back.
    const book = await s.next();
    assert.equal(book.event, 'book');
    assert.equal(book.data.symbol, 'AMZN');
    // It reads on.
    await sell('AMZN', '1', '180.00');
    await buy('AMZN', '1');
    assert.deepEqual(trades(await s.until((e) => e.event === 'trade')), ['AMZN 1@180.00']);
    s.close();
  });

  it('answers 400 for symbols it cannot follow, 429 past the streams of one address and 503 past the gateway’s, in the error shape', async () => {
    for (const [query, code] of [
      ['symbols=AAPL,NOPE', 'UNKNOWN_SYMBOL'],
      ['symbols=aapl', 'VALIDATION_ERROR'],
      ['symbols=AAPL,,MSFT', 'VALIDATION_ERROR'],
      ['symbols=AAPL&depth=0', 'VALIDATION_ERROR'],
      ['symbols=AAPL&depth=101', 'VALIDATION_ERROR'],
      ['depth=5', 'VALIDATION_ERROR'],
      [`symbols=${Array.from({ length: 51 }, (_, i) => `S${i}`).join(',')}`, 'VALIDATION_ERROR'],
    ] as const) {
      const s = await market(query);
      assert.equal(s.status, 400, query);
      const error = s.error?.error as { code: string; details: { field: string }[] };
      assert.equal(error.code, code, query);
      assert.ok(error.details.length > 0, query);
    }

    // Wait for the earlier tests' streams to be gone.
    await eventually(async () =>
      /^matchbox_market_streams\{[^}]*\} 0$/m.test(await (await fetch(metricsUrl())).text())
        ? true
        : undefined,
    );
    // Three at once from one address, two allowed from it.
    const here = await Promise.all([1, 2, 3].map(() => market('symbols=TSLA')));
    assert.deepEqual(here.map((s) => s.status).sort(), [200, 200, 429]);
    const limited = here.find((s) => s.status === 429) as EventStream;
    assert.equal((limited.error?.error as { code: string }).code, 'RATE_LIMITED');
    assert.equal(limited.headers.get('retry-after'), '1');
    // From another address: room for one more on the gateway, three in all.
    const elsewhere = new Agent({
      connect: (opts, done) => {
        const socket = connect({
          host: opts.hostname,
          port: Number(opts.port),
          localAddress: '127.0.0.2',
        });
        socket.once('connect', () => done(null, socket));
        socket.once('error', (err) => done(err, null));
        return socket;
      },
    });
    try {
      const there = await Promise.all(
        [1, 2].map(() => market('symbols=TSLA', undefined, elsewhere)),
      );
      assert.deepEqual(there.map((s) => s.status).sort(), [200, 503]);
      const refused = there.find((s) => s.status === 503) as EventStream;
      assert.equal((refused.error?.error as { code: string }).code, 'OVERLOADED');
      assert.equal(refused.headers.get('retry-after'), '1');
      for (const s of [...here, ...there]) s.close();
      // Closed, they no longer count.
      await eventually(async () => {
        const s = await market('symbols=TSLA', undefined, elsewhere);
        s.close();
        return s.status === 200 ? true : undefined;
      });
    } finally {
      await elsewhere.close();
    }
  });

  it('shows 10 levels a side unless asked for another depth', async () => {
    const r = await fetch(`${t.url}/v1/admin/instruments/DEEP`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${t.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tick_size: '0.01', lot_size: '1' }),
    });
    assert.equal(r.status, 201);
    const s = await market('symbols=DEEP');
    await s.until((e) => e.event === 'book');
    const prices = Array.from({ length: 12 }, (_, i) => `${10 + i}.00`);
    for (const price of prices) await sell('DEEP', '1', price);
    await s.until(
      isBook(
        'DEEP',
        prices.slice(0, 10).map((p) => `1@${p}`),
      ),
    );
    s.close();
  });

  it('gives candles of a symbol’s trades once PostgreSQL has them, and 4xx for what it cannot give', async () => {
    const listed = await fetch(`${t.url}/v1/admin/instruments/CNDL`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${t.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tick_size: '0.05', lot_size: '0.5' }),
    });
    assert.equal(listed.status, 201);
    await sell('CNDL', '2', '10.05');
    await sell('CNDL', '1.5', '10.10');
    await sell('CNDL', '4', '10.20');
    await buy('CNDL', '1');
    await buy('CNDL', '2.5');
    await buy('CNDL', '0.5');
    type C = Record<string, string | number>;
    // Summed over the candles returned, in case a day boundary falls between the trades.
    const got = await eventually(async () => {
      const r = await t.api(undefined, 'GET', '/v1/instruments/CNDL/candles?interval=1d&limit=2');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const list = r.body.candles as C[];
      return list.reduce((n, c) => n + (c.trades as number), 0) === 4 ? list : undefined;
    });
    assert.equal(got[0]?.open, '10.05');
    assert.equal(got.at(-1)?.close, '10.20');
    assert.deepEqual(
      [Math.max(...got.map((c) => Number(c.high))), Math.min(...got.map((c) => Number(c.low)))],
      [10.2, 10.05],
    );
    if (got.length === 1) {
      // 1 @ 10.05, then 1 @ 10.05 + 1.5 @ 10.10, then 0.5 @ 10.20: exact, at the instrument's scale.
      assert.deepEqual(
        { volume: got[0]?.volume, quote_volume: got[0]?.quote_volume },
        { volume: '4.0', quote_volume: '40.350' },
      );
      assert.match(got[0]?.open_time as string, /T00:00:00\.000Z$/);
    }
    // Long before the first trade: no candle.
    const before = await t.api(
      undefined,
      'GET',
      '/v1/instruments/CNDL/candles?interval=1m&end_time=2020-01-01T00:00:00.000Z',
    );
    assert.deepEqual(before.body, { symbol: 'CNDL', interval: '1m', candles: [] });

    for (const [query, status] of [
      ['interval=2m', 400],
      ['interval=1m&limit=0', 400],
      ['interval=1m&limit=1001', 400],
      ['interval=1m&end_time=yesterday', 400],
      ['limit=5', 400],
    ] as const) {
      const r = await t.api(undefined, 'GET', `/v1/instruments/CNDL/candles?${query}`);
      assert.equal(r.status, status, query);
      assert.equal(r.body.error?.code, 'VALIDATION_ERROR', query);
    }
    const unknown = await t.api(undefined, 'GET', '/v1/instruments/NOPE/candles?interval=1m');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error?.code, 'NOT_FOUND');
  });

  it('gives the candles of the window asked for, and 503 when they take too long or too many are asked at once', async () => {
    // Trades at known times, straight into PostgreSQL (as the batch writer stores them).
    const put = (seq: number, iso: string, price: string) => t.db.sql`
      INSERT INTO trades (id, shard, seq, trade_no, symbol, price, quantity, taker_side,
        taker_order_id, maker_order_id, taker_user_id, maker_user_id, executed_at)
      VALUES (gen_random_uuid(), 'old', ${seq}, 0, 'AMZN', ${price}, '1', 'BUY', gen_random_uuid(),
        gen_random_uuid(), ${bob.id}, ${alice.id}, ${iso})`;
    await put(1, '2020-03-01T09:58:10.000Z', '10.00');
    await put(2, '2020-03-01T09:59:59.999Z', '11.00');
    await put(3, '2020-03-01T10:00:00.000Z', '12.00');
    await put(4, '2020-03-01T10:00:59.999Z', '13.00');
    await put(5, '2020-03-01T10:01:00.000Z', '14.00');
    const window = async (query: string) => {
      const r = await t.api(undefined, 'GET', `/v1/instruments/AMZN/candles?interval=1m&${query}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return (r.body.candles as { open_time: string; open: string; close: string }[]).map(
        (c) => `${c.open_time.slice(11, 16)} ${c.open}-${c.close}`,
      );
    };
    // The interval that holds end_time is the last; limit counts intervals, empty ones too.
    assert.deepEqual(await window('limit=1&end_time=2020-03-01T10:00:30.000Z'), [
      '10:00 12.00-13.00',
    ]);
    assert.deepEqual(await window('limit=2&end_time=2020-03-01T10:00:00.000Z'), [
      '09:59 11.00-11.00',
      '10:00 12.00-13.00',
    ]);
    assert.deepEqual(await window('limit=3&end_time=2020-03-01T10:01:59.999Z'), [
      '09:59 11.00-11.00',
      '10:00 12.00-13.00',
      '10:01 14.00-14.00',
    ]);
    assert.deepEqual(await window('limit=4&end_time=2020-03-01T10:01:00.000Z'), [
      '09:58 10.00-10.00',
      '09:59 11.00-11.00',
      '10:00 12.00-13.00',
      '10:01 14.00-14.00',
    ]);
    // A leap second passes the format but no Date holds it: 400, not a fault.
    const leap = await t.api(
      undefined,
      'GET',
      '/v1/instruments/AMZN/candles?interval=1m&end_time=2016-12-31T23:59:60Z',
    );
    assert.equal(leap.status, 400);
    assert.equal(leap.body.error?.code, 'VALIDATION_ERROR');

    // The trades table held by another transaction: two reads wait (and are cancelled at their
    // statement timeout), the third is refused at once.
    let release: () => void = () => {};
    const held = new Promise<void>((r) => (release = r));
    let locked: () => void = () => {};
    const lockTaken = new Promise<void>((r) => (locked = r));
    const holder = t.db.sql.begin(async (tx) => {
      await tx`LOCK TABLE trades IN ACCESS EXCLUSIVE MODE`;
      locked();
      await held;
    });
    await lockTaken;
    try {
      const ask = () => t.api(undefined, 'GET', '/v1/instruments/AMZN/candles?interval=1m');
      const first = [ask(), ask()];
      await new Promise((r) => setTimeout(r, 200));
      const third = await ask();
      assert.equal(third.status, 503);
      assert.equal(third.body.error?.code, 'OVERLOADED');
      assert.match(third.body.error?.message ?? '', /at once/);
      for (const r of await Promise.all(first)) {
        assert.equal(r.status, 503, JSON.stringify(r.body));
        assert.equal(r.body.error?.code, 'OVERLOADED');
        assert.match(r.body.error?.message ?? '', /too long/);
        assert.equal(r.headers.get('retry-after'), '1');
      }
    } finally {
      release();
      await holder;
    }
    // A query that ran out its time is no sign of PostgreSQL down: the rest go on at once.
    assert.equal((await t.api(alice.key, 'GET', '/v1/orders?limit=1')).status, 200);
    assert.equal((await window('limit=1&end_time=2020-03-01T10:01:00.000Z')).length, 1);
  });

  function metricsUrl(): string {
    return `${t.url}/metrics`;
  }
});
