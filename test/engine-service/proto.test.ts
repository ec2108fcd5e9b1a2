// The wire format's int64 fields: JS numbers both ways, read without a Long in between, and every
// safe integer kept exactly.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import protobuf from 'protobufjs';
import { engineService } from '../../src/engine-service/proto.js';
import type { SessionReply, WireReport } from '../../src/engine-service/proto.js';

const report = (n: number): WireReport => ({
  kind: 3,
  seq: n,
  ts: 1_796_226_927_870,
  symbol: 'AAPL',
  order_id: n,
  owner_id: 7,
  side: 1,
  price: Number.MAX_SAFE_INTEGER,
  stop_price: 0,
  quantity: 2 ** 32 + 1,
  leaves: 2 ** 53 - 2,
  filled: 1,
  reason: 0,
  trade_no: 4_294_967_295,
  maker_order_id: 2 ** 31,
  maker_owner_id: 3,
  maker_leaves: 900,
  maker_filled: -1,
});

it('carries int64 fields as numbers, exactly, up to the largest safe integer', () => {
  const Session = engineService().service.Session;
  assert.ok(Session !== undefined);
  const reply: SessionReply = {
    msg: 'reports',
    reports: { last_seq: Number.MAX_SAFE_INTEGER, reports: [report(1), report(2 ** 40)] },
  };
  const decoded = Session.responseDeserialize(Session.responseSerialize(reply)) as SessionReply;
  assert.deepEqual(decoded, reply);
  for (const r of decoded.reports?.reports ?? []) {
    for (const [field, value] of Object.entries(r)) {
      if (field !== 'symbol') assert.equal(typeof value, 'number', field);
    }
  }
});

it('reads int64 straight into numbers, with no Long made for each field', () => {
  engineService();
  const bytes = protobuf.Writer.create().int64(Number.MAX_SAFE_INTEGER).int64(-5).finish();
  const reader = protobuf.Reader.create(bytes);
  assert.equal(reader.int64(), Number.MAX_SAFE_INTEGER);
  assert.equal(reader.int64(), -5);
});
