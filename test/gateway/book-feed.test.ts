// The conflation of the books that market-data streams follow (gateway/book-feed.ts), with a
// book read by a function that counts its calls: touches while a read is waiting or under way
// make one more read, not one each; a stream is sent a book only when its own levels changed; a
// read that fails is tried again and logged once.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { BookFeed } from '../../src/gateway/book-feed.js';
import type { BookData } from '../../src/gateway/book-feed.js';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Outbox, drained } from '../../src/gateway/routes/events.js';
import { addressKey } from '../../src/gateway/routes/market.js';
import { ParsedBatch, marketTrades } from '../../src/queue/order-feed.js';

const batchOf = (symbol: string) =>
  new ParsedBatch(
    `{"first_seq":1,"last_seq":1,"orders":[{"symbol":${JSON.stringify(symbol)}}],"trades":[]}`,
  );

/** A book of `asks` (quantities at 100, 101, …), read by a function that counts its calls. */
function source() {
  const s = {
    asks: [] as number[],
    reads: [] as { symbol: string; depth: number }[],
    fail: false,
    read: async (symbol: string, depth: number): Promise<BookData> => {
      s.reads.push({ symbol, depth });
      await new Promise((r) => setTimeout(r, 5));
      if (s.fail) throw new Error('engine unavailable');
      return {
        symbol,
        bids: [],
        asks: s.asks.slice(0, depth).map((q, i) => ({ price: `${100 + i}`, quantity: `${q}` })),
        sequence: s.reads.length,
      };
    },
  };
  return s;
}

const settle = (ms = 120) => new Promise((r) => setTimeout(r, ms));

/** Waits until `check` holds (the reads under test are a few ms each), then a little more. */
async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
  await settle(60);
}

describe('book feed', () => {
  it('reads a touched book once for many touches, and sends each watcher only what changed for it', async () => {
    const src = source();
    const feed = new BookFeed(src.read, pino({ level: 'silent' }), 30);
    const one: BookData[] = [];
    const two: BookData[] = [];
    src.asks = [5, 7];
    const w1 = feed.watch('AAPL', { depth: 1, send: (b) => one.push(b) });
    const w2 = feed.watch('AAPL', { depth: 2, send: (b) => two.push(b) });
    await until(() => two.length > 0);
    assert.equal(src.reads.length, 1, 'both watchers came before the first read: one read');
    assert.deepEqual(src.reads[0], { symbol: 'AAPL', depth: 2 });
    assert.deepEqual(
      one.map((b) => b.asks.length),
      [1],
    );
    assert.deepEqual(
      two.map((b) => b.asks.length),
      [2],
    );

    // Many batches touch it: one more read, not one each.
    src.asks = [5, 8];
    for (let i = 0; i < 50; i++) feed.touched(batchOf('AAPL'));
    await until(() => two.length > 1);
    assert.equal(src.reads.length, 2);
    // Only the second level moved: the one-level watcher is sent nothing.
    assert.equal(one.length, 1);
    assert.deepEqual(two[1]?.asks, [
      { price: '100', quantity: '5' },
      { price: '101', quantity: '8' },
    ]);

    // Another symbol's batch (and one whose text only contains the name elsewhere) reads nothing.
    feed.touched(batchOf('MSFT'));
    feed.touched(
      new ParsedBatch('{"first_seq":2,"last_seq":2,"orders":[],"trades":[],"x":"AAPL"}'),
    );
    await settle();
    assert.equal(src.reads.length, 2);

    // again(): sent once more even though unchanged.
    w1.again();
    await until(() => one.length > 1);
    assert.equal(one.length, 2);
    assert.equal(two.length, 2);

    w1.stop();
    w2.stop();
    feed.touched(batchOf('AAPL'));
    await settle();
    assert.equal(src.reads.length, 3, 'nobody watches: no read');
    feed.stop();
  });

  it('sends every watcher the book after a trade of its symbol, changed or not, and after again() during a read', async () => {
    const src = source();
    const feed = new BookFeed(src.read, pino({ level: 'silent' }), 10);
    src.asks = [5];
    const got: BookData[] = [];
    feed.watch('AAPL', { depth: 1, send: (b) => got.push(b) });
    await until(() => got.length === 1);
    // A batch without a trade of the symbol, the book unchanged: nothing is sent.
    feed.touched(batchOf('AAPL'));
    await until(() => src.reads.length === 2);
    assert.equal(got.length, 1);
    // A trade (its quantity put back by then): the same levels are sent again, at a later
    // sequence, so that a book at or past the trade's comes.
    const traded = new ParsedBatch(
      JSON.stringify({
        first_seq: 3,
        last_seq: 3,
        orders: [{ symbol: 'AAPL' }],
        trades: [{ id: 't', seq: 3, symbol: 'AAPL', price: '100', quantity: '1' }],
      }),
    );
    feed.touched(traded);
    await until(() => got.length === 2);
    assert.deepEqual(got[1]?.asks, got[0]?.asks);
    assert.ok((got[1]?.sequence as number) > (got[0]?.sequence as number));

    // again() while a read is under way: that read may have begun before the reason, so it is
    // no answer (the levels unchanged, it is not sent); the read after it is, and is sent.
    const w = feed.watch('MSFT', { depth: 1, send: (b) => got.push(b) });
    await until(() => got.length === 3);
    const reads = src.reads.length;
    feed.touched(batchOf('MSFT'));
    while (src.reads.length === reads) await new Promise((r) => setTimeout(r, 1));
    w.again();
    await until(() => got.length === 4);
    assert.equal(src.reads.length, reads + 2);
    assert.ok((got[3]?.sequence as number) > reads + 1, 'sent from the read after again()');
    feed.stop();
  });

  it('tries a failing read again, logs it once, and sends the book once it can', async () => {
    const src = source();
    const lines: string[] = [];
    const logger = pino(
      { level: 'info' },
      { write: (line: string) => lines.push((JSON.parse(line) as { msg: string }).msg) },
    );
    const feed = new BookFeed(src.read, logger, 10);
    const got: BookData[] = [];
    src.fail = true;
    src.asks = [3];
    feed.watch('TSLA', { depth: 5, send: (b) => got.push(b) });
    await settle(150);
    assert.ok(src.reads.length >= 3, `tried again (${src.reads.length} reads)`);
    assert.equal(got.length, 0);
    assert.deepEqual(lines, ['market data: cannot read the book; retrying']);
    src.fail = false;
    await until(() => got.length > 0);
    assert.deepEqual(
      got.map((b) => b.asks),
      [[{ price: '100', quantity: '3' }]],
    );
    assert.deepEqual(lines, [
      'market data: cannot read the book; retrying',
      'market data: book read again',
    ]);
    const reads = src.reads.length;
    await settle(100);
    assert.equal(src.reads.length, reads, 'read once it succeeded, not again untouched');
    feed.stop();
  });

  it('does not send a watcher that came during a read, wanting more levels, the shallower book', async () => {
    const src = source();
    const feed = new BookFeed(src.read, pino({ level: 'silent' }), 10);
    src.asks = [1, 2, 3];
    const shallow: BookData[] = [];
    const deep: BookData[] = [];
    feed.watch('GOOG', { depth: 1, send: (b) => shallow.push(b) });
    // Let the first read begin, then watch deeper while it is under way.
    await new Promise((r) => setTimeout(r, 2));
    while (src.reads.length === 0) await new Promise((r) => setTimeout(r, 1));
    feed.watch('GOOG', { depth: 3, send: (b) => deep.push(b) });
    await until(() => deep.length > 0);
    assert.deepEqual(
      src.reads.map((r) => r.depth),
      [1, 3],
    );
    assert.deepEqual(
      deep.map((b) => b.asks.length),
      [3],
    );
    assert.deepEqual(
      shallow.map((b) => b.asks.length),
      [1],
    );
    feed.stop();
  });
});

describe('market-data stream, in-process parts', () => {
  it('sends a slow client the latest book of each symbol, not each book', async () => {
    const out = new Outbox();
    out.open('r:1');
    const book = (symbol: string, q: string) => ({
      symbol,
      bids: [],
      asks: [{ price: '1', quantity: q }],
      sequence: 1,
    });
    for (let i = 1; i <= 1000; i++) out.book('AAPL', book('AAPL', String(i)));
    out.book('MSFT', book('MSFT', '7'));
    const text = (await out.take()) as string;
    const books = text.split('\n').filter((l) => l.startsWith('data: {"symbol"'));
    assert.deepEqual(
      books.map((l) => {
        const b = JSON.parse(l.slice(6)) as { symbol: string; asks: { quantity: string }[] };
        return `${b.symbol} ${b.asks[0]?.quantity}`;
      }),
      ['AAPL 1000', 'MSFT 7'],
    );
    assert.equal(out.overflowed, false);
  });

  it('drops the books held when it resyncs: fresh ones follow', async () => {
    const out = new Outbox();
    out.open('r:1');
    out.book('AAPL', { symbol: 'AAPL', bids: [], asks: [], sequence: 1 });
    out.resync('why', 'r:2');
    const text = (await out.take()) as string;
    assert.ok(!text.includes('event: book'), text);
    assert.ok(text.includes('event: resync'));
  });

  it('says when a connection has taken nothing for a while', async () => {
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // The client never reads: write until even the kernel's buffers are full.
      const chunk = 'x'.repeat(1 << 16);
      void (async () => {
        for (let i = 0; i < 2_000; i++) {
          while (res.write(chunk));
          if (!(await drained(res, 200))) {
            server.emit('stalled', false);
            return;
          }
        }
        server.emit('stalled', true);
      })();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    socket.pause();
    socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    const [taken] = (await once(server, 'stalled')) as [boolean];
    assert.equal(taken, false);
    socket.destroy();
    server.closeAllConnections();
    server.close();
  });

  it('counts an IPv6 client by its /64, and an IPv4 one (mapped or not) by its address', () => {
    assert.equal(addressKey('127.0.0.1'), '127.0.0.1');
    assert.equal(addressKey('::ffff:10.1.2.3'), '10.1.2.3');
    assert.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(addressKey('2001:0DB8:0:0:ffff::2'), '2001:db8:0:0::/64');
    assert.equal(addressKey('2001:db8:0:1::2'), '2001:db8:0:1::/64');
    assert.equal(addressKey('::1'), '0:0:0:0::/64');
  });

  it('takes the trades of the symbols followed in the order the engine made them', () => {
    const trade = (seq: number, symbol: string) => ({
      id: `t${seq}`,
      seq,
      trade_no: 0,
      symbol,
      price: '1.00',
      quantity: '1',
      taker_side: 'BUY',
      taker_order_id: 'o1',
      maker_order_id: 'o2',
      taker_user_id: 'u1',
      maker_user_id: 'u2',
      executed_at: '2026-12-08T00:00:00.000Z',
    });
    const batch = new ParsedBatch(
      JSON.stringify({
        first_seq: 1,
        last_seq: 4,
        orders: [],
        trades: [trade(1, 'AAPL'), trade(2, 'MSFT'), trade(3, 'GOOG'), trade(4, 'AAPL')],
      }),
    );
    const both = marketTrades(['MSFT', 'AAPL']);
    assert.equal(both.mentions(batch), true);
    const taken = both.of(batch);
    assert.deepEqual(
      taken.map((e) => `${e.event} ${(e.data as { id: string }).id}`),
      ['trade t1', 'trade t2', 'trade t4'],
    );
    // Public fields only, and the sequence.
    assert.deepEqual(taken[0]?.data, {
      id: 't1',
      symbol: 'AAPL',
      price: '1.00',
      quantity: '1',
      taker_side: 'BUY',
      executed_at: '2026-12-08T00:00:00.000Z',
      sequence: 1,
    });
    assert.deepEqual(
      marketTrades(['GOOG'])
        .of(batch)
        .map((e) => (e.data as { id: string }).id),
      ['t3'],
    );
    assert.equal(marketTrades(['TSLA']).mentions(batch), false);
  });
});
