// One scenario per rule of docs/engine-rules.md, each stating every report and the whole book.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { protectedLimit } from '../../src/engine/matching-engine.js';
import { CommandType, OrderType, Side, Stp, TimeInForce } from '../../src/engine/types.js';
import type { Command } from '../../src/engine/types.js';
import { DEFAULT_SYMBOL, cancel, command, place, replace } from './commands.js';
import { Harness } from './engine-helpers.js';

const { BUY, SELL } = Side;
const { MARKET, LIMIT, STOP_LIMIT, STOP_MARKET } = OrderType;
const { IOC, FOK } = TimeInForce;

describe('price-time priority', () => {
  it('fills the best price first, then the oldest order at a price, at the maker price', () => {
    const h = new Harness();
    h.run(
      place(1, { side: SELL, price: 101, quantity: 2 }),
      place(2, { side: SELL, price: 101, quantity: 2 }),
      place(3, { side: SELL, price: 100, quantity: 1 }),
    );
    assert.deepEqual(h.book(), { bids: [], asks: ['1@100', '4@101'] });
    assert.deepEqual(h.run(place(4, { side: BUY, price: 102, quantity: 4, ownerId: 2 })), [
      'ACCEPTED #4',
      'TRADE #4 x #3 1@100 leaves 3/0',
      'TRADE #4 x #1 2@101 leaves 1/0',
      'TRADE #4 x #2 1@101 leaves 0/1',
    ]);
    assert.deepEqual(h.book(), { bids: [], asks: ['1@101'] });
    assert.equal(h.engine.order(2)?.filled, 1);
  });

  it('rests the remainder of a limit order that partly fills across levels', () => {
    const h = new Harness();
    h.run(
      place(1, { side: SELL, price: 100, quantity: 2 }),
      place(2, { side: SELL, price: 101, quantity: 2 }),
      place(3, { side: SELL, price: 103, quantity: 2 }),
    );
    assert.deepEqual(h.run(place(4, { price: 101, quantity: 7 })), [
      'ACCEPTED #4',
      'TRADE #4 x #1 2@100 leaves 5/0',
      'TRADE #4 x #2 2@101 leaves 3/0',
    ]);
    assert.deepEqual(h.book(), { bids: ['3@101'], asks: ['2@103'] });
    assert.deepEqual(
      [h.last[1]?.tradeNo, h.last[2]?.tradeNo, h.last[2]?.seq, h.last[2]?.ts],
      [0, 1, 4, 4000],
    );
  });

  it('aggregates levels and lists them best first on both sides', () => {
    const h = new Harness();
    h.run(
      place(1, { price: 99, quantity: 1 }),
      place(2, { price: 98, quantity: 2 }),
      place(3, { price: 99, quantity: 3 }),
      place(4, { side: SELL, price: 105, quantity: 4 }),
      place(5, { side: SELL, price: 103, quantity: 5 }),
    );
    assert.deepEqual(h.book(), { bids: ['4@99', '2@98'], asks: ['5@103', '4@105'] });
    const d = h.engine.depth('AAA', 1);
    assert.deepEqual(d, {
      symbol: 'AAA',
      bids: [{ price: 99, quantity: 4, orders: 2 }],
      asks: [{ price: 103, quantity: 5, orders: 1 }],
      seq: 5,
    });
  });
});

describe('time in force', () => {
  it('cancels the rest of a MARKET order, and a MARKET order on an empty side', () => {
    const h = new Harness();
    h.run(place(1, { side: SELL, price: 100, quantity: 2 }));
    assert.deepEqual(h.run(place(2, { orderType: MARKET, tif: IOC, price: 0, quantity: 5 })), [
      'ACCEPTED #2',
      'TRADE #2 x #1 2@100 leaves 3/0',
      'CANCELED #2 3 IOC_REMAINDER',
    ]);
    assert.deepEqual(h.run(place(3, { orderType: MARKET, tif: IOC, price: 0, quantity: 1 })), [
      'ACCEPTED #3',
      'CANCELED #3 1 IOC_REMAINDER',
    ]);
    assert.deepEqual(h.book(), { bids: [], asks: [] });
  });

  it('cancels the rest of an IOC limit order without resting it', () => {
    const h = new Harness();
    h.run(place(1, { side: SELL, price: 100, quantity: 2 }), place(2, { side: SELL, price: 102 }));
    assert.deepEqual(h.run(place(3, { tif: IOC, price: 101, quantity: 4 })), [
      'ACCEPTED #3',
      'TRADE #3 x #1 2@100 leaves 2/0',
      'CANCELED #3 2 IOC_REMAINDER',
    ]);
    assert.deepEqual(h.book(), { bids: [], asks: ['1@102'] });
  });

  it('cancels an FOK order that cannot fill whole with nothing traded, and fills one that can', () => {
    const h = new Harness();
    h.run(place(1, { side: SELL, price: 100, quantity: 2 }), place(2, { side: SELL, price: 101 }));
    assert.deepEqual(h.run(place(3, { tif: FOK, price: 101, quantity: 4 })), [
      'ACCEPTED #3',
      'CANCELED #3 4 FOK_NOT_FILLABLE',
    ]);
    assert.deepEqual(h.book(), { bids: [], asks: ['2@100', '1@101'] });
    assert.deepEqual(h.run(place(4, { tif: FOK, price: 100, quantity: 3 })), [
      'ACCEPTED #4',
      'CANCELED #4 3 FOK_NOT_FILLABLE',
    ]);
    assert.deepEqual(h.run(place(5, { tif: FOK, price: 101, quantity: 3 })), [
      'ACCEPTED #5',
      'TRADE #5 x #1 2@100 leaves 1/0',
      'TRADE #5 x #2 1@101 leaves 0/0',
    ]);
    assert.deepEqual(h.book(), { bids: [], asks: [] });
  });

  it('fills a MARKET FOK only when the whole side holds enough', () => {
    const h = new Harness();
    h.run(place(1, { side: SELL, price: 100, quantity: 2 }));
    const mkt = { orderType: MARKET, price: 0, tif: FOK } as const;
    assert.deepEqual(h.run(place(2, { ...mkt, quantity: 3 })), [
      'ACCEPTED #2',
      'CANCELED #2 3 FOK_NOT_FILLABLE',
    ]);
    assert.deepEqual(h.run(place(3, { ...mkt, quantity: 2 })), [
      'ACCEPTED #3',
      'TRADE #3 x #1 2@100 leaves 0/0',
    ]);
  });
});

describe('post-only', () => {
  it('rejects a post-only order that would take liquidity and rests one that would not', () => {
    const h = new Harness();
    h.run(place(1, { side: SELL, price: 100 }));
    assert.deepEqual(h.run(place(2, { price: 100, postOnly: true })), [
      'REJECTED #2 POST_ONLY_WOULD_TRADE',
    ]);
    assert.deepEqual(h.run(place(3, { price: 99, postOnly: true })), ['ACCEPTED #3']);
    assert.deepEqual(h.book(), { bids: ['1@99'], asks: ['1@100'] });
  });

  it('refuses post-only on anything but a GTC limit', () => {
    const h = new Harness();
    assert.deepEqual(h.run(place(1, { price: 99, postOnly: true, tif: IOC })), [
      'REJECTED #1 INVALID_POST_ONLY',
    ]);
    assert.deepEqual(h.run(place(2, { orderType: MARKET, price: 0, tif: IOC, postOnly: true })), [
      'REJECTED #2 INVALID_POST_ONLY',
    ]);
  });
});

describe('cancel', () => {
  it('cancels the rest of a partly filled order and keeps what filled', () => {
    const h = new Harness();
    h.run(place(1, { side: SELL, price: 100, quantity: 5 }), place(2, { quantity: 2, ownerId: 2 }));
    assert.deepEqual(h.run(cancel(3, 1)), ['CANCELED #1 3 CANCELED_BY_OWNER']);
    assert.equal(h.last[0]?.filled, 2);
    assert.equal(h.last[0]?.leaves, 0);
    assert.equal(h.engine.order(1), undefined);
    assert.deepEqual(h.book(), { bids: [], asks: [] });
  });

  it('refuses a cancel of an unknown order, a done order, or another owner’s order', () => {
    const h = new Harness();
    h.run(place(1, { price: 100, quantity: 5 }));
    assert.deepEqual(h.run(cancel(2, 99)), ['CANCEL_REJECTED #99 UNKNOWN_ORDER']);
    assert.deepEqual(h.run(cancel(3, 1, { ownerId: 7 })), ['CANCEL_REJECTED #1 UNKNOWN_ORDER']);
    assert.deepEqual(h.run(cancel(4, 1)), ['CANCELED #1 5 CANCELED_BY_OWNER']);
    assert.deepEqual(h.run(cancel(5, 1)), ['CANCEL_REJECTED #1 UNKNOWN_ORDER']);
  });

  it('unlinks an order from the middle of its queue, keeping the others in order', () => {
    const h = new Harness();
    h.run(place(1, { side: SELL }), place(2, { side: SELL }), place(3, { side: SELL }));
    h.run(cancel(4, 2));
    assert.deepEqual(h.run(place(5, { quantity: 2, ownerId: 2 })), [
      'ACCEPTED #5',
      'TRADE #5 x #1 1@100 leaves 1/0',
      'TRADE #5 x #3 1@100 leaves 0/0',
    ]);
  });
});

describe('cancel all', () => {
  const cancelAll = (seq: number, fields: Partial<Command>) =>
    command(seq, { type: CommandType.CANCEL_ALL, ...fields });

  it('cancels every live order of one owner on one side: resting best first, then its stops', () => {
    const h = new Harness();
    h.engine.listInstrument('BBB');
    h.run(
      place(1, { price: 98, quantity: 2 }),
      place(2, { price: 99, quantity: 1, ownerId: 2 }),
      place(3, { price: 99, quantity: 3 }),
      place(4, { side: SELL, price: 101, quantity: 1 }),
      place(5, { price: 97, quantity: 1, symbol: 'BBB' }),
      // A trade at 100, then buy stops above it that wait.
      place(6, { side: SELL, price: 100, quantity: 1, ownerId: 3 }),
      place(7, { price: 100, quantity: 1, ownerId: 3 }),
      place(8, { orderType: STOP_MARKET, tif: IOC, price: 0, stopPrice: 104 }),
      place(9, { orderType: STOP_MARKET, tif: IOC, price: 0, stopPrice: 103, ownerId: 2 }),
      place(10, { orderType: STOP_LIMIT, price: 105, stopPrice: 102 }),
    );
    assert.deepEqual(h.run(cancelAll(11, { side: BUY, symbol: DEFAULT_SYMBOL })), [
      'CANCELED #3 3 CANCELED_BY_OWNER',
      'CANCELED #1 2 CANCELED_BY_OWNER',
      'CANCELED #10 1 CANCELED_BY_OWNER',
      'CANCELED #8 1 CANCELED_BY_OWNER',
    ]);
    // The other owner's orders, the sell side and the other symbol are untouched.
    assert.deepEqual(h.book(), { bids: ['1@99'], asks: ['1@101'] });
    assert.deepEqual(
      h.engine
        .liveOrders()
        .map((o) => o.orderId)
        .sort((a, b) => a - b),
      [2, 4, 5, 9],
    );
    // '' is every symbol; nothing left to cancel reports nothing.
    assert.deepEqual(h.run(cancelAll(12, { side: BUY, symbol: '' })), [
      'CANCELED #5 1 CANCELED_BY_OWNER',
    ]);
    assert.deepEqual(h.run(cancelAll(13, { side: BUY, symbol: '' })), []);
    assert.deepEqual(h.run(cancelAll(14, { side: SELL, symbol: 'ZZZ' })), []);
    assert.deepEqual(h.run(cancelAll(15, { side: SELL, symbol: '' })), [
      'CANCELED #4 1 CANCELED_BY_OWNER',
    ]);
    assert.equal(h.engine.lastSeq, 15);
    // The canceled stop is gone: a trade that reaches it triggers only the other owner's.
    h.run(place(16, { side: SELL, price: 103, quantity: 1, ownerId: 3 }));
    assert.deepEqual(h.run(place(17, { price: 103, quantity: 1, ownerId: 4 })), [
      'ACCEPTED #17',
      'TRADE #17 x #16 1@103 leaves 0/0',
      'TRIGGERED #9',
      'CANCELED #9 1 IOC_REMAINDER',
    ]);
  });
});

describe('replace', () => {
  function queue(): Harness {
    const h = new Harness();
    h.run(
      place(1, { side: SELL, price: 100, quantity: 5 }),
      place(2, { side: SELL, price: 100, quantity: 5 }),
    );
    return h;
  }
  const take = (seq: number, quantity: number) => place(seq, { quantity, ownerId: 2 });

  it('keeps time priority when only the quantity goes down', () => {
    const h = queue();
    assert.deepEqual(h.run(replace(3, 1, 100, 3)), ['REPLACED #1 3@100 leaves 3']);
    assert.deepEqual(h.book(), { bids: [], asks: ['8@100'] });
    assert.deepEqual(h.run(take(4, 1)), ['ACCEPTED #4', 'TRADE #4 x #1 1@100 leaves 0/2']);
  });

  it('loses time priority when the quantity goes up', () => {
    const h = queue();
    assert.deepEqual(h.run(replace(3, 1, 100, 6)), ['REPLACED #1 6@100 leaves 6']);
    assert.deepEqual(h.run(take(4, 1)), ['ACCEPTED #4', 'TRADE #4 x #2 1@100 leaves 0/4']);
  });

  it('loses time priority at a new price, and trades if the new price crosses', () => {
    const h = queue();
    h.run(place(3, { side: BUY, price: 98, quantity: 2, ownerId: 2 }));
    assert.deepEqual(h.run(replace(4, 1, 101, 5)), ['REPLACED #1 5@101 leaves 5']);
    assert.deepEqual(h.book(), { bids: ['2@98'], asks: ['5@100', '5@101'] });
    assert.deepEqual(h.run(replace(5, 1, 98, 5)), [
      'REPLACED #1 5@98 leaves 5',
      'TRADE #1 x #3 2@98 leaves 3/0',
    ]);
    assert.deepEqual(h.book(), { bids: [], asks: ['3@98', '5@100'] });
  });

  it('takes a price or quantity of 0 for the order’s own, as it is when the replace is applied', () => {
    const h = queue();
    // Queued one behind the other, each naming only what it changes: neither undoes the other.
    assert.deepEqual(h.run(replace(3, 1, 0, 3), replace(4, 1, 101, 0)), [
      'REPLACED #1 3@100 leaves 3',
      'REPLACED #1 3@101 leaves 3',
    ]);
    assert.deepEqual(h.book(), { bids: [], asks: ['5@100', '3@101'] });
    // The quantity kept is the total, filled included.
    h.run(place(5, { quantity: 6, price: 101, ownerId: 2 }));
    assert.deepEqual(h.run(replace(6, 1, 102, 0)), ['REPLACED #1 3@102 leaves 2']);
    assert.deepEqual(h.book(), { bids: [], asks: ['2@102'] });
  });

  it('counts the new quantity as the total, filled included', () => {
    const h = queue();
    h.run(take(3, 2));
    assert.deepEqual(h.run(replace(4, 1, 100, 4)), ['REPLACED #1 4@100 leaves 2']);
    assert.deepEqual(h.run(replace(5, 1, 100, 2)), [
      'REPLACE_REJECTED #1 QUANTITY_AT_OR_BELOW_FILLED',
    ]);
    assert.deepEqual(h.book(), { bids: [], asks: ['7@100'] });
  });

  it('refuses unknown orders, other owners, bad values, waiting stops and crossing post-only', () => {
    const h = queue();
    h.run(place(3, { price: 98, postOnly: true, ownerId: 2 }));
    h.run(place(4, { orderType: STOP_LIMIT, price: 120, stopPrice: 110 }));
    assert.deepEqual(
      h.run(
        replace(5, 77, 100, 1),
        replace(6, 1, 100, 1, { ownerId: 9 }),
        replace(7, 1, -1, 1),
        replace(8, 1, 100, -1),
        replace(9, 4, 121, 1),
        replace(10, 3, 100, 1, { ownerId: 2 }),
      ),
      [
        'REPLACE_REJECTED #77 UNKNOWN_ORDER',
        'REPLACE_REJECTED #1 UNKNOWN_ORDER',
        'REPLACE_REJECTED #1 INVALID_PRICE',
        'REPLACE_REJECTED #1 INVALID_QUANTITY',
        'REPLACE_REJECTED #4 NOT_REPLACEABLE',
        'REPLACE_REJECTED #3 POST_ONLY_WOULD_TRADE',
      ],
    );
    assert.deepEqual(h.book(), { bids: ['1@98'], asks: ['10@100'] });
  });
});

describe('self-trade prevention', () => {
  function book(): Harness {
    const h = new Harness();
    h.run(
      place(1, { side: SELL, price: 100, quantity: 1, ownerId: 2 }),
      place(2, { side: SELL, price: 100, quantity: 1, ownerId: 1 }),
      place(3, { side: SELL, price: 101, quantity: 1, ownerId: 2 }),
    );
    return h;
  }
  const taker = (stp: Stp, fields = {}) => place(4, { price: 101, quantity: 3, stp, ...fields });

  it('NONE lets an owner trade with itself', () => {
    assert.deepEqual(book().run(taker(Stp.NONE)), [
      'ACCEPTED #4',
      'TRADE #4 x #1 1@100 leaves 2/0',
      'TRADE #4 x #2 1@100 leaves 1/0',
      'TRADE #4 x #3 1@101 leaves 0/0',
    ]);
  });

  it('CANCEL_NEWEST cancels the incoming rest and keeps the resting order', () => {
    const h = book();
    assert.deepEqual(h.run(taker(Stp.CANCEL_NEWEST)), [
      'ACCEPTED #4',
      'TRADE #4 x #1 1@100 leaves 2/0',
      'CANCELED #4 2 SELF_TRADE_PREVENTION',
    ]);
    assert.deepEqual(h.book(), { bids: [], asks: ['1@100', '1@101'] });
  });

  it('CANCEL_OLDEST cancels the resting order and goes on matching', () => {
    const h = book();
    assert.deepEqual(h.run(taker(Stp.CANCEL_OLDEST)), [
      'ACCEPTED #4',
      'TRADE #4 x #1 1@100 leaves 2/0',
      'CANCELED #2 1 SELF_TRADE_PREVENTION',
      'TRADE #4 x #3 1@101 leaves 1/0',
    ]);
    assert.deepEqual(h.book(), { bids: ['1@101'], asks: [] });
  });

  it('CANCEL_BOTH cancels the resting order and the incoming rest', () => {
    const h = book();
    assert.deepEqual(h.run(taker(Stp.CANCEL_BOTH)), [
      'ACCEPTED #4',
      'TRADE #4 x #1 1@100 leaves 2/0',
      'CANCELED #2 1 SELF_TRADE_PREVENTION',
      'CANCELED #4 2 SELF_TRADE_PREVENTION',
    ]);
    assert.deepEqual(h.book(), { bids: [], asks: ['1@101'] });
  });

  it('an FOK counts only what it could take under its STP mode', () => {
    const newest = book();
    assert.deepEqual(newest.run(taker(Stp.CANCEL_NEWEST, { tif: FOK, quantity: 2 })), [
      'ACCEPTED #4',
      'CANCELED #4 2 FOK_NOT_FILLABLE',
    ]);
    assert.deepEqual(newest.book(), { bids: [], asks: ['2@100', '1@101'] });
    const oldest = book();
    assert.deepEqual(oldest.run(taker(Stp.CANCEL_OLDEST, { tif: FOK, quantity: 2 })), [
      'ACCEPTED #4',
      'TRADE #4 x #1 1@100 leaves 1/0',
      'CANCELED #2 1 SELF_TRADE_PREVENTION',
      'TRADE #4 x #3 1@101 leaves 0/0',
    ]);
    assert.deepEqual(book().run(taker(Stp.CANCEL_OLDEST, { tif: FOK, quantity: 3 })), [
      'ACCEPTED #4',
      'CANCELED #4 3 FOK_NOT_FILLABLE',
    ]);
  });
});

describe('price protection', () => {
  const market = { orderType: MARKET, tif: IOC, price: 0 } as const;

  it('trades a MARKET order no further from the best price than its band, then cancels the rest', () => {
    const h = new Harness();
    h.run(
      place(1, { side: SELL, price: 100, quantity: 2, ownerId: 9 }),
      place(2, { side: SELL, price: 105, quantity: 2, ownerId: 9 }),
      place(3, { side: SELL, price: 106, quantity: 5, ownerId: 9 }),
    );
    // 5% of 100 is 5 ticks: up to 105, not 106.
    assert.deepEqual(h.run(place(4, { ...market, quantity: 8, protection: 500 })), [
      'ACCEPTED #4',
      'TRADE #4 x #1 2@100 leaves 6/0',
      'TRADE #4 x #2 2@105 leaves 4/0',
      'CANCELED #4 4 PRICE_PROTECTION',
    ]);
    assert.deepEqual(h.book(), { bids: [], asks: ['5@106'] });
    // Without protection the same order sweeps the book.
    assert.deepEqual(h.run(place(5, { ...market, quantity: 8 })), [
      'ACCEPTED #5',
      'TRADE #5 x #3 5@106 leaves 3/0',
      'CANCELED #5 3 IOC_REMAINDER',
    ]);
  });

  it('rounds the band toward the best price, for a sell as for a buy', () => {
    const h = new Harness();
    h.run(
      place(1, { price: 999, quantity: 1, ownerId: 9 }),
      place(2, { price: 990, quantity: 1, ownerId: 9 }),
      place(3, { price: 989, quantity: 1, ownerId: 9 }),
    );
    // 1% of 999 is 9.99 ticks: 9, so down to 990 and not 989.
    assert.deepEqual(h.run(place(4, { ...market, side: SELL, quantity: 3, protection: 100 })), [
      'ACCEPTED #4',
      'TRADE #4 x #1 1@999 leaves 2/0',
      'TRADE #4 x #2 1@990 leaves 1/0',
      'CANCELED #4 1 PRICE_PROTECTION',
    ]);
    assert.deepEqual(h.book(), { bids: ['1@989'], asks: [] });
  });

  it('cancels a MARKET order the book runs out under for want of liquidity, not protection', () => {
    const h = new Harness();
    h.run(place(1, { side: SELL, price: 100, quantity: 1, ownerId: 9 }));
    assert.deepEqual(h.run(place(2, { ...market, quantity: 3, protection: 10_000 })), [
      'ACCEPTED #2',
      'TRADE #2 x #1 1@100 leaves 2/0',
      'CANCELED #2 2 IOC_REMAINDER',
    ]);
    assert.deepEqual(h.run(place(3, { ...market, quantity: 1, protection: 1 })), [
      'ACCEPTED #3',
      'CANCELED #3 1 IOC_REMAINDER',
    ]);
  });

  it('counts an FOK MARKET order fillable only within its band', () => {
    const h = new Harness();
    h.run(
      place(1, { side: SELL, price: 100, quantity: 2, ownerId: 9 }),
      place(2, { side: SELL, price: 103, quantity: 2, ownerId: 9 }),
    );
    assert.deepEqual(h.run(place(3, { ...market, tif: FOK, quantity: 3, protection: 200 })), [
      'ACCEPTED #3',
      'CANCELED #3 3 FOK_NOT_FILLABLE',
    ]);
    assert.deepEqual(h.run(place(4, { ...market, tif: FOK, quantity: 3, protection: 300 })), [
      'ACCEPTED #4',
      'TRADE #4 x #1 2@100 leaves 1/0',
      'TRADE #4 x #2 1@103 leaves 0/1',
    ]);
  });

  it('bands a triggered STOP_MARKET from the best price when it triggers', () => {
    const h = new Harness();
    h.run(
      place(1, { side: SELL, price: 100, quantity: 1, ownerId: 9 }),
      place(2, { side: SELL, price: 110, quantity: 1, ownerId: 9 }),
      place(3, { side: SELL, price: 112, quantity: 1, ownerId: 9 }),
      place(4, { side: SELL, price: 113, quantity: 1, ownerId: 9 }),
      place(5, { ...market, orderType: STOP_MARKET, stopPrice: 100, quantity: 3, protection: 200 }),
    );
    // The trade at 100 triggers #5 with 110 the best ask: 2% of it is 2.2, so up to 112.
    assert.deepEqual(h.run(place(6, { price: 100, quantity: 1, ownerId: 8 })), [
      'ACCEPTED #6',
      'TRADE #6 x #1 1@100 leaves 0/0',
      'TRIGGERED #5',
      'TRADE #5 x #2 1@110 leaves 2/0',
      'TRADE #5 x #3 1@112 leaves 1/0',
      'CANCELED #5 1 PRICE_PROTECTION',
    ]);
    assert.deepEqual(h.book(), { bids: [], asks: ['1@113'] });
  });

  it("measures the band from the best price, the taker's own orders there included", () => {
    const h = new Harness();
    h.run(
      place(1, { side: SELL, price: 100, quantity: 1, ownerId: 2 }),
      place(2, { side: SELL, price: 101, quantity: 1, ownerId: 9 }),
      place(3, { side: SELL, price: 103, quantity: 1, ownerId: 9 }),
    );
    // Best 100 (owner 2's own ask): 2% is 2 ticks, so up to 102. CANCEL_OLDEST takes #1 away and
    // the order trades on within that band: 101, not 103.
    const taker = { ...market, quantity: 3, protection: 200, ownerId: 2, stp: Stp.CANCEL_OLDEST };
    assert.deepEqual(h.run(place(4, taker)), [
      'ACCEPTED #4',
      'CANCELED #1 1 SELF_TRADE_PREVENTION',
      'TRADE #4 x #2 1@101 leaves 2/0',
      'CANCELED #4 2 PRICE_PROTECTION',
    ]);
    assert.deepEqual(h.book(), { bids: [], asks: ['1@103'] });
  });

  it('computes the band exactly in integers, at the widest and near 2^53', () => {
    assert.equal(protectedLimit(false, 999, 10_000), 0);
    assert.equal(protectedLimit(true, 999, 10_000), 1998);
    assert.equal(protectedLimit(true, 10_001, 1), 10_002);
    assert.equal(protectedLimit(true, 9_999, 1), 9_999);
    // Where best × bps is past 2^53 and so not exact as a float product.
    for (const [best, bps] of [
      [2 ** 52, 9_999],
      [2 ** 52 + 31_676, 3_333],
    ] as const) {
      const band = Number((BigInt(best) * BigInt(bps)) / 10_000n);
      assert.notEqual(Math.floor((best * bps) / 10_000), band, 'the float product is not exact');
      assert.equal(protectedLimit(true, best, bps), best + band);
      assert.equal(protectedLimit(false, best, bps), best - band);
    }
    assert.equal(protectedLimit(true, Number.MAX_SAFE_INTEGER, 10_000), Number.MAX_SAFE_INTEGER);
  });

  it('refuses protection on an order with a limit price, or outside 0–10,000', () => {
    const h = new Harness();
    assert.deepEqual(
      h.run(
        place(1, { protection: 100 }),
        place(2, { orderType: STOP_LIMIT, stopPrice: 90, protection: 100 }),
        place(3, { ...market, protection: 10_001 }),
        place(4, { ...market, protection: 2.5 }),
      ),
      [
        'REJECTED #1 INVALID_ORDER',
        'REJECTED #2 INVALID_ORDER',
        'REJECTED #3 INVALID_ORDER',
        'REJECTED #4 INVALID_ORDER',
      ],
    );
  });
});

describe('stop orders', () => {
  /** A book with one trade at 100 done and asks at 101 and 102. */
  function traded(): Harness {
    const h = new Harness();
    h.run(
      place(1, { side: SELL, price: 100, quantity: 1, ownerId: 9 }),
      place(2, { side: SELL, price: 101, quantity: 2, ownerId: 9 }),
      place(3, { side: SELL, price: 102, quantity: 2, ownerId: 9 }),
      place(4, { side: BUY, price: 100, quantity: 1, ownerId: 8 }),
    );
    assert.deepEqual(h.book(), { bids: [], asks: ['2@101', '2@102'] });
    return h;
  }

  it('waits until the last trade price reaches the stop, then trades as a market order', () => {
    const h = traded();
    assert.deepEqual(
      h.run(place(5, { orderType: STOP_MARKET, tif: IOC, price: 0, stopPrice: 101 })),
      ['ACCEPTED #5'],
    );
    assert.equal(h.engine.order(5)?.status, 2);
    assert.deepEqual(h.run(place(6, { price: 101, quantity: 1, ownerId: 8 })), [
      'ACCEPTED #6',
      'TRADE #6 x #2 1@101 leaves 0/1',
      'TRIGGERED #5',
      'TRADE #5 x #2 1@101 leaves 0/0',
    ]);
    assert.deepEqual(
      h.last.filter((e) => e.kind === 2).map((e) => e.tradeNo),
      [0, 1],
    );
    assert.deepEqual(h.book(), { bids: [], asks: ['2@102'] });
  });

  it('triggers at once when the last trade already reached the stop', () => {
    const h = traded();
    const stopLimit = { orderType: STOP_LIMIT, price: 101, stopPrice: 99, quantity: 3 } as const;
    assert.deepEqual(h.run(place(5, stopLimit)), [
      'ACCEPTED #5',
      'TRIGGERED #5',
      'TRADE #5 x #2 2@101 leaves 1/0',
    ]);
    assert.deepEqual(h.book(), { bids: ['1@101'], asks: ['2@102'] });
    assert.equal(h.engine.order(5)?.orderType, LIMIT);
  });

  it('never triggers before the first trade', () => {
    const h = new Harness();
    assert.deepEqual(
      h.run(place(1, { orderType: STOP_MARKET, tif: IOC, price: 0, stopPrice: 1, side: SELL })),
      ['ACCEPTED #1'],
    );
    assert.equal(h.engine.order(1)?.status, 2);
  });

  it('triggers in trade order, lowest buy stop first, ties by arrival, and cascades', () => {
    const h = traded();
    const stop = (seq: number, stopPrice: number, quantity = 1) =>
      place(seq, { orderType: STOP_MARKET, tif: IOC, price: 0, stopPrice, quantity });
    h.run(stop(5, 102), stop(6, 101), stop(7, 101));
    // Trade at 101 triggers #6 then #7; #6 takes the last lot at 101, #7 trades at 102, which
    // triggers #5.
    assert.deepEqual(h.run(place(8, { price: 101, quantity: 1, ownerId: 8 })), [
      'ACCEPTED #8',
      'TRADE #8 x #2 1@101 leaves 0/1',
      'TRIGGERED #6',
      'TRADE #6 x #2 1@101 leaves 0/0',
      'TRIGGERED #7',
      'TRADE #7 x #3 1@102 leaves 0/1',
      'TRIGGERED #5',
      'TRADE #5 x #3 1@102 leaves 0/0',
    ]);
    assert.deepEqual(
      h.last.filter((e) => e.kind === 2).map((e) => e.tradeNo),
      [0, 1, 2, 3],
    );
  });

  it('triggers sell stops at or below their stop, highest first', () => {
    const h = new Harness();
    h.run(
      place(1, { side: BUY, price: 100, quantity: 5, ownerId: 9 }),
      place(2, { side: SELL, orderType: STOP_LIMIT, price: 90, stopPrice: 100, quantity: 1 }),
      place(3, { side: SELL, orderType: STOP_LIMIT, price: 90, stopPrice: 101, quantity: 1 }),
      place(4, { side: SELL, orderType: STOP_LIMIT, price: 90, stopPrice: 99, quantity: 1 }),
    );
    assert.deepEqual(h.run(place(5, { side: SELL, price: 100, quantity: 1, ownerId: 8 })), [
      'ACCEPTED #5',
      'TRADE #5 x #1 1@100 leaves 0/4',
      'TRIGGERED #3',
      'TRADE #3 x #1 1@100 leaves 0/3',
      'TRIGGERED #2',
      'TRADE #2 x #1 1@100 leaves 0/2',
    ]);
    assert.equal(h.engine.order(4)?.status, 2);
  });

  it('cancels a waiting stop', () => {
    const h = new Harness();
    h.run(place(1, { orderType: STOP_LIMIT, price: 100, stopPrice: 100, quantity: 2 }));
    assert.deepEqual(h.run(cancel(2, 1)), ['CANCELED #1 2 CANCELED_BY_OWNER']);
    assert.equal(h.engine.order(1), undefined);
  });
});

describe('validation', () => {
  it('rejects each invalid order with the first rule it breaks', () => {
    const h = new Harness();
    h.run(place(1, { orderId: 50, price: 90 }));
    assert.deepEqual(
      h.run(
        place(2, { orderId: -1 }),
        place(3, { side: 7 as Side }),
        place(4, { symbol: 'ZZZ' }),
        place(5, { orderId: 50 }),
        place(6, { quantity: 0 }),
        place(7, { quantity: 1.5 }),
        place(8, { price: 0 }),
        place(9, { orderType: MARKET, price: 100, tif: IOC }),
        place(10, { orderType: STOP_LIMIT, stopPrice: 0 }),
        place(11, { stopPrice: 5 }),
        place(12, { orderType: MARKET, price: 0 }),
        place(13, { quantity: 2 ** 53 }),
      ),
      [
        'REJECTED #-1 INVALID_ORDER',
        'REJECTED #3 INVALID_ORDER',
        'REJECTED #4 UNKNOWN_SYMBOL',
        'REJECTED #50 DUPLICATE_ORDER_ID',
        'REJECTED #6 INVALID_QUANTITY',
        'REJECTED #7 INVALID_QUANTITY',
        'REJECTED #8 INVALID_PRICE',
        'REJECTED #9 INVALID_PRICE',
        'REJECTED #10 INVALID_STOP_PRICE',
        'REJECTED #11 INVALID_STOP_PRICE',
        'REJECTED #12 INVALID_TIME_IN_FORCE',
        'REJECTED #13 INVALID_QUANTITY',
      ],
    );
    assert.deepEqual(h.book(), { bids: ['1@90'], asks: [] });
    assert.equal(h.engine.lastSeq, 13);
  });
});

describe('forget', () => {
  const forget = (seq: number, symbol = DEFAULT_SYMBOL) =>
    command(seq, { type: CommandType.FORGET, symbol, ownerId: 0 });

  it('drops an empty book and its last trade price; a stop then waits for a trade here', () => {
    const h = new Harness();
    h.run(
      place(1, { side: SELL, price: 100, quantity: 1, ownerId: 9 }),
      place(2, { side: BUY, price: 100, quantity: 1, ownerId: 8 }),
    );
    assert.deepEqual(h.run(forget(3)), []);
    assert.equal(h.engine.depth(DEFAULT_SYMBOL, 1), undefined, 'no book any more');
    // Listed again (the service lists a symbol on its first PLACE): no last price, so a sell
    // stop at 150 waits, where the forgotten trade at 100 would have triggered it at once.
    h.engine.listInstrument(DEFAULT_SYMBOL);
    const stop = place(4, {
      side: SELL,
      orderType: STOP_MARKET,
      tif: IOC,
      price: 0,
      stopPrice: 150,
    });
    assert.deepEqual(h.run(stop), ['ACCEPTED #4']);
    // A book with an order waiting (or resting) is kept, whole.
    const before = h.engine.snapshot();
    assert.deepEqual(h.run(forget(5)), []);
    assert.equal(h.engine.order(4)?.stopPrice, 150);
    h.run(place(6, { side: BUY, price: 90, quantity: 1 }));
    h.run(cancel(7, 4));
    h.run(forget(8));
    assert.deepEqual(h.book(), { bids: ['1@90'], asks: [] });
    assert.notDeepEqual(h.engine.snapshot(), before);
    // An unknown symbol: nothing.
    assert.deepEqual(h.run(forget(9, 'ZZZ')), []);
    assert.equal(h.engine.lastSeq, 9);
  });
});

describe('replay safety', () => {
  it('ignores commands at or below the last applied sequence, with no report and no change', () => {
    const h = new Harness();
    h.run(place(5, { side: SELL, price: 100, quantity: 3 }));
    const before = h.engine.snapshot();
    assert.deepEqual(h.run(place(5, { orderId: 6 }), place(3, { orderId: 7 }), cancel(4, 5)), []);
    assert.deepEqual(h.engine.snapshot(), before);
    assert.equal(h.engine.lastSeq, 5);
    assert.equal(h.engine.apply(place(Number.NaN), h.out), false);
    assert.deepEqual(h.run(place(6, { quantity: 1, ownerId: 2 })).length, 2);
  });
});
