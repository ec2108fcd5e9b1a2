// Cancel-all-after, the dead man's switch: a user arms a countdown and keeps pushing it back while
// their client is alive; if it runs out, every open order of theirs is canceled, by a mass cancel
// of all their orders (OrderQueue.cancelAll). Redis holds the switches and its clock times them,
// so gateways on several hosts agree; every gateway sweeps for those that ran out, and the one
// that claims a switch fires it under a lease, which another takes over if it dies before the
// cancel is queued. A switch fires one mass cancel, with an id fixed when it was armed: fired twice
// (a lease run out, a request sent again after a Redis restart), it is queued once per shard.
//
// Running out is final: an arm or disarm that comes after it fires the switch first, so that the
// cancel takes every order accepted before that request and none its client sends after the
// answer. An outage (no sweep by any gateway for OUTAGE_MS, or a Redis restart) is not the
// client's: every switch that had not run out when it began counts down again from its end.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { v7 as uuidv7 } from 'uuid';
import { componentErrors } from '../metrics/pipeline.js';
import { counter } from '../metrics/registry.js';
import { keyCount, lua } from './lua-scripts.js';
import type { MassCancelResult } from './order-queue.js';

const SWITCHES = 'cancel-after-4.lua';
const FIRED = 'cancel-after-fired-2.lua';

/** A timeout must be at least this (the sweep runs every SWEEP_MS)... */
export const MIN_TIMEOUT_MS = 1_000;
/** ...and at most a day. */
export const MAX_TIMEOUT_MS = 86_400_000;
/** How often each gateway looks for switches that ran out. */
export const SWEEP_MS = 250;
/** No sweep by any gateway for longer than this is an outage (cancel-after-4.lua). */
export const OUTAGE_MS = 2_000;
/** How long a gateway has to queue the mass cancel of a switch it claimed before another may. */
const LEASE_MS = 3_000;
/**
 * How long the mass cancel of a switch may take to be queued, each attempt, from its claim (by
 * Redis's clock): below the Redis client's 1 s command timeout, as a submit's, so that a script
 * Redis runs late writes nothing.
 */
export const FIRE_DEADLINE_MS = 750;
/** Claimed per sweep, at most. */
const SWEEP_BATCH = 100;
/**
 * How long a disarmed or fired switch is remembered: a request that a Redis restart lost is sent
 * again only within this (it could not be told from a newer one after). Far beyond the
 * re-queue's window.
 */
const REMEMBER_MS = 10 * 60_000;

const firedTotal = counter({
  name: 'matchbox_cancel_after_fired_total',
  help: 'Dead man’s switches (cancel-all-after) that ran out, by what became of their mass cancel here (queued; not_queued or failed: tried again).',
  labelNames: ['outcome'],
});

/** A user's switch as Redis holds it (see cancel-after-4.lua). */
export interface CancelAfterSwitch {
  userId: string;
  ownerNo: number;
  /** 0: disarmed. */
  timeoutMs: number;
  /** The id of the mass cancel it fires. */
  fireId: string;
  /** When it was set: Redis's clock in microseconds, as a decimal string. */
  setUs: string;
  /** When it runs out while armed (Redis's clock, ms); '-' once disarmed; 'x<ms>' once fired. */
  state: string;
}

/** A switch as a client sees it. */
export interface CancelAfterState {
  /** 0 when not armed. */
  timeoutMs: number;
  /** When it runs out; undefined when not armed. */
  triggerAt: Date | undefined;
  /** When it fired, if that is the last thing it did (remembered REMEMBER_MS). */
  firedAt: Date | undefined;
  /** Redis's clock, which times it. */
  now: Date;
}

/** What arming or disarming came to. */
export type SetResult =
  | { kind: 'set'; set: CancelAfterSwitch; state: CancelAfterState }
  /** The switch Redis holds has run out and has not fired yet: nothing written. */
  | { kind: 'ran-out'; held: CancelAfterSwitch };

type Reply = (string | number)[];

interface ScriptedRedis {
  mbCancelAfter(...args: (string | number)[]): Promise<Reply>;
  mbFiredCancelAfter(...args: (string | number)[]): Promise<number>;
}

/** The cancel-all-after switches of every user, in Redis under `<prefix>:cancel-after`. */
export class CancelAfterSwitches {
  private readonly redis: Redis & ScriptedRedis;
  /** The switches, when each is due, the last sweep, the outages of the last day. */
  private readonly keys: [string, string, string, string];

  constructor(
    redis: Redis,
    prefix: string,
    /** No sweep for longer than this is an outage: OUTAGE_MS but in tests. */
    private readonly outageMs = OUTAGE_MS,
  ) {
    redis.defineCommand('mbCancelAfter', { numberOfKeys: keyCount(SWITCHES), lua: lua(SWITCHES) });
    redis.defineCommand('mbFiredCancelAfter', { numberOfKeys: keyCount(FIRED), lua: lua(FIRED) });
    this.redis = redis as Redis & ScriptedRedis;
    const k = `${prefix}:cancel-after`;
    this.keys = [k, `${k}:due`, `${k}:swept`, `${k}:outages`];
  }

  /** One call of the script: `args` are its ARGV[3..7] for `mode`. */
  private call(
    userId: string,
    mode: 'get' | 'set' | 'resend' | 'due',
    ...args: (string | number)[]
  ): Promise<Reply> {
    const rest = [...args, '', '', '', '', ''].slice(0, 5);
    return this.redis.mbCancelAfter(
      ...this.keys,
      userId,
      mode,
      ...rest,
      this.outageMs,
      REMEMBER_MS,
    );
  }

  /**
   * Arms the user's switch to run out `timeoutMs` from now by Redis's clock, or disarms it (0);
   * 'ran-out' when the switch it would replace has run out and not fired yet.
   */
  async set(userId: string, ownerNo: number, timeoutMs: number): Promise<SetResult> {
    const fireId = uuidv7();
    const reply = await this.call(userId, 'set', ownerNo, timeoutMs, fireId);
    if (Number(reply[0]) === 2) return { kind: 'ran-out', held: parse(userId, String(reply[1])) };
    const set = {
      userId,
      ownerNo,
      timeoutMs,
      fireId,
      setUs: String(reply[1]),
      state: String(reply[2]),
    };
    return { kind: 'set', set, state: stateOf(set, set.state, new Date(Number(reply[3]))) };
  }

  /**
   * Writes again a switch set before a Redis restart that may have lost it, counting down from
   * now: true when written, false when Redis holds one set as late or later (or this one is too
   * old to tell).
   */
  async resend(s: CancelAfterSwitch): Promise<boolean> {
    const reply = await this.call(
      s.userId,
      'resend',
      s.ownerNo,
      s.timeoutMs,
      s.fireId,
      s.setUs,
      s.state,
    );
    return Number(reply[0]) === 1;
  }

  /** The user's switch, with Redis's clock. */
  async get(userId: string): Promise<CancelAfterState> {
    const [, held, runsOut, now] = (await this.call(userId, 'get')).map(String);
    const at = new Date(Number(now));
    if (held === undefined || held === '') {
      return { timeoutMs: 0, triggerAt: undefined, firedAt: undefined, now: at };
    }
    return stateOf(parse(userId, held), runsOut ?? '', at);
  }

  /**
   * Claims up to `max` switches that have run out, each for `leaseMs`, with Redis's clock;
   * `outage`: this sweep found one over, and `pushedBack` switches count down again since.
   */
  async due(
    leaseMs: number,
    max: number,
  ): Promise<{ now: Date; outage: boolean; pushedBack: number; due: CancelAfterSwitch[] }> {
    const reply = await this.call('', 'due', leaseMs, max);
    const due: CancelAfterSwitch[] = [];
    for (let i = 3; i + 1 < reply.length; i += 2) {
      due.push(parse(String(reply[i]), String(reply[i + 1])));
    }
    return {
      now: new Date(Number(reply[0])),
      outage: Number(reply[1]) === 1,
      pushedBack: Number(reply[2]),
      due,
    };
  }

  /**
   * Marks `s` fired, and says when (Redis's clock): undefined when it has changed since it was
   * claimed (marked by another gateway, or pushed back after an outage).
   */
  async fired(s: CancelAfterSwitch): Promise<Date | undefined> {
    const reply = await this.redis.mbFiredCancelAfter(
      this.keys[0],
      this.keys[1],
      s.userId,
      format(s),
      REMEMBER_MS,
    );
    return Number(reply) === 0 ? undefined : new Date(Number(reply));
  }
}

function format(s: CancelAfterSwitch): string {
  return `${s.setUs} ${s.state} ${s.ownerNo} ${s.timeoutMs} ${s.fireId}`;
}

function parse(userId: string, held: string): CancelAfterSwitch {
  const [setUs, state, ownerNo, timeoutMs, fireId] = held.split(' ');
  return {
    userId,
    ownerNo: Number(ownerNo),
    timeoutMs: Number(timeoutMs),
    fireId: String(fireId),
    setUs: String(setUs),
    state: String(state),
  };
}

/** As a client sees `s`, which runs out at `runsOut` (ms) when armed. */
function stateOf(s: CancelAfterSwitch, runsOut: string, now: Date): CancelAfterState {
  if (/^\d+$/.test(s.state)) {
    return {
      timeoutMs: s.timeoutMs,
      triggerAt: new Date(Number(runsOut)),
      firedAt: undefined,
      now,
    };
  }
  const firedAt = s.state.startsWith('x') ? new Date(Number(s.state.slice(1))) : undefined;
  return { timeoutMs: 0, triggerAt: undefined, firedAt, now };
}

/** What the firing of a switch needs of the queue. */
export interface SwitchQueue {
  readonly cancelAfter: CancelAfterSwitches;
  /**
   * False from a reconnect until this gateway takes arms again (after a Redis restart, once what
   * Redis lost is written back): no sweep meanwhile, which would end an outage no client could
   * yet answer.
   */
  takingArms(): boolean;
  cancelAll(
    mass: { id: string; userId: string; ownerNo: number; at: Date },
    deadlineMs: number,
  ): Promise<MassCancelResult>;
}

/**
 * Fires a switch that ran out: queues its mass cancel (once per shard however often it is fired),
 * then marks it fired. `marked`: when; false when it had changed since (see `fired`); undefined
 * when the mark failed (claimed again after its lease, it is found queued and marked then).
 */
export async function fireSwitch(
  queue: SwitchQueue,
  s: CancelAfterSwitch,
  at: Date,
  deadlineMs: number,
): Promise<{ kind: MassCancelResult['kind']; marked?: Date | false | undefined }> {
  let result: MassCancelResult;
  try {
    result = await queue.cancelAll(
      { id: s.fireId, userId: s.userId, ownerNo: s.ownerNo, at },
      deadlineMs,
    );
  } catch (err) {
    firedTotal.inc({ outcome: 'failed' });
    throw err;
  }
  if (result.kind !== 'queued') {
    firedTotal.inc({ outcome: 'not_queued' });
    return { kind: result.kind };
  }
  firedTotal.inc({ outcome: 'queued' });
  const marked = await queue.cancelAfter.fired(s).then(
    (at) => at ?? false,
    () => undefined,
  );
  return { kind: 'queued', marked };
}

/**
 * Fires the switches that ran out, every SWEEP_MS: the mass cancel of each is queued, then the
 * switch is marked fired. One that cannot be queued is claimed again, here or by another gateway,
 * once its lease runs out.
 */
export class CancelAfterSweeper {
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  /** Switches being fired: a slow one holds neither the next sweep nor the others. */
  private readonly firing = new Set<Promise<void>>();
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

  /** Stops sweeping; the switches being fired are fired first (or left to their leases). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.sweeping;
    await Promise.all([...this.firing]);
  }

  private async sweep(): Promise<void> {
    if (!this.queue.takingArms()) return;
    let claimed: Awaited<ReturnType<CancelAfterSwitches['due']>>;
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
    if (claimed.outage) {
      // Every start is one too (no sweep since the last stop): said, not warned of.
      this.logger.info(
        'cancel-all-after: sweeping again after an outage (no sweep for a while, or Redis restarted): every switch that had not run out by then counts down again from now',
      );
    }
    for (const s of claimed.due) {
      const done: Promise<void> = this.fire(s, claimed.now).finally(() => this.firing.delete(done));
      this.firing.add(done);
    }
  }

  private async fire(s: CancelAfterSwitch, claimedAt: Date): Promise<void> {
    const fields = {
      user_id: s.userId,
      request_id: s.fireId,
      trigger_at: new Date(Number(s.state)).toISOString(),
    };
    try {
      const out = await fireSwitch(
        this.queue,
        s,
        claimedAt,
        claimedAt.getTime() + FIRE_DEADLINE_MS,
      );
      if (out.kind !== 'queued') {
        this.logger.error(
          { ...fields, outcome: out.kind },
          `cancel-all-after ran out, but its mass cancel was not queued; tried again in ${LEASE_MS / 1000} s`,
        );
        return;
      }
      this.logger.warn(fields, 'cancel-all-after ran out: the user’s open orders are canceled');
      if (out.marked === false) {
        this.logger.info(
          fields,
          'cancel-all-after: the switch changed since it was claimed (marked by another gateway, or counting down again after an outage)',
        );
      } else if (out.marked === undefined) {
        this.logger.warn(fields, 'cancel-all-after: could not mark the switch fired');
      }
    } catch (err) {
      this.logger.error(
        { ...fields, err },
        `cancel-all-after ran out, but its mass cancel failed; tried again in ${LEASE_MS / 1000} s`,
      );
    }
  }
}
