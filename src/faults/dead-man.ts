// The fault suite's dead man: a client that keeps its cancel-all-after switch armed while it
// places orders (resting ones, on two symbols of its own), then falls silent, again and again
// through each case. Whatever process dies, its
// switch must fire each time it falls silent and cancel every order it placed before, and must
// never fire while it was kept armed.
import type { OrderRequestRecord } from './load.js';

/** The switch's timeout, and how often the client arms it again while alive. */
const TIMEOUT_MS = 2_000;
const REARM_EVERY_MS = 250;
/** How often it places an order while alive, and for how long it is alive each time. */
const ORDER_EVERY_MS = 200;
const ALIVE_MS = 4_000;
/** How long, once silent, it waits to see its switch fired (GET answers it unarmed). */
const FIRE_WAIT_MS = 30_000;
/** Room for the clocks of Redis and of this process (one host) in comparing their times. */
const CLOCKS_MS = 100;

/** One arm of the switch (`PUT /v1/orders/cancel-all-after`), and its answer (0: none came). */
export interface ArmSent {
  sentAt: number;
  answeredAt: number;
  status: number;
  code?: string;
  /** Its `trigger_at` (ms), when answered 200. */
  triggerAt?: number;
}

/** One time the client fell silent. */
export interface Silence {
  at: number;
  /** The trigger of the last arm answered 200 before it, if one was. */
  trigger: number | undefined;
  /** When GET first said it fired (at or after `trigger`); undefined: not within FIRE_WAIT_MS. */
  firedSeenAt: number | undefined;
}

/** What the dead man needs of the load: its requests, and its orders kept in the load's ledger. */
export interface DeadManTransport {
  request(
    user: number,
    method: 'PUT' | 'GET' | 'DELETE',
    path: string,
    body: string | undefined,
  ): Promise<{ status: number; code: string | undefined; text: string }>;
  place(user: number, body: Record<string, unknown>): Promise<OrderRequestRecord>;
}

/** The stored order as the check reads it. */
export interface StoredOrder {
  id: string;
  status: string;
  reject_reason: string | null;
  updated_ms: string;
}

const PATH = '/v1/orders/cancel-all-after';
const OPEN = new Set(['PENDING', 'NEW', 'PARTIALLY_FILLED']);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class DeadMan {
  readonly arms: ArmSent[] = [];
  readonly silences: Silence[] = [];
  readonly orders: OrderRequestRecord[] = [];
  private stopped = false;
  private running: Promise<void> | undefined;
  private n = 0;

  constructor(
    private readonly load: DeadManTransport,
    /** Its index in the load's ledger. */
    readonly user: number,
    private readonly tag: string,
  ) {}

  start(): void {
    this.running ??= this.run();
  }

  /**
   * Stops once alive (a silence under way is seen through), then disarms the switch, so that it
   * does not fire during the checks.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
    const giveUp = Date.now() + FIRE_WAIT_MS;
    while ((await this.load.request(this.user, 'DELETE', PATH, undefined)).status !== 200) {
      if (Date.now() > giveUp) throw new Error('the dead man’s switch could not be disarmed');
      await sleep(200);
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let trigger: number | undefined;
      let armed = 0;
      const until = Date.now() + ALIVE_MS;
      while (Date.now() < until && !this.stopped) {
        if (Date.now() - armed >= REARM_EVERY_MS) {
          armed = Date.now();
          trigger = (await this.arm()) ?? trigger;
        }
        await this.order();
        await sleep(ORDER_EVERY_MS);
      }
      if (this.stopped) return;
      const silence: Silence = { at: Date.now(), trigger, firedSeenAt: undefined };
      this.silences.push(silence);
      const giveUp = Date.now() + FIRE_WAIT_MS;
      while (Date.now() < giveUp) {
        await sleep(100);
        const a = await this.load.request(this.user, 'GET', PATH, undefined);
        const firedAt =
          a.status === 200 ? (JSON.parse(a.text) as { fired_at: string | null }).fired_at : null;
        // This silence's fire, not one left from before it.
        if (firedAt !== null && Date.parse(firedAt) >= (trigger ?? 0)) {
          silence.firedSeenAt = Date.now();
          break;
        }
      }
    }
  }

  /** Arms the switch; its trigger when answered 200. */
  private async arm(): Promise<number | undefined> {
    const sent: ArmSent = { sentAt: Date.now(), answeredAt: 0, status: 0 };
    this.arms.push(sent);
    const a = await this.load.request(
      this.user,
      'PUT',
      PATH,
      JSON.stringify({ timeout_ms: TIMEOUT_MS }),
    );
    sent.answeredAt = Date.now();
    sent.status = a.status;
    if (a.code !== undefined) sent.code = a.code;
    if (a.status !== 200) return undefined;
    sent.triggerAt = Date.parse((JSON.parse(a.text) as { trigger_at: string }).trigger_at);
    return sent.triggerAt;
  }

  /**
   * A LIMIT order that rests: on a symbol the load does not trade, its bids below its asks. With a
   * client_order_id to settle it by.
   */
  private async order(): Promise<void> {
    this.n += 1;
    const buy = this.n % 2 === 0;
    const body = {
      symbol: Math.floor(this.n / 2) % 2 === 0 ? 'AMZN' : 'TSLA',
      side: buy ? 'BUY' : 'SELL',
      type: 'LIMIT',
      quantity: '1',
      price: buy ? '99.00' : '101.00',
      client_order_id: `${this.tag}-dm-${this.n}`,
    };
    this.orders.push(await this.load.place(this.user, body));
  }

  /** Arms by answer (status and code), silences, and how long the slowest fire took to be seen. */
  summary(): { arms: Record<string, number>; silences: number; fired: number; slowestMs: number } {
    const arms: Record<string, number> = {};
    for (const a of this.arms) {
      const k = a.code === undefined ? String(a.status) : `${a.status} ${a.code}`;
      arms[k] = (arms[k] ?? 0) + 1;
    }
    const fired = this.silences.filter((s) => s.firedSeenAt !== undefined);
    return {
      arms,
      silences: this.silences.length,
      fired: fired.length,
      slowestMs: Math.max(0, ...fired.map((s) => (s.firedSeenAt as number) - s.at)),
    };
  }

  /**
   * What went wrong, with `stored` the orders PostgreSQL holds by id:
   * - each silence saw the switch fire within FIRE_WAIT_MS;
   * - every order answered 201 before the trigger of a silence's last arm is final (canceled by
   *   its owner, or filled), as the fire canceled it if nothing else had;
   * - no order was canceled by a fire (its `updated_at` is the fire's claim) that came after an
   *   arm was answered 200 and before that arm's trigger: the switch never fired while armed.
   */
  verify(stored: Map<string, StoredOrder>): string[] {
    const problems: string[] = [];
    for (const s of this.silences) {
      if (s.firedSeenAt === undefined) {
        problems.push(
          `the switch did not fire within ${FIRE_WAIT_MS / 1000} s of the client falling silent at ${new Date(s.at).toISOString()}`,
        );
      }
    }
    for (const r of this.orders) {
      if (r.status !== 201 || r.id === undefined) continue;
      const row = stored.get(r.id);
      if (row === undefined) continue; // the ledger's check reports it lost
      const canceled = row.status === 'CANCELED' && row.reject_reason === 'CANCELED_BY_OWNER';
      const due = this.silences.find((s) => s.trigger !== undefined && r.answeredAt < s.trigger);
      if (due !== undefined && (OPEN.has(row.status) || (row.status === 'CANCELED' && !canceled))) {
        problems.push(
          `${r.id}, answered 201 before the switch's trigger at ${new Date(due.trigger as number).toISOString()}, ends ${row.status} ${row.reject_reason ?? ''}`,
        );
      }
      if (!canceled) continue;
      const at = Number(row.updated_ms);
      const armed = this.arms.find(
        (a) =>
          a.triggerAt !== undefined &&
          a.answeredAt + CLOCKS_MS < at &&
          at + CLOCKS_MS < a.triggerAt,
      );
      if (armed !== undefined) {
        problems.push(
          `${r.id} was canceled at ${new Date(at).toISOString()}, while the switch was armed until ${new Date(armed.triggerAt as number).toISOString()} (answered ${at - armed.answeredAt} ms before)`,
        );
      }
    }
    return problems;
  }
}
