// The dispatcher of one shard (architecture.md step 3): reads the order stream in order, feeds the
// engine in batches over one session, and writes each batch's reports to Redis exactly once.
//
// W, the last sequence whose reports are in Redis, is the event stream's last id. Each cycle
// (start, and after any failure) re-reads W and the open orders from Redis, says Hello(W) — the
// engine rolls back if it is ahead — and reads from the engine's last seq L ≤ W. Commands up to W
// are replayed into the engine only; their outputs are already in Redis and are not written again.
//
// A batch's write to Redis is in flight while the next batch is read and matched: the engine and
// Redis work at once rather than in turn. Writes stay in order, one in flight: a batch is written
// only once the write before it succeeded, so the event stream never has a gap. A write that
// fails ends the cycle before anything after it is written; the engine, then ahead of W by up to
// two batches, rolls back at the next hello, as it does for one.
//
// So does a connection to Redis that closes: the Redis behind it may be one restarted without its
// last writes (appendfsync everysec), whose order stream holds other commands — the orders the
// gateway queued again — under sequences this cycle read and matched.
//
// One dispatcher of a shard runs at a time, the one holding the shard's lease (lease.ts); any other
// stands by until the lease is free.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Sql } from '../db/client.js';
import { EngineUnavailableError } from '../engine-service/client.js';
import type { EngineClient, EngineSession } from '../engine-service/client.js';
import type { Command } from '../engine/types.js';
import { componentErrors, dispatcherMetrics } from '../metrics/pipeline.js';
import { shardKeys } from '../queue/keys.js';
import type { ShardKeys } from '../queue/keys.js';
import type { CommandRecord, OrderState } from '../queue/records.js';
import { writeBatch } from './batch-write.js';
import { engineCommand, UnknownRecordError } from './engine-commands.js';
import { Instruments } from './instruments.js';
import { ShardLease } from '../queue/lease.js';
import { commit, orderRequest, project } from './projector.js';
import type { OrderRequest } from './projector.js';
import { loadOpenOrders, streamSeq, syncWrittenSeq } from './redis-state.js';

export interface DispatcherOptions {
  shard: number;
  /** Redis for writes; the dispatcher makes its own duplicate for the blocking reads. */
  redis: Redis;
  /** Key prefix (REDIS_PREFIX). */
  prefix: string;
  sql: Sql;
  engine: EngineClient;
  /** Most commands per batch (DISPATCH_BATCH). */
  batchSize: number;
  /** How long one XREAD waits for new orders when the stream is idle; default 1000 ms. */
  blockMs?: number;
  /**
   * After a busy read (LINGER_FROM commands or more, fewer than a batch), how long to wait for more
   * before dispatching; default 0.
   */
  lingerMs?: number;
  /**
   * How long the shard's lease lasts unless renewed (DISPATCH_LEASE_MS): after a dispatcher's
   * death, how long one standing by waits to take over. Default 3000; 0 runs without a lease
   * (tests of what keeps two dispatchers at once harmless).
   */
  leaseMs?: number;
  /**
   * This dispatcher's identity in the lease (DISPATCH_LEASE_ID); default, new at each start. One
   * restarted with the same takes its lease back at once rather than at expiry.
   */
  leaseId?: string;
  logger: Logger;
}

export interface DispatcherStats {
  /** Batches written to Redis. */
  batches: number;
  /** Commands whose outputs were written. */
  commands: number;
  /** W: the last sequence whose reports are in Redis. */
  lastSeq: number;
  /**
   * The engine's last sequence as it last answered: W, or past it by the batch whose write is in
   * flight (or, after a write failed, by what the engine will roll back).
   */
  matchedSeq: number;
  /** Sessions opened after the first (engine restarts, broken streams, Redis failures). */
  reconnects: number;
  /** Whether this dispatcher holds the shard's lease now (while running without one, always). */
  leaseHeld: boolean;
  lastBatchSize: number;
  /** Busy reads after which the dispatcher waited for more (see LINGER_FROM). */
  lingers: number;
  /**
   * Milliseconds spent, in total, waiting for the engine and for Redis's writes (which overlap
   * the next batch's read and match, so the two are not a sum of the dispatcher's time).
   */
  engineMs: number;
  writeMs: number;
}

type XReadReply = [string, [string, string[]][]][] | null;

/**
 * A read of fewer commands than this is dispatched at once, whatever the linger: they are what
 * arrived while the last batch was dispatched, so the engine and Redis keep up, and waiting for
 * company would only delay their fills. A read of more means arrivals are dense: then the linger
 * makes batches larger, which is what saves CPU under load (each batch costs a gRPC round trip
 * and a script call whatever its size). Measured with the 2 ms linger: at 1,500 orders/s reads
 * came a few commands each, and no linger made fills sooner (server timestamps, two interleaved
 * pairs: p50 3 and 5 ms against 4 and 7); lingering after every read kept batches twice as large
 * at 64 clients (CPU per order, without it: dispatcher +6–29%, engine +28–69%, Redis +5–22%).
 */
export const LINGER_FROM = 8;

/** DISPATCH_LEASE_MS's default. */
const LEASE_MS = 3_000;
const BACKOFF_MIN_MS = 50;
const BACKOFF_MAX_MS = 2000;
/** A session ready this long without failing was a healthy one: its failure retries at once. */
const HEALTHY_MS = 5_000;

export class Dispatcher {
  private readonly keys: ShardKeys;
  /** Its own connection: a blocking XREAD would hold up every other command on a shared one. */
  private reader: Redis | undefined;
  /** Its own connection for everything else (see start()). */
  private conn: Redis | undefined;
  /** Times either connection closed; a cycle goes on only while this stays as it began. */
  private breaks = 0;
  private cycleBreaks = 0;
  private readonly instruments: Instruments;
  private readonly logger: Logger;
  private readonly blockMs: number;
  private readonly lingerMs: number;
  private readonly leaseMs: number;
  /** The shard's lease while running (made at each start); none with leaseMs 0. */
  private lease: ShardLease | undefined;
  private open = new Map<number, OrderState>();
  private written = 0;
  /** The write of the last batch dispatched, while it is in flight; it never rejects. */
  private writing: Promise<void> | undefined;
  /** Why that write failed, once it has; thrown by the next settle(). */
  private writeFailure: Error | undefined;
  private stopping = false;
  private running: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  /** The stats but leaseHeld, read from the lease when asked (lastSeq is set from W then too). */
  private readonly counters: Omit<DispatcherStats, 'leaseHeld'> = {
    batches: 0,
    commands: 0,
    lastSeq: 0,
    matchedSeq: 0,
    reconnects: -1,
    lastBatchSize: 0,
    lingers: 0,
    engineMs: 0,
    writeMs: 0,
  };

  constructor(private readonly options: DispatcherOptions) {
    this.keys = shardKeys(options.prefix, options.shard);
    this.instruments = new Instruments(options.sql);
    this.logger = options.logger.child({ shard: this.keys.shard });
    this.blockMs = options.blockMs ?? 1000;
    this.lingerMs = options.lingerMs ?? 0;
    this.leaseMs = options.leaseMs ?? LEASE_MS;
  }

  /** Starts dispatching in the background; failures are retried, never thrown. */
  start(): void {
    if (this.running !== undefined) return;
    this.stopping = false;
    // No command outlives its connection (maxRetriesPerRequest 0: one in flight when it closes
    // fails, rather than being sent again after the reconnect), and a cycle ends at the first
    // close: the Redis at the other end may be one restarted without its last writes, holding
    // other commands under the sequences read, so nothing read from the one before may be
    // written to it, nor read on from where the cycle stood.
    const connection = (what: string): Redis => {
      const c = this.options.redis.duplicate({ maxRetriesPerRequest: 0 });
      // Connection errors surface as failed commands (retried below); the event needs a home.
      c.on('error', (err: Error) => this.options.logger.debug({ err: err.message }, what));
      c.on('close', () => this.breaks++);
      return c;
    };
    this.reader = connection('stream reader connection error');
    this.conn = connection('dispatcher connection error');
    if (this.leaseMs > 0) {
      this.lease = new ShardLease({
        redis: this.options.redis,
        key: this.keys.lease,
        ms: this.leaseMs,
        role: 'dispatcher',
        ...(this.options.leaseId === undefined ? {} : { id: this.options.leaseId }),
        idSetting: 'DISPATCH_LEASE_ID',
        logger: this.logger,
        onChange: (held) => {
          dispatcherMetrics.leaseHeld.set({ shard: this.keys.shard }, held ? 1 : 0);
          this.wake?.();
        },
      });
      this.lease.start();
    } else dispatcherMetrics.leaseHeld.set({ shard: this.keys.shard }, 1);
    this.running = this.run(this.reader, this.conn);
  }

  /** Finishes the batch in hand (its write included), then resolves. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.running;
    // Its last write has landed or failed: one standing by may take over now, not at expiry.
    await this.lease?.stop();
    this.lease = undefined;
    this.running = undefined;
    dispatcherMetrics.leaseHeld.set({ shard: this.keys.shard }, 0);
    this.reader?.disconnect();
    this.reader = undefined;
    this.conn?.disconnect();
    this.conn = undefined;
  }

  stats(): DispatcherStats {
    const leaseHeld = this.running !== undefined && this.holdsLease();
    return { ...this.counters, lastSeq: this.written, leaseHeld };
  }

  /** Whether this dispatcher may run the shard: it holds the lease, or runs without one. */
  private holdsLease(): boolean {
    return this.leaseMs === 0 || (this.lease?.held() ?? false);
  }

  /** Commands queued in the stream whose reports are not written yet. */
  async lag(): Promise<number> {
    const last = Number((await this.options.redis.get(this.keys.seq)) ?? 0);
    return Math.max(0, last - this.written);
  }

  private async run(reader: Redis, conn: Redis): Promise<void> {
    let backoff = BACKOFF_MIN_MS;
    while (!this.stopping) {
      if (!this.holdsLease()) {
        // Standing by: woken when the lease is taken.
        await this.sleep(this.leaseMs);
        continue;
      }
      let session: EngineSession | undefined;
      // When the session was ready: one that fails soon after (a gap in the stream, an
      // instrument PostgreSQL does not have, a stale W) is tried again later and later, not every
      // 50 ms; one that ran a while, or dispatched a batch, is tried again at once.
      let readyAt: number | undefined;
      try {
        this.counters.reconnects++;
        session = this.options.engine.session();
        await this.cycle(reader, conn, session, (dispatched) => {
          if (dispatched) backoff = BACKOFF_MIN_MS;
          else readyAt = performance.now();
        });
      } catch (err) {
        if (readyAt !== undefined && performance.now() - readyAt > HEALTHY_MS) {
          backoff = BACKOFF_MIN_MS;
        }
        if (this.stopping) {
          this.logger.warn({ err }, 'dispatch interrupted while stopping; the next start resumes');
          break;
        }
        // The lease went to another dispatcher (which may have taken the engine from this one's
        // session first): not a failure; this one stands by. (A lease that lapsed for want of an
        // answer from Redis is one: counted below.)
        if (!this.holdsLease() && this.lease?.heldByAnother() === true) {
          this.logger.info({ err }, 'dispatch handed over; standing by');
          continue;
        }
        componentErrors.inc({ dependency: dependencyOf(err), component: 'dispatcher' });
        dispatcherMetrics.reconnects.inc({ shard: this.keys.shard });
        if (err instanceof StreamGapError || err instanceof UnknownRecordError) {
          this.logger.error({ err, retryInMs: backoff }, 'dispatch cannot go on');
        } else this.logger.warn({ err, retryInMs: backoff }, 'dispatch interrupted; reconnecting');
        await this.sleep(backoff);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      } finally {
        session?.close();
      }
    }
    // However the loop ended, stop() returns only once the last write has landed or failed.
    await this.settleAfterFailure('stopping; the next start writes its batch again');
  }

  /** Settles a write left in flight when a cycle ended; its failure is counted and logged. */
  private async settleAfterFailure(then: string): Promise<void> {
    try {
      await this.settle();
    } catch (err) {
      componentErrors.inc({ dependency: 'redis', component: 'dispatcher' });
      this.logger.error({ err }, `a batch write failed; ${then}`);
    }
  }

  /** One session: resync from Redis, hello, then batches until stopped or something fails. */
  private async cycle(
    reader: Redis,
    conn: Redis,
    session: EngineSession,
    progressed: (dispatched: boolean) => void,
  ): Promise<void> {
    // A write the last cycle left in flight lands (or fails) before W is read.
    await this.settleAfterFailure('W is read again from Redis');
    this.cycleBreaks = this.breaks;
    // Whatever failed before (maybe an EXEC whose answer was lost), Redis says what is written;
    // the copy of W that the batch script checks each batch against is set to it, in one step.
    this.written = await syncWrittenSeq(conn, this.keys);
    this.open = await loadOpenOrders(conn, this.keys);
    // Tick and lot sizes change rarely: with PostgreSQL away, those read before will do, and
    // matching goes on (it waited for PostgreSQL at every new cycle).
    await this.instruments.load().catch((err: unknown) => {
      if (!this.instruments.loaded) throw err;
      this.logger.warn(
        { err },
        'instruments not read again (PostgreSQL?); those read before stand',
      );
    });
    const engineSeq = await session.hello(this.written);
    if (engineSeq > this.written) {
      throw new Error(`engine at ${engineSeq} after hello(${this.written}): it did not roll back`);
    }
    this.logger.info({ written: this.written, engineSeq, open: this.open.size }, 'session ready');
    this.counters.matchedSeq = engineSeq;
    progressed(false);
    let cursor = engineSeq;
    while (!this.stopping) {
      this.unbroken();
      const reply: XReadReply = await reader.xread(
        'COUNT',
        this.options.batchSize,
        'BLOCK',
        this.blockMs,
        'STREAMS',
        this.keys.orders,
        `0-${cursor}`,
      );
      const entries = reply?.[0]?.[1];
      if (entries === undefined || entries.length === 0) {
        // Idle: the write in flight lands, and one that failed ends the cycle now, not at the
        // next order.
        await this.settle();
        continue;
      }
      if (
        this.lingerMs > 0 &&
        entries.length >= LINGER_FROM &&
        entries.length < this.options.batchSize
      ) {
        // A busy read, not a full batch: wait a moment for more (see LINGER_FROM). The write
        // in flight goes on meanwhile.
        this.counters.lingers++;
        await this.sleep(this.lingerMs);
        this.unbroken();
        const last = entries[entries.length - 1] as [string, string[]];
        const more: XReadReply = await reader.xread(
          'COUNT',
          this.options.batchSize - entries.length,
          'STREAMS',
          this.keys.orders,
          last[0],
        );
        entries.push(...(more?.[0]?.[1] ?? []));
      }
      cursor = await this.dispatch(session, conn, cursor, entries);
      progressed(true);
    }
  }

  /**
   * Sends one batch of stream entries and starts the write of its outputs, once the write before
   * it has succeeded; returns the batch's last seq.
   */
  private async dispatch(
    session: EngineSession,
    conn: Redis,
    cursor: number,
    entries: [string, string[]][],
  ): Promise<number> {
    const commands: Command[] = [];
    const records: CommandRecord[] = [];
    let text = '';
    for (const [id, fields] of entries) {
      text = commandField(fields, id);
      const record = JSON.parse(text) as CommandRecord;
      records.push(record);
      commands.push(engineCommand(streamSeq(id), record));
    }
    const first = commands[0] as Command;
    if (first.seq !== cursor + 1) {
      // The commands the engine would need from its snapshot on are gone (trimmed below a
      // snapshot that is no longer there): matching on would build books without them. Stop
      // here, loudly, every cycle, until someone restores a snapshot or the stream.
      throw new StreamGapError(
        `order stream has a gap: the engine is at ${cursor}, the stream's next entry is ${first.seq}`,
      );
    }
    const lastSeq = (commands[commands.length - 1] as Command).seq;
    const sentAt = performance.now();
    const reply = await session.send(commands);
    const engineMs = performance.now() - sentAt;
    this.counters.engineMs += engineMs;
    const shard = { shard: this.keys.shard };
    dispatcherMetrics.engineSeconds.observe(shard, engineMs / 1000);
    if (reply.lastSeq !== lastSeq) {
      throw new Error(`engine answered last seq ${reply.lastSeq} for a batch ending at ${lastSeq}`);
    }
    this.counters.matchedSeq = lastSeq;
    // The write before this batch's, in flight while the engine matched it, lands first.
    await this.settle();
    if (lastSeq <= this.written) return lastSeq; // all replay: already in Redis

    const placed = new Map<number, OrderState>();
    const requests = new Map<number, OrderRequest>();
    const symbols = new Set<string>();
    records.forEach((record, i) => {
      const seq = (commands[i] as Command).seq;
      if (seq <= this.written) return;
      if (record.k === 'place') {
        placed.set(seq, { ...record.order, seq, version: seq });
        symbols.add(record.order.symbol);
      } else {
        const request = orderRequest(record);
        if (request !== undefined) requests.set(seq, request);
      }
    });
    const reports = reply.reports.filter((r) => r.seq > this.written);
    await this.instruments.ensure(symbols);
    const firstSeq = commands.find((c) => c.seq > this.written)?.seq ?? lastSeq;
    const batch = project({
      shard: this.options.shard,
      firstSeq,
      lastSeq,
      open: this.open,
      placed,
      requests,
      reports,
      scales: (s) => this.instruments.get(s),
    });
    if (batch.unexplained !== undefined) {
      // No order changes, but its owner is not told; a mass cancel an older engine refuses has
      // not been done (engines are upgraded before gateways).
      componentErrors.inc({ dependency: 'engine', component: 'dispatcher' });
      this.logger.error(
        { seqs: batch.unexplained },
        'the engine refused commands that change no order of the batch (a cancel or amend not in it, or a command it does not know: upgrade the engine); passed over',
      );
    }
    // The next batch is projected over this one's open orders before this write lands: a write
    // that fails ends the cycle, which loads the open orders from Redis again.
    commit(this.open, batch);
    const writeAt = performance.now();
    // Sent only while neither of the cycle's connections (the stream reader, this one) has closed
    // since the cycle read W, so never to a Redis restarted since; and with the last command's
    // text, which Redis must hold at its seq (see write-batch.lua).
    this.unbroken();
    this.writing = writeBatch(conn, this.keys, batch, text).then(
      () => {
        const writeMs = performance.now() - writeAt;
        this.counters.writeMs += writeMs;
        this.written = lastSeq;
        this.counters.batches++;
        this.counters.commands += lastSeq - firstSeq + 1;
        this.counters.lastBatchSize = commands.length;
        dispatcherMetrics.writeSeconds.observe(shard, writeMs / 1000);
        dispatcherMetrics.batches.inc(shard);
        dispatcherMetrics.commands.inc(shard, lastSeq - firstSeq + 1);
        dispatcherMetrics.batchSize.observe(shard, commands.length);
      },
      (err: unknown) => {
        this.writeFailure = err instanceof Error ? err : new Error(String(err));
      },
    );
    return lastSeq;
  }

  /** Throws if a connection closed since the cycle began (see start()). */
  private unbroken(): void {
    if (this.breaks !== this.cycleBreaks) {
      throw new Error('the connection to Redis closed: W and the open orders are read again');
    }
    if (!this.holdsLease()) throw new Error('the shard’s lease is no longer this dispatcher’s');
  }

  /** Waits for the write in flight, if any; throws if it failed. */
  private async settle(): Promise<void> {
    await this.writing;
    this.writing = undefined;
    const failure = this.writeFailure;
    if (failure === undefined) return;
    this.writeFailure = undefined;
    throw failure;
  }

  /** Resolves after `ms`, or at once when stop() comes first (even before the sleep began). */
  private sleep(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}

/** Commands the engine needs are no longer in the order stream: a person must step in. */
class StreamGapError extends Error {}

/**
 * What a cycle's failure is counted against in matchbox_component_errors_total: PostgreSQL's are
 * marked where they are made (the instruments' read), the engine's by their class; the rest are
 * Redis's (its connections and replies, and a gap in the stream it holds).
 */
function dependencyOf(err: unknown): string {
  const marked = (err as { dependency?: unknown } | undefined)?.dependency;
  if (typeof marked === 'string') return marked;
  return err instanceof EngineUnavailableError ? 'engine' : 'redis';
}

function commandField(fields: string[], id: string): string {
  for (let i = 0; i + 1 < fields.length; i += 2)
    if (fields[i] === 'c') return fields[i + 1] as string;
  throw new Error(`order stream entry ${id} has no field c`);
}
