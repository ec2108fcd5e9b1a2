// Users whose trading is halted (the admin's kill switch). PostgreSQL's `users.halted_at` is the
// copy kept; Redis's set is the one every submit and amend script checks. The set is made whole
// from PostgreSQL, never the other way, and nothing but a resume takes a user out of it: a resume
// a Redis restart lost leaves the user halted until resumed again (fail closed).
import type { Redis } from 'ioredis';
import type { Sql } from '../db/client.js';
import { haltedUserIds } from '../db/users.js';
import { haltedKey, resumedKey } from './keys.js';
import { keyCount, lua } from './lua-scripts.js';

const RESUME = 'resume-user-2.lua';
const RESTORE = 'restore-halts-2.lua';
const RESUME_LUA = lua(RESUME);
const RESTORE_LUA = lua(RESTORE);

/** Halts (`halted`) or resumes a user's trading in Redis; PostgreSQL has it already. */
export async function setHalt(
  redis: Redis,
  prefix: string,
  userId: string,
  halted: boolean,
): Promise<void> {
  if (halted) {
    // A halt forgets the last resume: a restore that read PostgreSQL after this halt must put it
    // back even if Redis's clock has gone back past that resume (a failover, a clock step).
    await redis.multi().sadd(haltedKey(prefix), userId).hdel(resumedKey(prefix), userId).exec();
    return;
  }
  await redis.eval(
    RESUME_LUA,
    keyCount(RESUME) as number,
    haltedKey(prefix),
    resumedKey(prefix),
    userId,
  );
}

/**
 * Adds to Redis's set of halted users those PostgreSQL holds halted: all of them for a Redis that
 * came back empty, and any a restart lost or whose write failed. A user resumed after PostgreSQL
 * was read is not added back.
 */
export async function restoreHalts(redis: Redis, sql: Sql, prefix: string): Promise<true> {
  const [seconds, micros] = await redis.time();
  const readFrom = Number(seconds) * 1_000_000 + Number(micros);
  await putBackHalts(redis, prefix, readFrom, await haltedUserIds(sql));
  return true;
}

/**
 * Adds `ids`, the users PostgreSQL held halted when read from `readFrom` (Redis's clock, in
 * microseconds) on, but those resumed since.
 */
export async function putBackHalts(
  redis: Redis,
  prefix: string,
  readFrom: number,
  ids: readonly string[],
): Promise<void> {
  if (ids.length === 0) return;
  await redis.eval(
    RESTORE_LUA,
    keyCount(RESTORE) as number,
    haltedKey(prefix),
    resumedKey(prefix),
    String(readFrom),
    ...ids,
  );
}
