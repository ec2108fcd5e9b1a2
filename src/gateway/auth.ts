// Who is calling: API keys are looked up by their SHA-256 in an in-memory cache (the key itself
// is never stored), so authentication costs no I/O on the order path. The admin token is compared
// in constant time.
import { timingSafeEqual } from 'node:crypto';
import { hashApiKey } from '../db/users.js';
import type { Caller } from './order-builder.js';
import type { UserKey } from './store.js';

/** Bearer token of an Authorization header, or undefined (the scheme's case is free: RFC 9110). */
export function bearer(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer ([\x21-\x7e]{1,256})$/i.exec(header);
  return m?.[1];
}

/** Presented keys remembered after their first lookup, so the hot path skips the SHA-256. */
const PRESENTED_MAX = 10_000;

export class KeyCache {
  private readonly byHash = new Map<string, Caller>();
  private readonly presented = new Map<string, Caller>();
  private lastReload = 0;

  constructor(private readonly load: () => Promise<UserKey[]>) {}

  async reload(): Promise<void> {
    this.lastReload = Date.now();
    for (const u of await this.load()) this.add(u);
  }

  add(user: UserKey): void {
    this.byHash.set(user.api_key_hash.toString('hex'), { id: user.id, no: user.no });
  }

  /**
   * The caller a key belongs to. An unknown key reloads the cache at most once a second, so that
   * users created by another gateway are found without letting bad keys hammer the database.
   */
  async lookup(key: string): Promise<Caller | undefined> {
    const known = this.presented.get(key);
    if (known !== undefined) return known;
    const hash = hashApiKey(key).toString('hex');
    let hit = this.byHash.get(hash);
    if (hit === undefined && Date.now() - this.lastReload >= 1000) {
      await this.reload();
      hit = this.byHash.get(hash);
    }
    if (hit !== undefined) {
      // Only valid keys are remembered, so wrong keys cannot grow this map.
      if (this.presented.size >= PRESENTED_MAX) this.presented.clear();
      this.presented.set(key, hit);
    }
    return hit;
  }
}

/** Constant-time comparison of a presented admin token with the configured one. */
export function isAdminToken(presented: string | undefined, expected: string): boolean {
  if (presented === undefined) return false;
  return timingSafeEqual(hashApiKey(presented), hashApiKey(expected));
}
