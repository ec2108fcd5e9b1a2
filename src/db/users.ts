// Users and their API keys. A key is shown once, at creation; only its SHA-256 is stored, so a
// leaked database does not leak keys, and the gateway authenticates from an in-memory map of hashes.
import { createHash, randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { Sql } from './client.js';

/** A user as created: the only time the API key itself is known. */
export interface NewUser {
  id: string;
  no: number;
  name: string;
  api_key: string;
}

/** A user as stored: what the gateway's key cache holds. */
export interface UserRow {
  id: string;
  no: number;
  name: string;
  api_key_hash: Buffer;
}

/** The SHA-256 of an API key, as stored in `users.api_key_hash`. */
export function hashApiKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

/** Creates a user with a new API key (`mbx_` + 32 random bytes, base64url). */
export async function createUser(sql: Sql, name: string): Promise<NewUser> {
  const id = uuidv7();
  const apiKey = `mbx_${randomBytes(32).toString('base64url')}`;
  const [row] = await sql<{ no: string }[]>`
    INSERT INTO users (id, name, api_key_hash) VALUES (${id}, ${name}, ${hashApiKey(apiKey)})
    RETURNING no`;
  // bigint arrives as a string; user numbers stay far below 2^53.
  return { id, no: Number(row?.no), name, api_key: apiKey };
}

interface RawUser {
  id: string;
  no: string;
  name: string;
  api_key_hash: Buffer;
}

const toUser = (r: RawUser): UserRow => ({
  id: r.id,
  no: Number(r.no),
  name: r.name,
  api_key_hash: r.api_key_hash,
});

/** Every user, oldest first. */
export async function loadUsers(sql: Sql): Promise<UserRow[]> {
  const rows = await sql<RawUser[]>`SELECT id, no, name, api_key_hash FROM users ORDER BY no`;
  return rows.map(toUser);
}

/** The user whose key hashes to `hash`, if any (for a gateway that misses its cache). */
export async function findUserByKeyHash(sql: Sql, hash: Buffer): Promise<UserRow | undefined> {
  const [row] = await sql<RawUser[]>`
    SELECT id, no, name, api_key_hash FROM users WHERE api_key_hash = ${hash}`;
  return row === undefined ? undefined : toUser(row);
}

/** A user's trading halt, as stored. */
export interface UserHalt {
  id: string;
  no: number;
  name: string;
  /** ISO 8601; null while the user may trade. */
  halted_at: string | null;
}

/**
 * Halts (`halted`) or resumes a user's trading; a halt keeps the time of the first. Undefined for
 * an unknown user.
 */
export async function setUserHalt(
  sql: Sql,
  userId: string,
  halted: boolean,
): Promise<UserHalt | undefined> {
  const [row] = await sql<{ id: string; no: string; name: string; halted_at: Date | null }[]>`
    UPDATE users
    SET halted_at = CASE WHEN ${halted}::boolean THEN coalesce(halted_at, now()) END
    WHERE id = ${userId}
    RETURNING id, no, name, halted_at`;
  if (row === undefined) return undefined;
  return {
    id: row.id,
    no: Number(row.no),
    name: row.name,
    halted_at: row.halted_at === null ? null : row.halted_at.toISOString(),
  };
}

/** The ids of the users whose trading is halted. */
export async function haltedUserIds(sql: Sql): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`SELECT id FROM users WHERE halted_at IS NOT NULL`;
  return rows.map((r) => r.id);
}
