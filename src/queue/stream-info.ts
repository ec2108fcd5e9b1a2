// What Redis says about a stream and the writer's consumer group on it (XINFO), read the same way
// by the writer (trimming), the gateway's metrics, the sync-mode watcher, the bench and the fault
// suite.
import type { Redis } from 'ioredis';
import { seqOf } from '../writer/stream-ids.js';
import { WRITER_GROUP } from './keys.js';

/** XINFO's flat [name, value, …] list as an object. */
export function xinfoPairs(flat: unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
}

/**
 * A stream's length and the sequence of its last generated id (kept when its entries are
 * trimmed); undefined when the stream does not exist.
 */
export async function streamInfo(
  redis: Redis,
  stream: string,
): Promise<{ length: number; lastSeq: number } | undefined> {
  const info = (await redis.call('XINFO', 'STREAM', stream).catch(() => null)) as unknown[] | null;
  if (!Array.isArray(info)) return undefined;
  const o = xinfoPairs(info);
  return { length: Number(o.length), lastSeq: seqOf(String(o['last-generated-id'])) };
}

/** The sequence of a stream's last generated id (0 when the stream does not exist). */
export async function lastGeneratedSeq(redis: Redis, stream: string): Promise<number> {
  return (await streamInfo(redis, stream))?.lastSeq ?? 0;
}

/** The writer's group on a stream as XINFO GROUPS shows it, or undefined when it has none. */
export async function writerGroup(
  redis: Redis,
  stream: string,
): Promise<Record<string, unknown> | undefined> {
  const groups = (await redis.xinfo('GROUPS', stream)) as unknown[][];
  return groups.map(xinfoPairs).find((g) => g.name === WRITER_GROUP);
}

/**
 * The last sequence dispatched on a shard: its event stream's last id, or, the writer having
 * trimmed the stream empty, the last it generated (XINFO; 0 without a stream).
 */
export async function dispatchedThrough(redis: Redis, events: string): Promise<number> {
  const last = await redis.xrevrange(events, '+', '-', 'COUNT', 1);
  const top = last[0];
  return top === undefined ? await lastGeneratedSeq(redis, events) : seqOf(top[0]);
}

/**
 * Entries of a stream never delivered to a group, from XINFO: 0 once the group has been given the
 * stream's last generated id. Redis's own `lag` (entries added minus entries read) is not enough:
 * it can be stale — after a restart from the AOF it stayed at thousands with everything delivered
 * and written (the fault suite waited for it in vain) — and it is null when Redis cannot tell.
 */
export function undelivered(group: Record<string, unknown>, lastSeq: number): number {
  const delivered = seqOf(String(group['last-delivered-id']));
  if (delivered >= lastSeq) return 0;
  // Stream ids are 0-<seq>, so the distance in sequence bounds what is left (exactly, on the
  // order stream). A lag of 0 or less with entries after the group's position is wrong too.
  const distance = lastSeq - delivered;
  const lag = group.lag;
  return typeof lag === 'number' && lag > 0 ? Math.min(lag, distance) : distance;
}

/**
 * Entries the writer has not committed on a stream: pending in its group plus never delivered.
 * A stream it has no group on counts as none, or with `ungrouped: 'all'` as all its entries.
 */
export async function writerBacklog(
  redis: Redis,
  stream: string,
  ungrouped: 'none' | 'all' = 'none',
): Promise<number> {
  const [g, s] = await Promise.all([
    writerGroup(redis, stream).catch(() => undefined),
    streamInfo(redis, stream),
  ]);
  if (g === undefined) return ungrouped === 'all' ? (s?.length ?? 0) : 0;
  // The group exists, so the stream does: without its info, fall back on Redis's lag.
  if (s === undefined) return Number(g.pending) + (typeof g.lag === 'number' ? g.lag : 0);
  return Number(g.pending) + undelivered(g, s.lastSeq);
}

/**
 * Most entries one trim call removes. Redis frees them while every other client waits: one exact
 * XTRIM of 25,000 order entries held it for 2.2 ms on this machine's kind, ~20 ms on a slow one
 * under load, and the writer trims every 5 s whatever has piled up since.
 */
export const TRIM_STEP = 250;

/**
 * Removes every entry of `stream` below `minId`, exactly, in short calls: whole nodes at most
 * TRIM_STEP entries a call (`MINID ~ … LIMIT`, which leaves the node `minId` falls in), then one
 * exact XTRIM for what is left of that node: at most a node's entries (stream-node-max-entries,
 * 100 by default). Where nodes hold more than a step, the stepped calls remove nothing and the
 * exact one does it all, as one call did before. Returns how many went.
 */
export async function trimBelow(redis: Redis, stream: string, minId: string): Promise<number> {
  let removed = 0;
  for (;;) {
    const n = await redis.xtrim(stream, 'MINID', '~', minId, 'LIMIT', TRIM_STEP);
    removed += n;
    if (n === 0) break;
  }
  return removed + (await redis.xtrim(stream, 'MINID', minId));
}
