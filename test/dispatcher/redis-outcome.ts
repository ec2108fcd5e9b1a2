// What the dispatcher left in Redis, read back for comparison with the reference outcome, and the
// exactly-once checks on the event stream.
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import type { ShardKeys } from '../../src/queue/keys.js';
import type { EventBatch, Fill, OrderState } from '../../src/queue/records.js';
import type { Outcome } from './reference.js';

export async function readEventBatches(redis: Redis, keys: ShardKeys): Promise<EventBatch[]> {
  const entries = await redis.xrange(keys.events, '-', '+');
  return entries.map(([id, fields]) => {
    const batch = JSON.parse(fields[1] as string) as EventBatch;
    assert.equal(id, `0-${batch.last_seq}`, 'an event entry is keyed by its batch last seq');
    return batch;
  });
}

/** Every seq 1..lastSeq in exactly one batch, in order; no trade twice. */
export function assertExactlyOnce(batches: EventBatch[], lastSeq: number): void {
  let next = 1;
  const tradeIds = new Set<string>();
  for (const b of batches) {
    assert.equal(b.first_seq, next, `batch ${b.first_seq}..${b.last_seq} follows ${next - 1}`);
    assert.ok(b.last_seq >= b.first_seq);
    next = b.last_seq + 1;
    const ids = new Set(b.orders.map((o) => o.id));
    assert.equal(ids.size, b.orders.length, 'each changed order once per batch');
    for (const t of b.trades) {
      assert.ok(!tradeIds.has(t.id), `trade ${t.id} written twice`);
      tradeIds.add(t.id);
    }
  }
  assert.equal(next - 1, lastSeq, 'the batches reach the last seq');
}

/** The status hashes and fill lists of the reference's orders, as Redis has them. */
export async function readOrders(
  redis: Redis,
  keys: ShardKeys,
  ids: Iterable<string>,
): Promise<{
  orders: Map<string, OrderState>;
  fills: Map<string, Fill[]>;
  statuses: Map<string, string>;
}> {
  const orders = new Map<string, OrderState>();
  const fills = new Map<string, Fill[]>();
  const statuses = new Map<string, string>();
  for (const id of ids) {
    const [j, s] = await redis.hmget(keys.order(id), 'j', 's');
    if (typeof j === 'string') orders.set(id, JSON.parse(j) as OrderState);
    if (typeof s === 'string') statuses.set(id, s);
    const list = await redis.lrange(keys.fills(id), 0, -1);
    if (list.length > 0)
      fills.set(
        id,
        list.map((f) => JSON.parse(f) as Fill),
      );
  }
  return { orders, fills, statuses };
}

/** Redis holds exactly the reference outcome: every order, every fill, every trade once. */
export async function assertMatchesReference(
  redis: Redis,
  keys: ShardKeys,
  expected: Outcome,
): Promise<void> {
  const batches = await readEventBatches(redis, keys);
  assertExactlyOnce(batches, expected.lastSeq);
  assert.deepEqual(
    batches.flatMap((b) => b.trades),
    expected.trades,
    'the event stream has the reference trades, in order',
  );
  const actual = await readOrders(redis, keys, expected.orders.keys());
  for (const [id, want] of expected.orders) {
    const got = actual.orders.get(id);
    assert.deepEqual(got, want, `order ${want.seq}`);
    assert.equal(actual.statuses.get(id), want.status);
    assert.ok(want.filled_lots <= want.quantity_lots, 'never filled past the quantity');
    assert.deepEqual(
      actual.fills.get(id) ?? [],
      expected.fills.get(id) ?? [],
      `fills of ${want.seq}`,
    );
  }
  const open = new Set(await redis.smembers(keys.open));
  for (const [id, o] of expected.orders) {
    const final = o.status === 'FILLED' || o.status === 'CANCELED' || o.status === 'REJECTED';
    assert.equal(open.has(id), !final, `open set membership of ${o.seq} (${o.status})`);
  }
}
