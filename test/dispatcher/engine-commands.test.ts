// Order-stream records to engine commands: every kind a gateway or a layout change writes, and a
// kind this dispatcher does not know refused rather than taken for another; and the engine's
// refusals of cancels and amends projected for their owners.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { engineCommand, UnknownRecordError } from '../../src/dispatcher/engine-commands.js';
import { orderRequest, project } from '../../src/dispatcher/projector.js';
import type { OrderRequest } from '../../src/dispatcher/projector.js';
import { EventBuffer } from '../../src/engine/event-buffer.js';
import { MatchingEngine } from '../../src/engine/matching-engine.js';
import { CommandType, EventKind, Side } from '../../src/engine/types.js';
import type { Command } from '../../src/engine/types.js';
import type { CommandRecord } from '../../src/queue/records.js';
import { newOrder, user } from './gateway-records.js';

const at = '2026-12-07T15:00:00.000Z';
const owner = { order_id: 'o', user_id: 'u', owner_no: 7, symbol: 'AAPL', requested_at: at };

it('maps an amend to a REPLACE of the order it names, 0 kept for a field left as it is', () => {
  const record: CommandRecord = {
    k: 'replace',
    ...owner,
    target_seq: 41,
    price_ticks: 0,
    quantity_lots: 9_007_199_254_740_991,
  };
  const c = engineCommand(42, record);
  assert.deepEqual(
    [c.type, c.seq, c.ts, c.symbol, c.orderId, c.ownerId, c.price, c.quantity],
    [CommandType.REPLACE, 42, Date.parse(at), 'AAPL', 41, 7, 0, 9_007_199_254_740_991],
  );
});

it("maps an order's price protection, and one queued before protection existed to none", () => {
  const u = user(7);
  const instrument = { symbol: 'AAPL', tick: '0.01', lot: '1' };
  const market = newOrder(u, instrument, {
    symbol: 'AAPL',
    side: 'BUY',
    type: 'MARKET',
    quantity: '3',
    created_at: at,
  });
  const protectedPlace = engineCommand(45, {
    k: 'place',
    order: { ...market, protection_bps: 250 },
  });
  assert.deepEqual(
    [
      protectedPlace.type,
      protectedPlace.orderId,
      protectedPlace.quantity,
      protectedPlace.protection,
    ],
    [CommandType.PLACE, 45, 3, 250],
  );
  assert.equal(engineCommand(46, { k: 'place', order: market }).protection, 0);
});

it('maps a cancel to a CANCEL, and refuses a kind it does not know rather than cancel', () => {
  const c = engineCommand(43, { k: 'cancel', ...owner, target_seq: 41 });
  assert.deepEqual([c.type, c.orderId, c.ownerId], [CommandType.CANCEL, 41, 7]);
  const later = { k: 'frobnicate', ...owner, target_seq: 41 } as unknown as CommandRecord;
  assert.throws(() => engineCommand(44, later), UnknownRecordError);
});

it('projects a refused cancel or amend for its owner, and passes over one that names none', () => {
  const engine = new MatchingEngine();
  engine.listInstrument('AAPL');
  const out = new EventBuffer();
  // A cancel of an order the engine does not hold (filled first, say), then an amend of one.
  engine.apply(engineCommand(43, { k: 'cancel', ...owner, target_seq: 41 }), out);
  const amend: CommandRecord = {
    k: 'replace',
    ...owner,
    order_id: 'p',
    target_seq: 40,
    price_ticks: 0,
    quantity_lots: 3,
  };
  engine.apply(engineCommand(44, amend), out);
  const reports = out.toArray();
  const base = {
    shard: 0,
    firstSeq: 43,
    lastSeq: 44,
    open: new Map(),
    placed: new Map(),
    reports,
    scales: (): never => {
      throw new Error('no order changes');
    },
  };
  const requests = new Map([
    [43, orderRequest({ k: 'cancel', ...owner, target_seq: 41 }) as OrderRequest],
    [44, orderRequest(amend) as OrderRequest],
  ]);
  const batch = project({ ...base, requests });
  assert.deepEqual(
    batch.refusals.map((r) => [r.seq, r.kind, r.order_id, r.user_id, r.symbol, r.reason, r.at]),
    [
      [43, 'cancel', 'o', 'u', 'AAPL', 'UNKNOWN_ORDER', at],
      [44, 'amend', 'p', 'u', 'AAPL', 'UNKNOWN_ORDER', at],
    ],
  );
  assert.equal(batch.orders.size, 0);
  assert.equal(batch.unexplained, undefined);
  // Refusals of commands the batch does not hold: nothing to tell anyone, and no stop.
  const orphan = project({ ...base, requests: new Map([[44, requests.get(44) as OrderRequest]]) });
  assert.deepEqual(orphan.unexplained, [43]);
  assert.deepEqual(
    orphan.refusals.map((r) => r.seq),
    [44],
  );
});

it('maps a mass cancel to a CANCEL_ALL of its side, of every symbol when it names none', () => {
  const record: CommandRecord = {
    k: 'cancel_all',
    id: '01a251f2-82c6-72b6-aa60-e7bfd3435ac5',
    user_id: 'u',
    owner_no: 7,
    symbol: null,
    side: 'SELL',
    requested_at: at,
  };
  const all = engineCommand(45, record);
  assert.deepEqual(
    [all.type, all.seq, all.ts, all.symbol, all.ownerId, all.side],
    [CommandType.CANCEL_ALL, 45, Date.parse(at), '', 7, Side.SELL],
  );
  const one = engineCommand(46, { ...record, symbol: 'AAPL', side: 'BUY' });
  assert.deepEqual([one.symbol, one.side], ['AAPL', Side.BUY]);
});

it('passes over a command the engine rejects that places no order (one an older engine does not know)', () => {
  const engine = new MatchingEngine();
  engine.listInstrument('AAPL');
  const out = new EventBuffer();
  const unknown = { ...engineCommand(47, { k: 'cancel', ...owner, target_seq: 41 }), type: 9 };
  engine.apply(unknown as Command, out);
  const reports = out.toArray();
  assert.deepEqual(
    reports.map((r) => r.kind),
    [EventKind.REJECTED],
  );
  const batch = project({
    shard: 0,
    firstSeq: 47,
    lastSeq: 47,
    open: new Map(),
    placed: new Map(),
    requests: new Map(),
    reports,
    scales: (): never => {
      throw new Error('no order changes');
    },
  });
  assert.deepEqual(batch.unexplained, [47]);
  assert.equal(batch.orders.size, 0);
});
