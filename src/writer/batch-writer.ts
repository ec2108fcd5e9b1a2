// The batch writer (architecture.md, step 5): a consumer group over each shard's order and event
// streams, written to PostgreSQL in one transaction per flush and acknowledged only after COMMIT,
// so a crash anywhere re-delivers rather than loses; the upserts are idempotent and monotonic, so
// re-delivery changes nothing. One loop per shard, each with its own blocking Redis connection
// (one XREADGROUP per shard keeps every command inside one hash slot, as Redis Cluster requires).
//
// One writer writes a shard at a time, the one holding the shard's writer lease (queue/lease.ts);
// another, started beside it or standing by on another host, waits until the lease is free. Every
// writer reads as the one consumer (`writer-1`), so the one taking over starts by reading that
// consumer's pending entries: what the one before held unwritten when it died. Two at once would
// each skip PLACEs whose outcomes the other holds, and the entries of one that died would wait,
// pending, for it to come back.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Sql } from '../db/client.js';
import { componentErrors, writerMetrics } from '../metrics/pipeline.js';
import { WRITER_GROUP } from '../queue/keys.js';
import { lastGeneratedSeq, trimBelow, undelivered, writerGroup } from '../queue/stream-info.js';
import type { ShardKeys } from '../queue/keys.js';
import { classify, errorCode, isConnectionFailure } from '../db/pg-errors.js';
import { keyCount, lua } from '../queue/lua-scripts.js';
import { aofWritten, RedisRestartedError, runIdOf } from '../queue/aof.js';
import { pinReplayBound } from '../engine-service/snapshot-store.js';
import { ShardLease } from '../queue/lease.js';
import { READ_COUNT, ReadSize } from './read-size.js';
import { flushParameters, PLACE_PREFIX, writeIsolating, writeParameters } from './statements.js';
import type { HeldEntry, Reject, WrittenRows } from './statements.js';
import { compareIds, formatId, nextId, parseId, seqOf } from './stream-ids.js';
import type { StreamId } from './stream-ids.js';

export interface BatchWriterOptions {
  redis: Redis;
  sql: Sql;
  keys: ShardKeys[];
  /** Commit at most this long after the first record is held… */
  flushMs: number;
  /** …or as soon as this many stream entries are held. */
  batchSize: number;
  logger: Logger;
  /**
   * Consumer name in the group; the same for every writer of a deployment (the default), so that
   * a restart, or a writer taking over, reads the pending entries of the one before.
   */
  consumer?: string;
  /**
   * How long a shard's writer lease lasts unless renewed (WRITER_LEASE_MS): after a writer's
   * death, how long one standing by waits to take over. Default 3000; 0 runs without a lease.
   */
  leaseMs?: number;
  /**
   * This writer's identity in the lease (WRITER_LEASE_ID); default, new at each start. One
   * restarted with the same takes its lease back at once rather than at expiry.
   */
  leaseId?: string;
  /** How often to trim the streams below what is written (and, for orders, snapshotted). */
  trimIntervalMs?: number;
  /**
   * How long stop() keeps retrying a failing flush before leaving the entries pending (default
   * 4 s: within the 10 s `matchbox` gives a part to stop, with room for an attempt under way).
   */
  stopTimeoutMs?: number;
  /**
   * How long a PLACE whose outcome has not arrived is held back before it is written as PENDING
   * (default 100 ms; the outcome normally follows within milliseconds, and the order is then
   * written once, as its state). 0 writes every PLACE at the first flush.
   */
  deferMs?: number;
  /**
   * Seconds a final order's status hash and fills list stay in Redis once its final state is
   * committed (STATUS_TTL_S); until then they do not expire (src/queue/lua/write-batch.lua).
   */
  statusTtlS: number;
}

export interface WriterStats {
  /** Rows inserted or changed in PostgreSQL (orders placed, states advanced, trades). */
  rowsWritten: number;
  /** Stream entries committed and acknowledged. */
  entriesWritten: number;
  /** Order-stream entries never read: their outcomes were already written (skip-written-2.lua). */
  entriesSkipped: number;
  flushes: number;
  /** Entries in the last flush, and how long it took from BEGIN to the last XACK. */
  lastFlushSize: number;
  lastFlushMs: number;
  /** Stream entries not yet acknowledged: pending in the group (those held among them), or unread. */
  backlog: number;
  /** Records PostgreSQL refused as data errors, set aside in `<stream>:rejects`. */
  rejected: number;
  /** Flush attempts that failed and were retried. */
  failedFlushes: number;
}

/** Longest a read blocks, so that stop() is seen within this long. */
const IDLE_BLOCK_MS = 100;
/** After a short read, wait this long so that a busy stream costs a read per few entries. */
const LINGER_MS = 2;
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 5_000;
/** A failure that lasts this long is logged at error, not warn: it will not cure itself soon. */
const ALARM_AFTER_MS = 30_000;
const ACK_CHUNK = 5_000;
/** Orders given their TTL per script call (two keys each): a short call, as every Redis call. */
const EXPIRE_CHUNK = 250;
/**
 * Most one flush gathers from a backlog: entries, and bytes of their payloads (an event entry
 * carries a whole dispatched batch, and a flush's JSON is one string).
 */
const MAX_FLUSH_ENTRIES = 10_000;
const MAX_FLUSH_BYTES = 32 * 1024 * 1024;
const DEFER_MS = 100;
/** A read of new entries refused this many times in a row (the lease's key changing) fails. */
const MAX_ABORTED_READS = 10;
/** WRITER_LEASE_MS's default. */
const LEASE_MS = 3_000;
const SKIP_SCRIPT = 'skip-written-2.lua';
const EXPIRE_SCRIPT = 'expire-keys.lua';
const SET_ASIDE_SCRIPT = 'set-aside-2.lua';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** The set-aside records of a stream: same hash tag, so it lives in the stream's slot. */
export function rejectsKey(stream: string): string {
  return `${stream}:rejects`;
}

type Entries = [id: string, fields: string[] | null][];

/** skip-written-2.lua on a connection: see the script for what it does and returns. */
export interface SkipScript {
  mbSkipWritten(
    orders: string,
    events: string,
    group: string,
    kept: number,
    target: number,
  ): Promise<number>;
}

/** expire-keys.lua: ioredis flattens the array (the key count, the keys, then the TTL). */
interface ExpireScript {
  mbExpireKeys(args: (string | number)[]): Promise<number>;
}

/** set-aside-2.lua: see the script. */
interface SetAsideScript {
  mbSetAside(rejects: string, seen: string, ...args: string[]): Promise<number>;
}

/** The connection, with the skip, expire and set-aside scripts defined on it (once). */
export function withWriterScripts(
  redis: Redis,
): Redis & SkipScript & ExpireScript & SetAsideScript {
  if (!('mbSkipWritten' in redis)) {
    redis.defineCommand('mbSkipWritten', {
      numberOfKeys: keyCount(SKIP_SCRIPT),
      lua: lua(SKIP_SCRIPT),
    });
    // No numberOfKeys: the count varies per call and goes first.
    redis.defineCommand('mbExpireKeys', { lua: lua(EXPIRE_SCRIPT) });
    redis.defineCommand('mbSetAside', {
      numberOfKeys: keyCount(SET_ASIDE_SCRIPT),
      lua: lua(SET_ASIDE_SCRIPT),
    });
  }
  return redis as Redis & SkipScript & ExpireScript & SetAsideScript;
}
type ReadReply = [stream: string, entries: Entries][] | null;

/** A PLACE held back for its outcome, and until when. */
interface Deferred {
  entry: HeldEntry;
  until: number;
}

/** What one flush writes: everything held when it began, taken from the loop at once. */
interface Held {
  /** PLACEs held back by earlier flushes. */
  deferred: Deferred[];
  placed: HeldEntry[];
  events: HeldEntry[];
  unreadable: Reject[];
  gone: { stream: string; id: string }[];
  /**
   * The highest event-stream id read then: its outcomes are all in this flush, in the flush still
   * committing before it (which commits first, or stops every flush after it), or written.
   */
  statesThrough: number;
}

/** A flush taken from the loop: what it holds, what it holds back, its statement's parameters. */
interface Prepared {
  held: Held;
  keep: Deferred[];
  /** flushParameters' result, or the RecordError it threw (the flush then sets records aside). */
  parameters: string[] | undefined | Error;
  /** placesKeptThrough when it was prepared. */
  keptThrough: number;
}

/** How many entries a flush holds. */
const sizeOf = (h: Held): number =>
  h.deferred.length + h.placed.length + h.events.length + h.unreadable.length + h.gone.length;

export class BatchWriter {
  private readonly consumer: string;
  readonly scripts: Redis & SkipScript & ExpireScript & SetAsideScript;
  private readonly loops: ShardLoop[];
  private running: Promise<void>[] = [];
  private trimTimer: NodeJS.Timeout | undefined;
  private trimming: Promise<void> | undefined;
  stopping = false;
  stopAt = 0;
  readonly stats: WriterStats = {
    rowsWritten: 0,
    entriesWritten: 0,
    entriesSkipped: 0,
    flushes: 0,
    lastFlushSize: 0,
    lastFlushMs: 0,
    backlog: 0,
    rejected: 0,
    failedFlushes: 0,
  };

  constructor(readonly options: BatchWriterOptions) {
    this.consumer = options.consumer ?? 'writer-1';
    this.scripts = withWriterScripts(options.redis);
    this.loops = options.keys.map((k) => new ShardLoop(this, k, this.consumer));
  }

  /**
   * Creates the groups if missing and starts reading (each shard once its lease is taken);
   * resolves once the groups exist.
   */
  async start(): Promise<void> {
    for (const loop of this.loops) await loop.createGroups();
    for (const loop of this.loops) loop.startLease();
    this.running = this.loops.map((loop) => loop.run());
    const every = this.options.trimIntervalMs ?? 5_000;
    this.trimTimer = setInterval(() => {
      // One trim at a time; a slow one just delays the next. A shard's writer trims it: one
      // standing by leaves it to that one.
      const held = this.loops.filter((loop) => loop.holdsLease());
      this.trimming ??= this.trim(held).finally(() => (this.trimming = undefined));
    }, every);
    this.trimTimer.unref();
  }

  /** Stops reading, flushes what is held, gives the leases up, then resolves. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.stopAt = Date.now();
    clearInterval(this.trimTimer);
    for (const loop of this.loops) loop.wake();
    await Promise.all(this.running);
    await this.trimming;
    // Written and acknowledged first: one standing by takes over from there.
    await Promise.all(this.loops.map((loop) => loop.close()));
  }

  /** How many of its shards this writer holds the lease of (all of them without leases). */
  leasesHeld(): number {
    return this.loops.filter((loop) => loop.holdsLease()).length;
  }

  /** Trims every shard's streams now (also runs periodically); resolves when done. */
  trimAll(): Promise<void> {
    return this.trim(this.loops);
  }

  private async trim(loops: readonly ShardLoop[]): Promise<void> {
    let backlog = 0;
    for (const loop of loops) {
      try {
        backlog += await loop.trim();
      } catch (err) {
        this.options.logger.warn({ err: message(err), shard: loop.keys.shard }, 'trim failed');
      }
    }
    // What the loops hold is pending in the group, so already counted.
    this.stats.backlog = backlog;
  }
}

/** The reading, flushing and trimming of one shard. */
class ShardLoop {
  private readonly reader: Redis;
  private placed: HeldEntry[] = [];
  private events: HeldEntry[] = [];
  /**
   * PLACEs held back by earlier flushes because their outcome had not arrived, oldest first, each
   * until when: a later flush skips them once it has (the usual case: the engine answers within
   * milliseconds), and writes them as PENDING if it has not by then. So an order's row is written
   * once, as its state, not inserted PENDING and rewritten a moment later.
   */
  private deferred: Deferred[] = [];
  /** Entries that cannot be written at all (no payload field): set aside at the next flush. */
  private unreadable: Reject[] = [];
  /** Entries deleted from the stream while pending: nothing left to write, only to ack. */
  private gone: { stream: string; id: string }[] = [];
  private firstAt = 0;
  /** Bytes of the payloads held. */
  private heldBytes = 0;
  /** How many entries the next read asks for. */
  private readonly readSize = new ReadSize();
  /**
   * The highest event-stream id read: held, in the flush committing, or committed. The dispatcher
   * writes the outcome of commands in sequence, one entry per batch whose id is the batch's last
   * sequence, and every PLACE has an outcome (the engine accepts or rejects it), so a PLACE at or
   * below this has its state held, being committed or written already: writing the PLACE too
   * would change nothing (flushes commit in order, and none after one that was given up). Behind
   * a backlog the event reads run far ahead of the order reads (an event entry carries a whole
   * batch), and most PLACEs read are such.
   */
  private statesThrough = 0;
  /**
   * PLACEs at or below this are written even so: an event entry at or below it was not written
   * (deleted while pending, unreadable, or refused by PostgreSQL), so its orders' states may be
   * missing, and their PENDING rows are all that PostgreSQL will have of them.
   */
  private placesKeptThrough = 0;
  /** The highest event-stream id committed; the highest order-stream id read or passed over. */
  private statesWritten = 0;
  private ordersThrough = 0;
  private readonly deferMs: number;
  private readonly leaseMs: number;
  /** The shard's writer lease while running; none with leaseMs 0. */
  private lease: ShardLease | undefined;
  /** Ends a wait for the lease: taken, or the writer stops. */
  private wakeUp: (() => void) | undefined;
  /**
   * The lease was lost: nothing more commits until the loop has dropped what it holds (left
   * pending for the writer that has the shard now) and taken the lease again.
   */
  private yielding = false;
  /** The lease's term (ShardLease.term) this turn runs in. */
  private turn = 0;
  /**
   * A read found the lease's key not this writer's (another took it, or it expired): the next
   * turn waits for the lease to be taken anew, whatever this writer's own view of it says.
   */
  private turnSpent = false;

  constructor(
    private readonly w: BatchWriter,
    readonly keys: ShardKeys,
    private readonly consumer: string,
  ) {
    this.deferMs = w.options.deferMs ?? DEFER_MS;
    this.leaseMs = w.options.leaseMs ?? LEASE_MS;
    // A read is never sent on a connection other than the one it was meant for: not queued while
    // the connection is down, nor sent again after a reconnect, but failed (a read unanswered when
    // its connection closes fails then: with retries, the client would keep it unsettled for good
    // once it does not re-send it). A read of new entries is fenced by a WATCH, which a new
    // connection does not have (see readNew).
    this.reader = w.options.redis.duplicate({
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
    });
    // Connection errors surface as failed commands (retried); the event only needs a home.
    this.reader.on('error', (err: Error) =>
      w.options.logger.debug({ err: err.message }, 'stream reader connection error'),
    );
    // A read whose connection broke fails: what Redis had delivered on the old connection may be
    // pending in the group, never received.
    this.reader.on('close', () => {
      this.lostDelivery = true;
      this.connections++;
    });
  }

  /** Connections of the reader closed so far: a WATCH holds only on the one it was sent on. */
  private connections = 0;
  /**
   * The connection (its number in `connections`) on which the lease's key is watched, and was
   * found to hold this writer's value; undefined if none is.
   */
  private watching: number | undefined;

  /** Waits until the reader is connected (or the writer stops). */
  private async readerReady(): Promise<void> {
    while (this.reader.status !== 'ready' && !this.w.stopping) await sleep(20);
  }

  /** A read's reply may have been lost: its entries may be pending in the group, unreceived. */
  private lostDelivery = false;
  /** The run_id of the Redis that what is held was read from. */
  private runId = '';
  /**
   * A flush found another Redis answering (see aof.ts): what was held may be of writes it lost.
   * Nothing more commits until the loop has dropped it all and read again from the Redis there is.
   */
  private restarted = false;

  /** The flush committing while the loop reads on (behind a backlog), if any. */
  private flushing: Promise<void> | undefined;
  /**
   * A flush was given up at stop. No later one commits: it may pass over PLACEs whose outcomes
   * only that one held. Everything stays pending for the next start, as then.
   */
  private abandoned = false;

  /** Entries held, the deferred PLACEs included. */
  get held(): number {
    return this.fresh + this.deferred.length;
  }

  /** Entries read since the last flush. */
  private get fresh(): number {
    return this.placed.length + this.events.length + this.unreadable.length + this.gone.length;
  }

  async createGroups(): Promise<void> {
    const { redis } = this.w.options;
    await this.makeGroups();
    // An earlier run may have set aside event entries up to where it read: this one cannot know
    // which, so it writes every PLACE up to there.
    const events = await writerGroup(redis, this.keys.events);
    if (events !== undefined) {
      const delivered = seqOf(String(events['last-delivered-id']));
      this.placesKeptThrough = Math.max(this.placesKeptThrough, delivered);
    }
    this.runId = await runIdOf(redis);
  }

  /** Starts asking for the shard's lease (the loop waits for it). */
  startLease(): void {
    const { shard } = this.keys;
    // Stopped while its groups were being made: nothing to take.
    if (this.w.stopping) return;
    if (this.leaseMs === 0) {
      writerMetrics.leaseHeld.set({ shard }, 1);
      return;
    }
    const { redis, leaseId, logger } = this.w.options;
    this.lease = new ShardLease({
      redis,
      key: this.keys.writerLease,
      ms: this.leaseMs,
      role: 'writer',
      ...(leaseId === undefined ? {} : { id: leaseId }),
      idSetting: 'WRITER_LEASE_ID',
      logger: logger.child({ shard }),
      onChange: (held) => {
        writerMetrics.leaseHeld.set({ shard }, held ? 1 : 0);
        if (held) this.wake();
      },
    });
    this.lease.start();
  }

  /** Whether this writer holds the shard's lease now (or runs without one). */
  holdsLease(): boolean {
    return this.leaseMs === 0 || (this.lease?.held() ?? false);
  }

  /**
   * Whether this turn goes on: the lease is held, and has been since the turn began (the same
   * term; not taken anew after another may have held it), and no read found it another's.
   */
  private onTurn(): boolean {
    if (this.lease === undefined) return this.leaseMs === 0;
    return this.lease.held() && this.lease.term === this.turn && !this.turnSpent;
  }

  /** Ends a wait for the lease now. */
  wake(): void {
    this.wakeUp?.();
  }

  /** Waits until the lease is this writer's; false if the writer stops first. */
  private async takeTurn(): Promise<boolean> {
    const ready = () => this.holdsLease() && !(this.turnSpent && this.lease?.term === this.turn);
    while (!this.w.stopping && !ready()) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(this.leaseMs, 250));
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = undefined;
    }
    this.turn = this.lease?.term ?? 0;
    this.turnSpent = false;
    return !this.w.stopping;
  }

  /**
   * The lease is another's, or lapsed: what is held is dropped unwritten, pending in the group for
   * the writer that has the shard now, or for this one when it takes the lease again.
   */
  private async yieldShard(): Promise<void> {
    this.yielding = true;
    await this.settle();
    const dropped = this.dropHeld();
    // Handed over, or this process paused past its lease: not a failure of Redis. Lapsed for
    // want of Redis's answers (the lease logs it): one.
    if (this.lease?.failing() === true) {
      componentErrors.inc({ dependency: 'redis', component: 'writer' });
    }
    this.w.options.logger.info(
      { shard: this.keys.shard, dropped },
      'writer: the shard’s lease is not this writer’s; what it held is left pending',
    );
  }

  /**
   * A turn begins: another writer may have written the shard since this one read the group (at
   * its start, or before its last turn), and set entries aside, so this one starts as a starting
   * writer does, from the group, and reads its consumer's pending entries first.
   */
  private async resume(): Promise<void> {
    this.yielding = false;
    this.restarted = false;
    this.lostDelivery = false;
    // As after a lost delivery: what is read now may not follow what was read before (the streams
    // may even have been made again meanwhile), so no PLACE up to the outcomes read then is
    // passed over.
    this.placesKeptThrough = Math.max(this.placesKeptThrough, this.statesThrough);
    while (!this.w.stopping) {
      try {
        await this.createGroups();
        return;
      } catch (err) {
        this.w.options.logger.warn(
          { err: message(err), shard: this.keys.shard },
          'writer: Redis unreachable',
        );
        await sleep(RETRY_FIRST_MS * 10);
      }
    }
  }

  /**
   * Makes the writer's group on each stream that lacks it, positioned at the stream's start (and
   * the stream itself if missing); returns the streams it was made on.
   */
  private async makeGroups(): Promise<string[]> {
    const { redis } = this.w.options;
    const made: string[] = [];
    for (const stream of [this.keys.orders, this.keys.events]) {
      try {
        await redis.xgroup('CREATE', stream, WRITER_GROUP, '0', 'MKSTREAM');
        made.push(stream);
      } catch (err) {
        if (!message(err).startsWith('BUSYGROUP')) throw err;
      }
    }
    return made;
  }

  /**
   * A read found the group gone: someone destroyed it, or the stream was deleted and made again
   * (its group with it). Made again from the stream's start, so that whatever the stream holds
   * now is written; what is held is dropped and read again from the new group. Entries written
   * already change nothing when written again (see the statement's versions). Returns false if
   * Redis could not be asked, or had the groups after all (then the caller waits before reading
   * again).
   */
  private async remakeGroups(): Promise<boolean> {
    let made: string[];
    try {
      made = await this.makeGroups();
    } catch (err) {
      this.w.options.logger.warn(
        { err: message(err), shard: this.keys.shard },
        'writer: could not make the consumer group again',
      );
      return false;
    }
    if (made.length === 0) return false;
    this.w.options.logger.warn(
      { shard: this.keys.shard, streams: made },
      'writer: consumer group gone; made again from the start of the stream',
    );
    this.restarted = true;
    return true;
  }

  /** After the loop has ended: gives the lease up and closes the reader. */
  async close(): Promise<void> {
    await this.lease?.stop();
    this.lease = undefined;
    writerMetrics.leaseHeld.set({ shard: this.keys.shard }, 0);
    this.reader.disconnect();
  }

  /** Writes the shard at each turn this writer holds its lease, until the writer stops. */
  async run(): Promise<void> {
    while (await this.takeTurn()) {
      await this.resume();
      await this.work();
    }
  }

  /** Writes the shard until the writer stops, or the lease is lost. */
  private async work(): Promise<void> {
    const { batchSize, flushMs, logger } = this.w.options;
    await this.readPending();
    let redisDelay = RETRY_FIRST_MS;
    // A full read means more is waiting: behind a backlog, one flush takes all that is there (up
    // to MAX_FLUSH_ENTRIES or MAX_FLUSH_BYTES), so that each transaction's fixed costs — the
    // commit's WAL fsync, the acknowledgements, the round trips — are paid once per thousands of
    // records, not per page.
    let backlogged = false;
    while (!this.w.stopping) {
      if (this.yielding || !this.onTurn()) {
        await this.yieldShard();
        return;
      }
      if (this.lostDelivery || this.restarted) {
        await this.settle();
        // Event entries read after the break may have passed some that never reached us (or a
        // Redis that restarted without its last writes hands out their sequences again), so
        // every PLACE up to the highest outcome seen is written rather than skipped.
        this.placesKeptThrough = Math.max(this.placesKeptThrough, this.statesThrough);
        let runId: string;
        try {
          runId = await runIdOf(this.w.options.redis);
        } catch (err) {
          logger.warn({ err: message(err), shard: this.keys.shard }, 'writer: Redis unreachable');
          await sleep(redisDelay);
          redisDelay = Math.min(redisDelay * 2, RETRY_MAX_MS);
          continue;
        }
        // The same Redis: write what is held first (acknowledging it), so that what is still
        // pending in the group is exactly what never reached us.
        if (!this.restarted && runId === this.runId && this.held > 0) await this.flush();
        // That flush may itself have found another Redis (then the next one finds its run_id).
        if (this.restarted || runId !== this.runId) this.forgetHeld(runId);
        this.lostDelivery = false;
        // Then take what is pending before anything new.
        await this.readPending();
        continue;
      }
      const now = Date.now();
      const held = this.held;
      const due = this.fresh >= batchSize || now >= this.firstAt + flushMs;
      const gather =
        backlogged &&
        held < MAX_FLUSH_ENTRIES &&
        this.heldBytes < MAX_FLUSH_BYTES &&
        now < this.firstAt + flushMs;
      if (held > 0 && due && !gather) {
        // Behind a backlog nothing is held back: the outcomes are then far ahead of the PLACEs
        // (the usual case), or far behind (the engine is), where a moment's wait changes nothing.
        const defer = this.deferMs > 0 && !backlogged;
        let next = this.take(defer);
        // Flushes commit one at a time, in order. Behind a backlog the loop goes on reading while
        // this one commits, and prepares the next while PostgreSQL writes this one.
        await this.settle();
        // The flush before set aside an event entry: PLACEs of its batch are written after all.
        if (next.keptThrough !== this.placesKeptThrough) next = this.prepare(next.held, defer);
        const flushing = this.commit(next).then(async () => {
          // Not with a delivery lost: what was read since may not be what the group was given.
          const ahead = this.statesWritten >= this.ordersThrough + READ_COUNT;
          const sure = !this.lostDelivery && !this.abandoned && !this.restarted && !this.yielding;
          if (ahead && sure && this.onTurn()) await this.skipWritten();
        });
        // Awaited by settle(); handled here so that it is never an unhandled rejection.
        flushing.catch(() => undefined);
        this.flushing = flushing;
        // Caught up: nothing is read until it is committed, as before.
        if (!backlogged) await this.settle();
        continue;
      }
      const block = gather
        ? undefined
        : held > 0
          ? Math.max(1, Math.min(IDLE_BLOCK_MS, this.firstAt + flushMs - now))
          : IDLE_BLOCK_MS;
      let got: { orders: number; events: number };
      const count = this.readSize.count;
      try {
        got = await this.read(count, block);
        // COUNT is one for both streams, sized for the event entries; order entries are small,
        // so a full read of them is topped up to READ_COUNT rather than left for the next read.
        if (got.orders >= count && count < READ_COUNT) {
          got.orders += (await this.read(READ_COUNT - count, undefined, 'orders')).orders;
        }
        redisDelay = RETRY_FIRST_MS;
      } catch (err) {
        componentErrors.inc({ dependency: 'redis', component: 'writer' });
        logger.warn({ err: message(err), shard: this.keys.shard }, 'writer: stream read failed');
        if (isNoGroup(err) && (await this.remakeGroups())) continue;
        this.lostDelivery = true;
        await sleep(redisDelay);
        redisDelay = Math.min(redisDelay * 2, RETRY_MAX_MS);
        continue;
      }
      backlogged = got.events >= count || got.orders >= READ_COUNT;
      if (got.orders + got.events > 0 && !backlogged && this.fresh < batchSize) {
        await sleep(Math.min(LINGER_MS, Math.max(0, this.firstAt + flushMs - Date.now())));
      }
    }
    await this.settle();
    if (this.held > 0) await this.flush();
  }

  /**
   * Redis restarted (or failed over): what is held was read from the one before and may be of
   * writes it lost, whose sequences the new one hands out again for other commands. Dropped
   * unwritten; what survived is pending in the group and read again from it.
   */
  private forgetHeld(runId: string): void {
    const dropped = this.dropHeld();
    this.restarted = false;
    this.runId = runId;
    this.w.options.logger.warn(
      { shard: this.keys.shard, dropped },
      'writer: Redis restarted; what it held unwritten is read again from it',
    );
  }

  /** Waits for the flush under way, if any: its commit, acknowledgements and skip. */
  private async settle(): Promise<void> {
    const flushing = this.flushing;
    this.flushing = undefined;
    await flushing;
  }

  /** Writes everything held now, after the flush under way. */
  private async flush(): Promise<void> {
    await this.settle();
    await this.commit(this.take(false));
  }

  /**
   * This consumer's entries delivered before a restart and never acknowledged: written first, in
   * stream order, before any new entry.
   */
  private async readPending(): Promise<void> {
    await this.readerReady();
    const cursor = { orders: '0', events: '0' };
    for (const which of ['orders', 'events'] as const) {
      for (;;) {
        // Lost the lease: the loop drops what is held and waits for it.
        if (this.w.stopping || !this.onTurn()) return;
        let got: Entries;
        try {
          got =
            which === 'orders'
              ? await this.readOne(this.keys.orders, cursor.orders, READ_COUNT)
              : await this.readOne(this.keys.events, cursor.events, this.readSize.count);
          if (which === 'events') this.readSize.read(got.length);
        } catch (err) {
          this.w.options.logger.warn({ err: message(err) }, 'writer: pending read failed');
          // With the group made again, the loop drops what is held and reads pending again.
          if (isNoGroup(err) && (await this.remakeGroups())) return;
          await sleep(RETRY_FIRST_MS * 10);
          continue;
        }
        const last = got[got.length - 1];
        if (last === undefined) break;
        cursor[which] = last[0];
        if (this.held >= this.w.options.batchSize) await this.flush();
      }
    }
    if (this.held > 0) {
      this.w.options.logger.info(
        { shard: this.keys.shard, entries: this.held },
        'writer: re-read pending entries',
      );
    }
  }

  /** XREADGROUP's arguments for this consumer: `streams` are the keys, then an id for each. */
  private groupRead(count: number, ...streams: string[]): (string | number)[] {
    return ['GROUP', WRITER_GROUP, this.consumer, 'COUNT', count, 'STREAMS', ...streams];
  }

  /**
   * Reads up to `count` of this consumer's pending entries of one stream after the id `from`.
   * Returns them, taken.
   */
  private async readOne(stream: string, from: string, count: number): Promise<Entries> {
    const reply = (await this.reader.call(
      'XREADGROUP',
      ...this.groupRead(count, stream, from),
    )) as ReadReply;
    const entries = reply?.[0]?.[1] ?? [];
    this.hold(stream, entries);
    return entries;
  }

  /**
   * Reads up to `count` new entries of each stream, or of the order stream alone, and holds them.
   * When nothing was new and `block` is given, waits up to that many ms for the next entry of
   * either stream, to be read by the next call. Returns how many of each.
   */
  private async read(
    count: number,
    block?: number,
    which: 'both' | 'orders' = 'both',
  ): Promise<{ orders: number; events: number }> {
    const { orders, events } = this.keys;
    const got = { orders: 0, events: 0 };
    const answer = await this.readNew(count, which);
    if (answer === undefined) {
      // The lease is not this writer's in Redis: the turn is over.
      this.turnSpent = true;
      return got;
    }
    const { reply, last } = answer;
    for (const [stream, entries] of reply ?? []) {
      this.hold(stream, entries);
      got[stream === orders ? 'orders' : 'events'] += entries.length;
    }
    if (which === 'orders') return got;
    this.readSize.read(got.events);
    if (reply === null && block !== undefined) {
      // From the last entries there were as the group was read: whatever came since wakes it.
      await this.reader.call(
        'XREAD',
        'COUNT',
        1,
        'BLOCK',
        block,
        'STREAMS',
        orders,
        events,
        ...last,
      );
    }
    return got;
  }

  /**
   * XREADGROUP of new entries, sent only while the lease's key holds this writer's value, so that
   * none is delivered to a writer that no longer has the lease (one paused past it sends its read
   * when it wakes) while the one that has it, reading as the same consumer, would never see them.
   * The key is watched (WATCH) and read, and found to hold this writer's value; then the read goes
   * in MULTI/EXEC, which Redis refuses if the key changed since (taken by another; or renewed by
   * this writer: then it is watched and asked again). The WATCH for the next read is sent with
   * each read, so a read costs one round trip as before. A WATCH holds on the connection it was
   * sent on only: the reader neither queues nor re-sends commands across a reconnect, and a WATCH
   * sent on a connection that has closed since is sent again. (A script would do it all in one
   * call, but copying a megabyte of entries into Lua and back cost a tenth of the throughput.)
   * Returns the reply and the id of each stream's last entry, or undefined when the lease is
   * another's, or nobody's.
   */
  private async readNew(
    count: number,
    which: 'both' | 'orders',
  ): Promise<{ reply: ReadReply; last: [string, string] } | undefined> {
    const { orders, events } = this.keys;
    const streams = which === 'orders' ? [orders, '>'] : [orders, events, '>', '>'];
    const fence = this.lease?.fence;
    for (let attempt = 1; ; attempt++) {
      if (fence !== undefined && this.watching !== this.connections) {
        const on = this.connections;
        if (!(await this.watchLease(fence))) return undefined;
        // Sent on a connection that closed since: the WATCH is gone with it.
        if (this.connections !== on) continue;
        this.watching = on;
      }
      const on = this.connections;
      const read = this.reader
        .multi()
        .call('XREADGROUP', ...this.groupRead(count, ...streams))
        .xrevrange(orders, '+', '-', 'COUNT', 1)
        .xrevrange(events, '+', '-', 'COUNT', 1)
        .exec();
      // EXEC ends the WATCH: the next read's is sent behind it (never rejects).
      this.watching = undefined;
      const next = fence === undefined ? undefined : this.watchLease(fence).catch(() => false);
      const done = await read;
      if (next !== undefined && (await next) && this.connections === on) this.watching = on;
      if (done === null) {
        // Refused: the key changed since it was watched (renewed, most likely). Asked again.
        if (attempt >= MAX_ABORTED_READS) throw new Error('the writer lease key keeps changing');
        continue;
      }
      const [result, lastOrder, lastEvent] = done as [Error | null, unknown][];
      for (const r of [result, lastOrder, lastEvent]) if (r?.[0]) throw r[0];
      const lastOf = (r: [Error | null, unknown] | undefined) =>
        (r?.[1] as [string, unknown][] | undefined)?.[0]?.[0] ?? '0-0';
      return { reply: result?.[1] as ReadReply, last: [lastOf(lastOrder), lastOf(lastEvent)] };
    }
  }

  /**
   * WATCHes the lease's key and reads it: true if it holds `fence`. When it does not, the WATCH is
   * dropped (UNWATCH), and the next read is not sent.
   */
  private async watchLease(fence: string): Promise<boolean> {
    const key = this.keys.writerLease;
    const [watched, holder] = (await this.reader.pipeline().watch(key).get(key).exec()) as [
      [Error | null, unknown],
      [Error | null, unknown],
    ];
    const failed = watched[0] ?? holder[0];
    if (failed !== null) throw failed;
    if (holder[1] === fence) return true;
    await this.reader.unwatch();
    return false;
  }

  private hold(stream: string, entries: Entries): void {
    if (entries.length === 0) return;
    // Due flushMs after the first entry read, or sooner when a held-back PLACE is due first.
    if (this.fresh === 0) {
      const now = Date.now();
      this.firstAt = this.deferred.length === 0 ? now : Math.min(this.firstAt, now);
    }
    const isOrders = stream === this.keys.orders;
    const field = isOrders ? 'c' : 'b';
    const into = isOrders ? this.placed : this.events;
    // Replies come in id order.
    const last = entries[entries.length - 1] as Entries[number];
    if (isOrders) this.ordersThrough = Math.max(this.ordersThrough, seqOf(last[0]));
    let bytes = 0;
    let sized = 0;
    for (const [id, fields] of entries) {
      const raw = fields?.[0] === field ? fields[1] : undefined;
      if (!isOrders) {
        const seq = seqOf(id);
        if (raw !== undefined) this.statesThrough = Math.max(this.statesThrough, seq);
        else this.placesKeptThrough = Math.max(this.placesKeptThrough, seq);
      }
      if (fields === null) {
        this.gone.push({ stream, id });
      } else if (raw !== undefined) {
        // write-batch.lua writes field b, then x when the batch closed orders.
        const closed = isOrders || fields[2] !== 'x' ? undefined : fields[3];
        into.push(closed === undefined ? { id, raw } : { id, raw, closed });
        bytes += raw.length;
        sized++;
      } else {
        this.unreadable.push({
          stream,
          id,
          record: JSON.stringify(fields),
          code: 'NO_PAYLOAD',
          message: `entry has no field ${field}`,
        });
      }
    }
    this.heldBytes += bytes;
    if (!isOrders) this.readSize.payloads(sized, bytes);
  }

  /**
   * Takes everything held into a flush, prepared: what it writes, what it holds back and its
   * statement's parameters, all worked out here (the flush's share of the writer's CPU), so that
   * behind a backlog this runs while PostgreSQL commits the flush before. With `defer`, PLACEs
   * whose outcome has not arrived may be held back for the next flush; without it (at stop, and
   * before re-reading pending entries, which would deliver them again) everything is written.
   */
  private take(defer: boolean): Prepared {
    const held: Held = {
      deferred: this.deferred,
      placed: this.placed,
      events: this.events,
      unreadable: this.unreadable,
      gone: this.gone,
      statesThrough: this.statesThrough,
    };
    this.clear();
    return this.prepare(held, defer);
  }

  /** What a flush writes and holds back, and its statement's parameters (see take). */
  private prepare(held: Held, defer: boolean): Prepared {
    // PLACEs whose outcome is held or written change nothing and are only acknowledged.
    const write: HeldEntry[] = [];
    const keep: Deferred[] = [];
    const now = Date.now();
    for (const d of held.deferred) {
      if (this.superseded(d.entry.id, held)) continue;
      if (defer && now < d.until) keep.push(d);
      else write.push(d.entry);
    }
    const until = now + this.deferMs;
    for (const entry of held.placed) {
      if (this.superseded(entry.id, held)) continue;
      // Only PLACEs are worth holding back (the submit script writes this prefix). Anything else
      // goes to PostgreSQL, which drops a cancel and refuses (and so sets aside) a corrupt entry.
      if (defer && entry.raw.startsWith(PLACE_PREFIX)) keep.push({ entry, until });
      else write.push(entry);
    }
    let parameters: string[] | undefined | Error;
    try {
      parameters = flushParameters(
        this.keys.shard,
        write,
        held.events.map((e) => e.raw),
      );
    } catch (err) {
      // A record that cannot be written: the flush sets it aside (see flushOnce).
      parameters = err instanceof Error ? err : new Error(String(err));
    }
    return { held, keep, parameters, keptThrough: this.placesKeptThrough };
  }

  /**
   * Commits a flush until it succeeds (or stop() runs out of patience, or the lease is lost:
   * then it is left pending for whichever writer holds the lease).
   */
  private async commit(flush: Prepared): Promise<void> {
    const { logger, stopTimeoutMs = 4_000 } = this.w.options;
    const since = Date.now();
    let delay = RETRY_FIRST_MS;
    for (let attempt = 1; ; attempt++) {
      if (!this.yielding && !this.onTurn()) this.yielding = true;
      if (this.abandoned || this.restarted || this.yielding) return;
      try {
        await this.flushOnce(flush);
        if (attempt > 1) {
          logger.warn({ shard: this.keys.shard, attempts: attempt }, 'writer: flush recovered');
        }
        return;
      } catch (err) {
        if (err instanceof RedisRestartedError) {
          // Not written, not acknowledged: the loop drops it with everything held.
          this.restarted = true;
          return;
        }
        this.w.stats.failedFlushes++;
        writerMetrics.failedFlushes.inc();
        componentErrors.inc({
          dependency: (err as { dependency?: string }).dependency ?? 'postgres',
          component: 'writer',
        });
        const fields = {
          shard: this.keys.shard,
          entries: sizeOf(flush.held),
          // The stream ids held: an order stream id is 0-<seq>, the order's engine id.
          orders: span(placedOf(flush.held)),
          events: span(flush.held.events),
          attempt,
          code: errorCode(err),
          err: message(err),
        };
        // Unreachable for a while is expected (restarts); anything else, or an outage that does
        // not end, needs a person.
        const alarming = !isConnectionFailure(err) || Date.now() - since > ALARM_AFTER_MS;
        if (alarming) logger.error(fields, 'writer: flush failing; records kept, retrying');
        else logger.warn(fields, 'writer: flush failed; records kept, retrying');
        // Not a wait that would end past the stop's patience.
        if (this.w.stopping && Date.now() + delay - this.w.stopAt > stopTimeoutMs) {
          // Never acknowledged, so they stay pending and the next start writes them.
          logger.error(fields, 'writer: stopping with entries unwritten; they stay pending');
          this.abandoned = true;
          return;
        }
        await sleep(delay);
        delay = Math.min(delay * 2, RETRY_MAX_MS);
      }
    }
  }

  private async flushOnce(flush: Prepared): Promise<void> {
    const { sql, redis, logger } = this.w.options;
    const started = performance.now();
    const shard = this.keys.shard;
    const { held, parameters } = flush;
    let keep = flush.keep;
    const events = held.events;
    const rejects = [...held.unreadable];
    let rows: WrittenRows = { placed: 0, states: 0, trades: 0 };
    // The event entries whose states are all in PostgreSQL after the commit.
    let committed = events;
    // Nothing goes to PostgreSQL that Redis might still lose (aof.ts).
    try {
      await aofWritten(redis, this.runId);
    } catch (err) {
      if (err instanceof RedisRestartedError) throw err;
      throw Object.assign(err instanceof Error ? err : new Error(String(err)), {
        dependency: 'redis',
      });
    }
    try {
      if (parameters instanceof Error) throw parameters;
      if (parameters !== undefined) {
        rows = await sql.begin((tx) => writeParameters(tx, parameters));
      }
    } catch (err) {
      if (classify(err) !== 'data') throw err;
      const placed = placedOf(held);
      logger.error(
        {
          shard,
          code: errorCode(err),
          err: message(err),
          orders: placed.map((e) => e.id),
          events: events.map((e) => e.id),
        },
        'writer: PostgreSQL refused a batch; writing it record by record to set aside the bad ones',
      );
      const streams = { orders: this.keys.orders, events: this.keys.events };
      // Every PLACE this time: a refused state leaves its order's PENDING row as its record.
      keep = [];
      const result = await sql.begin((tx) => writeIsolating(tx, shard, streams, placed, events));
      rows = result.rows;
      rejects.push(...result.rejects);
      const refused = new Set<string>();
      for (const r of result.rejects) {
        if (r.stream === this.keys.events) {
          this.placesKeptThrough = Math.max(this.placesKeptThrough, seqOf(r.id));
          refused.add(r.id);
        }
      }
      committed = events.filter((e) => !refused.has(e.id));
    }
    // What fails from here on is Redis's: the rows are committed.
    try {
      const nth = new Map<string, number>();
      for (const r of rejects) {
        logger.error(
          { shard, stream: r.stream, id: r.id, code: r.code, err: r.message, record: r.record },
          'writer: record refused; set aside in the rejects stream',
        );
        // Once, though a flush run again refuses it again (see set-aside-2.lua).
        const n = nth.get(`${r.stream} ${r.id}`) ?? 0;
        nth.set(`${r.stream} ${r.id}`, n + 1);
        const key = rejectsKey(r.stream);
        await this.w.scripts.mbSetAside(
          key,
          `${key}:seen`,
          `${r.id}/${n}`,
          r.id,
          r.code,
          r.message,
          r.record,
        );
      }
      // Before the acknowledgement: a writer that dies between the two re-reads, re-commits
      // (changing nothing) and expires again, so no final order is left in Redis for good.
      await this.expireClosed(committed);
      const kept = new Set(keep.map((d) => d.entry));
      await this.ack(this.keys.orders, [
        ...placedOf(held)
          .filter((e) => !kept.has(e))
          .map((e) => e.id),
        ...idsOf(held, this.keys.orders),
      ]);
      await this.ack(this.keys.events, [
        ...events.map((e) => e.id),
        ...idsOf(held, this.keys.events),
      ]);
    } catch (err) {
      throw Object.assign(err instanceof Error ? err : new Error(String(err)), {
        dependency: 'redis',
      });
    }
    const size = sizeOf(held) - keep.length;
    if (size > 0) this.count(size, rows, rejects.length, performance.now() - started);
    // Every outcome this flush held is committed now (not those read since it began).
    this.statesWritten = Math.max(this.statesWritten, held.statesThrough);
    const first = keep[0];
    if (first !== undefined) {
      // Held back before anything read since (only a flush awaited at once holds back, so that
      // is nothing), oldest first.
      this.deferred = [...keep, ...this.deferred];
      for (const d of keep) this.heldBytes += d.entry.raw.length;
      // The next flush is due when the oldest held back is, or sooner with a full batch.
      const due = first.until - this.w.options.flushMs;
      this.firstAt = this.fresh > 0 ? Math.min(this.firstAt, due) : due;
    }
  }

  /** A committed and acknowledged flush, in the stats and the metrics. */
  private count(size: number, rows: WrittenRows, rejected: number, ms: number): void {
    const stats = this.w.stats;
    const rowCount = rows.placed + rows.states + rows.trades;
    stats.rowsWritten += rowCount;
    stats.entriesWritten += size;
    stats.flushes++;
    stats.lastFlushSize = size;
    stats.lastFlushMs = ms;
    stats.rejected += rejected;
    writerMetrics.flushes.inc();
    writerMetrics.rows.inc(rowCount);
    writerMetrics.entries.inc(size);
    writerMetrics.flushSize.observe(size);
    writerMetrics.flushSeconds.observe(ms / 1000);
    if (rejected > 0) writerMetrics.rejected.inc(rejected);
  }

  /**
   * Moves the group on the order stream past the entries whose outcomes are committed, when at
   * least a read's worth lies ahead of where it stands: they need not be read at all.
   */
  private async skipWritten(): Promise<void> {
    const { logger } = this.w.options;
    const target = this.statesWritten;
    try {
      const skipped = Number(
        await this.w.scripts.mbSkipWritten(
          this.keys.orders,
          this.keys.events,
          WRITER_GROUP,
          this.placesKeptThrough,
          target,
        ),
      );
      // Even when nothing moved (the group is ahead, or must read from where it stands).
      this.ordersThrough = Math.max(this.ordersThrough, target);
      if (skipped > 0) {
        this.w.stats.entriesSkipped += skipped;
        writerMetrics.skipped.inc(skipped);
      }
    } catch (err) {
      // Nothing moved: the entries are read as usual, and the next flush tries again.
      componentErrors.inc({ dependency: 'redis', component: 'writer' });
      logger.warn({ err: message(err), shard: this.keys.shard }, 'writer: skip script failed');
    }
  }

  /**
   * Whether the order-stream entry `id` is a command whose outcome the flush `held` holds or an
   * earlier one holds (committing first) or wrote; not one read since, which a later flush holds.
   */
  private superseded(id: string, held: Held): boolean {
    const seq = seqOf(id);
    return seq <= held.statesThrough && seq > this.placesKeptThrough;
  }

  /**
   * Gives the status hash and fills list of every order the committed event entries made final
   * their TTL: PostgreSQL has their final state now, and reads fall back to it. An event batch
   * PostgreSQL refused keeps its orders in Redis, the only place their state is readable.
   */
  private async expireClosed(committed: readonly HeldEntry[]): Promise<void> {
    const ttl = this.w.options.statusTtlS;
    const ids: string[] = [];
    for (const e of committed) if (e.closed !== undefined) ids.push(...e.closed.split(' '));
    const calls: Promise<number>[] = [];
    for (let i = 0; i < ids.length; i += EXPIRE_CHUNK) {
      const chunk = ids.slice(i, i + EXPIRE_CHUNK);
      const keys = chunk
        .map((id) => this.keys.order(id))
        .concat(chunk.map((id) => this.keys.fills(id)));
      // Sent one after another on the connection, without waiting for each reply.
      calls.push(this.w.scripts.mbExpireKeys([keys.length, ...keys, ttl]));
    }
    await Promise.all(calls);
  }

  private async ack(stream: string, ids: string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += ACK_CHUNK) {
      await this.w.options.redis.xack(stream, WRITER_GROUP, ...ids.slice(i, i + ACK_CHUNK));
    }
  }

  /**
   * Drops everything held, unwritten (it stays pending in the group): the outcomes read are then
   * those written. Returns how many entries it dropped.
   */
  private dropHeld(): number {
    const dropped = this.held;
    this.clear();
    this.statesThrough = this.statesWritten;
    this.firstAt = 0;
    return dropped;
  }

  private clear(): void {
    this.heldBytes = 0;
    this.deferred = [];
    this.placed = [];
    this.events = [];
    this.unreadable = [];
    this.gone = [];
  }

  /**
   * Trims the event stream below what the group has acknowledged, and the order stream below
   * that and below the snapshot the engine would replay from. The engine rolls back to the newest
   * snapshot at or below W — the last sequence whose reports the dispatcher has written (the event
   * stream's last id) — and a newer snapshot may exist above W, so that one is the bound. It is
   * pinned, so that pruning keeps it, once Redis has W in its AOF (`pinReplayBound`).
   * Returns the shard's backlog: entries pending in the group or not yet delivered.
   */
  async trim(): Promise<number> {
    const { redis, sql } = this.w.options;
    const events = await this.writerFloor(this.keys.events);
    if (events.floor !== undefined) {
      await trimBelow(redis, this.keys.events, formatId(events.floor));
    }
    const orders = await this.writerFloor(this.keys.orders);
    if (orders.floor === undefined) return events.backlog + orders.backlog;
    // W in the AOF first (of the Redis it was read from): a Redis restart then cannot take it
    // back below the snapshot pinned.
    const runId = await runIdOf(redis);
    const written = await lastGeneratedSeq(redis, this.keys.events);
    await aofWritten(redis, runId);
    const snap = await pinReplayBound(sql, this.keys.shard, written);
    if (snap !== undefined) {
      // The engine restored from snapshot S replays from S + 1: keep that entry and later ones.
      const replayFrom: StreamId = { ms: 0n, seq: BigInt(snap) + 1n };
      const floor = compareIds(replayFrom, orders.floor) < 0 ? replayFrom : orders.floor;
      await trimBelow(redis, this.keys.orders, formatId(floor));
    }
    return events.backlog + orders.backlog;
  }

  /**
   * The lowest id the writer still needs: the oldest entry pending in the group, or the first one
   * after the last delivered. Read in that order (last delivered first) so that entries delivered
   * in between can only raise the true floor, never lower it below the answer.
   */
  private async writerFloor(stream: string): Promise<{ floor?: StreamId; backlog: number }> {
    const { redis } = this.w.options;
    const group = await writerGroup(redis, stream);
    if (group === undefined) return { backlog: 0 };
    const summary = (await redis.xpending(stream, WRITER_GROUP)) as [number, string | null];
    const pending = Number(summary[0]);
    const lag = undelivered(group, await lastGeneratedSeq(redis, stream));
    let floor = nextId(parseId(String(group['last-delivered-id'])));
    if (pending > 0 && summary[1] !== null) {
      const oldest = parseId(summary[1]);
      if (compareIds(oldest, floor) < 0) floor = oldest;
    }
    return { floor, backlog: pending + lag };
  }
}

/** The order-stream entries a flush holds: those held back by earlier flushes, then the rest. */
function placedOf(held: Held): HeldEntry[] {
  return [...held.deferred.map((d) => d.entry), ...held.placed];
}

/** Ids of a flush's unreadable and deleted entries of a stream. */
function idsOf(held: Held, stream: string): string[] {
  const ids: string[] = [];
  for (const r of held.unreadable) if (r.stream === stream) ids.push(r.id);
  for (const g of held.gone) if (g.stream === stream) ids.push(g.id);
  return ids;
}

/** Redis's answer to a group command on a stream (or group) that does not exist. */
function isNoGroup(err: unknown): boolean {
  return message(err).startsWith('NOGROUP');
}

/** The first and last stream ids of held entries, or undefined when none are held. */
function span(entries: HeldEntry[]): [string, string] | undefined {
  const first = entries[0];
  const last = entries[entries.length - 1];
  return first === undefined || last === undefined ? undefined : [first.id, last.id];
}
