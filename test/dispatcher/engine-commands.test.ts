// Order-stream records to engine commands: every kind a gateway or a layout change writes, and a
// kind this dispatcher does not know refused rather than taken for another.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { engineCommand, UnknownRecordError } from '../../src/dispatcher/engine-commands.js';
import { CommandType } from '../../src/engine/types.js';
import type { CommandRecord } from '../../src/queue/records.js';

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

it('maps a cancel to a CANCEL, and refuses a kind it does not know rather than cancel', () => {
  const c = engineCommand(43, { k: 'cancel', ...owner, target_seq: 41 });
  assert.deepEqual([c.type, c.orderId, c.ownerId], [CommandType.CANCEL, 41, 7]);
  const later = { k: 'frobnicate', ...owner, target_seq: 41 } as unknown as CommandRecord;
  assert.throws(() => engineCommand(44, later), UnknownRecordError);
});
