// Whether Redis has written to its AOF what it holds: what the batch writer waits for before it
// commits to PostgreSQL what it read.
//
// With `appendfsync everysec` Redis answers a command before its AOF write whenever a background
// fsync is still running (it postpones the write for up to 2 s). Killed in that moment, it comes
// back without those writes: the gateway queues the orders it lost again, under new sequence
// numbers, and the dispatcher writes their outcomes under event ids Redis hands out again. A
// writer that had already committed the lost outcomes would leave PostgreSQL with trades and
// states of commands that, in Redis's history as it is now, never were. So a flush commits only
// once Redis has written everything it held when the flush's last entry had been read — into the
// file, which a killed process does not lose (a power cut may, with `everysec`: `always` fsyncs
// before answering). Redis 7.2's WAITAOF would say this in one call; 7.0, Debian 12's, has only
// `INFO persistence`: the bytes written to the AOF, and those waiting in its buffer.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';

/** The Redis answering is not the one the entries were read from: it restarted, or failed over. */
export class RedisRestartedError extends Error {
  constructor(
    readonly was: string,
    readonly now: string,
  ) {
    super(`Redis restarted (run_id ${was.slice(0, 8)}… is now ${now.slice(0, 8)}…)`);
  }
}

export interface AofState {
  runId: string;
  enabled: boolean;
  /** Bytes written to the AOF (base and increments). */
  size: number;
  /** Bytes in the AOF buffer, not yet written. */
  buffered: number;
  /** Changes when a rewrite begins or ends, which changes what `size` counts. */
  epoch: string;
  writeStatus: string;
}

/** Redis's run_id, which a restart changes. */
export async function runIdOf(redis: Redis): Promise<string> {
  return (await aofState(redis)).runId;
}

/** The `name:value` lines of an INFO reply. */
export function infoFields(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const at = line.indexOf(':');
    if (at > 0) fields.set(line.slice(0, at), line.slice(at + 1).trim());
  }
  return fields;
}

/** The run_id of an INFO server reply's fields: new at each start of Redis. */
export function runIdIn(fields: Map<string, string>): string {
  const runId = fields.get('run_id');
  if (runId === undefined) throw new Error('INFO server has no run_id');
  return runId;
}

/** What `INFO server persistence` says of the AOF, and the run_id. */
export async function aofState(redis: Redis): Promise<AofState> {
  const fields = infoFields((await redis.call('INFO', 'server', 'persistence')) as string);
  const runId = runIdIn(fields);
  const number = (name: string): number => Number(fields.get(name) ?? 0);
  return {
    runId,
    enabled: fields.get('aof_enabled') === '1',
    size: number('aof_current_size'),
    buffered: number('aof_buffer_length'),
    epoch: ['aof_rewrites', 'aof_rewrite_in_progress', 'aof_base_size']
      .map((f) => fields.get(f))
      .join('/'),
    writeStatus: fields.get('aof_last_write_status') ?? 'ok',
  };
}

/** How long a flush waits for Redis's AOF before it fails (and is tried again). */
const WAIT_MS = 10_000;

/**
 * Resolves once Redis (still the one with `runId`) has written to its AOF everything it held when
 * this was called; throws RedisRestartedError if another Redis answers. Usually one INFO, or two:
 * Redis writes its AOF buffer before it sends the answers of the same turn of its event loop.
 */
export async function aofWritten(redis: Redis, runId: string, waitMs = WAIT_MS): Promise<void> {
  const first = await aofState(redis);
  if (first.runId !== runId) throw new RedisRestartedError(runId, first.runId);
  if (!first.enabled || first.buffered === 0) return;
  let target = first.size + first.buffered;
  let { epoch, size } = first;
  const deadline = performance.now() + waitMs;
  for (let pause = 0; ; pause = Math.min(Math.max(1, pause * 2), 20)) {
    if (pause > 0) await sleep(pause);
    const now = await aofState(redis);
    if (now.runId !== runId) throw new RedisRestartedError(runId, now.runId);
    if (now.epoch !== epoch || now.size < size) {
      // A rewrite began or ended: sizes now count from another base. Everything held when this
      // was called is held now too: wait for what is buffered now.
      if (now.buffered === 0) return;
      target = now.size + now.buffered;
      epoch = now.epoch;
    } else if (now.size >= target) {
      return;
    }
    size = now.size;
    if (performance.now() > deadline) {
      throw new Error(
        `Redis has not written its AOF in ${waitMs} ms (${now.buffered} bytes buffered, last write ${now.writeStatus})`,
      );
    }
  }
}
