// One dispatcher (or batch writer) per shard at a time: a lease in Redis, a key holding the value
// of the process that has it and expiring unless that one renews it. A second one of the shard (one
// started before the other stopped, a standby on another host) stands by until the key is free:
// given up at the holder's stop, or expired after its death. Without it two dispatchers would take
// the engine from each other at every batch, and two writers would split the streams between them,
// each blind to what the other holds (see batch-writer.ts).
//
// The lease is for liveness, not safety: a holder paused past its expiry (a stopped process, a
// suspended VM) goes on for a moment beside the one that took over, and other checks keep that
// harmless. For dispatchers: each batch's write is checked against W, read in one step at each
// cycle's start (redis-state.ts, write-batch.lua), and the engine refuses a rollback below its
// pinned snapshot. For writers: a read of new entries is made only while the key holds the
// writer's value (WATCH, then MULTI/EXEC: batch-writer.ts, readNew), so none is delivered to one
// that lost the lease, and what such a one commits meanwhile is written again, changing nothing,
// by the one that has it.
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { keyCount, lua } from './lua-scripts.js';

const TAKE = 'take-lease-1.lua';
const RELEASE = 'release-lease-1.lua';
/**
 * How often one standing by asks whether the lease is free, and how soon a renewal that failed is
 * tried again (at most).
 */
const RETRY_MS = 250;
/** The longest a lease call waits for Redis's answer (less for a lease shorter than 3 s). */
const CALL_TIMEOUT_MS = 1_000;

interface LeaseScripts {
  mbTakeLease(key: string, value: string, ms: number, idPrefix: string): Promise<[number, string]>;
  mbReleaseLease(key: string, value: string): Promise<number>;
}

export interface ShardLeaseOptions {
  /** Redis; the lease makes its own connection from it (see start). */
  redis: Redis;
  key: string;
  /** How long the lease lasts unless renewed. */
  ms: number;
  /** Who holds it, for the log: `dispatcher` or `writer`. */
  role: string;
  /**
   * A stable identity (DISPATCH_LEASE_ID, WRITER_LEASE_ID): a lease still held under it, by the
   * dead process this one replaces, is taken back at once rather than at expiry.
   */
  id?: string;
  /** The setting `id` comes from, named when two processes hold one. */
  idSetting: string;
  logger: Logger;
  /** Called when this process takes the lease or loses it. */
  onChange(held: boolean): void;
}

export class ShardLease {
  /** The key's value while this process holds it: `<id>|<nonce>`, or the nonce alone. */
  private readonly value: string;
  private readonly idPrefix: string;
  private conn: (Redis & LeaseScripts) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopped = false;
  /** Until when (performance.now()) the lease is surely this process's. */
  private until = 0;
  /** What onChange was last told. */
  private reported = false;
  private everHeld = false;
  /** The holder the last answer named, when another. */
  private other: string | undefined;
  /**
   * How many times this process has taken the lease anew (from nobody, from another, or after it
   * lapsed here): the same while it keeps renewing it in time. A holder that finds it changed
   * knows another may have held the lease in between, though its own view never lapsed.
   */
  private terms = 0;
  private unanswered = false;

  constructor(private readonly options: ShardLeaseOptions) {
    const nonce = randomUUID();
    this.idPrefix = options.id === undefined ? '' : `${options.id}|`;
    this.value = this.idPrefix + nonce;
  }

  /**
   * Opens its connection and starts asking for the lease. The connection fails a command at once
   * while it is down (no offline queue, no retry) and after a second (a third of a shorter lease)
   * when Redis does not answer: a renewal never waits out an outage, a stop waits two such calls
   * at most, and one stalled renewal leaves time for two more before the lease runs out.
   */
  start(): void {
    const commandTimeout = Math.max(50, Math.min(CALL_TIMEOUT_MS, Math.floor(this.options.ms / 3)));
    const conn = this.options.redis.duplicate({
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      lazyConnect: false,
      commandTimeout,
    });
    conn.defineCommand('mbTakeLease', { numberOfKeys: keyCount(TAKE), lua: lua(TAKE) });
    conn.defineCommand('mbReleaseLease', { numberOfKeys: keyCount(RELEASE), lua: lua(RELEASE) });
    // Its failures surface as failed renewals; the event only needs a home.
    conn.on('error', (err: Error) =>
      this.options.logger.debug({ err: err.message }, 'lease connection error'),
    );
    // Connected (again): ask now, not at the next tick.
    conn.on('ready', () => {
      if (this.ticking === undefined) this.schedule(0);
    });
    this.conn = conn as Redis & LeaseScripts;
    this.options.onChange(false);
    // Connecting already, maybe: a call that finds it not ready yet fails and is tried again.
    this.schedule(0);
  }

  /** The key's value while this process holds the lease, for a reader that checks the key. */
  get fence(): string {
    return this.value;
  }

  /** See `terms`. */
  get term(): number {
    return this.terms;
  }

  /** Whether the lease is surely this process's now. */
  held(): boolean {
    return performance.now() < this.until;
  }

  /** Whether the last call for the lease went unanswered (or failed). */
  failing(): boolean {
    return this.unanswered;
  }

  /** Whether the last answer said another process holds the lease. */
  heldByAnother(): boolean {
    return this.other !== undefined;
  }

  /** Stops renewing and gives the lease up if the key is this one's. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.ticking;
    try {
      await this.conn?.mbReleaseLease(this.options.key, this.value);
    } catch (err) {
      const say = this.everHeld ? 'warn' : 'debug';
      this.options.logger[say]({ err }, 'the lease could not be given up; it expires by itself');
    }
    this.conn?.disconnect();
    this.until = 0;
    this.report(false);
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.ticking ??= this.tick().finally(() => (this.ticking = undefined));
    }, ms);
  }

  /**
   * Takes or renews the lease. Held until `ms` after the call was sent, whenever the answer came:
   * Redis set the key's expiry no sooner. A failed call leaves that as it was, so the lease lapses
   * here no later than in Redis (where a call that timed out may still run, and renew it).
   */
  private async tick(): Promise<void> {
    const { key, ms, logger, role } = this.options;
    const sent = performance.now();
    // Lapsed here before this call (a pause of this process, say): one that stood by since is
    // woken by its answer, though onChange last said held.
    const lapsed = !this.held();
    // Standing by, or after a failed call: asked again soon.
    let next = RETRY_MS;
    try {
      const [taken, holder] = (await this.conn?.mbTakeLease(
        key,
        this.value,
        ms,
        this.idPrefix,
      )) ?? [0, ''];
      if (taken === 1) {
        if (this.everHeld && holder !== '' && holder !== this.value) {
          logger.error(
            { holder },
            `another ${role} of this shard runs with this ${this.options.idSetting}: give each its own`,
          );
        }
        this.everHeld = true;
        this.other = undefined;
        // Taken from nobody or another, or after a lapse here: a renewal that timed out may have
        // run late in Redis, after another had held the key and let it go.
        if (holder !== this.value || lapsed) this.terms++;
        this.until = sent + ms;
        // Renewed a third of the lease after this call was sent, however long its answer took.
        next = Math.max(0, sent + ms / 3 - performance.now());
      } else {
        if (holder !== this.other) {
          const say = this.reported ? logger.warn.bind(logger) : logger.info.bind(logger);
          say({ holder }, `another ${role} holds the shard’s lease: standing by`);
        }
        this.other = holder;
        this.until = 0;
      }
      this.unanswered = false;
    } catch (err) {
      this.unanswered = true;
      if (this.reported && !this.held()) {
        logger.warn({ err }, 'the shard’s lease lapsed: Redis did not answer its renewal');
      } else logger.debug({ err }, 'the lease could not be renewed (Redis?)');
    }
    this.report(this.held(), lapsed);
    this.schedule(next);
  }

  /** Tells onChange (and the log) when the lease was taken or lost, or taken again after a lapse. */
  private report(held: boolean, lapsed = false): void {
    if (held === this.reported && !(held && lapsed)) return;
    if (held && !this.reported) {
      this.options.logger.info(`took the shard’s lease: this ${this.options.role} runs the shard`);
    }
    this.reported = held;
    this.options.onChange(held);
  }
}
