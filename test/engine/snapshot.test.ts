import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MatchingEngine } from '../../src/engine/matching-engine.js';
import { encodeInSteps } from '../../src/engine/snapshot.js';
import { OrderType, Side, TimeInForce } from '../../src/engine/types.js';
import { cancel, place } from './commands.js';
import { Harness, checkConsistency } from './engine-helpers.js';

function busyBook(): Harness {
  const h = new Harness(['AAA', 'BBB']);
  h.run(
    place(1, { side: Side.SELL, price: 101, quantity: 3, ownerId: 2 }),
    place(2, { side: Side.SELL, price: 101, quantity: 2, ownerId: 3 }),
    place(3, { side: Side.BUY, price: 101, quantity: 1, ownerId: 4 }),
    place(4, { side: Side.BUY, price: 99, quantity: 5, postOnly: true }),
    place(5, {
      orderType: OrderType.STOP_MARKET,
      tif: TimeInForce.IOC,
      price: 0,
      stopPrice: 102,
      protection: 250,
    }),
    place(6, { orderType: OrderType.STOP_LIMIT, side: Side.SELL, price: 90, stopPrice: 95 }),
    place(7, { symbol: 'BBB', side: Side.SELL, price: 7, quantity: 9 }),
    cancel(8, 404),
  );
  return h;
}

describe('snapshot', () => {
  it('restores books, queues, stops, last trade price and sequence exactly', () => {
    const h = busyBook();
    const restored = MatchingEngine.restore(h.engine.snapshot());
    checkConsistency(restored);
    assert.equal(restored.lastSeq, 8);
    assert.deepEqual(restored.symbols(), ['AAA', 'BBB']);
    const byId = (e: MatchingEngine) => e.liveOrders().sort((a, b) => a.orderId - b.orderId);
    assert.deepEqual(byId(restored), byId(h.engine));
    for (const s of ['AAA', 'BBB']) assert.deepEqual(restored.depth(s, 50), h.engine.depth(s, 50));
    assert.deepEqual(restored.snapshot(), h.engine.snapshot());

    // Queue order survived: a sell at 101 hits #1 (partly filled) before #2, and the trade at 102
    // would need the stop's trigger state: 101 trades leave stop #5 (102) waiting.
    const next = [place(9, { price: 101, quantity: 3, ownerId: 5 })];
    const a = new Harness([], restored);
    assert.deepEqual(a.run(...next), h.run(...next));
    assert.deepEqual(a.last, h.last);
  });

  it('keeps format 2: the bytes of a given state are those earlier versions stored and read', () => {
    const format2 =
      '4d42583102080203414141650104010000000001630005050004000201020100000000650003020101000203' +
      '0100000000650002020002000105010003010000006601010005fa0101060101020000005a5f010100060003' +
      '42424200000107010100000000070009090007000000d19d0b87';
    const h = busyBook();
    assert.equal(Buffer.from(h.engine.snapshot()).toString('hex'), format2);
    const restored = MatchingEngine.restore(Buffer.from(format2, 'hex'));
    assert.deepEqual(restored.liveOrders(), h.engine.liveOrders());
  });

  it('refuses a snapshot that gives price protection to an order with a limit price', () => {
    const bytes = Buffer.from(busyBook().engine.snapshot());
    // Order #5, the protected STOP_MARKET (type 3), made a STOP_LIMIT (type 2): id 5, owner 1,
    // side 0, type, tif 1, stp 0, post-only 0, price 0, stop 102, quantity 1, leaves 1, filled 0,
    // priority 5, protection 250.
    const stop = Buffer.from([5, 1, 0, 3, 1, 0, 0, 0, 102, 1, 1, 0, 5, 0xfa, 0x01]);
    const at = bytes.indexOf(stop);
    assert.ok(at > 0);
    bytes[at + 3] = 2;
    // The checksum (FNV-1a, 32 bits) over the rest, written again so that only the order is wrong.
    let h = 0x811c9dc5;
    for (let i = 0; i < bytes.length - 4; i++)
      h = Math.imul(h ^ (bytes[i] as number), 0x01000193) >>> 0;
    bytes.writeUInt32BE(h, bytes.length - 4);
    assert.throws(() => MatchingEngine.restore(bytes), /impossible order 5/);
  });

  it('reads format 1, from before price protection, as orders without it', () => {
    // busyBook's snapshot as written before the state was captured and encoded in steps.
    const format1 =
      '4d42583101080203414141650104010000000001630005050004020102010000000065000302010102030100' +
      '000000650002020002010501000301000000660101000501060101020000005a5f0101000603424242000001' +
      '070101000000000700090900070000f9711d13';
    const h = busyBook();
    const restored = MatchingEngine.restore(Buffer.from(format1, 'hex'));
    assert.deepEqual(restored.depth('AAA', 50), h.engine.depth('AAA', 50));
    const unprotected = h.engine.liveOrders().map((o) => ({ ...o, protection: 0 }));
    assert.deepEqual(restored.liveOrders(), unprotected);
    assert.equal(h.engine.order(5)?.protection, 250);
  });

  it('encodes a capture in steps, as the state stood when captured, while the engine runs on', async () => {
    const h = new Harness(['AAA', 'BBB']);
    // 12,000 resting orders: about 156,000 integers, so more than two steps.
    for (let i = 1; i <= 12_000; i++) {
      const side = i % 2 === 0 ? Side.BUY : Side.SELL;
      const price = side === Side.BUY ? 100 + (i % 300) : 1000 + (i % 300);
      h.engine.apply(place(i, { symbol: i % 3 === 0 ? 'BBB' : 'AAA', side, price }), h.out);
    }
    h.engine.apply(
      place(12_001, { orderType: OrderType.STOP_LIMIT, price: 90, stopPrice: 2000 }),
      h.out,
    );
    const atCapture = h.engine.snapshot();
    const capture = h.engine.capture();
    // Between steps the engine matches, cancels and rests orders the capture must not show.
    let batchesBetweenSteps = 0;
    let seq = 12_002;
    const matchOn = (): void => {
      h.engine.apply(place(seq++, { side: Side.BUY, price: 1299, quantity: 5 }), h.out);
      h.engine.apply(cancel(seq++, 2), h.out);
      h.engine.apply(place(seq++, { symbol: 'BBB', price: 150, quantity: 2 }), h.out);
      batchesBetweenSteps++;
      if (!done) setImmediate(matchOn);
    };
    let done = false;
    setImmediate(matchOn);
    const bytes = await encodeInSteps(capture);
    done = true;
    assert.ok(batchesBetweenSteps >= 2, `the engine ran between steps (${batchesBetweenSteps})`);
    assert.notDeepEqual(h.engine.snapshot(), atCapture, 'the engine moved on meanwhile');
    assert.deepEqual(bytes, atCapture);
    const restored = MatchingEngine.restore(bytes);
    checkConsistency(restored);
    assert.equal(restored.lastSeq, 12_001);
  });

  it('refuses to capture a state it could not encode, at once', () => {
    const h = new Harness();
    h.engine.apply(place(1, { ownerId: 2 ** 60 }), h.out);
    assert.throws(() => h.engine.capture(), /order 1: cannot encode/);
    assert.throws(() => h.engine.snapshot(), /order 1: cannot encode/);
  });

  it('is compact: a resting order takes a few dozen bytes', () => {
    const h = new Harness();
    for (let i = 1; i <= 1000; i++) {
      h.engine.apply(place(i, { price: 1000 + (i % 50), quantity: 1 + (i % 7) }), h.out);
    }
    const bytes = h.engine.snapshot().length;
    assert.ok(bytes < 1000 * 32, `${bytes} bytes for 1000 orders`);
  });

  it('refuses a damaged, truncated or foreign snapshot', () => {
    const good = busyBook().engine.snapshot();
    const flipped = good.slice();
    flipped[10] = (flipped[10] as number) ^ 0x01;
    assert.throws(() => MatchingEngine.restore(flipped), /checksum/);
    assert.throws(
      () => MatchingEngine.restore(good.slice(0, good.length - 9)),
      /checksum|truncated/,
    );
    assert.throws(() => MatchingEngine.restore(new Uint8Array(3)), /truncated/);
    assert.throws(
      () => MatchingEngine.restore(new TextEncoder().encode('hello, world')),
      /checksum/,
    );
  });
});
