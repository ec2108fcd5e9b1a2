// The expected outcome of an order stream: the same records through an in-process MatchingEngine
// and the dispatcher's pure projection, one command at a time, nothing in between.
import type { Redis } from 'ioredis';
import { engineCommand } from '../../src/dispatcher/engine-commands.js';
import type { InstrumentScales } from '../../src/dispatcher/instruments.js';
import { commit, orderRequest, project } from '../../src/dispatcher/projector.js';
import { EventBuffer } from '../../src/engine/event-buffer.js';
import { MatchingEngine } from '../../src/engine/matching-engine.js';
import { Scale } from '../../src/engine/scale.js';
import type { ShardKeys } from '../../src/queue/keys.js';
import type { CommandRecord, Fill, OrderState, TradeRecord } from '../../src/queue/records.js';
import type { Instrument } from './gateway-records.js';

export interface Outcome {
  /** Every order's last state, by order id. */
  orders: Map<string, OrderState>;
  trades: TradeRecord[];
  fills: Map<string, Fill[]>;
  lastSeq: number;
}

/** The whole order stream of a shard, in order. */
export async function readOrderStream(
  redis: Redis,
  keys: ShardKeys,
): Promise<[number, CommandRecord][]> {
  const entries = await redis.xrange(keys.orders, '-', '+');
  return entries.map(([id, fields]) => [
    Number(id.split('-')[1]),
    JSON.parse(fields[1] as string) as CommandRecord,
  ]);
}

export function referenceOutcome(
  records: [number, CommandRecord][],
  instruments: Instrument[],
): Outcome {
  const scales = new Map<string, InstrumentScales>(
    instruments.map((i) => [i.symbol, { tick: new Scale(i.tick), lot: new Scale(i.lot) }]),
  );
  const engine = new MatchingEngine();
  for (const i of instruments) engine.listInstrument(i.symbol);
  const out = new EventBuffer();
  const open = new Map<number, OrderState>();
  const outcome: Outcome = { orders: new Map(), trades: [], fills: new Map(), lastSeq: 0 };
  for (const [seq, record] of records) {
    out.clear();
    engine.apply(engineCommand(seq, record), out);
    const placed = new Map<number, OrderState>();
    if (record.k === 'place') placed.set(seq, { ...record.order, seq, version: seq });
    const request = orderRequest(record);
    const batch = project({
      shard: 0,
      firstSeq: seq,
      lastSeq: seq,
      open,
      placed,
      requests: new Map(request === undefined ? [] : [[seq, request]]),
      reports: out.toArray(),
      scales: (s) => scales.get(s) as InstrumentScales,
    });
    commit(open, batch);
    for (const o of batch.orders.values()) outcome.orders.set(o.id, o);
    outcome.trades.push(...batch.trades);
    for (const [id, fills] of batch.fills) {
      outcome.fills.set(id, [...(outcome.fills.get(id) ?? []), ...fills]);
    }
    outcome.lastSeq = seq;
  }
  return outcome;
}
