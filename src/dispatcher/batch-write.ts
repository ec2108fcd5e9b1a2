// One batch's outputs into Redis in one atomic script call (src/queue/lua/write-batch.lua): status
// cache, open set, fills, recent trades, the event-stream entry `0-<last seq>` (which is what W is
// read from, so it moves atomically with the rest, and which names the orders it closes, for the
// writer to expire once PostgreSQL has them) and the `applied` notice. One command per
// batch, not several per order: each command costs the dispatcher an object and a socket write
// and Redis a dispatch, and a batch under load carries hundreds of orders.
import type { Redis } from 'ioredis';
import type { ShardKeys } from '../queue/keys.js';
import { lua } from '../queue/lua-scripts.js';
import { isFinal } from './projector.js';
import type { ProjectedBatch } from './projector.js';

/** Recent trades kept per symbol. */
export const TRADES_KEPT = 1000;

const SCRIPT = 'write-batch.lua';

interface BatchScript {
  /** ioredis flattens the array: the key count, the keys, then the arguments. */
  mbWriteBatch(args: (string | number | Buffer)[]): Promise<number>;
}

const defined = new WeakSet<Redis>();

function scripted(redis: Redis): Redis & BatchScript {
  if (!defined.has(redis)) {
    // No numberOfKeys: the count varies per batch and goes first.
    redis.defineCommand('mbWriteBatch', { lua: lua(SCRIPT) });
    defined.add(redis);
  }
  return redis as Redis & BatchScript;
}

/** The batch does not follow what Redis holds (it lost writes in a restart): resync. */
export class StaleBatchError extends Error {}

/**
 * Writes the batch atomically; resolves once Redis has run the script. `lastCommand` is the text
 * of the order-stream entry at the batch's last seq as it was read: the script writes nothing
 * unless Redis still holds that command there and W is just below the batch's first seq, and then
 * throws a StaleBatchError.
 */
export async function writeBatch(
  redis: Redis,
  keys: ShardKeys,
  batch: ProjectedBatch,
  lastCommand: string,
): Promise<void> {
  const orderKeys: string[] = [];
  const orderArgs: string[] = [];
  // Each state is serialised once: the same text goes to its status hash and into the event batch.
  const states: string[] = [];
  for (const o of batch.orders.values()) {
    const json = JSON.stringify(o);
    states.push(json);
    orderKeys.push(keys.order(o.id));
    // Placed in this batch and still open joins the open set; one placed earlier is in it already.
    const action = isFinal(o.status) ? 'close' : o.seq >= batch.firstSeq ? 'open' : '-';
    orderArgs.push(json, o.status, o.id, action);
  }

  // Fills lists with new fills. Those of final orders expire with their status hashes, once the
  // writer has committed them (see the script).
  const fillKeys: string[] = [];
  const fillArgs: string[] = [];
  for (const [orderId, fills] of batch.fills) {
    fillKeys.push(keys.fills(orderId));
    fillArgs.push(String(fills.length));
    for (const f of fills) fillArgs.push(JSON.stringify(f));
  }

  const trades = batch.trades.map((t) => JSON.stringify(t));
  const bySymbol = new Map<string, string[]>();
  batch.trades.forEach((t, i) => {
    const list = bySymbol.get(t.symbol) ?? [];
    list.push(trades[i] as string);
    bySymbol.set(t.symbol, list);
  });
  const tradeKeys: string[] = [];
  const tradeArgs: string[] = [];
  for (const [symbol, list] of bySymbol) {
    tradeKeys.push(keys.trades(symbol));
    tradeArgs.push(String(list.length));
    for (const t of list) tradeArgs.push(t);
  }

  // An EventBatch (records.ts), assembled from the strings above rather than serialised again.
  // Refusals only when there are any: the common batch's text is as it was.
  const refusals =
    batch.refusals.length === 0 ? '' : `"refusals":${JSON.stringify(batch.refusals)},`;
  const event =
    `{"first_seq":${batch.firstSeq},"last_seq":${batch.lastSeq},` +
    `"orders":[${states.join(',')}],"trades":[${trades.join(',')}],${refusals}` +
    `"written_at":${JSON.stringify(new Date().toISOString())}}`;
  const keyCount = 4 + orderKeys.length + fillKeys.length + tradeKeys.length;
  // concat, not spread: a batch can carry more arguments than a call's argument list holds.
  const args = (
    [keyCount, keys.events, keys.open, keys.written, keys.orders] as (string | number)[]
  ).concat(
    orderKeys,
    fillKeys,
    tradeKeys,
    [orderKeys.length, fillKeys.length, tradeKeys.length, TRADES_KEPT],
    [`0-${batch.lastSeq}`, event, keys.applied, String(batch.lastSeq)],
    [String(batch.firstSeq), lastCommand],
    orderArgs,
    fillArgs,
    tradeArgs,
  );
  try {
    await scripted(redis).mbWriteBatch(encoded(args));
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('STALE ')) {
      throw new StaleBatchError(
        `Redis refused batch ${batch.firstSeq}–${batch.lastSeq}: ${err.message.slice(6)}`,
      );
    }
    throw err;
  }
}

/** A string this short goes as it is: a view of its own would cost more than it saves. */
const LONG = 64;

/**
 * From this many characters of long strings, a call's arguments are encoded (see encoded): ioredis
 * joins a call given as strings into one string, and past 128 kB V8 allocates that in its
 * large-object space, fresh pages on every call, then the socket write copies it again into a
 * zero-filled buffer three times its length. Measured with batches of the bench's orders, CPU
 * per call: 40 and 50 orders (93k and 116k characters) the same either way; 60 orders (139k)
 * 2.3 ms as strings, 1.5–1.6 encoded; 250 orders (580k) 7.1–8.2 ms against 5.7–6.0.
 */
const ENCODE_FROM = 120_000;

/**
 * The arguments, their long strings (state, fill and trade JSON, the event batch) encoded into
 * one new buffer, passed as views of it; short strings and numbers as they are. The buffer is
 * sized at three bytes a character, so that V8 encodes each string on its fast path, without a
 * bound check per character, and left unfilled: only the pages written are touched.
 *
 * A fresh buffer per call, never reused: ioredis keeps the arguments of a command it may send
 * again (one whose reply a dropped connection lost), and they must still hold this batch.
 */
function encoded(args: (string | number)[]): (string | number | Buffer)[] {
  let chars = 0;
  for (const a of args) if (typeof a === 'string' && a.length > LONG) chars += a.length;
  if (chars < ENCODE_FROM) return args;
  const buffer = Buffer.allocUnsafeSlow(chars * 3);
  let at = 0;
  return args.map((a) => {
    if (typeof a !== 'string' || a.length <= LONG) return a;
    const n = buffer.write(a, at, 'utf8');
    const view = buffer.subarray(at, at + n);
    at += n;
    return view;
  });
}
