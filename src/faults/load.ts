// The fault suite's traffic: a steady, paced mix of LIMIT, MARKET, cancel and amend requests from
// several users on a few symbols, and the ledger of what each request was answered. Half the
// orders carry a unique client_order_id, so that one whose answer was lost can be settled
// afterwards the way a real client does it, by sending it again; the other half show the path
// without one (which needs no PostgreSQL lookup, so it keeps working while PostgreSQL is down).
import { Pool } from 'undici';
import { rng } from '../bench/engine-workload.js';
import { assertLoopback } from '../bench/http-load.js';
import { DeadMan } from './dead-man.js';
import type { DeadManTransport } from './dead-man.js';

export const SYMBOLS = ['AAPL', 'MSFT', 'GOOG'] as const;

export interface LoadUser {
  id: string;
  key: string;
}

/** What became of one order request. */
export type Outcome =
  /** 201, or 200 for a re-sent one: the order exists. */
  | 'accepted'
  /** An error answer (4xx/5xx other than 504), or no connection at all: no order. */
  | 'refused'
  /** No answer (the connection broke with the request sent) or 504 OUTCOME_UNKNOWN. */
  | 'unknown';

export interface OrderRequestRecord {
  /** The ledger's key; also the request's client_order_id when `body` has one. */
  cid: string;
  user: number;
  body: Record<string, unknown>;
  outcome: Outcome;
  /** The answer's status (0: no answer) and error code. */
  status: number;
  code: string | undefined;
  id: string | undefined;
  /** When it was sent and answered (Date.now()). */
  sentAt: number;
  answeredAt: number;
  /**
   * How an unknown outcome was settled: re-sent and answered 200 (it had been accepted) or 201
   * (it had not), or looked up by the id a 504 named ('lookup').
   */
  settledBy: 200 | 201 | 'lookup' | undefined;
}

export interface LoadSummary {
  sent: number;
  accepted: number;
  refused: number;
  unknown: number;
  /** Unknown outcomes settled afterwards (the rest had neither a client_order_id nor an id). */
  settled: number;
  byStatus: Record<string, number>;
  cancels: Record<string, number>;
  /** Amends sent, by answer (status and code). */
  amends: Record<string, number>;
  /** Mass cancels sent, by answer (status and code). */
  massCancels: Record<string, number>;
  /** Requests (orders, cancels, amends) sent per second from the end of the ramp to the stop. */
  requestsPerSec: number;
  /** HTTP answers (of any status) per second over the same time. */
  answeredPerSec: number;
  /** 503 answers that carried Retry-After, and the longest time any answer took (ms). */
  retryAfter503: number;
  slowestMs: number;
  /** Requests not sent because `maxInFlight` were already waiting (a stalled system). */
  held: number;
  /** The dead man's switch client: its arms by answer, and the times it fell silent and was seen fired. */
  deadMan?: ReturnType<DeadMan['summary']>;
}

/** One mass cancel sent (`DELETE /v1/orders?symbol=&side=`), and its answer (status 0: none came). */
export interface MassCancelSent {
  user: number;
  symbol: string;
  /** undefined: both sides. */
  side: 'BUY' | 'SELL' | undefined;
  sentAt: number;
  answeredAt: number;
  status: number;
  code?: string;
}

/** One amend sent: the new total quantity asked for, and its answer (status 0: none came). */
export interface AmendSent {
  quantity: string;
  status: number;
  code?: string;
}

export interface LoadOptions {
  url: string;
  users: LoadUser[];
  /** Orders, cancels and amends per second, paced every 10 ms. */
  rate: number;
  /**
   * The rate rises from 0 to `rate` over this long first (ms), as a load test ramps: a system
   * whose processes have just started compiles its hot code in these seconds.
   */
  rampMs: number;
  maxInFlight: number;
  seed: number;
  /** Prefix of the client_order_ids (unique per run). */
  tag: string;
  /**
   * A user apart, who keeps a dead man's switch armed while placing orders and then falls silent,
   * again and again (dead-man.ts); in the ledger after `users`.
   */
  deadMan?: LoadUser;
}

const ERROR_CODE = /"code":"([A-Z_]+)"/;

export class FaultLoad implements DeadManTransport {
  readonly orders = new Map<string, OrderRequestRecord>();
  /** The dead man's switch client, when `deadMan` is given. */
  readonly deadMan: DeadMan | undefined;
  /** The users of the ledger: the load's, then the dead man. */
  readonly ledgerUsers: LoadUser[];
  /** When each answer came (Date.now()) with its status: what the timeline of a case is read from. */
  readonly answers: { at: number; status: number }[] = [];
  private readonly pool: Pool;
  private readonly rnd: () => number;
  private readonly cancels: Record<string, number> = {};
  private readonly amendAnswers: Record<string, number> = {};
  /** Every amend sent, by order id, oldest first. */
  readonly amends = new Map<string, AmendSent[]>();
  /** Every mass cancel sent, oldest first. */
  readonly massCancels: MassCancelSent[] = [];
  /** The ids of the orders a cancel was sent for. */
  readonly canceled = new Set<string>();
  /** The quantity each resting candidate was placed with, by id. */
  private readonly placedQuantity = new Map<string, number>();
  /** Resting candidates for cancels and amends: accepted LIMIT GTC order ids per user. */
  private readonly cancelable: string[][];
  private inFlight = 0;
  private held = 0;
  private n = 0;
  private retryAfter503 = 0;
  private slowestMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private stoppedAt = 0;
  /** Requests sent (orders, cancels, amends), and how many of them during the ramp. */
  private requests = 0;
  private rampRequests: number | undefined;
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly options: LoadOptions) {
    assertLoopback(options.url);
    this.pool = new Pool(options.url, {
      connections: Math.min(64, options.maxInFlight),
      keepAliveTimeout: 30_000,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
      connectTimeout: 2_000,
    });
    this.rnd = rng(options.seed);
    this.cancelable = options.users.map(() => []);
    const d = options.deadMan;
    this.ledgerUsers = d === undefined ? options.users : [...options.users, d];
    this.deadMan =
      d === undefined ? undefined : new DeadMan(this, options.users.length, options.tag);
  }

  /**
   * Starts sending; runs until `stop()`. Paced by the clock, not by timer ticks: a tick that comes
   * late sends what is due since the start, so the offered rate holds on a busy machine.
   */
  start(): void {
    this.startedAt = Date.now();
    const { rate, rampMs } = this.options;
    // Requests due t ms after the start: the integral of a rate rising linearly over the ramp.
    const dueAt = (t: number): number =>
      t < rampMs ? (rate * t * t) / (2 * rampMs * 1000) : (rate * (t - rampMs / 2)) / 1000;
    let issued = 0;
    this.timer = setInterval(() => {
      const t = Date.now() - this.startedAt;
      if (t >= rampMs && this.rampRequests === undefined) this.rampRequests = this.requests;
      const due = Math.floor(dueAt(t));
      for (; issued < due; issued++) {
        if (this.inFlight >= this.options.maxInFlight) this.held += 1;
        else this.track(this.next());
      }
    }, 10);
    this.deadMan?.start();
  }

  /** Stops sending and waits for every request in flight. */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    if (this.stoppedAt === 0) this.stoppedAt = Date.now();
    await Promise.all([...this.pending, this.deadMan?.stop()]);
  }

  /**
   * Settles every unknown outcome by sending the same order again (same body, same
   * client_order_id) until it is answered 200 (it had been accepted) or 201 (it had not).
   */
  async settle(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (const r of this.orders.values()) {
      if (r.outcome !== 'unknown') continue;
      if (r.body.client_order_id === undefined) {
        if (r.id !== undefined) await this.lookUp(r, until);
        continue;
      }
      for (;;) {
        const a = await this.post(r.user, r.body);
        if (a.status === 200 || a.status === 201) {
          r.outcome = 'accepted';
          r.id = a.id;
          r.settledBy = a.status;
          break;
        }
        if (a.status >= 400 && a.status < 500) {
          throw new Error(`re-sending ${r.cid} was answered ${a.status} ${a.code ?? ''}`);
        }
        if (Date.now() > until) throw new Error(`could not settle ${r.cid} (last: ${a.status})`);
        await new Promise((res) => setTimeout(res, 200));
      }
    }
  }

  /** A 504 named the order: it exists (200) or it does not (404), once the system is up. */
  private async lookUp(r: OrderRequestRecord, until: number): Promise<void> {
    for (;;) {
      const a = await this.request(r.user, 'GET', `/v1/orders/${r.id}`, undefined);
      if (a.status === 200 || a.status === 404) {
        r.outcome = a.status === 200 ? 'accepted' : 'refused';
        r.settledBy = 'lookup';
        return;
      }
      if (Date.now() > until) throw new Error(`could not look up ${r.id} (last: ${a.status})`);
      await new Promise((res) => setTimeout(res, 200));
    }
  }

  summary(): LoadSummary {
    const rampEnd = this.startedAt + this.options.rampMs;
    const end = this.stoppedAt || Date.now();
    const window = Math.max(1, end - rampEnd);
    let answered = 0;
    for (const a of this.answers) if (a.at >= rampEnd && a.at <= end) answered += 1;
    const byStatus: Record<string, number> = {};
    const count = { accepted: 0, refused: 0, unknown: 0, settled: 0 };
    for (const r of this.orders.values()) {
      count[r.outcome] += 1;
      if (r.settledBy !== undefined) count.settled += 1;
      const k = r.code === undefined ? String(r.status) : `${r.status} ${r.code}`;
      byStatus[k] = (byStatus[k] ?? 0) + 1;
    }
    return {
      sent: this.orders.size,
      ...count,
      byStatus,
      cancels: { ...this.cancels },
      amends: { ...this.amendAnswers },
      massCancels: byAnswer(this.massCancels),
      retryAfter503: this.retryAfter503,
      requestsPerSec: Math.round(
        ((this.requests - (this.rampRequests ?? this.requests)) * 1000) / window,
      ),
      answeredPerSec: Math.round((answered * 1000) / window),
      slowestMs: this.slowestMs,
      held: this.held,
      ...(this.deadMan === undefined ? {} : { deadMan: this.deadMan.summary() }),
    };
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  private track(p: Promise<void>): void {
    this.inFlight += 1;
    this.requests += 1;
    const done = p.finally(() => {
      this.inFlight -= 1;
      this.pending.delete(done);
    });
    this.pending.add(done);
  }

  /**
   * The next request: 55% LIMIT GTC, 5% LIMIT IOC, 20% MARKET (less 0.3%: a mass cancel of one
   * symbol, of one side or both), 10% cancel, 10% amend (of the quantity alone: a trade is then
   * always at its maker's price as PostgreSQL ends with it).
   */
  private async next(): Promise<void> {
    const user = Math.floor(this.rnd() * this.options.users.length);
    const roll = this.rnd();
    const symbol = SYMBOLS[Math.floor(this.rnd() * SYMBOLS.length)] as string;
    const side = this.rnd() < 0.5 ? 'BUY' : 'SELL';
    const quantity = String(1 + Math.floor(this.rnd() * 5));
    const own = this.cancelable[user] as string[];
    if (roll >= 0.9 && own.length > 0) {
      const id = own[Math.floor(this.rnd() * own.length)] as string;
      // 1–8 but the quantity it was placed with: an amend to that could be lost unseen.
      const placed = this.placedQuantity.get(id) ?? 0;
      const q = 1 + Math.floor(this.rnd() * 7);
      return this.amend(user, id, String(q >= placed ? q + 1 : q));
    }
    if (roll >= 0.8 && own.length > 0) {
      const id = own.splice(Math.floor(this.rnd() * own.length), 1)[0] as string;
      this.placedQuantity.delete(id);
      return this.cancel(user, id);
    }
    if (roll >= 0.797 && roll < 0.8) {
      return this.cancelAll(user, symbol, this.rnd() < 0.5 ? undefined : side);
    }
    this.n += 1;
    const cid = `${this.options.tag}-${this.n}`;
    // Prices within 20 ticks of 100.00 on both sides: many orders cross, many rest.
    const price = (100 + (Math.floor(this.rnd() * 41) - 20) / 100).toFixed(2);
    const body: Record<string, unknown> =
      roll < 0.55
        ? { symbol, side, type: 'LIMIT', quantity, price }
        : roll < 0.6
          ? { symbol, side, type: 'LIMIT', time_in_force: 'IOC', quantity, price }
          : { symbol, side, type: 'MARKET', quantity };
    if (this.rnd() < 0.5) body.client_order_id = cid;
    const record = await this.place(user, body, cid);
    if (
      record.outcome === 'accepted' &&
      body.type === 'LIMIT' &&
      body.time_in_force === undefined &&
      record.id !== undefined
    ) {
      own.push(record.id);
      this.placedQuantity.set(record.id, Number(body.quantity));
      if (own.length > 200) this.placedQuantity.delete(own.shift() as string);
    }
  }

  /** Sends an order, kept in the ledger under `cid` (its client_order_id's, when it has one). */
  async place(
    user: number,
    body: Record<string, unknown>,
    cid = body.client_order_id as string,
  ): Promise<OrderRequestRecord> {
    const record: OrderRequestRecord = {
      cid,
      user,
      body,
      outcome: 'unknown',
      status: 0,
      code: undefined,
      id: undefined,
      sentAt: Date.now(),
      answeredAt: 0,
      settledBy: undefined,
    };
    this.orders.set(cid, record);
    const a = await this.post(user, body);
    record.status = a.status;
    record.code = a.code;
    record.answeredAt = Date.now();
    if (a.status === 201 || a.status === 200) {
      record.outcome = 'accepted';
      record.id = a.id;
    } else if (a.status === 0 && a.code !== 'ECONNREFUSED') record.outcome = 'unknown';
    else if (a.status === 504) {
      record.outcome = 'unknown';
      record.id = a.id;
    } else record.outcome = 'refused';
    return record;
  }

  private async cancelAll(
    user: number,
    symbol: string,
    side: 'BUY' | 'SELL' | undefined,
  ): Promise<void> {
    const sent: MassCancelSent = {
      user,
      symbol,
      side,
      sentAt: Date.now(),
      answeredAt: 0,
      status: 0,
    };
    this.massCancels.push(sent);
    const query = `?symbol=${symbol}${side === undefined ? '' : `&side=${side}`}`;
    const a = await this.request(user, 'DELETE', `/v1/orders${query}`, undefined);
    sent.answeredAt = Date.now();
    sent.status = a.status;
    if (a.code !== undefined) sent.code = a.code;
  }

  private async cancel(user: number, id: string): Promise<void> {
    this.canceled.add(id);
    const a = await this.request(user, 'DELETE', `/v1/orders/${id}`, undefined);
    const k = a.code === undefined ? String(a.status) : `${a.status} ${a.code}`;
    this.cancels[k] = (this.cancels[k] ?? 0) + 1;
  }

  private async amend(user: number, id: string, quantity: string): Promise<void> {
    const sent: AmendSent = { quantity, status: 0 };
    this.amends.set(id, [...(this.amends.get(id) ?? []), sent]);
    const a = await this.request(user, 'PATCH', `/v1/orders/${id}`, JSON.stringify({ quantity }));
    sent.status = a.status;
    if (a.code !== undefined) sent.code = a.code;
    const k = a.code === undefined ? String(a.status) : `${a.status} ${a.code}`;
    this.amendAnswers[k] = (this.amendAnswers[k] ?? 0) + 1;
    // Final: no more amends of it (they would all be 409).
    if (a.code === 'ORDER_CLOSED') this.forget(user, id);
  }

  /** Drops a resting candidate that is final. */
  private forget(user: number, id: string): void {
    const own = this.cancelable[user] as string[];
    const at = own.indexOf(id);
    if (at >= 0) own.splice(at, 1);
    this.placedQuantity.delete(id);
  }

  private post(
    user: number,
    body: Record<string, unknown>,
  ): Promise<{ status: number; code: string | undefined; id: string | undefined }> {
    return this.request(user, 'POST', '/v1/orders', JSON.stringify(body));
  }

  /** One request; status 0 and the error's code when no answer came. */
  async request(
    user: number,
    method: 'POST' | 'DELETE' | 'GET' | 'PATCH' | 'PUT',
    path: string,
    body: string | undefined,
  ): Promise<{ status: number; code: string | undefined; id: string | undefined; text: string }> {
    const key = (this.ledgerUsers[user] as LoadUser).key;
    const started = Date.now();
    try {
      const res = await this.pool.request({
        path,
        method,
        headers: {
          authorization: `Bearer ${key}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body }),
      });
      const text = await res.body.text();
      const now = Date.now();
      this.slowestMs = Math.max(this.slowestMs, now - started);
      this.answers.push({ at: now, status: res.statusCode });
      if (res.statusCode === 503 && res.headers['retry-after'] !== undefined)
        this.retryAfter503 += 1;
      if (res.statusCode >= 400) {
        // A 504 OUTCOME_UNKNOWN names the order in its details.
        const id = /"field":"id","message":"([^"]+)"/.exec(text)?.[1];
        return { status: res.statusCode, code: ERROR_CODE.exec(text)?.[1], id, text };
      }
      const id = /"id":"([^"]+)"/.exec(text)?.[1];
      return { status: res.statusCode, code: undefined, id, text };
    } catch (err) {
      const code = (err as { code?: string }).code ?? (err as Error).name;
      // undici wraps a refused connect; its cause carries the system's code.
      const cause = (err as { cause?: { code?: string } }).cause?.code;
      return { status: 0, code: cause ?? code, id: undefined, text: '' };
    }
  }
}

/** Answers by status and code. */
function byAnswer(sent: readonly { status: number; code?: string }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of sent) {
    const k = a.code === undefined ? String(a.status) : `${a.status} ${a.code}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}
