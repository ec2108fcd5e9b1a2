// One batch's outputs into Redis in one MULTI/EXEC: status cache, open set, fills, recent trades,
// the event-stream entry `0-<last seq>` (which is what W is read from, so it moves atomically with
// the rest) and the `applied` notice.
import type { Redis } from 'ioredis';
import type { ShardKeys } from '../queue/keys.js';
import { isFinal } from './projector.js';
import type { ProjectedBatch } from './projector.js';

/** Recent trades kept per symbol. */
export const TRADES_KEPT = 1000;

/** Writes the batch atomically; resolves once EXEC has answered. */
export async function writeBatch(
  redis: Redis,
  keys: ShardKeys,
  batch: ProjectedBatch,
  statusTtlS: number,
): Promise<void> {
  const m = redis.multi();
  // Each state is serialised once: the same text goes to its status hash and into the event batch.
  const states: string[] = [];
  for (const o of batch.orders.values()) {
    const key = keys.order(o.id);
    const json = JSON.stringify(o);
    states.push(json);
    m.hset(key, 'j', json, 's', o.status);
    if (isFinal(o.status)) {
      m.srem(keys.open, o.id);
      m.expire(key, statusTtlS);
    } else if (o.seq >= batch.firstSeq) {
      // Placed in this batch and still open; one placed earlier was added by its own batch.
      m.sadd(keys.open, o.id);
    }
  }
  for (const [orderId, fills] of batch.fills) {
    m.rpush(keys.fills(orderId), ...fills.map((f) => JSON.stringify(f)));
  }
  // After the RPUSHes, which may have just created the list; an order that never filled has none.
  for (const o of batch.orders.values()) {
    if (isFinal(o.status) && o.filled_lots > 0) m.expire(keys.fills(o.id), statusTtlS);
  }
  const trades = batch.trades.map((t) => JSON.stringify(t));
  const bySymbol = new Map<string, string[]>();
  batch.trades.forEach((t, i) => {
    const list = bySymbol.get(t.symbol) ?? [];
    list.push(trades[i] as string);
    bySymbol.set(t.symbol, list);
  });
  for (const [symbol, list] of bySymbol) {
    const key = keys.trades(symbol);
    m.lpush(key, ...list);
    m.ltrim(key, 0, TRADES_KEPT - 1);
  }
  // An EventBatch (records.ts), assembled from the strings above rather than serialised again.
  const event =
    `{"first_seq":${batch.firstSeq},"last_seq":${batch.lastSeq},` +
    `"orders":[${states.join(',')}],"trades":[${trades.join(',')}],` +
    `"written_at":${JSON.stringify(new Date().toISOString())}}`;
  m.xadd(keys.events, `0-${batch.lastSeq}`, 'b', event);
  m.publish(keys.applied, String(batch.lastSeq));
  const results = await m.exec();
  if (results === null) throw new Error('MULTI was aborted');
  for (const [err] of results) if (err) throw err;
}
