// The gateway's side of the Redis queue: accept, cancel and amend each in one round trip (a Lua
// script per operation), and read the status cache. It knows keys and records, nothing of HTTP.
import type { Redis } from 'ioredis';
import { CancelAfterSwitches, FIRE_DEADLINE_MS, fireSwitch } from './cancel-after.js';
import type { CancelAfterState, CancelAfterSwitch } from './cancel-after.js';
import { setHalt } from './halts.js';
import { haltedKey, layoutKey, ShardPlacement, shardKeys, STATUS_HASH_MAX_VALUE } from './keys.js';
import { keyCount, lua } from './lua-scripts.js';
import { RecentAccepts } from './recent-accepts.js';
import type { Accepted, FinishedOrders, RequeueReport, Resubmitted } from './recent-accepts.js';
import { WriteCoalescer } from './write-coalescer.js';
import type { ShardKeys } from './keys.js';
import { SIDES } from './records.js';
import type { CommandRecord, Fill, OrderState, SideName, TradeRecord } from './records.js';

const SUBMIT = 'submit-order-7.lua';
const CANCEL = 'cancel-order-3.lua';
const REPLACE = 'replace-order-4.lua';
const SETTLE = 'settle-submit-1.lua';
const CANCEL_ALL = 'cancel-all-4.lua';
/** How long a submit whose reply was lost keeps asking Redis what became of it. */
const SETTLE_FOR_MS = 2_000;
const SETTLE_EVERY_MS = 100;
/** A re-queued order's deadline: as a request's, below the client's 1 s command timeout. */
const REQUEUE_DEADLINE_MS = 750;
/** How long a read or a cancel of an order being queued again waits for it (see missingForNow). */
const REQUEUE_WAIT_MS = 2_000;
/** Longest a submit or /ready waits for the shard layout to be put back from PostgreSQL. */
const RESTORE_WAIT_MS = 1_000;

/**
 * An order accepted here is missing from a Redis that restarted without it, and the re-queue that
 * puts it back is not over: its state is unknown for now (the gateway answers 503).
 */
export class RequeuePendingError extends Error {
  override readonly name = 'RequeuePendingError';
  /** `what`: the order, or the requests, being queued again. */
  constructor(what: string) {
    super(`${what} being queued again after a Redis restart`);
  }
}

type Reply = (string | number)[];
interface ScriptedRedis {
  mbSubmitOrder(...args: (string | number)[]): Promise<Reply>;
  mbCancelOrder(...args: (string | number)[]): Promise<Reply>;
  mbReplaceOrder(...args: (string | number)[]): Promise<Reply>;
  mbSettleSubmit(...args: (string | number)[]): Promise<Reply>;
  mbCancelAll(...args: (string | number)[]): Promise<Reply>;
}

export type SubmitResult =
  | { kind: 'accepted'; seq: number }
  | { kind: 'duplicate'; orderId: string }
  | { kind: 'overloaded'; backlog: number }
  /** Redis ran the script only after the gateway had given up on it: nothing was written. */
  | { kind: 'expired' }
  /**
   * The recorded shard layout is not the one this gateway routes by (SHARDS changed, or is
   * changing: queue/shard-layout.ts): nothing was written.
   */
  | { kind: 'misrouted'; recorded: string }
  /** The user's trading is halted: nothing was written. */
  | { kind: 'halted' }
  /**
   * The reply was lost and Redis could not be asked in time what became of the order: it may
   * have been accepted.
   */
  | { kind: 'unknown' };

export type CancelResult =
  | { kind: 'missing' }
  | { kind: 'foreign' }
  | { kind: 'final'; order: OrderState }
  | { kind: 'queued'; order: OrderState; seq: number };

/** An amend of an order (`PATCH /v1/orders/{id}`), as the gateway accepted it. */
export interface Amend {
  orderId: string;
  userId: string;
  ownerNo: number;
  symbol: string;
  /** The new price and new total quantity, filled included; 0 leaves either as it is. */
  priceTicks: number;
  quantityLots: number;
  at: Date;
  /**
   * Its place among the order's amends, given by Redis once queued (replace-order-4.lua): an
   * amend sent again after a Redis restart is queued with only the fields no later one has set.
   */
  place?: string;
}

export type AmendResult =
  | { kind: 'missing' }
  | { kind: 'foreign' }
  | { kind: 'final'; order: OrderState }
  /** Not a LIMIT GTC order: nothing of it rests to amend. */
  | { kind: 'not-amendable'; order: OrderState }
  /** The new quantity is not above what has filled: nothing would be left open. */
  | { kind: 'filled-past'; order: OrderState }
  | { kind: 'queued'; order: OrderState; seq: number }
  /** The stream is at its high-water mark: nothing written. */
  | { kind: 'overloaded'; backlog: number }
  /** Redis ran the script only after the gateway had given up on it: nothing written. */
  | { kind: 'expired' }
  /** The reply was lost: it may have been queued. */
  | { kind: 'unknown' }
  /** Sent again after a Redis restart: Redis holds it. */
  | { kind: 'present' }
  /** Sent again after a Redis restart: every field it names was set by a later amend since. */
  | { kind: 'superseded' }
  /** The caller's trading is halted: nothing written. */
  | { kind: 'halted' };

/** A mass cancel (`DELETE /v1/orders`), as the gateway accepted it. */
export interface MassCancel {
  /** The request's id (UUIDv7): queued once per shard, even when sent again. */
  id: string;
  userId: string;
  ownerNo: number;
  /** undefined: every symbol, on every shard. */
  symbol?: string;
  /** undefined: both sides. */
  side?: SideName;
  at: Date;
  /** The shards it was queued on, once it is. */
  shards?: number[];
}

export type MassCancelResult =
  | { kind: 'queued' }
  /** Redis ran the script only after the gateway had given up on it: nothing written. */
  | { kind: 'expired' }
  /** The recorded shard layout is not the one this gateway routes by: nothing written. */
  | { kind: 'misrouted'; recorded: string }
  /** A reply was lost, or some shards queued it and others did not. */
  | { kind: 'unknown' };

/** What one shard made of a mass cancel. */
type ShardAnswer =
  | MassCancelResult
  /** This shard had it already (sent again after a restart): nothing written. */
  | { kind: 'present' }
  /** Redis refused the call, or could not be reached: nothing written. */
  | { kind: 'failed'; err: unknown };

/** What arming or disarming a cancel-all-after came to. */
export type CancelAfterSet =
  /** Set; `fired`: the switch it replaced, which had run out, fired first, and when. */
  | { kind: 'set'; state: CancelAfterState; fired?: { switch: CancelAfterSwitch; at: Date } }
  | { kind: 'unavailable' };

export interface OrderQueueOptions {
  prefix: string;
  shards: number;
  /** Symbols placed on a shard of their own choosing (SHARD_PINS); the rest by the hash. */
  pins?: ReadonlyMap<string, number>;
  highWater: number;
  idempotencyTtlS: number;
  /** Recent orders kept per user for listing before PostgreSQL has them. */
  recentPerUser?: number;
  /**
   * Told what became of the orders accepted just before Redis restarted and queued again (see
   * recent-accepts.ts). Without it nothing is kept and nothing is queued again.
   */
  onRequeue?: (report: RequeueReport) => void;
  /** How far back from a broken connection accepted orders are sent again; default 3 s. */
  requeueWindowMs?: number;
  /**
   * Where the re-queue asks which orders are final, and after how long Redis lets them expire
   * (STATUS_TTL_S after PostgreSQL has them): after an outage about that long, Redis no longer
   * holds them, and the submit script alone would queue them again.
   */
  finished?: FinishedOrders;
  /**
   * Puts the shard layout back in Redis when it has none (queue/shard-layout.ts): a submit refused
   * for that is sent once more after it. Without it such a submit is refused.
   */
  restoreLayout?: () => Promise<unknown>;
  /**
   * Puts back the halted users a Redis restart may have lost (src/queue/halts.ts
   * restoreHalts), before any new order or amend is taken on the new connection.
   */
  restoreHalts?: () => Promise<unknown>;
  /** No cancel-all-after sweep for longer than this is an outage; default OUTAGE_MS (tests). */
  switchOutageMs?: number;
}

/** Parses a status-cache entry: the JSON plus the sequence kept beside it. */
function cached(json: string | null, seq: string | null): OrderState | undefined {
  if (json === null) return undefined;
  const order = JSON.parse(json) as OrderState;
  if (seq !== null) order.seq = Number(seq);
  return order;
}

export class OrderQueue {
  readonly shards: ShardKeys[];
  private readonly redis: Redis & ScriptedRedis;
  private readonly recentPerUser: number;
  private readonly writes: WriteCoalescer;
  private readonly recentAccepts: RecentAccepts | undefined;
  /** Where each symbol's book is: the shard layout this gateway routes by (queue/shard-layout.ts). */
  readonly placement: ShardPlacement;
  readonly layout: string;
  private readonly layoutKey: string;
  private readonly haltedKey: string;
  /** The shard layout being put back in Redis, when it is (see `send`). */
  private restoring: Promise<unknown> | undefined;
  /** Each user's cancel-all-after (src/queue/cancel-after.ts). */
  readonly cancelAfter: CancelAfterSwitches;

  constructor(
    redis: Redis,
    private readonly options: OrderQueueOptions,
  ) {
    this.shards = Array.from({ length: options.shards }, (_, n) => shardKeys(options.prefix, n));
    this.recentPerUser = options.recentPerUser ?? 1000;
    this.placement = new ShardPlacement(options.shards, options.pins);
    this.layout = this.placement.layout;
    this.layoutKey = layoutKey(options.prefix);
    this.haltedKey = haltedKey(options.prefix);
    redis.defineCommand('mbSubmitOrder', {
      numberOfKeys: keyCount(SUBMIT),
      lua: lua(SUBMIT),
    });
    redis.defineCommand('mbCancelOrder', {
      numberOfKeys: keyCount(CANCEL),
      lua: lua(CANCEL),
    });
    redis.defineCommand('mbReplaceOrder', {
      numberOfKeys: keyCount(REPLACE),
      lua: lua(REPLACE),
    });
    redis.defineCommand('mbSettleSubmit', {
      numberOfKeys: keyCount(SETTLE),
      lua: lua(SETTLE),
    });
    redis.defineCommand('mbCancelAll', {
      numberOfKeys: keyCount(CANCEL_ALL),
      lua: lua(CANCEL_ALL),
    });
    this.redis = redis as Redis & ScriptedRedis;
    this.cancelAfter = new CancelAfterSwitches(redis, options.prefix, options.switchOutageMs);
    this.writes = new WriteCoalescer(redis);
    const onRequeue = options.onRequeue;
    this.recentAccepts =
      onRequeue === undefined
        ? undefined
        : new RecentAccepts(
            redis,
            (what) => this.resubmit(what),
            onRequeue,
            options.requeueWindowMs,
            options.finished,
            options.restoreHalts,
          );
  }

  /** Resolves once the check after the last reconnect, and any re-queue it started, is over. */
  async requeued(): Promise<void> {
    await this.recentAccepts?.settled();
  }

  /** The index of the shard that owns `symbol`. */
  shardIndex(symbol: string): number {
    return this.placement.of(symbol);
  }

  /** The keys of the shard that owns `symbol`. */
  shardFor(symbol: string): ShardKeys {
    return this.shards[this.shardIndex(symbol)] as ShardKeys;
  }

  /**
   * Queues an accepted order: one EVALSHA. `deadlineMs` (epoch ms) must fall before the client
   * connection's command timeout, so that a script Redis runs late is refused, never half-known.
   * When the reply is lost (the connection broke with the script sent, or the command timed out)
   * the order may or may not be in the stream: Redis is asked until it can say (see `settle`).
   */
  async submit(order: OrderState, deadlineMs: number): Promise<SubmitResult> {
    const recent = this.recentAccepts;
    if (recent !== undefined) {
      await this.haltsBack(recent);
      // A mass cancel of the user's accepted here just before Redis restarted may be about to be
      // sent again: this order, accepted after it, waits for that, so as not to be canceled by it.
      if (recent.holdsMassCancelOf(order.user_id)) {
        await this.requeueOver(recent, `a mass cancel before order ${order.id} is`);
      }
    }
    const k = this.shardFor(order.symbol);
    let reply: Reply;
    try {
      reply = await this.send(k, order, deadlineMs, true);
    } catch (err) {
      if (!replyLost(err)) throw err;
      const settled = await this.settle(k, order.id, deadlineMs);
      if (settled.kind === 'accepted') this.recentAccepts?.add({ kind: 'order', order });
      return settled;
    }
    const code = Number(reply[0]);
    if (code === 1) {
      this.recentAccepts?.add({ kind: 'order', order });
      return { kind: 'accepted', seq: Number(reply[1]) };
    }
    if (code === 2) return { kind: 'duplicate', orderId: String(reply[1]) };
    if (code === 3) return { kind: 'overloaded', backlog: Number(reply[1]) };
    if (code === 5) return { kind: 'misrouted', recorded: String(reply[1]) };
    if (code === 6) return { kind: 'halted' };
    return { kind: 'expired' };
  }

  /**
   * Sends an accepted order again after a Redis restart (queued only if Redis lost it), an
   * accepted cancel (queued again if the order is still open: a second cancel changes nothing), or
   * an accepted amend (queued with the fields no amend queued since has set).
   */
  private async resubmit(what: Accepted): Promise<Resubmitted> {
    if (what.kind === 'cancel') {
      const c = await this.cancelOnce(what.orderId, what.userId, what.ownerNo, what.at);
      return c.kind === 'queued' ? 'requeued' : c.kind === 'final' ? 'present' : 'missing';
    }
    if (what.kind === 'cancel_all') return this.resendCancelAll(what.mass);
    if (what.kind === 'cancel_after') {
      return (await this.cancelAfter.resend(what.set)) ? 'requeued' : 'present';
    }
    if (what.kind === 'replace') {
      const r = await this.replaceOnce(what.amend, Date.now() + REQUEUE_DEADLINE_MS);
      if (r.kind === 'queued') return 'requeued';
      if (r.kind === 'missing') return 'missing';
      if (r.kind === 'superseded') return 'superseded';
      if (r.kind === 'expired' || r.kind === 'overloaded') return 'retry';
      // Already there, or nothing to do: the order is final now, or the quantity is filled past.
      return 'present';
    }
    const order = what.order;
    const reply = await this.send(
      this.shardFor(order.symbol),
      order,
      Date.now() + REQUEUE_DEADLINE_MS,
      false,
    );
    const code = Number(reply[0]);
    if (code === 1) return reply[2] === undefined ? 'requeued' : 'present';
    if (code === 2) return String(reply[1]) === order.id ? 'present' : 'superseded';
    return 'retry';
  }

  /** `sendOnce`, and once more after putting back a shard layout Redis had lost. */
  private send(
    k: ShardKeys,
    order: OrderState,
    deadlineMs: number,
    fresh: boolean,
  ): Promise<Reply> {
    return this.withLayout(() => this.sendOnce(k, order, deadlineMs, fresh));
  }

  /**
   * A script that checks the shard layout, called once more after putting back a layout Redis
   * had lost (its answer {5, ''}). A failure leaves it missing, and the second call is refused
   * again (503), or past its deadline.
   */
  private async withLayout(call: () => Promise<Reply>): Promise<Reply> {
    const reply = await call();
    if (Number(reply[0]) !== 5 || reply[1] !== '' || this.options.restoreLayout === undefined) {
      return reply;
    }
    await this.restoreLayout();
    return call();
  }

  /**
   * Puts the layout back from PostgreSQL: once at a time for all the callers that found none.
   * A caller waits for it RESTORE_WAIT_MS at most (a PostgreSQL that stopped answering must not
   * hold every submit and every /ready); the attempt itself goes on, and later callers join it.
   */
  private restoreLayout(): Promise<unknown> {
    const restore = this.options.restoreLayout;
    if (restore === undefined) return Promise.resolve();
    this.restoring ??= restore()
      .catch(() => undefined)
      .finally(() => (this.restoring = undefined));
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise((resolve) => (timer = setTimeout(resolve, RESTORE_WAIT_MS)));
    return Promise.race([this.restoring, waited]).finally(() => clearTimeout(timer));
  }

  /**
   * The shard layout Redis records now (or the marker of a change under way), put back from
   * PostgreSQL first when Redis has none, as a submit would: null when there is none to put back.
   * The gateway is ready for orders only while it equals `layout`.
   */
  async recordedLayout(): Promise<string | null> {
    const held = await this.redis.get(this.layoutKey);
    if (held !== null || this.options.restoreLayout === undefined) return held;
    await this.restoreLayout();
    return this.redis.get(this.layoutKey);
  }

  /**
   * `fresh`: a new order, refused while its user's trading is halted; else one sent again after a
   * Redis restart (accepted before any halt that may be put back before it).
   */
  private sendOnce(
    k: ShardKeys,
    order: OrderState,
    deadlineMs: number,
    fresh: boolean,
  ): Promise<Reply> {
    const cid = order.client_order_id;
    return this.writes.send(() =>
      this.redis.mbSubmitOrder(
        k.seq,
        k.orders,
        k.order(order.id),
        // Shard 0's key whatever the order's shard: a client_order_id is the user's, unique
        // across shards (see ShardKeys.idempotency).
        (this.shards[0] as ShardKeys).idempotency(order.user_id, cid ?? ''),
        k.recent(order.user_id),
        this.layoutKey,
        this.haltedKey,
        JSON.stringify(order),
        order.user_id,
        order.id,
        this.options.highWater,
        cid === null ? 0 : this.options.idempotencyTtlS,
        Date.parse(order.created_at),
        this.recentPerUser,
        deadlineMs,
        this.layout,
        fresh ? '1' : '0',
        fresh ? '' : new Date().toISOString(),
      ),
    );
  }

  /**
   * What became of a submit whose reply was lost: asked every 100 ms for up to 2 s, through
   * reconnects (a restarted Redis answers from its AOF). Redis alone decides, by its own clock,
   * when the submit's deadline has passed and the answer is final.
   */
  private async settle(k: ShardKeys, orderId: string, deadlineMs: number): Promise<SubmitResult> {
    const giveUp = Date.now() + SETTLE_FOR_MS;
    for (;;) {
      const reply = await this.redis.mbSettleSubmit(k.order(orderId), deadlineMs).catch(() => [0]);
      const code = Number(reply[0]);
      if (code === 1) return { kind: 'accepted', seq: Number(reply[1]) };
      if (code === 2) return { kind: 'expired' };
      if (Date.now() >= giveUp) return { kind: 'unknown' };
      await new Promise((r) => setTimeout(r, SETTLE_EVERY_MS));
    }
  }

  /**
   * After a restart that lost Redis's last writes, an order accepted here moments before is
   * missing until the re-queue puts it back, and a read or a cancel must not be answered "no such
   * order" meanwhile (a cancel refused so would never be queued, and the order would come back
   * open). True when `orderId` is such an order and the re-queue is over: look again. Throws
   * RequeuePendingError when the re-queue takes longer than REQUEUE_WAIT_MS.
   */
  private async missingForNow(orderId: string): Promise<boolean> {
    const recent = this.recentAccepts;
    if (recent === undefined || !recent.holds(orderId)) return false;
    await this.requeueOver(recent, `order ${orderId} is`);
    return true;
  }

  /** Until the re-queue is over; RequeuePendingError past REQUEUE_WAIT_MS. */
  /**
   * Just reconnected: the halted users a restart lost are put back before a new order or amend
   * is taken. (Not connected: the command fails at once, as it would have.)
   */
  private async haltsBack(recent: RecentAccepts): Promise<void> {
    if (recent.checking && this.redis.status === 'ready') {
      await this.requeueOver(recent, 'the halted users are', recent.checked());
    }
  }

  private async requeueOver(
    recent: RecentAccepts,
    what: string,
    until: Promise<void> = recent.settled(),
  ): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const over = await Promise.race([
      until.then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), REQUEUE_WAIT_MS))),
    ]);
    clearTimeout(timer);
    if (!over) throw new RequeuePendingError(what);
  }

  /** Queues the cancel of an order if the caller owns it and it is not final. */
  async cancel(orderId: string, userId: string, ownerNo: number, now: Date): Promise<CancelResult> {
    let result = await this.cancelOnce(orderId, userId, ownerNo, now);
    if (result.kind === 'missing' && (await this.missingForNow(orderId))) {
      result = await this.cancelOnce(orderId, userId, ownerNo, now);
    }
    if (result.kind === 'queued') {
      this.recentAccepts?.add({ kind: 'cancel', orderId, userId, ownerNo, at: now });
    }
    return result;
  }

  private async cancelOnce(
    orderId: string,
    userId: string,
    ownerNo: number,
    now: Date,
  ): Promise<CancelResult> {
    for (const k of this.shards) {
      const reply = await this.redis.mbCancelOrder(
        k.seq,
        k.orders,
        k.order(orderId),
        userId,
        ownerNo,
        orderId,
        now.toISOString(),
      );
      const code = Number(reply[0]);
      if (code === 0) continue;
      if (code === 4) return { kind: 'foreign' };
      const order = JSON.parse(String(reply[1])) as OrderState;
      if (code === 5) return { kind: 'final', order };
      return { kind: 'queued', order, seq: Number(reply[2]) };
    }
    return { kind: 'missing' };
  }

  /**
   * Queues a mass cancel of the caller's orders: on the shard of its symbol, or on every shard.
   * Each engine cancels the orders it holds live when it comes to the entry, so every order
   * accepted before it is canceled unless it is final by then; none accepted after it is.
   */
  async cancelAll(mass: MassCancel, deadlineMs: number): Promise<MassCancelResult> {
    // After a Redis restart, what this gateway accepted before it is queued again first: the
    // mass cancel follows the orders it must cancel.
    const recent = this.recentAccepts;
    if (recent !== undefined)
      await this.requeueOver(recent, 'orders accepted before the mass cancel are');
    const shards =
      mass.symbol === undefined ? this.shards.map((_, n) => n) : [this.shardIndex(mass.symbol)];
    // All at once, under one deadline.
    const answers = await Promise.all(
      shards.map((n) =>
        this.cancelAllOn(n, mass, deadlineMs).catch((err: unknown): ShardAnswer =>
          replyLost(err) ? { kind: 'unknown' } : { kind: 'failed', err },
        ),
      ),
    );
    // A shard that has it already (a cancel-all-after fired twice) counts as queued.
    const queued = shards.filter((_, i) => {
      const kind = answers[i]?.kind;
      return kind === 'queued' || kind === 'present';
    });
    // Only where it was queued: sent again after a restart, it must go nowhere it was refused.
    if (queued.length > 0) recent?.add({ kind: 'cancel_all', mass: { ...mass, shards: queued } });
    if (queued.length === shards.length) return { kind: 'queued' };
    if (queued.length > 0 || answers.some((a) => a.kind === 'unknown')) return { kind: 'unknown' };
    // Nothing written anywhere.
    for (const a of answers) if (a.kind === 'failed') throw a.err;
    return answers.find((a) => a.kind === 'misrouted') ?? { kind: 'expired' };
  }

  /** Queues the mass cancel on shard `n`: 'present' when that shard has it already. */
  private async cancelAllOn(n: number, mass: MassCancel, deadlineMs: number): Promise<ShardAnswer> {
    const k = this.shards[n] as ShardKeys;
    const entry = (side: SideName): string =>
      mass.side !== undefined && mass.side !== side
        ? ''
        : JSON.stringify({
            k: 'cancel_all',
            id: mass.id,
            user_id: mass.userId,
            owner_no: mass.ownerNo,
            symbol: mass.symbol ?? null,
            side,
            requested_at: mass.at.toISOString(),
          } satisfies CommandRecord);
    const [buy, sell] = SIDES.map(entry);
    const call = (): Promise<Reply> =>
      this.redis.mbCancelAll(
        k.seq,
        k.orders,
        k.massCancel(mass.id),
        this.layoutKey,
        buy as string,
        sell as string,
        this.options.idempotencyTtlS,
        deadlineMs,
        this.layout,
      );
    const reply = await this.withLayout(call);
    const code = Number(reply[0]);
    if (code === 1) return { kind: 'queued' };
    if (code === 2) return { kind: 'present' };
    if (code === 4) return { kind: 'expired' };
    return { kind: 'misrouted', recorded: String(reply[1]) };
  }

  /** A mass cancel accepted here, sent again after a Redis restart to the shards it was queued on. */
  private async resendCancelAll(mass: MassCancel): Promise<Resubmitted> {
    const deadline = Date.now() + REQUEUE_DEADLINE_MS;
    const answers = await Promise.all(
      (mass.shards ?? []).map((n) => this.cancelAllOn(n, mass, deadline)),
    );
    // A shard that took it now counts as a re-queue; one that refused it is tried again (the
    // whole, the shards that have it answering 'present').
    if (answers.some((a) => a.kind !== 'queued' && a.kind !== 'present')) return 'retry';
    return answers.some((a) => a.kind === 'queued') ? 'requeued' : 'present';
  }

  /**
   * Queues an amend of an order if the caller owns it, it is not final, it is a LIMIT GTC order,
   * and the new quantity is above its filled quantity (each checked in the script, with the
   * order as it is then).
   */
  async replace(amend: Amend, deadlineMs: number): Promise<AmendResult> {
    // An amend of this order accepted here just before Redis restarted may be about to be sent
    // again: this one waits for it, so as to be queued after it (a re-sent amend is queued only
    // with the fields no amend queued since has set).
    const recent = this.recentAccepts;
    if (recent !== undefined) await this.haltsBack(recent);
    if (recent?.holdsAmendOf(amend.orderId) === true)
      await this.requeueOver(recent, `order ${amend.orderId} is`);
    let result: AmendResult;
    try {
      result = await this.replaceOnce(amend, deadlineMs);
      if (result.kind === 'missing' && (await this.missingForNow(amend.orderId))) {
        result = await this.replaceOnce(amend, deadlineMs);
      }
    } catch (err) {
      // The script may have run: only the order, read later, can say.
      if (replyLost(err)) return { kind: 'unknown' };
      throw err;
    }
    if (result.kind === 'queued') recent?.add({ kind: 'replace', amend });
    return result;
  }

  /** Sends the amend (again, when `amend.place` is set); a queued amend is given its place. */
  private async replaceOnce(amend: Amend, deadlineMs: number): Promise<AmendResult> {
    // All but the numbers, which the script adds: see replace-order-4.lua.
    const record: Omit<
      Extract<CommandRecord, { k: 'replace' }>,
      'target_seq' | 'price_ticks' | 'quantity_lots'
    > = {
      k: 'replace',
      order_id: amend.orderId,
      user_id: amend.userId,
      owner_no: amend.ownerNo,
      symbol: amend.symbol,
      requested_at: amend.at.toISOString(),
    };
    const json = JSON.stringify(record);
    for (const k of this.shards) {
      const reply = await this.redis.mbReplaceOrder(
        k.seq,
        k.orders,
        k.order(amend.orderId),
        this.haltedKey,
        amend.userId,
        json,
        String(amend.priceTicks),
        String(amend.quantityLots),
        amend.place ?? '',
        this.options.highWater,
        deadlineMs,
      );
      const code = Number(reply[0]);
      if (code === 0) continue;
      if (code === 4) return { kind: 'foreign' };
      if (code === 8) return { kind: 'present' };
      if (code === 9) return { kind: 'superseded' };
      if (code === 10) return { kind: 'expired' };
      if (code === 11) return { kind: 'overloaded', backlog: Number(reply[1]) };
      if (code === 12) return { kind: 'halted' };
      const order = JSON.parse(String(reply[1])) as OrderState;
      if (code === 5) return { kind: 'final', order };
      if (code === 6) return { kind: 'not-amendable', order };
      if (code === 7) return { kind: 'filled-past', order };
      amend.place = String(reply[3]);
      return { kind: 'queued', order, seq: Number(reply[2]) };
    }
    return { kind: 'missing' };
  }

  /**
   * Halts (`halted`) or resumes the trading of a user: new orders and amends of theirs are then
   * refused, or taken again. The caller has recorded it in PostgreSQL first.
   */
  async setHalted(userId: string, halted: boolean): Promise<void> {
    await setHalt(this.redis, this.options.prefix, userId, halted);
  }

  /**
   * Arms the user's cancel-all-after to run out `timeoutMs` from now (Redis's clock), or disarms
   * it (0); kept here to be written again should Redis restart without it. A switch it would
   * replace that has run out is fired first (`fired`): its cancel then takes every order accepted
   * before this request, and none sent after its answer. 'unavailable' when that cancel could not
   * be queued: nothing was set.
   */
  async setCancelAfter(
    userId: string,
    ownerNo: number,
    timeoutMs: number,
  ): Promise<CancelAfterSet> {
    // Just reconnected to a restarted Redis: the switches taken here before it are written again
    // first (see RecentAccepts), so that none of them overwrites this one.
    const recent = this.recentAccepts;
    if (recent !== undefined) await this.haltsBack(recent);
    let fired: { switch: CancelAfterSwitch; at: Date } | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      const r = await this.cancelAfter.set(userId, ownerNo, timeoutMs);
      if (r.kind === 'set') {
        recent?.add({ kind: 'cancel_after', set: r.set });
        return { kind: 'set', state: r.state, ...(fired === undefined ? {} : { fired }) };
      }
      const at = new Date();
      const out = await fireSwitch(this, r.held, at, Date.now() + FIRE_DEADLINE_MS);
      if (out.kind !== 'queued') return { kind: 'unavailable' };
      fired = { switch: r.held, at: out.marked instanceof Date ? out.marked : at };
    }
    return { kind: 'unavailable' };
  }

  /** See SwitchQueue.takingArms (src/queue/cancel-after.ts). */
  takingArms(): boolean {
    return this.recentAccepts?.checking !== true;
  }

  /** The order as the status cache holds it, from whichever shard has it. */
  async getOrder(orderId: string): Promise<OrderState | undefined> {
    const order = await this.getOrderOnce(orderId);
    if (order !== undefined || !(await this.missingForNow(orderId))) return order;
    return this.getOrderOnce(orderId);
  }

  private async getOrderOnce(orderId: string): Promise<OrderState | undefined> {
    for (const k of this.shards) {
      const [json, seq] = await this.redis.hmget(k.order(orderId), 'j', 'q');
      const order = cached(json ?? null, seq ?? null);
      if (order) return order;
    }
    return undefined;
  }

  /** Fills of a cached order, oldest first; undefined when the order is not in the cache. */
  async fills(orderId: string): Promise<Fill[] | undefined> {
    for (const k of this.shards) {
      const [[, exists], [, list]] = (await this.redis
        .multi()
        .exists(k.order(orderId))
        .lrange(k.fills(orderId), 0, -1)
        .exec()) as [[null, number], [null, string[]]];
      if (exists === 1) return list.map((f) => JSON.parse(f) as Fill);
    }
    return undefined;
  }

  /** A user's most recent orders in the cache, newest first. */
  async recentOrders(userId: string, limit: number): Promise<OrderState[]> {
    const out: OrderState[] = [];
    for (const k of this.shards) {
      const ids = await this.redis.zrevrange(k.recent(userId), 0, limit - 1);
      if (ids.length === 0) continue;
      const pipeline = this.redis.pipeline();
      for (const id of ids) pipeline.hmget(k.order(id), 'j', 'q');
      for (const [err, row] of (await pipeline.exec()) ?? []) {
        if (err) throw err;
        const [json, seq] = row as [string | null, string | null];
        const order = cached(json, seq);
        if (order) out.push(order);
      }
    }
    return out;
  }

  /** A symbol's most recent trades in the cache, newest first. */
  async recentTrades(symbol: string, limit: number): Promise<TradeRecord[]> {
    const list = await this.redis.lrange(this.shardFor(symbol).trades(symbol), 0, limit - 1);
    return list.map((t) => JSON.parse(t) as TradeRecord);
  }

  /**
   * Refuses a Redis that could lose accepted orders: an evicted stream entry is a lost order, and
   * without the append-only file a restart loses everything.
   */
  async checkDurability(): Promise<void> {
    const [, policy] = (await this.redis.config('GET', 'maxmemory-policy')) as [string, string];
    if (policy !== 'noeviction') {
      throw new Error(
        `Redis maxmemory-policy is ${policy}: it may evict queued orders. Set it to noeviction ` +
          '(CONFIG SET maxmemory-policy noeviction, and in redis.conf).',
      );
    }
    const [, aof] = (await this.redis.config('GET', 'appendonly')) as [string, string];
    if (aof !== 'yes') {
      throw new Error(
        'Redis runs without its append-only file: a restart would lose queued orders. ' +
          'Set appendonly yes (CONFIG SET appendonly yes, and in redis.conf).',
      );
    }
  }

  /**
   * What a Redis that loses nothing could still do better, to log: a status hash kept as a hash
   * table rather than a listpack costs a fifth more memory per cached order. Undefined when
   * nothing (or a Redis too old to name the setting so).
   */
  async advice(): Promise<string | undefined> {
    const [, value] = (await this.redis.config('GET', 'hash-max-listpack-value')) as string[];
    if (value === undefined || Number(value) >= STATUS_HASH_MAX_VALUE) return undefined;
    return (
      `Redis hash-max-listpack-value is ${value}: each cached order's status hash is a hash ` +
      `table, about a fifth more memory. Set it to ${STATUS_HASH_MAX_VALUE} ` +
      `(CONFIG SET hash-max-listpack-value ${STATUS_HASH_MAX_VALUE}, and in redis.conf; it ` +
      'applies to every hash in that Redis).'
    );
  }
}

/**
 * True when a command may have reached Redis without its reply reaching us: any failure but an
 * error reply from Redis itself, or a refusal to send while disconnected.
 */
function replyLost(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'ReplyError') return false;
  return !/Stream isn't writeable/.test(err.message);
}
