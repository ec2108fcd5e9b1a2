// Every Redis key matchbox uses, in one place. Keys of one shard carry the hash tag `{sN}`, so a
// Lua script touching a shard's stream, counter and status hashes touches one slot: all but the
// submit script of a shard other than 0, which checks the user's client_order_id under shard 0's
// key (see ShardKeys.idempotency).

/**
 * The longest value a hash keeps in Redis's compact encoding (`hash-max-listpack-value`) that a
 * status hash needs: the order JSON in it is 600–900 bytes. (An order on an instrument whose tick
 * or lot has dozens of decimal places can pass it; that hash is then a hash table, more memory and
 * nothing else.) The project-local Redis runs with it; the gateway advises it for a Redis of your
 * own. It applies to every hash in that Redis; matchbox has no others.
 */
export const STATUS_HASH_MAX_VALUE = 1024;

/** The keys of one engine shard. */
export interface ShardKeys {
  shard: string;
  /** Counter of the shard's command sequence; the order stream's ids are `0-<seq>`. */
  seq: string;
  /** The engine's input journal: one entry per command, id `0-<seq>`, field `c` = JSON. */
  orders: string;
  /** Engine output: one entry per dispatched batch, id `0-<last seq>`, field `b` = JSON. */
  events: string;
  /** W, the event stream's last id: set from it at each dispatcher cycle, moved by each batch. */
  written: string;
  /** Ids of the shard's orders that are not final, for the dispatcher to reload on restart. */
  open: string;
  /** The value (`<id>|<nonce>`) of the dispatcher holding the shard's lease (queue/lease.ts). */
  lease: string;
  /** The same for the batch writer writing the shard's streams. */
  writerLease: string;
  /** Pub/sub channel: the last sequence whose reports are written (sync mode waits on it). */
  applied: string;
  /**
   * The status cache of one order: hash with `j` (order JSON), `s` (status), `u` (user id), `q`
   * (its PLACE's sequence), and once amended `ap` and `aq` (the places of the newest amends queued
   * that named a price and a quantity: replace-order-4.lua).
   */
  order(orderId: string): string;
  /** Fills of one order, newest last: list of fill JSON. */
  fills(orderId: string): string;
  /** Set once a mass cancel is queued on the shard (cancel-all-4.lua), for a while. */
  massCancel(requestId: string): string;
  /** Recent trades of a symbol, newest first: list of trade JSON, capped. */
  trades(symbol: string): string;
  /**
   * client_order_id → order id, per user. Only shard 0's is used, by the orders of every shard:
   * a client_order_id is unique per user, not per shard, and the submit script of each shard
   * must see the one key. On one Redis a script may touch it outside its own slot; Redis
   * Cluster would refuse that (matchbox uses one Redis).
   */
  idempotency(userId: string, clientOrderId: string): string;
  /** A user's recent order ids scored by creation time, capped. */
  recent(userId: string): string;
}

/** Keys of shard `n` under the prefix (default `mb`). */
export function shardKeys(prefix: string, n: number): ShardKeys {
  const tag = `{s${n}}`;
  const base = `${prefix}:${tag}`;
  return {
    shard: `s${n}`,
    seq: `${base}:seq`,
    orders: `${base}:orders`,
    events: `${base}:events`,
    written: `${base}:written`,
    open: `${base}:open`,
    lease: `${base}:lease`,
    writerLease: `${base}:writer-lease`,
    applied: `${prefix}:applied:s${n}`,
    order: (orderId) => `${base}:o:${orderId}`,
    fills: (orderId) => `${base}:f:${orderId}`,
    massCancel: (requestId) => `${base}:mc:${requestId}`,
    trades: (symbol) => `${base}:t:${symbol}`,
    idempotency: (userId, clientOrderId) => `${base}:idem:${userId}:${clientOrderId}`,
    recent: (userId) => `${base}:recent:${userId}`,
  };
}

/**
 * How `shardOf` places symbols, recorded with the shard count in Redis (queue/shard-layout.ts): a
 * change of either moves symbols between engines, which is allowed only while no order rests on a
 * symbol that would move. A better-mixed hash would be a new name here, taken that way.
 */
export const SHARD_HASH = 'fnv1a';

/**
 * The shard that owns a symbol: a stable FNV-1a hash of the symbol modulo the shard count. Its
 * low bits are set by the characters' low bits alone (the multiplier is odd), so with a power of
 * two shards symbols differing only in high bits share a shard (the five default symbols are all
 * on one shard of two); real symbol sets spread.
 */
export function shardOf(symbol: string, shards: number): number {
  if (shards <= 1) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < symbol.length; i++) {
    h ^= symbol.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % shards;
}

/** The key holding the recorded shard layout. */
export const layoutKey = (prefix: string): string => `${prefix}:shard-layout`;

/**
 * The set of the ids of the users whose trading is halted (the admin kill switch), which the
 * submit and amend scripts check; PostgreSQL's `users.halted_at` is the copy kept when Redis loses
 * it.
 */
export const haltedKey = (prefix: string): string => `${prefix}:halted`;

/** When each user's trading was last resumed (src/queue/halts.ts). */
export const resumedKey = (prefix: string): string => `${prefix}:resumed`;

/** What the layout key holds while a change is under way: this, then the new layout. */
export const LAYOUT_CHANGING = 'changing:';

/**
 * Where each symbol's book is: on the shard it is pinned to (SHARD_PINS), else by `shardOf`.
 * `layout` is how it is recorded: the hash and the count (`fnv1a/4`), then the pins that move a
 * symbol off its hashed shard, in symbol order (`fnv1a/4;AAPL=0,MSFT=1`).
 */
export class ShardPlacement {
  readonly layout: string;

  constructor(
    readonly shards: number,
    readonly pins: ReadonlyMap<string, number> = new Map(),
  ) {
    for (const [symbol, n] of pins) {
      if (!Number.isInteger(n) || n < 0 || n >= shards) {
        throw new RangeError(`${symbol} is pinned to shard ${n}, not one of ${shards}`);
      }
    }
    // A pin to where the hash puts the symbol anyway changes nothing, and is not recorded.
    const pinned = [...pins]
      .filter(([symbol, n]) => n !== shardOf(symbol, shards))
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([symbol, n]) => `${symbol}=${n}`);
    this.layout = `${SHARD_HASH}/${Math.max(1, shards)}${pinned.length > 0 ? `;${pinned.join(',')}` : ''}`;
  }

  /** The placement a recorded layout names; undefined for one it does not (another hash). */
  static parse(layout: string): ShardPlacement | undefined {
    const m = /^([a-z0-9]+)\/([0-9]+)(?:;(.+))?$/.exec(layout);
    if (m === null || m[1] !== SHARD_HASH) return undefined;
    const pins = new Map<string, number>();
    for (const pair of m[3]?.split(',') ?? []) {
      const [symbol = '', n = ''] = pair.split('=');
      if (!/^[0-9]+$/.test(n)) return undefined;
      pins.set(symbol, Number(n));
    }
    try {
      return new ShardPlacement(Number(m[2]), pins);
    } catch {
      return undefined;
    }
  }

  /** The shard that owns `symbol`. */
  of(symbol: string): number {
    return this.pins.get(symbol) ?? shardOf(symbol, this.shards);
  }

  /** How the settings that make it are spelt, for messages. */
  get settings(): string {
    const pins = [...this.pins].map(([symbol, n]) => `${symbol}=${n}`).join(',');
    return `SHARDS=${this.shards}${pins === '' ? '' : ` SHARD_PINS=${pins}`}`;
  }
}

/** The layout of `shards` shards, none pinned, as recorded: the hash and the count. */
export function shardLayout(shards: number): string {
  return new ShardPlacement(shards).layout;
}

/** Writer consumer group name on both streams. */
export const WRITER_GROUP = 'writer';
