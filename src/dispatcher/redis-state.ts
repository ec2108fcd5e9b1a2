// What the dispatcher reads back from Redis when it (re)starts: the last sequence whose reports
// are written (the event stream's last id is `0-<seq>`, and it moves in the same script call as the
// status cache) and the state of every order that is not final.
import type { Redis } from 'ioredis';
import type { OrderState } from '../queue/records.js';
import type { ShardKeys } from '../queue/keys.js';
import { isFinal } from './projector.js';

/** The sequence part of a stream id `0-<seq>`. */
export function streamSeq(id: string): number {
  const dash = id.indexOf('-');
  return Number(dash < 0 ? id : id.slice(dash + 1));
}

/** W: the last sequence whose reports are durably in Redis; 0 when nothing was written yet. */
export async function readWrittenSeq(redis: Redis, keys: ShardKeys): Promise<number> {
  let info: unknown[];
  try {
    info = (await redis.xinfo('STREAM', keys.events)) as unknown[];
  } catch (err) {
    if (err instanceof Error && /no such key/i.test(err.message)) return 0;
    throw err;
  }
  for (let i = 0; i + 1 < info.length; i += 2) {
    if (info[i] === 'last-generated-id') return streamSeq(String(info[i + 1]));
  }
  throw new Error(`XINFO STREAM ${keys.events} has no last-generated-id`);
}

const CHUNK = 1000;

/** Every open order of the shard, by engine id (its PLACE seq, hash field `q`). */
export async function loadOpenOrders(
  redis: Redis,
  keys: ShardKeys,
): Promise<Map<number, OrderState>> {
  const ids = await redis.smembers(keys.open);
  const open = new Map<number, OrderState>();
  for (let i = 0; i < ids.length; i += CHUNK) {
    const chunk = ids.slice(i, i + CHUNK);
    const pipeline = redis.pipeline();
    for (const id of chunk) pipeline.hmget(keys.order(id), 'j', 'q');
    const results = (await pipeline.exec()) ?? [];
    for (const [err, value] of results) {
      if (err) throw err;
      const [j, q] = value as [string | null, string | null];
      if (j === null || q === null) continue;
      const order = JSON.parse(j) as OrderState;
      // At accept the gateway cannot know the seq inside the JSON; `q` has it.
      order.seq = Number(q);
      if (!isFinal(order.status)) open.set(order.seq, order);
    }
  }
  return open;
}
