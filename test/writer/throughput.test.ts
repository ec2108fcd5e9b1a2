// Not a benchmark of record (that belongs in src/bench), but a guard that the writer stays
// multi-row behind a backlog: it prints rows/s (no timing is asserted) and fails if a flush takes
// less than the backlog it could take.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { EventBatch, OrderState } from '../../src/queue/records.js';
import { writerGroup } from '../../src/queue/stream-info.js';
import { filled, orderState, trade } from '../db/fixtures.js';
import { harness, waitFor } from './harness.js';
import type { Harness } from './harness.js';

const ORDERS = Number(process.env.WRITER_TEST_ORDERS ?? 40_000);
const PER_BATCH = 100;

let h: Harness;
before(async () => {
  h = await harness();
});
after(async () => {
  await h.close();
});

it(`writes ${ORDERS} placed orders, their states and trades in large batches`, async () => {
  // Placed orders, then one event batch per 100 commands: every order filled (a state each) and
  // one trade per pair.
  const pipeline = h.redis.pipeline();
  const states: OrderState[] = [];
  for (let seq = 1; seq <= ORDERS; seq++) {
    const o = orderState(seq % 2 === 0 ? h.alice : h.bob, { quantity: '1', quantity_lots: 1 });
    pipeline.xadd(h.keys.orders, `0-${seq}`, 'c', JSON.stringify({ k: 'place', order: o }));
    states.push(filled({ ...o, seq }, 1, 18725, seq));
  }
  let trades = 0;
  for (let first = 1; first <= ORDERS; first += PER_BATCH) {
    const orders = states.slice(first - 1, first - 1 + PER_BATCH);
    const batch: EventBatch = {
      first_seq: first,
      last_seq: first + orders.length - 1,
      orders,
      trades: [],
    };
    for (let i = 1; i < orders.length; i += 2) {
      batch.trades.push(trade(orders[i] as OrderState, orders[i - 1] as OrderState, first + i, 0));
    }
    trades += batch.trades.length;
    pipeline.xadd(h.keys.events, `0-${batch.last_seq}`, 'b', JSON.stringify(batch));
  }
  await pipeline.exec();

  const w = h.writer({ batchSize: 5_000, flushMs: 1_000 });
  const started = performance.now();
  await w.start();
  const entries = ORDERS + ORDERS / PER_BATCH;
  const done = () => w.stats.entriesWritten + w.stats.entriesSkipped;
  await waitFor(() => done() === entries, 120_000);
  const seconds = (performance.now() - started) / 1000;
  await w.stop();
  // Records offered: PLACEs, states and trades. A PLACE whose FILLED state the writer holds or has
  // written is only acknowledged, so PostgreSQL takes fewer rows: the states and the trades.
  const records = ORDERS * 2 + trades;
  const [count] = await h.db.sql<{ filled: string; trades: string }[]>`
    SELECT (SELECT count(*) FROM orders WHERE status = 'FILLED' AND version = seq) AS filled,
      (SELECT count(*) FROM trades) AS trades`;
  assert.deepEqual({ ...count }, { filled: String(ORDERS), trades: String(trades) });
  console.log(
    `# writer: ${records} records (${entries} entries) in ${seconds.toFixed(2)} s = ` +
      `${Math.round(records / seconds)} records/s; ${w.stats.rowsWritten} rows written = ` +
      `${Math.round(w.stats.rowsWritten / seconds)} rows/s; ${w.stats.flushes} flushes, ` +
      `${w.stats.entriesSkipped} entries passed over unread`,
  );
  // The outcomes are read far ahead of the PLACEs: most PLACEs need not be read at all.
  assert.ok(w.stats.entriesSkipped > 0, 'PLACEs behind written outcomes passed over');
  const group = await writerGroup(h.redis, h.keys.orders);
  assert.equal(group?.lag, 0, 'the group stands at the end of the stream, its lag exact');
  // Everything was waiting before the writer started: flushes take thousands of entries each
  // (10,000 when nothing slows the reads; the bound leaves room for a slow machine).
  assert.ok(w.stats.flushes <= Math.ceil(entries / 1_000), `${w.stats.flushes} flushes`);
});
