// A user's execution reports as they happen, for `GET /v1/events`, and the public trades, for
// `GET /v1/market/events`. The dispatcher writes every batch of engine outcomes to its shard's
// event stream (one entry per batch, id `0-<last seq>`, holding the new state of each order the
// batch changed and its trades); while a gateway has a stream open, it reads every shard's event
// stream on a connection of its own and hands each subscription what its selector takes: a user
// the changes to their orders and their fills, a market-data stream the trades of its symbols.
//
// A subscriber's position is the Redis it read from (its run_id, new at each start) and the last
// sequence read per shard. It goes out as the SSE event id, and a client reconnecting with it
// (`Last-Event-ID`) is sent what came after it, read back from the streams, before the live
// events. The streams keep an entry until the batch writer has it in PostgreSQL (then a few
// seconds more); each entry names the first sequence it covers, so a gap (trimmed, or lost with
// a Redis restart) is seen, never passed over: the subscriber is told to read its orders afresh
// (`resync`) and goes on from the streams' heads. A position from before a Redis restart is a
// resync too: the restarted Redis may hold other batches under the same ids (one that lost its
// last writes is written again from where its AOF ends).
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { seqOf } from '../writer/stream-ids.js';
import { infoFields, runIdIn } from './aof.js';
import type { ShardKeys } from './keys.js';
import { SIDES, apiOrder, tradeFill } from './records.js';
import type {
  ApiOrder,
  CommandRefusal,
  EventBatch,
  Fill,
  SideName,
  TradeRecord,
} from './records.js';

/** One fill of one of the subscriber's orders. */
interface OrderFill extends Fill {
  order_id: string;
  symbol: string;
  side: SideName;
}

/** A cancel or amend of one of the subscriber's orders that the engine refused. */
type OrderRefusal = Pick<CommandRefusal, 'order_id' | 'symbol' | 'reason' | 'at'>;

/**
 * A trade as the public sees it: no order or user of either side; `sequence`, the engine's
 * sequence of the command that made it, to compare with a book's.
 */
export type MarketTrade = Pick<
  TradeRecord,
  'id' | 'symbol' | 'price' | 'quantity' | 'taker_side' | 'executed_at'
> & { sequence: number };

export type FeedEvent =
  | { event: 'order'; data: ApiOrder }
  | { event: 'fill'; data: OrderFill }
  | { event: 'cancel_rejected' | 'amend_rejected'; data: OrderRefusal }
  | { event: 'trade'; data: MarketTrade };

/** Which events of a batch a subscription takes. */
export interface Selector {
  /**
   * The subscriptions it is counted among for `subscribe`'s `most`: a user's id, or MARKET_KEY
   * for every market-data stream.
   */
  readonly key: string;
  /** Whether the batch may hold some of its events: a look at the text, before any parsing. */
  mentions(batch: ParsedBatch): boolean;
  /** Its events of the batch, in the batch's order. */
  of(batch: ParsedBatch): FeedEvent[];
}

/** A user's own: the changes to their orders, their fills, their refused cancels and amends. */
export function userEvents(userId: string): Selector {
  return {
    key: userId,
    mentions: (batch) => batch.mentions(userId),
    of: (batch) => batch.ofUser(userId),
  };
}

/** The key every market-data subscription is counted under: no user id (those are UUIDs). */
const MARKET_KEY = 'market';

/** The public trades of `symbols`, in the order they were made. */
export function marketTrades(symbols: readonly string[]): Selector {
  const wanted = new Set(symbols);
  const only = symbols.length === 1 ? (symbols[0] as string) : undefined;
  return {
    key: MARKET_KEY,
    mentions: (batch) => {
      for (const symbol of batch.symbols()) if (wanted.has(symbol)) return true;
      return false;
    },
    of: (batch) =>
      only !== undefined
        ? batch.tradesOf(only)
        : batch.trades().filter((e) => wanted.has(e.data.symbol)),
  };
}

/** Where a subscription's events go; called in order, never concurrently with itself. */
export interface FeedSink {
  /** Resolves when the sink can take more (catching up waits on it between reads). */
  room(): Promise<void>;
  /** Subscribed, at this position; called before anything else. */
  open(position: string): void;
  /** The user's events of one batch, and the position after it. */
  send(events: FeedEvent[], position: string): void;
  /** Events may have been missed: the user's orders are to be read again. */
  resync(reason: string, position: string): void;
  /** The feed is stopping (the gateway closes): nothing more comes. */
  stop(): void;
}

export interface Subscription {
  /** The position after everything sent so far. */
  readonly position: string;
  close(): void;
}

/** Entries one read takes, per shard. */
const READ_COUNT = 64;
/** Entries one read-back takes: batches of up to DISPATCH_BATCH orders each. */
const REPLAY_COUNT = 16;
/** How long one blocking read waits: also how soon the loop sees that nobody is subscribed. */
const BLOCK_MS = 1_000;
/** The first sequence a batch covers, from the head of its JSON (batch-write.ts writes it first). */
const FIRST_SEQ = /^\{"first_seq":([0-9]+),/;

/** An event-stream entry's batch JSON (field `b`) and the first sequence it covers (NaN: none). */
function entryBatch(fields: string[]): { json: string; first: number } {
  const json = fields[fields.indexOf('b') + 1] ?? '';
  return { json, first: Number(FIRST_SEQ.exec(json)?.[1] ?? NaN) };
}
/**
 * Past this many subscribed users (every market-data stream counts as one), a batch is parsed
 * without first looking in its text for what each wants (a user's id, a symbol).
 */
const SCAN_KEYS = 16;
/** Live batches and events held for one subscriber while it catches up; past it, a resync. */
const MAX_PENDING = 10_000;
/** The part of Redis's run_id a position carries. */
const RUN_CHARS = 12;

/**
 * A position as a client sends it back: `<run>:<seq>,<seq>…`, the start of Redis's run_id, then
 * the last sequence read on each shard. Undefined for text that is not one of `shards` shards.
 */
export function parsePosition(
  text: string,
  shards: number,
): { run: string; seqs: number[] } | undefined {
  const m = /^([0-9a-f]{1,40}):([0-9]{1,16}(?:,[0-9]{1,16})*)$/.exec(text);
  if (m === null) return undefined;
  const seqs = (m[2] as string).split(',').map(Number);
  if (seqs.length !== shards || !seqs.every(Number.isSafeInteger)) return undefined;
  return { run: m[1] as string, seqs };
}

class Subscriber implements Subscription {
  /**
   * The user's events of the live batches that came while what came before them is read back
   * from the streams, held until then (an empty list: a batch with nothing of theirs).
   */
  pending: { shard: number; last: number; events: FeedEvent[] }[] | undefined;
  /** Batches and events held in `pending`. */
  private held = 0;
  /** Moves at each resync: a catch-up begun before one stops. */
  epoch = 0;
  closed = false;

  constructor(
    readonly selector: Selector,
    readonly seqs: number[],
    readonly sink: FeedSink,
    private readonly feed: OrderFeed,
  ) {}

  get position(): string {
    return `${this.feed.redisRun}:${this.seqs.join(',')}`;
  }

  /**
   * Hands over its part of live batch `last` of `shard` (`scan`: looking at the text first), or
   * holds it while catching up.
   */
  deliver(
    shard: number,
    last: number,
    batch: ParsedBatch,
    scan: boolean,
    heads: readonly number[],
  ): void {
    const events = !scan || this.selector.mentions(batch) ? this.selector.of(batch) : [];
    if (this.pending === undefined) {
      this.emit(shard, last, events);
      return;
    }
    this.held += 1 + events.length;
    if (this.held > MAX_PENDING) {
      this.resync('Too much came while the events since Last-Event-ID were read.', heads);
    } else this.pending.push({ shard, last, events });
  }

  /** Sends its part of batch `last` of `shard`, read back: parsed only if it has some. */
  replay(shard: number, last: number, batch: ParsedBatch): void {
    if (last <= (this.seqs[shard] as number)) return;
    this.emit(shard, last, this.selector.mentions(batch) ? this.selector.of(batch) : []);
  }

  /** Sends `events`, its part of batch `last` of `shard`, unless already past it. */
  emit(shard: number, last: number, events: FeedEvent[]): void {
    if (last <= (this.seqs[shard] as number)) return;
    this.seqs[shard] = last;
    if (events.length > 0) this.sink.send(events, this.position);
  }

  /** Sends what was held while catching up, as fast as the client reads it; then goes live. */
  async flush(epoch: number): Promise<void> {
    while (this.pending !== undefined && this.pending.length > 0) {
      const next = this.pending[0] as { shard: number; last: number; events: FeedEvent[] };
      if (next.events.length > 0) {
        await this.sink.room();
        if (this.epoch !== epoch || this.closed || this.pending === undefined) return;
      }
      this.pending.shift();
      this.held -= 1 + next.events.length;
      this.emit(next.shard, next.last, next.events);
    }
    this.pending = undefined;
    this.held = 0;
  }

  resync(reason: string, heads: readonly number[]): void {
    this.epoch++;
    this.pending = undefined;
    this.held = 0;
    for (let i = 0; i < heads.length; i++) this.seqs[i] = heads[i] as number;
    this.sink.resync(reason, this.position);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.feed.drop(this);
  }
}

/** A symbol field in a batch's text: every order state and trade has one. */
const SYMBOL_FIELD = /"symbol":"([^"\\]*)"/g;

/**
 * A batch's events by user, its public trades, and the symbols it concerns, each worked out once,
 * when first asked for.
 */
export class ParsedBatch {
  private parsed: EventBatch | undefined;
  private byUser: Map<string, FeedEvent[]> | undefined;
  private publicTrades: (FeedEvent & { event: 'trade' })[] | undefined;
  private bySymbol: Map<string, FeedEvent[]> | undefined;
  private named: Set<string> | undefined;
  private readonly mentioned = new Map<string, boolean>();

  constructor(readonly json: string) {}

  private batch(): EventBatch {
    return (this.parsed ??= JSON.parse(this.json) as EventBatch);
  }

  /** Whether the batch may concern `userId` (its id is in the text). */
  mentions(userId: string): boolean {
    if (this.byUser !== undefined) return this.byUser.has(userId);
    let found = this.mentioned.get(userId);
    if (found === undefined) this.mentioned.set(userId, (found = this.json.includes(userId)));
    return found;
  }

  ofUser(userId: string): FeedEvent[] {
    this.byUser ??= eventsByUser(this.batch());
    return this.byUser.get(userId) ?? [];
  }

  /** The symbols of the batch's orders and trades, read off its text without parsing it. */
  symbols(): ReadonlySet<string> {
    if (this.named === undefined) {
      this.named = new Set();
      for (const m of this.json.matchAll(SYMBOL_FIELD)) this.named.add(m[1] as string);
    }
    return this.named;
  }

  /** Every trade of the batch, public fields only, in the order they were made. */
  trades(): (FeedEvent & { event: 'trade' })[] {
    return (this.publicTrades ??= this.batch().trades.map((t) => ({
      event: 'trade',
      data: {
        id: t.id,
        symbol: t.symbol,
        price: t.price,
        quantity: t.quantity,
        taker_side: t.taker_side,
        executed_at: t.executed_at,
        sequence: t.seq,
      },
    })));
  }

  /** The trades of one symbol, in the order they were made. */
  tradesOf(symbol: string): FeedEvent[] {
    if (this.bySymbol === undefined) {
      this.bySymbol = new Map();
      for (const e of this.trades()) {
        const list = this.bySymbol.get(e.data.symbol);
        if (list === undefined) this.bySymbol.set(e.data.symbol, [e]);
        else list.push(e);
      }
    }
    return this.bySymbol.get(symbol) ?? [];
  }
}

/**
 * Each user's fills, then the new state of each of their orders, then their refused cancels and
 * amends, in the batch's order.
 */
function eventsByUser(batch: EventBatch): Map<string, FeedEvent[]> {
  const out = new Map<string, FeedEvent[]>();
  const add = (userId: string, e: FeedEvent): void => {
    const list = out.get(userId);
    if (list === undefined) out.set(userId, [e]);
    else list.push(e);
  };
  for (const t of batch.trades) {
    const { symbol } = t;
    add(t.taker_user_id, {
      event: 'fill',
      data: {
        ...tradeFill(t, 'TAKER'),
        order_id: t.taker_order_id,
        symbol,
        side: t.taker_side,
      },
    });
    add(t.maker_user_id, {
      event: 'fill',
      data: {
        ...tradeFill(t, 'MAKER'),
        order_id: t.maker_order_id,
        symbol,
        side: SIDES[t.taker_side === 'BUY' ? 1 : 0],
      },
    });
  }
  for (const o of batch.orders) add(o.user_id, { event: 'order', data: apiOrder(o) });
  for (const r of batch.refusals ?? []) {
    add(r.user_id, {
      event: r.kind === 'cancel' ? 'cancel_rejected' : 'amend_rejected',
      data: { order_id: r.order_id, symbol: r.symbol, reason: r.reason, at: r.at },
    });
  }
  return out;
}

interface OrderFeedOptions {
  redis: Redis;
  shards: ShardKeys[];
  logger: Logger;
  /** Told of every batch read live (not of those read back), after its subscribers. */
  onBatch?: (batch: ParsedBatch) => void;
}

/** One per gateway: reads the event streams while anyone is subscribed. */
export class OrderFeed {
  /** The subscriptions by their selector's key. */
  private readonly byKey = new Map<string, Set<Subscriber>>();
  /** Subscriptions in all. */
  private count = 0;
  private reader: Redis | undefined;
  /** For reading back what a reconnecting client missed: large replies, off the gateway's own. */
  private replayer: Redis | undefined;
  /** The last sequence read per shard; undefined until read from Redis (again). */
  private heads: number[] | undefined;
  /** The start of the run_id of the Redis the heads were read from. */
  redisRun = '';
  private loading: Promise<number[]> | undefined;
  private running: Promise<void> | undefined;
  /** The reader's connection closed since the heads were read: what it read may be gone. */
  private lost = false;
  private stopped = false;

  constructor(private readonly options: OrderFeedOptions) {}

  /**
   * Subscribes `selector` from `from` (a position this feed gave, or undefined: from now), unless
   * `most` subscriptions of its key are open already (`full`) or the feed is stopping. What came
   * after `from` is sent before any live event; a `from` that cannot be followed (from another
   * layout, or past what the streams still hold) is a resync.
   */
  async subscribe(
    selector: Selector,
    from: string | undefined,
    sink: FeedSink,
    most: number,
  ): Promise<Subscription | 'full' | 'stopped'> {
    const { key } = selector;
    if ((this.byKey.get(key)?.size ?? 0) >= most) return 'full';
    // The heads the loop reads from (read again if it stopped meanwhile and forgot them).
    let heads = await this.currentHeads();
    while (heads !== this.heads && !this.stopped) heads = await this.currentHeads();
    // Counted again once nothing awaits before the subscription is in.
    if (this.stopped) return 'stopped';
    if ((this.byKey.get(key)?.size ?? 0) >= most) return 'full';
    const resumed = from === undefined ? undefined : parsePosition(from, heads.length);
    const follows = resumed !== undefined && resumed.run === this.redisRun;
    const sub = new Subscriber(selector, (follows ? resumed.seqs : heads).slice(), sink, this);
    let subs = this.byKey.get(key);
    if (subs === undefined) this.byKey.set(key, (subs = new Set()));
    subs.add(sub);
    this.count++;
    this.run();
    sink.open(sub.position);
    if (follows) {
      sub.pending = [];
      void this.catchUp(sub, heads.slice());
    } else if (resumed !== undefined) {
      sub.resync('Redis has restarted since Last-Event-ID.', heads);
    } else if (from !== undefined) {
      sub.resync('Last-Event-ID is not a position of this system’s event streams.', heads);
    }
    return sub;
  }

  /** Ends every subscription and the reader. */
  stop(): void {
    this.stopped = true;
    const all = [...this.byKey.values()].flatMap((subs) => [...subs]);
    this.byKey.clear();
    this.count = 0;
    for (const sub of all) {
      sub.closed = true;
      sub.sink.stop();
    }
    this.reader?.disconnect();
    this.replayer?.disconnect();
  }

  drop(sub: Subscriber): void {
    const { key } = sub.selector;
    const subs = this.byKey.get(key);
    if (subs?.delete(sub) === true) this.count--;
    if (subs?.size === 0) this.byKey.delete(key);
  }

  private connection(): Redis {
    if (this.reader === undefined) {
      // A read is failed, not sent again, when its connection closes: what came meanwhile on the
      // old one may be lost (see run).
      const reader = this.options.redis.duplicate({
        enableOfflineQueue: false,
        autoResendUnfulfilledCommands: false,
        maxRetriesPerRequest: 0,
        commandTimeout: undefined,
        connectionName: 'matchbox-event-feed',
        lazyConnect: false,
      });
      reader.on('error', (err: Error) =>
        this.options.logger.debug({ err: err.message }, 'event feed connection error'),
      );
      reader.on('close', () => {
        this.lost = true;
      });
      this.reader = reader;
    }
    return this.reader;
  }

  /**
   * The heads, read from Redis if they are not known: each shard's last written sequence (W),
   * with the run of the Redis they are read from, in one step. Read again while anyone is
   * subscribed (after a lost connection), every subscriber is resynced to them in the same step:
   * none is ever left with the new run and the old sequences.
   */
  private async currentHeads(): Promise<number[]> {
    if (this.heads !== undefined) return this.heads;
    this.loading ??= (async () => {
      try {
        // A close of the reader's connection before now is of no matter: nothing was read on it
        // past these heads.
        this.lost = false;
        const replies = await this.options.redis
          .multi()
          .info('server')
          .mget(...this.options.shards.map((k) => k.written))
          .exec();
        const [[infoErr, info] = [null, null], [mgetErr, written] = [null, null]] = replies ?? [];
        if (infoErr || mgetErr) throw (infoErr ?? mgetErr) as Error;
        this.redisRun = runIdIn(infoFields(String(info))).slice(0, RUN_CHARS);
        this.heads = (written as (string | null)[]).map((w) => Number(w ?? 0));
        if (this.count > 0) this.resyncAll('The gateway lost its connection to Redis.', this.heads);
        return this.heads;
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  /** Starts the read loop if it is not running. */
  private run(): void {
    this.running ??= this.loop().finally(() => {
      this.running = undefined;
      // Someone subscribed as the loop was ending.
      if (this.count > 0 && !this.stopped) this.run();
    });
  }

  /** Whether the loop is to end: nobody subscribed. It then forgets the heads, stale from now. */
  private idle(): boolean {
    if (this.count > 0 && !this.stopped) return false;
    this.heads = undefined;
    return true;
  }

  private async loop(): Promise<void> {
    const { shards, logger } = this.options;
    const streams = shards.map((k) => k.events);
    let failing = false;
    while (!this.idle()) {
      try {
        const reader = this.connection();
        if (reader.status !== 'ready') {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        if (this.lost) {
          // Entries read on the old connection may be gone with a Redis restart, and others
          // written in their place under the same ids: go on from the heads there are now (which
          // resyncs every subscriber, whoever reads them first).
          this.heads = undefined;
          await this.currentHeads();
          continue;
        }
        const heads = await this.currentHeads();
        const reply = await reader.xread(
          'COUNT',
          READ_COUNT,
          'BLOCK',
          BLOCK_MS,
          'STREAMS',
          ...streams,
          ...heads.map((h) => `0-${h}`),
        );
        if (failing) logger.info('event feed reading again');
        failing = false;
        if (this.lost || this.heads !== heads) continue;
        for (const [stream, entries] of reply ?? []) {
          const shard = streams.indexOf(stream);
          for (const [id, fields] of entries) this.take(shard, seqOf(id), fields, heads);
        }
      } catch (err) {
        if (this.stopped) return;
        if (!failing) logger.warn({ err }, 'event feed cannot read the event streams; retrying');
        failing = true;
        this.lost = true;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** One entry of shard `shard`'s event stream, read live. */
  private take(shard: number, last: number, fields: string[], heads: number[]): void {
    const { json, first } = entryBatch(fields);
    if (first !== (heads[shard] as number) + 1) {
      heads[shard] = last;
      this.resyncAll(
        `The event stream of shard ${shard} does not follow on (a Redis restart?).`,
        heads,
      );
      return;
    }
    heads[shard] = last;
    const batch = new ParsedBatch(json);
    const scan = this.byKey.size <= SCAN_KEYS;
    for (const subs of this.byKey.values()) {
      for (const sub of subs) sub.deliver(shard, last, batch, scan, heads);
    }
    this.options.onBatch?.(batch);
  }

  private resyncAll(reason: string, heads: readonly number[]): void {
    for (const subs of this.byKey.values()) for (const sub of subs) sub.resync(reason, heads);
  }

  /**
   * Sends `sub` what its shards' streams hold after its position up to `to` (the heads when it
   * subscribed), then the live batches held meanwhile. A stream that no longer holds what
   * follows the position is a resync.
   */
  private async catchUp(sub: Subscriber, to: number[]): Promise<void> {
    const epoch = sub.epoch;
    const gone = (shard: number, next: number): string =>
      `Shard ${shard}'s events after ${next - 1} are no longer kept.`;
    const { shards } = this.options;
    // Queued until connected (it is made on first use); a Redis that does not answer in time
    // fails the read-back, which is then a resync.
    this.replayer ??= this.options.redis.duplicate({
      connectionName: 'matchbox-event-replay',
      enableOfflineQueue: true,
      lazyConnect: false,
      commandTimeout: 5_000,
    });
    const redis = this.replayer;
    try {
      for (let shard = 0; shard < shards.length; shard++) {
        let next = (sub.seqs[shard] as number) + 1;
        const end = to[shard] as number;
        while (next <= end) {
          const entries = await redis.xrange(
            (shards[shard] as ShardKeys).events,
            `0-${next}`,
            `0-${end}`,
            'COUNT',
            REPLAY_COUNT,
          );
          if (sub.epoch !== epoch || sub.closed) return;
          if (entries.length === 0) {
            // Live delivery goes on from the loop's heads, not from `to`: what came since is in
            // Redis, for the client's fresh read, and the resync's position says so.
            sub.resync(gone(shard, next), this.heads ?? to);
            return;
          }
          for (const [id, fields] of entries) {
            // As fast as the client reads, not as Redis answers.
            await sub.sink.room();
            if (sub.epoch !== epoch || sub.closed) return;
            const { json, first } = entryBatch(fields);
            if (first !== next) {
              sub.resync(gone(shard, next), this.heads ?? to);
              return;
            }
            const last = seqOf(id);
            sub.replay(shard, last, new ParsedBatch(json));
            next = last + 1;
          }
        }
      }
      await sub.flush(epoch);
    } catch (err) {
      if (sub.epoch !== epoch || sub.closed) return;
      this.options.logger.warn({ err }, 'event feed cannot read back a stream');
      sub.resync('The events since Last-Event-ID could not be read.', this.heads ?? to);
    }
  }
}
