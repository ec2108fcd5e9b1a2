import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { OrderState } from '../../src/queue/records.js';
import { WRITER_GROUP } from '../../src/queue/keys.js';
import { rejectsKey } from '../../src/writer/batch-writer.js';
import { allTrades, filled, orderState, trade } from '../db/fixtures.js';
import {
  harness,
  lockOrders,
  logOrderWrites,
  ordersById,
  rowVersions,
  waitFor,
} from './harness.js';
import type { Harness } from './harness.js';

/** XREADGROUP calls Redis has run so far (its command statistics). */
async function xreadgroupCalls(h: Harness): Promise<number> {
  const stats = await h.redis.info('commandstats');
  return Number(/cmdstat_xreadgroup:calls=(\d+)/.exec(stats)?.[1] ?? 0);
}

describe('batch writer', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness();
  });
  afterEach(async () => {
    await h.close();
  });

  /**
   * Three orders placed (seq 1–3) and two event batches: the second order trades against the
   * first, then the first trades again against the third; the third order's PLACE has no event.
   */
  async function scenario(closing?: string[]) {
    const sell = orderState(h.alice, { side: 'SELL', price: '187.25', client_order_id: 'a-1' });
    const buy = orderState(h.bob, { side: 'BUY', price: '187.3', quantity: '4', quantity_lots: 4 });
    const buy2 = orderState(h.bob, { side: 'BUY', price: '187.25', type: 'LIMIT' });
    await h.place(1, sell);
    await h.place(2, buy);
    await h.place(3, buy2);
    const sell1 = { ...sell, seq: 1, version: 1, status: 'NEW' as const };
    const buyFilled = filled({ ...buy, seq: 2 }, 4, 18725, 2);
    const sellPartial = filled(sell1, 4, 18725, 2);
    const t1 = trade(buyFilled, sellPartial, 2, 0, { quantity: '4', price: '187.25' });
    await h.events(
      { first_seq: 1, last_seq: 2, orders: [sell1, buyFilled, sellPartial], trades: [t1] },
      closing === undefined ? [] : [buyFilled.id],
    );
    const sellDone = filled(sellPartial, 6, 18725, 3);
    const buy2Partial = filled({ ...buy2, seq: 3 }, 6, 18725, 3);
    const t2 = trade(buy2Partial, sellDone, 3, 0, { quantity: '6', price: '187.25' });
    await h.events(
      { first_seq: 3, last_seq: 3, orders: [sellDone, buy2Partial], trades: [t2] },
      closing === undefined ? [] : [sellDone.id, ...closing],
    );
    return {
      expected: [sellDone, buyFilled, buy2Partial],
      trades: [t1, t2],
      placed: [sell, buy, buy2],
    };
  }

  const byId = (states: OrderState[]) => new Map(states.map((s) => [s.id, s]));

  /** A stream's set-aside records: the entry each came from, the error code, the record. */
  const setAside = async (stream: string) =>
    ((await h.redis.xrange(rejectsKey(stream), '-', '+')) as [string, string[]][]).map(([, f]) => ({
      id: f[1],
      code: f[3],
      record: f[7],
    }));

  it('writes every field of placed orders, order states and trades, then acks', async () => {
    const { expected, trades } = await scenario();
    const w = h.writer();
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 5);
    assert.deepEqual(await ordersById(h.db.sql), byId(expected));
    assert.deepEqual(await allTrades(h.db.sql), trades);
    assert.equal(await h.pending(h.keys.orders), 0);
    assert.equal(await h.pending(h.keys.events), 0);
    assert.equal(w.stats.flushes, 1, 'one transaction for the five entries');
    await w.stop();
  });

  it('writes a PLACE alone as PENDING, version 0, with the stream id as its seq', async () => {
    const o = orderState(h.alice, { stop_price: '190', stop_ticks: 19000, type: 'STOP_LIMIT' });
    await h.place(17, o);
    const w = h.writer();
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 1);
    assert.deepEqual(await ordersById(h.db.sql), byId([{ ...o, seq: 17 }]));
    const [row] = await h.db.sql<{ shard: string }[]>`SELECT shard FROM orders`;
    assert.equal(row?.shard, 's0');
    await w.stop();
  });

  it('writes an order once, as its state, when its outcome follows its PLACE within the deferral', async () => {
    const writes = await logOrderWrites(h.db.sql);
    const w = h.writer({ batchSize: 1, flushMs: 20, deferMs: 60_000 });
    await w.start();
    const o = orderState(h.alice);
    await h.place(1, o);
    // Read alone (the outcome is not in the stream yet) and held back by the flush it was due in.
    await waitFor(async () => (await h.pending(h.keys.orders)) === 1);
    await w.trimAll();
    assert.equal(w.stats.backlog, 1, 'held and pending: one entry, counted once');
    const v1 = { ...o, seq: 1, version: 1, status: 'NEW' as const };
    await h.events({ first_seq: 1, last_seq: 1, orders: [v1], trades: [] });
    await waitFor(() => w.stats.entriesWritten === 2);
    assert.deepEqual(await writes(), ['INSERT NEW'], 'never inserted PENDING, then rewritten');
    assert.deepEqual(await ordersById(h.db.sql), byId([v1]));
    assert.equal(await h.pending(h.keys.orders), 0, 'the PLACE acknowledged');
    await w.stop();
  });

  it('writes the PLACEs of a batch whose outcome was not written: refused or unreadable', async () => {
    const w = h.writer({ flushMs: 20, deferMs: 10 });
    await w.start();
    const placedLater = async (seq: number, refused: () => Promise<unknown>) => {
      // The outcome of `seq` cannot be written, and a later one can; the PLACE comes after both.
      await refused();
      await h.events({ first_seq: seq + 1, last_seq: seq + 1, orders: [], trades: [] });
      const before = w.stats.entriesWritten;
      await waitFor(() => w.stats.entriesWritten === before + 2);
      const o = orderState(h.alice);
      await h.place(seq, o);
      await waitFor(() => w.stats.entriesWritten === before + 3);
      return { ...o, seq };
    };
    const refused = await placedLater(1, () =>
      h.redis.xadd(h.keys.events, '0-1', 'b', '{"orders": [ not json'),
    );
    const unreadable = await placedLater(3, () =>
      h.redis.xadd(h.keys.events, '0-3', 'x', 'no payload'),
    );
    assert.equal(w.stats.rejected, 2);
    // Their PENDING rows are all PostgreSQL has of those orders.
    assert.deepEqual(await ordersById(h.db.sql), byId([refused, unreadable]));
    await w.stop();
  });

  /**
   * With outcomes 1–5,000 and 11,001–12,000 written and 5,001–11,000 refused: those 6,000 orders
   * have their PENDING rows, the others their state.
   */
  async function aRowForEveryOrder() {
    const [rows] = await h.db.sql<{ pending: number; open: number }[]>`
      SELECT count(*) FILTER (WHERE status = 'PENDING' AND seq BETWEEN 5001 AND 11000)::int AS pending,
        count(*) FILTER (WHERE status = 'NEW')::int AS open
      FROM orders`;
    assert.deepEqual({ ...rows }, { pending: 6_000, open: 6_000 }, 'a row for every order');
  }

  it('behind a backlog, never passes over the PLACEs of a refused outcome unread', async () => {
    // Outcomes first: 1–5,000 written, 5,001–11,000 refused (set aside), 11,001–12,000 later.
    const placed: OrderState[] = [];
    for (let seq = 1; seq <= 12_000; seq++) placed.push({ ...orderState(h.alice), seq });
    const states = (from: number, to: number) =>
      placed.slice(from - 1, to).map((o) => ({ ...o, version: o.seq, status: 'NEW' as const }));
    await h.events({ first_seq: 1, last_seq: 5_000, orders: states(1, 5_000), trades: [] });
    await h.redis.xadd(h.keys.events, '0-11000', 'b', '{"orders": [ not json');
    const w = h.writer({ flushMs: 1_000 });
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 2);
    // Then the PLACEs, far behind the outcomes, and the last batch's outcome.
    const pipeline = h.redis.pipeline();
    for (const o of placed) {
      pipeline.xadd(
        h.keys.orders,
        `0-${o.seq}`,
        'c',
        JSON.stringify({ k: 'place', order: { ...o, seq: 0 } }),
      );
    }
    await pipeline.exec();
    await h.events({
      first_seq: 5_001,
      last_seq: 12_000,
      orders: states(11_001, 12_000),
      trades: [],
    });
    await waitFor(() => w.stats.entriesWritten + w.stats.entriesSkipped === 12_003, 30_000);
    await aRowForEveryOrder();
    await w.stop();
  });

  it('writes the PLACEs of an outcome set aside while the next flush was already prepared', async () => {
    // All waiting before the writer starts: 12,000 PLACEs, and outcomes 1–5,000 (written),
    // 5,001–11,000 (refused, set aside) and 11,001–12,000 (written). The first flush takes the
    // outcomes and 10,000 PLACEs (reads of 250 until it holds a flush's most entries); it waits on
    // a lock while the writer reads the other PLACEs and prepares the next flush, in which those up
    // to 11,000 look superseded until the first sets their outcome aside.
    const placed = await h.placeMany(12_000);
    const states = (from: number, to: number) =>
      placed.slice(from - 1, to).map((o) => ({ ...o, version: o.seq, status: 'NEW' as const }));
    await h.events({ first_seq: 1, last_seq: 5_000, orders: states(1, 5_000), trades: [] });
    await h.redis.xadd(h.keys.events, '0-11000', 'b', '{"orders": [ not json');
    await h.events({
      first_seq: 11_001,
      last_seq: 12_000,
      orders: states(11_001, 12_000),
      trades: [],
    });
    const lock = await lockOrders(h.db.sql);
    const w = h.writer({ flushMs: 1_000 });
    await w.start();
    // Every entry delivered, none committed: the next flush is taken as soon as the reads run dry.
    await waitFor(async () => (await h.pending(h.keys.orders)) === 12_000, 30_000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await lock.release();
    await waitFor(() => w.stats.entriesWritten + w.stats.entriesSkipped === 12_003, 30_000);
    await aRowForEveryOrder();
    await w.stop();
  });

  it('after a restart, writes the PLACEs up to where the last run read the outcomes', async () => {
    const first = h.writer({ flushMs: 20 });
    await first.start();
    await h.redis.xadd(h.keys.events, '0-1', 'b', '{"orders": [ not json');
    await h.events({ first_seq: 2, last_seq: 2, orders: [], trades: [] });
    await waitFor(() => first.stats.entriesWritten === 2);
    await first.stop();
    // The next run does not know that the outcome of seq 1 was set aside.
    const next = h.writer({ flushMs: 20, deferMs: 10 });
    await next.start();
    await h.events({ first_seq: 3, last_seq: 3, orders: [], trades: [] });
    await waitFor(() => next.stats.entriesWritten === 1);
    const o = orderState(h.alice);
    await h.place(1, o);
    await waitFor(() => next.stats.entriesWritten === 2);
    assert.deepEqual(await ordersById(h.db.sql), byId([{ ...o, seq: 1 }]));
    await next.stop();
  });

  it('expires the cached status and fills of orders made final once PostgreSQL has them, not before', async () => {
    // The dispatcher's writes, by hand: event entries naming the orders they close, and status
    // hashes and fills lists without a TTL.
    // The second entry also names 300 more orders, past one script call's 250.
    const more = Array.from({ length: 300 }, () => orderState(h.alice));
    for (const o of more) await h.redis.hset(h.keys.order(o.id), 's', 'FILLED');
    const { expected } = await scenario(more.map((o) => o.id));
    const [sellDone, buyFilled, buy2Partial] = expected as [OrderState, OrderState, OrderState];
    const lost = { ...orderState(h.bob), seq: 4, version: 2, status: 'CANCELED' as const };
    for (const o of [...expected, lost]) {
      await h.redis.hset(h.keys.order(o.id), 'j', JSON.stringify(o), 's', o.status);
      await h.redis.rpush(h.keys.fills(o.id), '{}');
    }
    // Refused by PostgreSQL (not JSON): its order's state is readable nowhere else.
    await h.redis.xadd(h.keys.events, '0-4', 'b', '{"orders": [ not json', 'x', lost.id);
    const ttls = async (o: OrderState) => [
      await h.redis.ttl(h.keys.order(o.id)),
      await h.redis.ttl(h.keys.fills(o.id)),
    ];
    for (const o of [...expected, lost]) assert.deepEqual(await ttls(o), [-1, -1]);

    const w = h.writer({ statusTtlS: 600 });
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 6);
    assert.deepEqual(await ordersById(h.db.sql), byId(expected));
    for (const o of [sellDone, buyFilled]) {
      for (const ttl of await ttls(o)) assert.ok(ttl > 0 && ttl <= 600, `ttl ${ttl} of ${o.seq}`);
    }
    for (const o of more) {
      const ttl = await h.redis.ttl(h.keys.order(o.id));
      assert.ok(ttl > 0 && ttl <= 600, 'every order named is given its ttl');
    }
    assert.deepEqual(await ttls(buy2Partial), [-1, -1], 'an open order stays');
    assert.deepEqual(await ttls(lost), [-1, -1], 'a state PostgreSQL refused stays');
    await w.stop();
  });

  it('changes nothing when entries are delivered again, or an older state arrives later', async () => {
    const { expected, trades, placed } = await scenario();
    const w = h.writer();
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 5);
    await w.stop();
    const before = await rowVersions(h.db.sql);

    // Everything again, as after a crash between COMMIT and XACK.
    await h.redis.xgroup('SETID', h.keys.orders, WRITER_GROUP, '0');
    await h.redis.xgroup('SETID', h.keys.events, WRITER_GROUP, '0');
    // And a stale batch: the first order as it was at version 1, a trade already written.
    const [sellDone] = expected as [OrderState];
    const stale = { ...(placed[0] as OrderState), seq: 1, version: 1, status: 'NEW' as const };
    await h.events({ first_seq: 1, last_seq: 9, orders: [stale], trades: [trades[0]!] });
    const again = h.writer();
    await again.start();
    await waitFor(() => again.stats.entriesWritten === 6);
    await again.stop();

    assert.equal(again.stats.rowsWritten, 0);
    assert.deepEqual(await rowVersions(h.db.sql), before, 'no row even rewritten');
    assert.deepEqual(await ordersById(h.db.sql), byId(expected));
    assert.equal((await ordersById(h.db.sql)).get(sellDone.id)?.version, 3);
    assert.deepEqual(await allTrades(h.db.sql), trades);
  });

  it('keeps the newest of several states of one order in one flush', async () => {
    const o = orderState(h.alice);
    await h.place(1, o);
    const v1 = { ...o, seq: 1, version: 1, status: 'NEW' as const };
    const v5 = { ...v1, version: 5, status: 'CANCELED' as const, reject_reason: 'USER_CANCELED' };
    // Newest first in the stream: the flush must not depend on arrival order.
    await h.events({ first_seq: 5, last_seq: 5, orders: [v5], trades: [] });
    await h.events({ first_seq: 6, last_seq: 6, orders: [v1, v1], trades: [] });
    const w = h.writer();
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 3);
    assert.deepEqual(await ordersById(h.db.sql), byId([v5]));
    await w.stop();
  });

  it('reads a backlog of big event entries about a megabyte at a time, not 250 entries', async () => {
    // 40 dispatched batches of 250 orders each, ~100 kB apiece, waiting before the writer starts.
    const pipeline = h.redis.pipeline();
    let bytes = 0;
    for (let b = 0; b < 40; b++) {
      const orders = Array.from({ length: 250 }, (_, i) => {
        const seq = b * 250 + i + 1;
        return { ...orderState(h.alice), seq, version: seq, status: 'NEW' as const };
      });
      const batch = JSON.stringify({
        first_seq: b * 250 + 1,
        last_seq: (b + 1) * 250,
        orders,
        trades: [],
      });
      bytes += batch.length;
      pipeline.xadd(h.keys.events, `0-${(b + 1) * 250}`, 'b', batch);
    }
    await pipeline.exec();
    const before = await xreadgroupCalls(h);
    // One flush of everything as soon as it is read: no read waits for the interval.
    const w = h.writer({ batchSize: 40, flushMs: 60_000 });
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 40, 30_000);
    const made = (await xreadgroupCalls(h)) - before;
    // Two reads of the pending entries (none), then the backlog: a reply of 250 entries would
    // have taken all 40 (~4 MB) at once, and held every other client of Redis while it was built.
    assert.ok(bytes > 3.5 * 1024 * 1024, `${bytes} bytes`);
    assert.ok(made >= 2 + 4, `${made} reads`);
    assert.equal((await ordersById(h.db.sql)).size, 10_000);
    await w.stop();
  });

  it('reads a busy order stream 250 entries at a time, though event entries set a small count', async () => {
    // Before any event entry the writer sizes its reads for big ones (a few per read); order
    // entries are small, and COUNT is one for both streams: a full read of them is topped up.
    for (let seq = 1; seq <= 1_000; seq++) await h.place(seq, orderState(h.alice));
    const before = await xreadgroupCalls(h);
    const w = h.writer({ batchSize: 1_000, flushMs: 60_000, deferMs: 0 });
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 1_000, 30_000);
    const made = (await xreadgroupCalls(h)) - before;
    // Two pending reads, then per 250 entries a read and its top-up: a count of a few entries
    // would have taken hundreds of reads.
    assert.ok(made <= 20, `${made} reads`);
    assert.equal((await ordersById(h.db.sql)).size, 1_000);
    await w.stop();
  });

  it('commits as soon as the batch size is reached, without waiting for the interval', async () => {
    const w = h.writer({ batchSize: 5, flushMs: 60_000 });
    await w.start();
    const started = Date.now();
    for (let seq = 1; seq <= 5; seq++) await h.place(seq, orderState(h.alice));
    await waitFor(() => w.stats.entriesWritten === 5, 3_000);
    assert.ok(Date.now() - started < 3_000);
    assert.equal((await ordersById(h.db.sql)).size, 5);
    await w.stop();
  });

  it('commits fewer records once the interval after the first has passed', async () => {
    const w = h.writer({ batchSize: 100, flushMs: 400 });
    await w.start();
    const started = Date.now();
    for (let seq = 1; seq <= 3; seq++) await h.place(seq, orderState(h.alice));
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(w.stats.entriesWritten, 0, 'still lingering for more');
    assert.equal((await ordersById(h.db.sql)).size, 0);
    await waitFor(() => w.stats.entriesWritten === 3, 3_000);
    assert.ok(Date.now() - started >= 390, 'not before the interval');
    assert.equal(w.stats.flushes, 1);
    await w.stop();
  });

  it('stop() writes what it holds before resolving', async () => {
    const w = h.writer({ batchSize: 100, flushMs: 60_000 });
    await w.start();
    await h.place(1, orderState(h.alice));
    await waitFor(() => w.stats.backlog > 0 || true);
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(w.stats.entriesWritten, 0);
    await w.stop();
    assert.equal(w.stats.entriesWritten, 1);
    assert.equal((await ordersById(h.db.sql)).size, 1);
    assert.equal(await h.pending(h.keys.orders), 0);
  });

  it('first writes the entries it was delivered before a restart and never acked', async () => {
    const o1 = orderState(h.alice);
    const o2 = orderState(h.bob);
    await h.place(1, o1);
    await h.place(2, o2);
    // A previous run of this consumer read them, then died before COMMIT.
    await h.redis.xgroup('CREATE', h.keys.orders, WRITER_GROUP, '0', 'MKSTREAM');
    await h.redis.xreadgroup('GROUP', WRITER_GROUP, 'writer-1', 'STREAMS', h.keys.orders, '>');
    assert.equal(await h.pending(h.keys.orders), 2);
    const w = h.writer();
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 2);
    assert.deepEqual(
      await ordersById(h.db.sql),
      byId([
        { ...o1, seq: 1 },
        { ...o2, seq: 2 },
      ]),
    );
    assert.equal(await h.pending(h.keys.orders), 0);
    await w.stop();
  });

  it('makes its group again when Redis comes back without it, and writes what arrives then', async () => {
    const o1 = orderState(h.alice);
    await h.place(1, o1);
    const w = h.writer({ flushMs: 20 });
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 1);
    // As after a restart of a Redis that kept nothing: the streams, and the groups, gone.
    await h.redis.del(h.keys.orders, h.keys.events);
    // What the gateways re-queue and the dispatcher writes after it.
    const o2 = orderState(h.bob);
    await h.place(2, o2);
    const v2 = { ...o2, seq: 2, version: 1, status: 'NEW' as const };
    await h.events({ first_seq: 2, last_seq: 2, orders: [v2], trades: [] });
    await waitFor(async () => (await ordersById(h.db.sql)).get(o2.id)?.version === 1);
    assert.deepEqual(await ordersById(h.db.sql), byId([{ ...o1, seq: 1 }, v2]));
    await waitFor(async () => (await h.pending(h.keys.events)) === 0);
    assert.equal(await h.pending(h.keys.orders), 0, 'read and acknowledged in the new group');
    await w.stop();
  });

  it('writes text exactly, whatever characters it holds', async () => {
    // Order states reach PostgreSQL as array literals, one per column and flush. A column with no
    // string JSON must escape is JSON's own text: the literal's punctuation, NULL spelled out,
    // spaces, non-ASCII and the empty string must survive it.
    const texts = ['c,d{e}', '{}', 'NULL', 'null', ' spaced ', 'é€😀', '', null];
    const fast = texts.map((text, i) => ({
      ...orderState(h.alice, { client_order_id: text }),
      seq: i + 1,
      version: i + 1,
      status: 'NEW' as const,
    }));
    await h.events({ first_seq: 1, last_seq: texts.length, orders: fast, trades: [] });
    const w = h.writer();
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 1);
    // Then a flush whose column holds strings that JSON escapes: quotes, backslashes, control
    // characters. The literal is built element by element, a null among them.
    const escaped = ['a"b', 'back\\slash\\', 'line\nbreak\ttab', '\u0001', 'c,d{e}', null];
    const slow = escaped.map((text, i) => ({
      ...orderState(h.bob, { client_order_id: text }),
      seq: 20 + i,
      version: 20 + i,
      status: 'NEW' as const,
    }));
    await h.events({ first_seq: 20, last_seq: 19 + escaped.length, orders: slow, trades: [] });
    await waitFor(() => w.stats.entriesWritten === 2);
    assert.deepEqual(await ordersById(h.db.sql), byId([...fast, ...slow]));
    assert.equal(w.stats.rejected, 0);
    await w.stop();
  });

  it('sets aside what PostgreSQL could not take as it is, and never wedges on it', async () => {
    const good = { ...orderState(h.alice), seq: 1, version: 1, status: 'NEW' as const };
    await h.events({ first_seq: 1, last_seq: 1, orders: [good], trades: [] });
    // Valid JSON, but not an event batch.
    await h.redis.xadd(h.keys.events, '0-2', 'b', 'null');
    // A lone surrogate has no UTF-8 form: it would have been stored as U+FFFD.
    const lone = { ...orderState(h.alice), seq: 3, version: 3, status: 'NEW' as const };
    await h.events({
      first_seq: 3,
      last_seq: 3,
      orders: [{ ...lone, client_order_id: 'x\ud800' }],
      trades: [],
    });
    // Two states of one order whose ids differ in case only: one upsert cannot take both
    // (SQLSTATE 21000); written one by one, the newer wins.
    const order = { ...orderState(h.bob), seq: 4, version: 4, status: 'NEW' as const };
    const newer = { ...order, version: 5, status: 'CANCELED' as const, reject_reason: 'USER' };
    await h.events({
      first_seq: 4,
      last_seq: 5,
      orders: [order, { ...newer, id: newer.id.toUpperCase() }],
      trades: [],
    });
    const w = h.writer();
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 4);
    assert.deepEqual(await ordersById(h.db.sql), byId([good, newer]));
    const setAside = (
      (await h.redis.xrange(rejectsKey(h.keys.events), '-', '+')) as [string, string[]][]
    ).map(([, f]) => ({ id: f[1], code: f[3] }));
    assert.deepEqual(setAside, [
      { id: '0-2', code: '22P02' },
      { id: '0-3', code: '22P02' },
    ]);
    await w.stop();
  });

  it('sets aside a money value that is not a decimal string, and a value of the wrong type', async () => {
    // A JSON number would reach NUMERIC through a binary float: the writer refuses it.
    const good = { ...orderState(h.alice), seq: 1, version: 1, status: 'NEW' as const };
    const floated = { ...orderState(h.alice), seq: 2, version: 2, status: 'NEW' as const };
    const floatedJson = JSON.stringify(floated).replace('"quantity":"10"', '"quantity":10');
    const raw = `{"first_seq":1,"last_seq":2,"orders":[${JSON.stringify(good)},${floatedJson}],"trades":[]}`;
    await h.redis.xadd(h.keys.events, '0-2', 'b', raw);
    const other = { ...orderState(h.bob), seq: 3, version: 3, status: 'NEW' as const };
    const wrong = { ...other, post_only: 'no' };
    await h.redis.xadd(
      h.keys.events,
      '0-3',
      'b',
      JSON.stringify({ first_seq: 3, last_seq: 3, orders: [wrong], trades: [] }),
    );
    const w = h.writer();
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 2);
    assert.deepEqual(await ordersById(h.db.sql), byId([good]));
    const setAside = (
      (await h.redis.xrange(rejectsKey(h.keys.events), '-', '+')) as [string, string[]][]
    ).map(([, f]) => ({ id: f[1], code: f[3], record: f[7], message: f[5] }));
    assert.deepEqual(
      setAside.map(({ id, code, record }) => ({ id, code, record })),
      [
        { id: '0-2', code: '22P02', record: floatedJson },
        { id: '0-3', code: '22P02', record: JSON.stringify(wrong) },
      ],
    );
    assert.match(setAside[0]?.message ?? '', /quantity: 10 is not a numeric/);
    assert.match(setAside[1]?.message ?? '', /post_only: "no" is not a boolean/);
    await w.stop();
  });

  it('sets aside, never passes over, a record that clashes with a row or is no command it knows', async () => {
    const a = orderState(h.alice, { client_order_id: 'dup' });
    // Another order under a's client_order_id.
    const b = orderState(h.alice, { client_order_id: 'dup' });
    await h.place(1, a);
    await h.place(2, b);
    const noId: Partial<OrderState> = { ...orderState(h.alice), seq: 0 };
    delete noId.id;
    const withoutId = JSON.stringify({ k: 'place', order: noId });
    await h.redis.xadd(h.keys.orders, '0-3', 'c', withoutId);
    const amend = JSON.stringify({ k: 'amend', order_id: a.id });
    await h.redis.xadd(h.keys.orders, '0-4', 'c', amend);
    // Written in the same flush as order states (a PLACE without an id was passed over then).
    const c = {
      ...orderState(h.bob, { side: 'SELL' }),
      seq: 5,
      version: 5,
      status: 'NEW' as const,
    };
    const t1 = trade(c, { ...a, seq: 1 }, 5, 0);
    await h.events({ first_seq: 5, last_seq: 5, orders: [c], trades: [t1] });
    // Another trade at t1's seq and number: not the same trade delivered again.
    const t2 = { ...trade(c, { ...a, seq: 1 }, 5, 0), quantity: '2' };
    await h.events({ first_seq: 6, last_seq: 6, orders: [], trades: [t2] });
    const w = h.writer({ deferMs: 0 });
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 6);
    assert.deepEqual(await ordersById(h.db.sql), byId([{ ...a, seq: 1 }, c]));
    assert.deepEqual(await allTrades(h.db.sql), [t1]);
    assert.deepEqual(await setAside(h.keys.orders), [
      { id: '0-2', code: '23505', record: JSON.stringify({ k: 'place', order: { ...b, seq: 0 } }) },
      { id: '0-3', code: '23502', record: withoutId },
      { id: '0-4', code: '22P02', record: amend },
    ]);
    assert.deepEqual(await setAside(h.keys.events), [
      { id: '0-6', code: '23505', record: JSON.stringify(t2) },
    ]);
    assert.equal(w.stats.rejected, 4);
    await w.stop();
  });

  it('sets a refused record aside once, though the flush runs again after a Redis error', async () => {
    const good = { ...orderState(h.alice), seq: 1, version: 1, status: 'NEW' as const };
    const broken = { ...orderState(h.bob), seq: 1, version: 1, filled_quantity: '11' };
    await h.events({ first_seq: 1, last_seq: 1, orders: [good, broken], trades: [] });
    // The acknowledgement fails for a while: each attempt commits (changing nothing the second
    // time) and sets aside the refused record again, then fails.
    await h.redis.call('ACL', 'SETUSER', 'default', '-xack');
    const w = h.writer();
    try {
      await w.start();
      await waitFor(() => h.logs.filter((l) => /record refused/.test(l.msg)).length >= 3);
    } finally {
      await h.redis.call('ACL', 'SETUSER', 'default', '+xack');
    }
    await waitFor(() => w.stats.entriesWritten === 1);
    assert.deepEqual(await ordersById(h.db.sql), byId([good]));
    const setAside = (
      (await h.redis.xrange(rejectsKey(h.keys.events), '-', '+')) as [string, string[]][]
    ).map(([, f]) => ({ id: f[1], record: f[7] }));
    assert.deepEqual(setAside, [{ id: '0-1', record: JSON.stringify(broken) }]);
    assert.equal(await h.pending(h.keys.events), 0);
    await w.stop();
  });

  it('sets aside only the records PostgreSQL refuses, writes the rest, and says so', async () => {
    const good = orderState(h.alice);
    const stranger = orderState(h.alice, { user_id: '01890000-0000-7000-8000-000000000000' });
    await h.place(1, good);
    await h.place(2, stranger);
    const g1 = { ...good, seq: 1, version: 3, status: 'NEW' as const };
    // filled_quantity above quantity breaks a CHECK constraint.
    const broken = { ...orderState(h.bob), seq: 3, version: 3, filled_quantity: '11' };
    await h.events({ first_seq: 3, last_seq: 3, orders: [g1, broken], trades: [] });
    await h.redis.xadd(h.keys.events, '0-4', 'b', '{"orders": [ not json');
    const w = h.writer();
    await w.start();
    await waitFor(() => w.stats.entriesWritten === 4);
    assert.deepEqual(await ordersById(h.db.sql), byId([g1]));
    assert.equal(await h.pending(h.keys.orders), 0);
    assert.equal(await h.pending(h.keys.events), 0);
    assert.equal(w.stats.rejected, 3);

    assert.deepEqual(await setAside(h.keys.orders), [
      {
        id: '0-2',
        code: '23503',
        record: JSON.stringify({ k: 'place', order: { ...stranger, seq: 0 } }),
      },
    ]);
    assert.deepEqual(await setAside(h.keys.events), [
      { id: '0-3', code: '23514', record: JSON.stringify(broken) },
      { id: '0-4', code: '22P02', record: '{"orders": [ not json' },
    ]);
    const errors = h.logs.filter((l) => l.level >= 50);
    assert.ok(errors.some((l) => JSON.stringify(l.orders) === '["0-1","0-2"]'));
    assert.ok(errors.some((l) => l.id === '0-2' && l.stream === h.keys.orders));
    await w.stop();
  });
});
