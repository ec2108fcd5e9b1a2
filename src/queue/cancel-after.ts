// Cancel-all-after, the dead man's switch: a user arms a countdown and keeps pushing it back while
// their client is alive; if it runs out, every open order of theirs is canceled, by a mass cancel
// of all their orders (OrderQueue.cancelAll). Redis holds the switches and its clock times them,
// so gateways on several hosts agree; every gateway sweeps for those due, and the one that claims
// a switch fires it under a lease, which another takes over if it dies before the cancel is
// queued. A switch fires one mass cancel, with an id fixed when it was armed: fired twice (a lease
// run out, a request sent again after a Redis restart), it is queued once per shard.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { v7 as uuidv7 } from 'uuid';
import { componentErrors } from '../metrics/pipeline.js';
import { counter } from '../metrics/registry.js';
import { keyCount, lua } from './lua-scripts.js';
import type { MassCancelResult } from './order-queue.js';

const SET = 'cancel-after-set-2.lua';
const DUE = 'cancel-after-due-2.lua';
const FIRED = 'cancel-after-fired-2.lua';

/** A timeout must be at least this (the sweep runs every SWEEP_MS)... */
export const MIN_TIMEOUT_MS = 1_000;
/** ...and at most a day. */
export const MAX_TIMEOUT_MS = 86_400_000;
/** How often each gateway looks for switches due. */
export const SWEEP_MS = 250;
/** How long a gateway has to queue the mass cancel of a switch it claimed before another may. */
const LEASE_MS = 5_000;
/**
 * How long the mass cancel of a switch due may take to be queued, each attempt: below the Redis
 * client's 1 s command timeout, as a submit's, so that a script Redis runs late writes nothing.
 */
const FIRE_DEADLINE_MS = 750;
/** Claimed per sweep, at most. */
const SWEEP_BATCH = 100;
/**
 * How long a disarmed or fired switch is remembered: a request Redis lost in a restart, sent
 * again later than this, could not be told from a newer one. Far beyond the re-queue's window.
 */
const REMEMBER_MS = 10 * 60_000;

const fired = counter({
  name: 'matchbox_cancel_after_fired_total',
  help: 'Dead man’s switches (cancel-all-after) that ran out, by what became of their mass cancel here (queued; not_queued or failed: tried again).',
  labelNames: ['outcome'],
});

/** A user's switch as Redis holds it (see cancel-after-set-2.lua). */
export interface CancelAfterSwitch {
  userId: string;
  ownerNo: number;
  /** 0: disarmed. */
  timeoutMs: number;
  /** The id of the mass cancel it fires. */
  fireId: string;
  /** When it was set: Redis's clock in microseconds, as a decimal string. */
  setUs: string;
  /** Redis's clock in ms when it fires while armed; '-' once disarmed, 'x' once fired. */
  trigger: string;
}

/** A switch as a client sees it. */
export interface CancelAfterState {
  /** 0 when not armed. */
  timeoutMs: number;
  /** When it fires; undefined when not armed. */
  triggerAt: Date | undefined;
  /** Redis's clock, which times it. */
  now: Date;
}

type Reply = (string | number)[];

interface ScriptedRedis {
  mbSetCancelAfter(...args: (string | number)[]): Promise<Reply>;
  mbDueCancelAfter(...args: (string | number)[]): Promise<Reply>;
  mbFiredCancelAfter(...args: (string | number)[]): Promise<number>;
}

/** The cancel-all-after switches of every user, in Redis under `<prefix>:cancel-after`. */
export class CancelAfterSwitches {
  private readonly redis: Redis & ScriptedRedis;
  private readonly keys: [string, string];

  constructor(redis: Redis, prefix: string) {
    redis.defineCommand('mbSetCancelAfter', { numberOfKeys: keyCount(SET), lua: lua(SET) });
    redis.defineCommand('mbDueCancelAfter', { numberOfKeys: keyCount(DUE), lua: lua(DUE) });
    redis.defineCommand('mbFiredCancelAfter', { numberOfKeys: keyCount(FIRED), lua: lua(FIRED) });
    this.redis = redis as Redis & ScriptedRedis;
    this.keys = [`${prefix}:cancel-after`, `${prefix}:cancel-after:due`];
  }

  /**
   * Arms the user's switch to fire `timeoutMs` from now by Redis's clock, or disarms it (0). The
   * switch as set is returned, with Redis's clock, for the re-queue to send again (`resend`).
   */
  async set(
    userId: string,
    ownerNo: number,
    timeoutMs: number,
  ): Promise<{ set: CancelAfterSwitch; state: CancelAfterState }> {
    const fireId = uuidv7();
    const [setUs, trigger, now] = await this.redis.mbSetCancelAfter(
      ...this.keys,
      userId,
      ownerNo,
      timeoutMs,
      fireId,
      '',
      '',
      REMEMBER_MS,
    );
    const set = {
      userId,
      ownerNo,
      timeoutMs,
      fireId,
      setUs: String(setUs),
      trigger: String(trigger),
    };
    return { set, state: { ...stateOf(set), now: new Date(Number(now)) } };
  }

  /**
   * Writes a switch set before a Redis restart that may have lost it: true when it was written,
   * false when Redis holds one set later (or this one).
   */
  async resend(s: CancelAfterSwitch): Promise<boolean> {
    const reply = await this.redis.mbSetCancelAfter(
      ...this.keys,
      s.userId,
      s.ownerNo,
      s.timeoutMs,
      s.fireId,
      s.setUs,
      s.trigger,
      REMEMBER_MS,
    );
    return Number(reply[3]) === 1;
  }

  /** The user's switch, with Redis's clock. */
  async get(userId: string): Promise<CancelAfterState> {
    const [[, held], [, time]] = (await this.redis
      .multi()
      .hget(this.keys[0], userId)
      .time()
      .exec()) as [[null, string | null], [null, [string, string]]];
    const now = new Date(Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000));
    if (held === null) return { timeoutMs: 0, triggerAt: undefined, now };
    return { ...stateOf(parse(userId, held)), now };
  }

  /** Claims up to `max` switches due, each for `leaseMs`; with Redis's clock. */
  async due(leaseMs: number, max: number): Promise<{ now: Date; due: CancelAfterSwitch[] }> {
    const reply = await this.redis.mbDueCancelAfter(...this.keys, leaseMs, max);
    const due: CancelAfterSwitch[] = [];
    for (let i = 1; i + 1 < reply.length; i += 2) {
      due.push(parse(String(reply[i]), String(reply[i + 1])));
    }
    return { now: new Date(Number(reply[0])), due };
  }

  /** Marks `s` fired: false when the user has re-armed or disarmed it since it was claimed. */
  async fired(s: CancelAfterSwitch): Promise<boolean> {
    const reply = await this.redis.mbFiredCancelAfter(
      ...this.keys,
      s.userId,
      format(s),
      REMEMBER_MS,
    );
    return Number(reply) === 1;
  }
}

function format(s: CancelAfterSwitch): string {
  return `${s.setUs} ${s.trigger} ${s.ownerNo} ${s.timeoutMs} ${s.fireId}`;
}

function parse(userId: string, held: string): CancelAfterSwitch {
  const [setUs, trigger, ownerNo, timeoutMs, fireId] = held.split(' ');
  return {
    userId,
    ownerNo: Number(ownerNo),
    timeoutMs: Number(timeoutMs),
    fireId: String(fireId),
    setUs: String(setUs),
    trigger: String(trigger),
  };
}

function stateOf(s: CancelAfterSwitch): Omit<CancelAfterState, 'now'> {
  return /^\d+$/.test(s.trigger)
    ? { timeoutMs: s.timeoutMs, triggerAt: new Date(Number(s.trigger)) }
    : { timeoutMs: 0, triggerAt: undefined };
}

/** What the sweep needs of the queue. */
export interface SwitchQueue {
  readonly cancelAfter: CancelAfterSwitches;
  cancelAll(
    mass: { id: string; userId: string; ownerNo: number; at: Date },
    deadlineMs: number,
  ): Promise<MassCancelResult>;
}

/**
 * Fires the switches due, every SWEEP_MS: the mass cancel of each is queued, then the switch is
 * marked fired. One that cannot be queued is claimed again, here or by another gateway, once its
 * lease runs out.
 */
export class CancelAfterSweeper {
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  /** The last failure to sweep, said once until a sweep succeeds. */
  private failure: string | undefined;

  constructor(
    private readonly queue: SwitchQueue,
    private readonly logger: Logger,
    private readonly everyMs = SWEEP_MS,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => {
      // One at a time: a sweep held up by a slow Redis holds the next.
      this.sweeping ??= this.sweep().finally(() => (this.sweeping = undefined));
    }, this.everyMs);
    this.timer.unref();
  }

  /** Stops sweeping; a switch being fired is fired first (or left to its lease). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.sweeping;
  }

  private async sweep(): Promise<void> {
    let claimed: { now: Date; due: CancelAfterSwitch[] };
    try {
      claimed = await this.queue.cancelAfter.due(LEASE_MS, SWEEP_BATCH);
      this.failure = undefined;
    } catch (err) {
      componentErrors.inc({ dependency: 'redis', component: 'gateway' });
      const cause = String((err as { message?: unknown }).message ?? err);
      if (cause !== this.failure) this.logger.warn({ err }, 'cancel-all-after: could not sweep');
      this.failure = cause;
      return;
    }
    await Promise.all(claimed.due.map((s) => this.fire(s, claimed.now)));
  }

  private async fire(s: CancelAfterSwitch, now: Date): Promise<void> {
    const fields = {
      user_id: s.userId,
      request_id: s.fireId,
      trigger_at: new Date(Number(s.trigger)).toISOString(),
    };
    let result: MassCancelResult;
    try {
      result = await this.queue.cancelAll(
        { id: s.fireId, userId: s.userId, ownerNo: s.ownerNo, at: now },
        Date.now() + FIRE_DEADLINE_MS,
      );
    } catch (err) {
      fired.inc({ outcome: 'failed' });
      this.logger.error(
        { ...fields, err },
        'cancel-all-after ran out, but its mass cancel failed; tried again in 5 s',
      );
      return;
    }
    if (result.kind !== 'queued') {
      fired.inc({ outcome: 'not_queued' });
      this.logger.error(
        { ...fields, outcome: result.kind },
        'cancel-all-after ran out, but its mass cancel was not queued; tried again in 5 s',
      );
      return;
    }
    fired.inc({ outcome: 'queued' });
    this.logger.warn(fields, 'cancel-all-after ran out: the user’s open orders are canceled');
    // Not marked: claimed again after the lease, its mass cancel is found queued, and it is
    // marked then.
    await this.queue.cancelAfter.fired(s).catch((err: unknown) => {
      this.logger.warn({ ...fields, err }, 'cancel-all-after: could not mark a switch fired');
    });
  }
}
