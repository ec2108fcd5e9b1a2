// The orders this gateway answered 201 in the last few seconds, kept to queue them again if Redis
// restarts without them. With `appendfsync everysec`, Redis answers a script before its AOF write
// whenever a background fsync is still running (it postpones the write for up to 2 s), so a
// kill -9 in that moment loses orders that were already accepted; a failover to a replica loses
// what had not been replicated. Both come back as a Redis with a new run_id: the orders accepted
// shortly before the connection broke are sent again through the submit script, which queues an
// order only if Redis does not hold it, so those that survived are left alone.
import type { Redis } from 'ioredis';
import type { OrderState } from './records.js';

/** Redis's everysec policy may leave up to 2 s unwritten; the margin covers the fsync interval. */
export const REQUEUE_WINDOW_MS = 3_000;
const RETRY_MS = 100;
/** Past this, an order that could not be queued again is reported as failed, never dropped quietly. */
const GIVE_UP_MS = 60_000;

/** What sending an order again came to. */
export type Resubmitted =
  /** Redis had it (it survived the restart): nothing written. */
  | 'present'
  /** Redis had lost it: queued again. */
  | 'requeued'
  /** Its client_order_id now names another order (the client re-sent it after the restart). */
  | 'superseded'
  /** Not now (overloaded, past the deadline, unreachable): try again. */
  | 'retry';

export interface RequeueReport {
  /** Queued again (or, after a lost reply to the re-send, perhaps found there). */
  requeued: string[];
  present: number;
  superseded: string[];
  /** Orders that could not be queued again within a minute, or when the client was closed. */
  failed: string[];
}

/** Milliseconds on a clock that never steps back. */
const clock = (): number => performance.now();

export class RecentAccepts {
  private orders: { order: OrderState; at: number }[] = [];
  private runId: string | undefined;
  /** When the connection broke (clock()); 0 while connected and checked. */
  private closedAt = 0;
  private ended = false;
  /** The checks and replays after each reconnect, one after another. */
  private work: Promise<void> = Promise.resolve();

  constructor(
    private readonly redis: Redis,
    private readonly resubmit: (order: OrderState) => Promise<Resubmitted>,
    private readonly onReport: (report: RequeueReport) => void,
    private readonly windowMs = REQUEUE_WINDOW_MS,
  ) {
    redis.on('ready', () => this.queue(() => this.connected()));
    redis.on('close', () => {
      if (this.closedAt === 0) this.closedAt = clock();
    });
    // disconnect(): no reconnect will come; a replay in progress stops.
    redis.on('end', () => (this.ended = true));
    if (redis.status === 'ready') this.queue(() => this.connected());
  }

  /** Records an order just accepted (201), or just queued again. */
  add(order: OrderState): void {
    const now = clock();
    this.orders.push({ order, at: now });
    // Oldest first: drop what fell out of the window (in chunks, not one shift per order). Not
    // between a break and its check: replies to commands re-sent on the new connection arrive
    // before the check, and the window is counted back from the break.
    if (this.closedAt === 0 && (this.orders[0]?.at ?? now) < now - 2 * this.windowMs) {
      this.orders = this.orders.filter((e) => e.at >= now - this.windowMs);
    }
  }

  /** Resolves when the checks and replays started so far are over. */
  async settled(): Promise<void> {
    await this.work;
  }

  private queue(task: () => Promise<void>): void {
    this.work = this.work.then(task).catch(() => undefined); // task() reports its own failures
  }

  private async connected(): Promise<void> {
    let runId: string | undefined;
    try {
      runId = /run_id:(\w+)/.exec(await this.redis.info('server'))?.[1];
    } catch {
      return; // the connection broke again: the next 'ready' asks again
    }
    const restarted = this.runId !== undefined && runId !== undefined && runId !== this.runId;
    if (runId !== undefined) this.runId = runId;
    const since = this.closedAt - this.windowMs;
    this.closedAt = 0;
    if (!restarted) return;
    // Once each (an order re-sent by its client, or re-queued before, is in the list twice).
    const due = new Map<string, OrderState>();
    for (const e of this.orders)
      if (e.at >= since && !due.has(e.order.id)) due.set(e.order.id, e.order);
    if (due.size > 0) await this.replay([...due.values()]);
  }

  private async replay(due: OrderState[]): Promise<void> {
    const report: RequeueReport = { requeued: [], present: 0, superseded: [], failed: [] };
    const giveUp = clock() + GIVE_UP_MS;
    // In the order they were accepted, one at a time: the stream keeps their relative order.
    for (const order of due) {
      let resent = false;
      for (;;) {
        const r = await this.resubmit(order).catch((): Resubmitted => {
          resent = true; // the script may have run: a later "present" may be this send's doing
          return 'retry';
        });
        if (r === 'requeued' || (r === 'present' && resent)) {
          report.requeued.push(order.id);
          // Its new writes wait on the same fsync as any other: a second restart soon after
          // must find it in the window again.
          this.add(order);
        } else if (r === 'present') report.present += 1;
        else if (r === 'superseded') report.superseded.push(order.id);
        else if (clock() < giveUp && !this.ended) {
          await new Promise((res) => setTimeout(res, RETRY_MS).unref());
          continue;
        } else report.failed.push(order.id);
        break;
      }
    }
    try {
      this.onReport(report);
    } catch {
      // The report is the caller's to make; its failure must not stop the next replay.
    }
  }
}
