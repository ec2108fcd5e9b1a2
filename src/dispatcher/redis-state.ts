// What the dispatcher reads back from Redis when it (re)starts: the last sequence whose reports
// are written (the event stream's last id is `0-<seq>`, and it moves in the same script call as the
// status cache) and the state of every order that is not final.
import type { Redis } from 'ioredis';
import { keyCount, lua } from '../queue/lua-scripts.js';
import type { OrderState } from '../queue/records.js';
import type { ShardKeys } from '../queue/keys.js';
import { isFinal } from './projector.js';

/** The sequence part of a stream id `0-<seq>`. */
export function streamSeq(id: string): number {
  const dash = id.indexOf('-');
  return Number(dash < 0 ? id : id.slice(dash + 1));
}

const SYNC_SCRIPT = 'sync-written-2.lua';

interface SyncScript {
  mbSyncWritten(events: string, written: string): Promise<number>;
}

/**
 * W, the last sequence whose reports are durably in Redis (0 when nothing was written yet), read
 * from the event stream, with W's key, which the batch script checks each batch against, set to
 * it. Read together with the key (a read-only transaction, which Redis serves while it holds
 * writes); where the two differ (a first start, a Redis that lost its last writes), the key is set
 * in the same step as the stream is read again (sync-written-2.lua): in two, a batch another
 * dispatcher of the shard wrote in between would have its W taken back.
 */
export async function syncWrittenSeq(redis: Redis, keys: ShardKeys): Promise<number> {
  const replies = await redis.multi().xinfo('STREAM', keys.events).get(keys.written).exec();
  const [[infoErr, info] = [null, null], [keyErr, key] = [null, null]] = replies ?? [];
  if (keyErr) throw keyErr;
  let w = 0;
  if (infoErr) {
    if (!/no such key/i.test(infoErr.message)) throw infoErr;
  } else {
    const fields = info as unknown[];
    const at = fields.indexOf('last-generated-id');
    if (at < 0 || at % 2 !== 0)
      throw new Error(`XINFO STREAM ${keys.events}: no last-generated-id`);
    w = streamSeq(String(fields[at + 1]));
  }
  if (key === String(w)) return w;
  if (!('mbSyncWritten' in redis)) {
    redis.defineCommand('mbSyncWritten', {
      numberOfKeys: keyCount(SYNC_SCRIPT),
      lua: lua(SYNC_SCRIPT),
    });
  }
  return Number(await (redis as Redis & SyncScript).mbSyncWritten(keys.events, keys.written));
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
