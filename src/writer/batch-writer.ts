// The batch writer (architecture.md, step 5): a consumer group over each shard's order and event
// streams, written to PostgreSQL in one transaction per flush and acknowledged only after COMMIT,
// so a crash anywhere re-delivers rather than loses; the upserts are idempotent and monotonic, so
// re-delivery changes nothing. One loop per shard, each with its own blocking Redis connection
// (one XREADGROUP per shard keeps every command inside one hash slot, as Redis Cluster requires).
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Sql } from '../db/client.js';
import { componentErrors, writerMetrics } from '../metrics/pipeline.js';
import { WRITER_GROUP } from '../queue/keys.js';
import { lastGeneratedSeq, undelivered, writerGroup } from '../queue/stream-info.js';
import type { ShardKeys } from '../queue/keys.js';
import { classify, errorCode, isConnectionFailure } from '../db/pg-errors.js';
import { writeAll, writeIsolating } from './statements.js';
import type { HeldEntry, Reject, WrittenRows } from './statements.js';
import { compareIds, formatId, nextId, parseId } from './stream-ids.js';
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
  /** Consumer name in the group; keep it stable so a restart re-reads its own pending entries. */
  consumer?: string;
  /** How often to trim the streams below what is written (and, for orders, snapshotted). */
  trimIntervalMs?: number;
  /** How long stop() keeps retrying a failing flush before leaving the entries pending. */
  stopTimeoutMs?: number;
}

export interface WriterStats {
  /** Rows inserted or changed in PostgreSQL (orders placed, states advanced, trades). */
  rowsWritten: number;
  /** Stream entries committed and acknowledged. */
  entriesWritten: number;
  flushes: number;
  /** Entries in the last flush, and how long it took from BEGIN to the last XACK. */
  lastFlushSize: number;
  lastFlushMs: number;
  /** Stream entries not yet acknowledged: held, pending in the group, or not yet read. */
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
/**
 * Entries per stream and read. Redis builds a reply while every other client waits, and an event
 * entry carries a whole dispatched batch: reads of 1,000 took up to 48 ms behind a backlog and
 * stalled the gateway's submissions with them. Behind a backlog, reads follow each other.
 */
const READ_COUNT = 250;
/**
 * Most one flush gathers from a backlog: entries, and bytes of their payloads (an event entry
 * carries a whole dispatched batch, and a flush's JSON is one string).
 */
const MAX_FLUSH_ENTRIES = 10_000;
const MAX_FLUSH_BYTES = 32 * 1024 * 1024;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** The set-aside records of a stream: same hash tag, so it lives in the stream's slot. */
export function rejectsKey(stream: string): string {
  return `${stream}:rejects`;
}

type Entries = [id: string, fields: string[] | null][];
type ReadReply = [stream: string, entries: Entries][] | null;

export class BatchWriter {
  private readonly consumer: string;
  private readonly loops: ShardLoop[];
  private running: Promise<void>[] = [];
  private trimTimer: NodeJS.Timeout | undefined;
  private trimming: Promise<void> | undefined;
  stopping = false;
  stopAt = 0;
  readonly stats: WriterStats = {
    rowsWritten: 0,
    entriesWritten: 0,
    flushes: 0,
    lastFlushSize: 0,
    lastFlushMs: 0,
    backlog: 0,
    rejected: 0,
    failedFlushes: 0,
  };

  constructor(readonly options: BatchWriterOptions) {
    this.consumer = options.consumer ?? 'writer-1';
    this.loops = options.keys.map((k) => new ShardLoop(this, k, this.consumer));
  }

  /** Creates the groups if missing and starts reading; resolves once the groups exist. */
  async start(): Promise<void> {
    for (const loop of this.loops) await loop.createGroups();
    this.running = this.loops.map((loop) => loop.run());
    const every = this.options.trimIntervalMs ?? 5_000;
    this.trimTimer = setInterval(() => {
      // One trim at a time; a slow one just delays the next.
      this.trimming ??= this.trimAll().finally(() => (this.trimming = undefined));
    }, every);
    this.trimTimer.unref();
  }

  /** Stops reading, flushes what is held, then resolves. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.stopAt = Date.now();
    clearInterval(this.trimTimer);
    await Promise.all(this.running);
    await this.trimming;
    for (const loop of this.loops) loop.close();
  }

  /** Trims every shard's streams now (also runs periodically); resolves when done. */
  async trimAll(): Promise<void> {
    let backlog = 0;
    for (const loop of this.loops) {
      try {
        backlog += await loop.trim();
      } catch (err) {
        this.options.logger.warn({ err: message(err), shard: loop.keys.shard }, 'trim failed');
      }
    }
    this.stats.backlog = backlog + this.loops.reduce((n, l) => n + l.held, 0);
  }
}

/** The reading, flushing and trimming of one shard. */
class ShardLoop {
  private readonly reader: Redis;
  private placed: HeldEntry[] = [];
  private events: HeldEntry[] = [];
  /** Entries that cannot be written at all (no payload field): set aside at the next flush. */
  private unreadable: Reject[] = [];
  /** Entries deleted from the stream while pending: nothing left to write, only to ack. */
  private gone: { stream: string; id: string }[] = [];
  private firstAt = 0;
  /** Bytes of the payloads held. */
  private heldBytes = 0;

  constructor(
    private readonly w: BatchWriter,
    readonly keys: ShardKeys,
    private readonly consumer: string,
  ) {
    this.reader = w.options.redis.duplicate();
    // Connection errors surface as failed commands (retried); the event only needs a home.
    this.reader.on('error', (err: Error) =>
      w.options.logger.debug({ err: err.message }, 'stream reader connection error'),
    );
    // A read whose connection broke is re-sent by the client after reconnecting, not failed:
    // what Redis had delivered on the old connection is pending in the group, never received.
    this.reader.on('close', () => {
      this.lostDelivery = true;
    });
  }

  /** A read's reply may have been lost: its entries may be pending in the group, unreceived. */
  private lostDelivery = false;

  get held(): number {
    return this.placed.length + this.events.length + this.unreadable.length + this.gone.length;
  }

  async createGroups(): Promise<void> {
    for (const stream of [this.keys.orders, this.keys.events]) {
      try {
        await this.w.options.redis.xgroup('CREATE', stream, WRITER_GROUP, '0', 'MKSTREAM');
      } catch (err) {
        if (!message(err).startsWith('BUSYGROUP')) throw err;
      }
    }
  }

  close(): void {
    this.reader.disconnect();
  }

  async run(): Promise<void> {
    const { batchSize, flushMs, logger } = this.w.options;
    await this.readPending();
    let redisDelay = RETRY_FIRST_MS;
    // A full read means more is waiting: behind a backlog, one flush takes all that is there (up
    // to MAX_FLUSH_ENTRIES or MAX_FLUSH_BYTES), so that each transaction's fixed costs — the
    // commit's WAL fsync, the acknowledgements, the round trips — are paid once per thousands of
    // records, not per page.
    let backlogged = false;
    while (!this.w.stopping) {
      if (this.lostDelivery) {
        // Write what is held first (acknowledging it), so that what is still pending in the
        // group is exactly what never reached us; then take that before anything new.
        if (this.held > 0) await this.flush();
        this.lostDelivery = false;
        await this.readPending();
        continue;
      }
      const now = Date.now();
      const held = this.held;
      const due = held >= batchSize || now >= this.firstAt + flushMs;
      const gather =
        backlogged &&
        held < MAX_FLUSH_ENTRIES &&
        this.heldBytes < MAX_FLUSH_BYTES &&
        now < this.firstAt + flushMs;
      if (held > 0 && due && !gather) {
        await this.flush();
        continue;
      }
      const block = gather
        ? undefined
        : held > 0
          ? Math.max(1, Math.min(IDLE_BLOCK_MS, this.firstAt + flushMs - now))
          : IDLE_BLOCK_MS;
      let got: number;
      try {
        got = await this.read('>', '>', block);
        redisDelay = RETRY_FIRST_MS;
      } catch (err) {
        componentErrors.inc({ dependency: 'redis', component: 'writer' });
        logger.warn({ err: message(err), shard: this.keys.shard }, 'writer: stream read failed');
        this.lostDelivery = true;
        await sleep(redisDelay);
        redisDelay = Math.min(redisDelay * 2, RETRY_MAX_MS);
        continue;
      }
      backlogged = got >= READ_COUNT;
      if (got > 0 && !backlogged && this.held < batchSize) {
        await sleep(Math.min(LINGER_MS, Math.max(0, this.firstAt + flushMs - Date.now())));
      }
    }
    if (this.held > 0) await this.flush();
  }

  /**
   * This consumer's entries delivered before a restart and never acknowledged: written first, in
   * stream order, before any new entry.
   */
  private async readPending(): Promise<void> {
    const cursor = { orders: '0', events: '0' };
    for (const which of ['orders', 'events'] as const) {
      for (;;) {
        if (this.w.stopping) return;
        let got: number;
        try {
          got =
            which === 'orders'
              ? await this.readOne(this.keys.orders, cursor.orders, cursor)
              : await this.readOne(this.keys.events, cursor.events, cursor);
        } catch (err) {
          this.w.options.logger.warn({ err: message(err) }, 'writer: pending read failed');
          await sleep(RETRY_FIRST_MS * 10);
          continue;
        }
        if (got === 0) break;
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

  /** Reads pending history of one stream from `from`; advances the cursor; returns the count. */
  private async readOne(
    stream: string,
    from: string,
    cursor: { orders: string; events: string },
  ): Promise<number> {
    const reply = (await this.reader.call(
      'XREADGROUP',
      'GROUP',
      WRITER_GROUP,
      this.consumer,
      'COUNT',
      READ_COUNT,
      'STREAMS',
      stream,
      from,
    )) as ReadReply;
    const entries = reply?.[0]?.[1] ?? [];
    const last = entries[entries.length - 1];
    if (last !== undefined) {
      if (stream === this.keys.orders) cursor.orders = last[0];
      else cursor.events = last[0];
    }
    this.take(stream, entries);
    return entries.length;
  }

  /** Reads new entries of both streams, blocking up to `block` ms if given; returns how many. */
  private async read(fromOrders: string, fromEvents: string, block?: number): Promise<number> {
    const reply = (await this.reader.call(
      'XREADGROUP',
      'GROUP',
      WRITER_GROUP,
      this.consumer,
      'COUNT',
      READ_COUNT,
      ...(block === undefined ? [] : ['BLOCK', block]),
      'STREAMS',
      this.keys.orders,
      this.keys.events,
      fromOrders,
      fromEvents,
    )) as ReadReply;
    if (reply === null) return 0;
    let n = 0;
    for (const [stream, entries] of reply) {
      this.take(stream, entries);
      n += entries.length;
    }
    return n;
  }

  private take(stream: string, entries: Entries): void {
    if (entries.length === 0) return;
    if (this.held === 0) this.firstAt = Date.now();
    const isOrders = stream === this.keys.orders;
    const field = isOrders ? 'c' : 'b';
    const into = isOrders ? this.placed : this.events;
    for (const [id, fields] of entries) {
      if (fields === null) {
        this.gone.push({ stream, id });
      } else if (fields[0] === field && typeof fields[1] === 'string') {
        into.push({ id, raw: fields[1] });
        this.heldBytes += fields[1].length;
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
  }

  /** Writes what is held until it succeeds (or stop() runs out of patience). */
  private async flush(): Promise<void> {
    const { logger, stopTimeoutMs = 10_000 } = this.w.options;
    const since = Date.now();
    let delay = RETRY_FIRST_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.flushOnce();
        if (attempt > 1) {
          logger.warn({ shard: this.keys.shard, attempts: attempt }, 'writer: flush recovered');
        }
        return;
      } catch (err) {
        this.w.stats.failedFlushes++;
        writerMetrics.failedFlushes.inc();
        componentErrors.inc({
          dependency: (err as { dependency?: string }).dependency ?? 'postgres',
          component: 'writer',
        });
        const fields = {
          shard: this.keys.shard,
          entries: this.held,
          // The stream ids held: an order stream id is 0-<seq>, the order's engine id.
          orders: span(this.placed),
          events: span(this.events),
          attempt,
          code: errorCode(err),
          err: message(err),
        };
        // Unreachable for a while is expected (restarts); anything else, or an outage that does
        // not end, needs a person.
        const alarming = !isConnectionFailure(err) || Date.now() - since > ALARM_AFTER_MS;
        if (alarming) logger.error(fields, 'writer: flush failing; records kept, retrying');
        else logger.warn(fields, 'writer: flush failed; records kept, retrying');
        if (this.w.stopping && Date.now() - this.w.stopAt > stopTimeoutMs) {
          // Never acknowledged, so they stay pending and the next start writes them.
          logger.error(fields, 'writer: stopping with entries unwritten; they stay pending');
          this.clear();
          return;
        }
        await sleep(delay);
        delay = Math.min(delay * 2, RETRY_MAX_MS);
      }
    }
  }

  private async flushOnce(): Promise<void> {
    const { sql, redis, logger } = this.w.options;
    const started = performance.now();
    const shard = this.keys.shard;
    const placed = this.placed;
    const events = this.events;
    const rejects = [...this.unreadable];
    let rows: WrittenRows;
    try {
      rows = await sql.begin((tx) =>
        writeAll(
          tx,
          shard,
          placed,
          events.map((e) => e.raw),
        ),
      );
    } catch (err) {
      if (classify(err) !== 'data') throw err;
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
      const result = await sql.begin((tx) => writeIsolating(tx, shard, streams, placed, events));
      rows = result.rows;
      rejects.push(...result.rejects);
    }
    // What fails from here on is Redis's: the rows are committed.
    try {
      for (const r of rejects) {
        logger.error(
          { shard, stream: r.stream, id: r.id, code: r.code, err: r.message, record: r.record },
          'writer: record refused; set aside in the rejects stream',
        );
        await redis.xadd(
          rejectsKey(r.stream),
          '*',
          'id',
          r.id,
          'code',
          r.code,
          'error',
          r.message,
          'record',
          r.record,
        );
      }
      await this.ack(this.keys.orders, [
        ...placed.map((e) => e.id),
        ...this.idsOf(this.keys.orders),
      ]);
      await this.ack(this.keys.events, [
        ...events.map((e) => e.id),
        ...this.idsOf(this.keys.events),
      ]);
    } catch (err) {
      throw Object.assign(err instanceof Error ? err : new Error(String(err)), {
        dependency: 'redis',
      });
    }
    const stats = this.w.stats;
    const size = this.held;
    stats.rowsWritten += rows.placed + rows.states + rows.trades;
    stats.entriesWritten += size;
    stats.flushes++;
    stats.lastFlushSize = size;
    stats.lastFlushMs = performance.now() - started;
    stats.rejected += rejects.length;
    const rowCount = rows.placed + rows.states + rows.trades;
    writerMetrics.flushes.inc();
    writerMetrics.rows.inc(rowCount);
    writerMetrics.entries.inc(size);
    writerMetrics.flushSize.observe(size);
    writerMetrics.flushSeconds.observe(stats.lastFlushMs / 1000);
    if (rejects.length > 0) writerMetrics.rejected.inc(rejects.length);
    this.clear();
  }

  /** Ids of the unreadable and deleted entries of a stream. */
  private idsOf(stream: string): string[] {
    const ids: string[] = [];
    for (const r of this.unreadable) if (r.stream === stream) ids.push(r.id);
    for (const g of this.gone) if (g.stream === stream) ids.push(g.id);
    return ids;
  }

  private async ack(stream: string, ids: string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += ACK_CHUNK) {
      await this.w.options.redis.xack(stream, WRITER_GROUP, ...ids.slice(i, i + ACK_CHUNK));
    }
  }

  private clear(): void {
    this.heldBytes = 0;
    this.placed = [];
    this.events = [];
    this.unreadable = [];
    this.gone = [];
  }

  /**
   * Trims the event stream below what the group has acknowledged, and the order stream below
   * that and below the snapshot the engine would replay from. The engine rolls back to the newest
   * snapshot at or below W — the last sequence whose reports the dispatcher has written (the event
   * stream's last id) — and a newer snapshot may exist above W, so that one is the bound.
   * Returns the shard's backlog: entries pending in the group or not yet delivered.
   */
  async trim(): Promise<number> {
    const { redis, sql } = this.w.options;
    const events = await this.writerFloor(this.keys.events);
    if (events.floor !== undefined) {
      await redis.xtrim(this.keys.events, 'MINID', formatId(events.floor));
    }
    const orders = await this.writerFloor(this.keys.orders);
    const written = await lastGeneratedSeq(redis, this.keys.events);
    const [snap] = await sql<{ seq: string | null }[]>`
      SELECT max(seq)::text AS seq FROM engine_snapshots
      WHERE shard = ${this.keys.shard} AND seq <= ${written}`;
    if (orders.floor !== undefined && snap?.seq !== undefined && snap.seq !== null) {
      // The engine restored from snapshot S replays from S + 1: keep that entry and later ones.
      const replayFrom: StreamId = { ms: 0n, seq: BigInt(snap.seq) + 1n };
      const floor = compareIds(replayFrom, orders.floor) < 0 ? replayFrom : orders.floor;
      await redis.xtrim(this.keys.orders, 'MINID', formatId(floor));
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

/** The first and last stream ids of held entries, or undefined when none are held. */
function span(entries: HeldEntry[]): [string, string] | undefined {
  const first = entries[0];
  const last = entries[entries.length - 1];
  return first === undefined || last === undefined ? undefined : [first.id, last.id];
}
