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
  requeued: string[];
  present: number;
  superseded: string[];
  /** Orders that could not be queued again within a minute. */
  failed: string[];
}

export class RecentAccepts {
  private orders: { order: OrderState; at: number }[] = [];
  private runId: string | undefined;
  private closedAt = 0;
  private replaying: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly resubmit: (order: OrderState) => Promise<Resubmitted>,
    private readonly onReport: (report: RequeueReport) => void,
    private readonly windowMs = REQUEUE_WINDOW_MS,
  ) {
    redis.on('ready', () => void this.connected());
    redis.on('close', () => {
      if (this.closedAt === 0) this.closedAt = Date.now();
    });
    if (redis.status === 'ready') void this.connected();
  }

  /** Records an order just accepted (201). */
  add(order: OrderState): void {
    const now = Date.now();
    this.orders.push({ order, at: now });
    // Oldest first: drop what fell out of the window (in chunks, not one shift per order).
    if ((this.orders[0]?.at ?? now) < now - 2 * this.windowMs) {
      this.orders = this.orders.filter((e) => e.at >= now - this.windowMs);
    }
  }

  /** Resolves when a replay in progress is over. */
  async settled(): Promise<void> {
    await this.replaying;
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
    const due = this.orders.filter((e) => e.at >= since).map((e) => e.order);
    if (due.length === 0) return;
    const previous = this.replaying ?? Promise.resolve();
    this.replaying = previous.then(() => this.replay(due));
  }

  private async replay(due: OrderState[]): Promise<void> {
    const report: RequeueReport = { requeued: [], present: 0, superseded: [], failed: [] };
    const giveUp = Date.now() + GIVE_UP_MS;
    // In the order they were accepted, one at a time: the stream keeps their relative order.
    for (const order of due) {
      for (;;) {
        const r = await this.resubmit(order).catch((): Resubmitted => 'retry');
        if (r === 'present') report.present += 1;
        else if (r === 'requeued') report.requeued.push(order.id);
        else if (r === 'superseded') report.superseded.push(order.id);
        else if (Date.now() < giveUp) {
          await new Promise((res) => setTimeout(res, RETRY_MS));
          continue;
        } else report.failed.push(order.id);
        break;
      }
    }
    this.onReport(report);
  }
}
