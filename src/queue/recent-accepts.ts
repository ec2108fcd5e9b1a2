// The orders this gateway answered 201 in the last few seconds, kept to queue them again if Redis
// restarts without them. With `appendfsync everysec`, Redis answers a script before its AOF write
// whenever a background fsync is still running (it postpones the write for up to 2 s), so a kill -9
// in that moment loses orders (cancels, amends) that were already accepted; so does a failover to a
// replica that was behind by less than the window. Both come back as a Redis with a new run_id:
// what was accepted shortly before the connection broke is sent again, in the order it was accepted
// — orders through the submit script, which queues an order only if Redis does not hold it, cancels
// through the cancel script (a second cancel of an order changes nothing), and amends through the
// amend script, with only the fields no amend queued since has set. A final order leaves Redis
// STATUS_TTL_S after the writer committed it, so after an outage about that long PostgreSQL is
// asked first: an order it holds final is done, and not sent again.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { probeValue } from '../infra/probe-value.js';
import { runIdOf } from './aof.js';
import type { CancelAfterSwitch } from './cancel-after.js';
import type { Amend, MassCancel } from './order-queue.js';
import type { OrderState } from './records.js';

/**
 * What was accepted: an order (201), the cancel or an amend of one, a mass cancel (202), or a
 * cancel-all-after armed or disarmed (200).
 */
export type Accepted =
  | { kind: 'order'; order: OrderState }
  | { kind: 'cancel'; orderId: string; userId: string; ownerNo: number; at: Date }
  | { kind: 'replace'; amend: Amend }
  | { kind: 'cancel_all'; mass: MassCancel }
  | { kind: 'cancel_after'; set: CancelAfterSwitch };

function keyOf(a: Accepted): string {
  switch (a.kind) {
    case 'order':
      return a.order.id;
    case 'cancel':
      return `cancel:${a.orderId}`;
    case 'replace':
      return `replace:${a.amend.orderId}:${a.amend.place}`;
    case 'cancel_all':
      return `cancel_all:${a.mass.id}`;
    case 'cancel_after':
      // Only the last of a user's is sent again.
      return `cancel_after:${a.set.userId}`;
  }
}

/** The order's id; a mass cancel's own; a cancel-all-after's user's. */
function idOf(a: Accepted): string {
  switch (a.kind) {
    case 'order':
      return a.order.id;
    case 'cancel':
      return a.orderId;
    case 'replace':
      return a.amend.orderId;
    case 'cancel_all':
      return a.mass.id;
    case 'cancel_after':
      return a.set.userId;
  }
}

/** Redis's everysec policy may leave up to 2 s unwritten; the margin covers the fsync interval. */
export const REQUEUE_WINDOW_MS = 3_000;
const RETRY_MS = 100;
/** Past this, an order that could not be queued again is reported as failed, never dropped quietly. */
const GIVE_UP_MS = 60_000;
/** How long the replay waits for PostgreSQL to say which orders are finished. */
const ASK_PG_FOR_MS = 5_000;
/** Room for Redis's clock (TTLs) against this process's, in deciding whether to ask. */
const CLOCK_MARGIN_MS = 5_000;

/** Where to ask which orders are final, and how long after that Redis lets them expire. */
export interface FinishedOrders {
  orders: (orderIds: string[]) => Promise<Set<string>>;
  expireAfterMs: number;
}

/** What sending an order again came to. */
export type Resubmitted =
  /** Redis had it (it survived the restart): nothing written. */
  | 'present'
  /** Redis had lost it: queued again (a cancel: queued, whether or not it had been lost). */
  | 'requeued'
  /**
   * Its client_order_id now names another order (the client re-sent it after the restart); an
   * amend: every field it names was set by a later amend since.
   */
  | 'superseded'
  /**
   * A cancel or an amend whose order Redis does not hold: sent again for up to a minute (another
   * gateway may yet send the order again), then reported as failed.
   */
  | 'missing'
  /** Not now (overloaded, past the deadline, unreachable): try again. */
  | 'retry';

export interface RequeueReport {
  /** Queued again (or, after a lost reply to the re-send, perhaps found there). */
  requeued: string[];
  /** Order ids whose cancel was sent again and queued (the order was still open). */
  cancels: string[];
  /**
   * Order ids whose amend was queued again (Redis had lost it), with the fields no later amend of
   * the order had set.
   */
  replaces: string[];
  /** Mass cancels (by their request's id) queued again on a shard that had lost them. */
  massCancels: string[];
  /** Users whose cancel-all-after (armed or disarmed) was written again. */
  cancelAfters: string[];
  present: number;
  /** Orders not in Redis but final in PostgreSQL (expired during the outage): not sent again. */
  finished: string[];
  /**
   * Orders sent again with Redis alone deciding, because the outage was long enough for some to
   * have expired and PostgreSQL did not answer within ASK_PG_FOR_MS.
   */
  unchecked: number;
  /** Orders whose client_order_id names another now; amends (by order id) later ones replaced. */
  superseded: string[];
  /**
   * Orders (or cancels and amends, by order id) that could not be queued again within a minute,
   * when the client was closed, or whose order was gone.
   */
  failed: string[];
}

/** Milliseconds on a clock that never steps back. */
const clock = (): number => performance.now();

export class RecentAccepts {
  private orders: { what: Accepted; at: number }[] = [];
  /** The ids of the orders (not cancels) in `orders`, and of some just pruned from it. */
  private orderIds = new Set<string>();
  /** The same for the orders of the amends in `orders`. */
  private amendedIds = new Set<string>();
  /** The same for the users of the mass cancels in `orders`. */
  private massCancelUsers = new Set<string>();
  private runId: string | undefined;
  /** When the connection broke (clock()); 0 while connected and checked. */
  private closedAt = 0;
  private ended = false;
  /** The checks and replays after each reconnect, one after another. */
  private work: Promise<void> = Promise.resolve();
  /**
   * True from a reconnect until it is known whether Redis restarted and, if it did, `afterRestart`
   * is over: no new order may be taken meanwhile (see `checked`).
   */
  get checking(): boolean {
    return this.endCheck !== undefined;
  }
  private check: Promise<void> = Promise.resolve();
  private endCheck: (() => void) | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly resubmit: (what: Accepted) => Promise<Resubmitted>,
    private readonly onReport: (report: RequeueReport) => void,
    private readonly windowMs = REQUEUE_WINDOW_MS,
    private readonly finished?: FinishedOrders,
    /**
     * Run when Redis restarted, before anything is sent again and before a new order is taken:
     * what must be put back first (the halted users). Given ASK_PG_FOR_MS; resolves to anything
     * but undefined once done. Past that time orders are let in all the same.
     */
    private readonly afterRestart?: () => Promise<unknown>,
  ) {
    redis.on('ready', () => this.reconnected());
    redis.on('close', () => {
      if (this.closedAt === 0) this.closedAt = clock();
      // From the break on, a new order waits for the check of the next connection (a command
      // sent the moment the client has reconnected, before 'ready' reaches this, must too).
      this.beginCheck();
    });
    // disconnect(): no reconnect will come; a replay in progress stops.
    redis.on('end', () => (this.ended = true));
    if (redis.status === 'ready') this.reconnected();
  }

  /** Resolves once the check after the last reconnect lets new orders in. */
  checked(): Promise<void> {
    return this.check;
  }

  private reconnected(): void {
    const done = this.beginCheck();
    this.queue(() => this.connected(done).finally(done));
  }

  /** The check under way, or a new one: its end, which lets new orders in. */
  private beginCheck(): () => void {
    if (this.endCheck === undefined) {
      let resolve!: () => void;
      this.check = new Promise<void>((r) => (resolve = r));
      this.endCheck = () => {
        this.endCheck = undefined;
        resolve();
      };
    }
    const end = this.endCheck;
    return () => {
      if (this.endCheck === end) end();
    };
  }

  /** Records an order (201), a cancel or an amend (202) just accepted, or just queued again. */
  add(what: Accepted): void {
    const now = clock();
    this.orders.push({ what, at: now });
    if (what.kind === 'order') this.orderIds.add(what.order.id);
    if (what.kind === 'replace') this.amendedIds.add(what.amend.orderId);
    if (what.kind === 'cancel_all') this.massCancelUsers.add(what.mass.userId);
    // Oldest first: drop what fell out of the window (in chunks, not one shift per order). Not
    // between a break and its check: replies to commands re-sent on the new connection arrive
    // before the check, and the window is counted back from the break.
    if (this.closedAt === 0 && (this.orders[0]?.at ?? now) < now - 2 * this.windowMs) {
      this.orders = this.orders.filter((e) => e.at >= now - this.windowMs);
      this.orderIds = new Set();
      this.amendedIds = new Set();
      this.massCancelUsers = new Set();
      for (const { what: w } of this.orders) {
        if (w.kind === 'order') this.orderIds.add(w.order.id);
        else if (w.kind === 'replace') this.amendedIds.add(w.amend.orderId);
        else if (w.kind === 'cancel_all') this.massCancelUsers.add(w.mass.userId);
      }
    }
  }

  /**
   * Whether the order `orderId` was accepted (or queued again) here within the window: one that
   * Redis lacks may be on its way back, queued again after a restart that lost it.
   */
  holds(orderId: string): boolean {
    return this.orderIds.has(orderId);
  }

  /**
   * Whether an amend of the order `orderId` was accepted here within the window: one Redis lost
   * may be about to be sent again, and an amend made now must be queued after it.
   */
  holdsAmendOf(orderId: string): boolean {
    return this.amendedIds.has(orderId);
  }

  /**
   * Whether a mass cancel of the user `userId` was accepted here within the window: one that Redis
   * lost may be about to be sent again, and an order accepted now must be queued after it.
   */
  holdsMassCancelOf(userId: string): boolean {
    return this.massCancelUsers.has(userId);
  }

  /** Resolves when the checks and replays started so far are over. */
  async settled(): Promise<void> {
    await this.work;
  }

  private queue(task: () => Promise<void>): void {
    this.work = this.work.then(task).catch(() => undefined); // task() reports its own failures
  }

  /** `checked`: called once new orders may be taken. */
  private async connected(checked: () => void): Promise<void> {
    let runId: string;
    try {
      runId = await runIdOf(this.redis);
    } catch {
      return; // the connection broke again: the next 'ready' asks again
    }
    const restarted = this.runId !== undefined && runId !== this.runId;
    const since = this.closedAt - this.windowMs;
    const downMs = this.closedAt === 0 ? 0 : clock() - this.closedAt;
    this.closedAt = 0;
    if (!restarted) {
      this.runId = runId;
      return;
    }
    // Known as this run only once what must be put back is: a connection that breaks before
    // then finds a restart on the next 'ready' again, and puts it back then (sending again what
    // was accepted is safe twice over).
    const put = this.afterRestart;
    const putBack = put === undefined || (await probeValue(put, ASK_PG_FOR_MS)) !== undefined;
    if (putBack) this.runId = runId;
    // Once each (an order re-sent by its client, or re-queued before, is in the list twice); a
    // user's cancel-all-after: the last one taken.
    const due = new Map<string, Accepted>();
    const switches = new Map<string, Accepted>();
    for (const e of this.orders) {
      if (e.at < since) continue;
      const key = keyOf(e.what);
      if (e.what.kind === 'cancel_after') switches.set(key, e.what);
      else if (!due.has(key)) due.set(key, e.what);
    }
    // The switches first, before a new one is taken: they depend on no stream, and an older one
    // Redis kept must not run out (or be set over a new one) while the orders go back.
    const report = emptyReport();
    const giveUp = clock() + ASK_PG_FOR_MS;
    for (const what of switches.values()) await this.sendAgain(what, report, giveUp);
    checked();
    if (due.size > 0) await this.replay([...due.values()], downMs, report);
    else if (switches.size > 0) this.report(report);
  }

  /**
   * The orders among `due` (and those of its cancels) that PostgreSQL holds final, asked for up
   * to ASK_PG_FOR_MS; undefined when it did not answer in that time.
   */
  private async finishedOf(due: Accepted[], ask: FinishedOrders): Promise<Set<string> | undefined> {
    const ids = [...new Set(due.map(idOf))];
    const until = clock() + ASK_PG_FOR_MS;
    for (;;) {
      // A PostgreSQL that takes the query and never answers must not hold the replay.
      const answer = await probeValue(() => ask.orders(ids), until - clock());
      if (answer !== undefined || clock() >= until || this.ended) return answer;
      await sleep(RETRY_MS, undefined, { ref: false });
    }
  }

  private async replay(due: Accepted[], downMs: number, report = emptyReport()): Promise<void> {
    // An order of the window was accepted at most windowMs before the break and committed after
    // that: below this outage, none can have expired, and Redis alone is exact.
    const ask = this.finished;
    let finished = new Set<string>();
    if (ask !== undefined && downMs >= ask.expireAfterMs - this.windowMs - CLOCK_MARGIN_MS) {
      const answer = await this.finishedOf(due, ask);
      if (answer === undefined) report.unchecked = due.filter((w) => w.kind === 'order').length;
      else finished = answer;
    }
    const giveUp = clock() + GIVE_UP_MS;
    const missing: Accepted[] = [];
    // In the order they were accepted, one at a time: the stream keeps their relative order (an
    // order before its cancel).
    for (const what of due) {
      if (what.kind === 'order' && finished.has(what.order.id)) {
        report.finished.push(what.order.id);
        continue;
      }
      if (!(await this.sendAgain(what, report, giveUp))) continue;
      // The cancel (or amend) of an order that has since become final (and expired from Redis).
      if (finished.has(idOf(what))) report.present += 1;
      // Its order may be on its way back through the gateway that took it: tried again below.
      else if (what.kind !== 'order') missing.push(what);
      else report.failed.push(idOf(what));
    }
    this.report(report);
    // Outside the replay (which a read of a lost order waits for), and reported apart.
    if (missing.length > 0) void this.sendMissing(missing, giveUp);
  }

  /**
   * Sends one accepted request again until Redis takes it or has no use for it, recording what
   * became of it in `report`; true when its order is missing from Redis (recorded nowhere).
   */
  private async sendAgain(what: Accepted, report: RequeueReport, giveUp: number): Promise<boolean> {
    let resent = false;
    for (;;) {
      const r = await this.resubmit(what).catch((): Resubmitted => {
        resent = true; // the script may have run: a later "present" may be this send's doing
        return 'retry';
      });
      if (r === 'requeued' || (r === 'present' && resent)) {
        const list = {
          order: report.requeued,
          cancel: report.cancels,
          replace: report.replaces,
          cancel_all: report.massCancels,
          cancel_after: report.cancelAfters,
        };
        list[what.kind].push(idOf(what));
        // Its new writes wait on the same fsync as any other: a second restart soon after must
        // find it in the window again.
        this.add(what);
      } else if (r === 'present') report.present += 1;
      else if (r === 'superseded') report.superseded.push(idOf(what));
      else if (r === 'missing') return true;
      else if (clock() < giveUp && !this.ended) {
        await sleep(RETRY_MS, undefined, { ref: false });
        continue;
      } else report.failed.push(idOf(what));
      return false;
    }
  }

  /**
   * Cancels and amends whose order Redis did not hold when they were sent again: with more than
   * one gateway, the order may be one another gateway accepted and has yet to send again. Each
   * is sent again, in order, every RETRY_MS until its order is there or GIVE_UP_MS from the
   * replay's start, and reported in a report of their own.
   */
  private async sendMissing(missing: Accepted[], giveUp: number): Promise<void> {
    const report = emptyReport();
    let left = missing;
    while (left.length > 0 && clock() < giveUp && !this.ended) {
      await sleep(RETRY_MS, undefined, { ref: false });
      const still: Accepted[] = [];
      for (const what of left) if (await this.sendAgain(what, report, giveUp)) still.push(what);
      left = still;
    }
    for (const what of left) report.failed.push(idOf(what));
    this.report(report);
  }

  private report(report: RequeueReport): void {
    try {
      this.onReport(report);
    } catch {
      // The report is the caller's to make; its failure must not stop the next replay.
    }
  }
}

function emptyReport(): RequeueReport {
  return {
    requeued: [],
    cancels: [],
    replaces: [],
    massCancels: [],
    cancelAfters: [],
    present: 0,
    finished: [],
    unchecked: 0,
    superseded: [],
    failed: [],
  };
}
