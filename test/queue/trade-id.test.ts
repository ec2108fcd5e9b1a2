// Trade ids: derived from the command (time, shard, sequence) and the trade's number in it, the
// same on every replay, and one id per trade even for a command of millions of trades.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { tradeId } from '../../src/queue/records.js';

/** The layout before trade numbers past 2^20 had bits of their own. */
function before(ms: number, shard: number, seq: number, tradeNo: number): string {
  const bits =
    (BigInt(shard & 0xff) << 66n) |
    (BigInt(tradeNo & 0xfffff) << 46n) |
    (BigInt(seq) & ((1n << 46n) - 1n));
  const hex = (v: bigint, n: number) => v.toString(16).padStart(n, '0');
  const time = hex(BigInt(ms), 12);
  const b = hex((2n << 62n) | (bits & ((1n << 62n) - 1n)), 16);
  return `${time.slice(0, 8)}-${time.slice(8)}-7${hex(bits >> 62n, 3)}-${b.slice(0, 4)}-${b.slice(4)}`;
}

const MS = Date.parse('2026-12-07T02:10:00.123Z');

it('gives every trade of a command of 2^20 and more trades an id of its own', () => {
  const numbers = [0, 1, 2 ** 20 - 1, 2 ** 20, 2 ** 20 + 1, 2 ** 21, 3 * 2 ** 20 + 7, 2 ** 26 - 1];
  const ids = numbers.map((n) => tradeId(MS, 3, 1_048_578, n));
  assert.equal(new Set(ids).size, ids.length, ids.join('\n'));
  for (const id of ids)
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

it('keeps the ids trades always had, and the same id for the same trade', () => {
  for (const [shard, seq, no] of [
    [0, 1, 0],
    [0, 2 ** 40 - 1, 2 ** 20 - 1],
    [255, 123_456_789, 77],
    [7, 2 ** 33 + 5, 1000],
  ] as const) {
    assert.equal(tradeId(MS, shard, seq, no), before(MS, shard, seq, no));
    assert.equal(tradeId(MS, shard, seq, no), tradeId(MS, shard, seq, no));
  }
  // Apart by shard, sequence or number.
  const ids = [
    tradeId(MS, 0, 10, 0),
    tradeId(MS, 1, 10, 0),
    tradeId(MS, 0, 11, 0),
    tradeId(MS, 0, 10, 1),
    tradeId(MS + 1, 0, 10, 0),
  ];
  assert.equal(new Set(ids).size, ids.length);
});
