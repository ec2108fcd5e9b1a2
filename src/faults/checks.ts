// What the fault suite verifies once a case is over and the system is quiet: that every order
// answered 201 is in PostgreSQL and no refused one is; that every match happened exactly once;
// and that the status cache, PostgreSQL and the engine tell the same story about every order.
import type { Redis } from 'ioredis';
import type { Sql } from '../db/client.js';
import type { EngineClient, LiveOrder } from '../engine-service/client.js';
import { parseDecimal } from '../engine/scale.js';
import { Side } from '../engine/types.js';
import { lastGeneratedSeq, writerBacklog } from '../queue/stream-info.js';
import type { ShardKeys } from '../queue/keys.js';
import type { OrderState } from '../queue/records.js';
import type { AmendSent, FaultLoad, LoadUser, MassCancelSent, OrderRequestRecord } from './load.js';

export interface CheckResult {
  /** Orders answered 201/200 (including unknown outcomes settled by re-sending). */
  accepted: number;
  /** Of those, how many PostgreSQL holds. */
  inPostgres: number;
  lost: number;
  /** Orders matched more than once: fills that do not add up, or a trade recorded twice. */
  duplicated: number;
  /**
   * Orders in PostgreSQL that were refused, or that no request accounts for (beyond the unknown
   * outcomes that nothing could settle: those may or may not exist).
   */
  phantom: number;
  /** Unknown outcomes that nothing could settle (no client_order_id, no id). */
  unsettled: number;
  /** Stored orders no request accounts for: at most `unsettled`, else they are phantoms. */
  unclaimed: number;
  /** Every failed check, described (the first few of each kind). */
  problems: string[];
}

/**
 * Waits until the pipeline is quiet: the engine has applied every queued command, the dispatcher
 * has written all its reports, and the writer has committed both streams.
 */
export async function quiesce(
  redis: Redis,
  keys: ShardKeys,
  engine: EngineClient,
  timeoutMs: number,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const seq = Number((await redis.get(keys.seq)) ?? 0);
    const applied = await engine.lastApplied().catch(() => -1);
    const written = await lastGeneratedSeq(redis, keys.events);
    const backlog =
      (await writerBacklog(redis, keys.orders)) + (await writerBacklog(redis, keys.events));
    const state = `seq ${seq}, engine ${applied}, dispatched ${written}, writer backlog ${backlog}`;
    if (applied === seq && written === seq && backlog === 0) return;
    if (Date.now() > until) throw new Error(`the system did not become quiet: ${state}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface PgOrder {
  id: string;
  client_order_id: string | null;
  user_id: string;
  symbol: string;
  side: 'BUY' | 'SELL';
  type: string;
  time_in_force: string;
  quantity: string;
  price: string | null;
  filled_quantity: string;
  status: string;
  reject_reason: string | null;
  /** updated_at in ms since the epoch: when the command that last changed it was taken. */
  updated_ms: string;
  seq: string;
  owner_no: string;
  price_ticks: string | null;
  leaves_lots: string;
  filled_lots: string;
}

interface PgTrade {
  id: string;
  seq: string;
  trade_no: number;
  symbol: string;
  price: string;
  quantity: string;
  taker_side: 'BUY' | 'SELL';
  taker_order_id: string;
  maker_order_id: string;
  taker_user_id: string;
  maker_user_id: string;
}

/** Places every decimal here is compared at (well past any instrument's tick or lot). */
const PLACES = 12;

/** A decimal string as an integer count of 10^-PLACES, exactly (engine/scale's parser). */
function units(d: string): bigint {
  const f = parseDecimal(d);
  if (f === undefined || f.places > PLACES) throw new Error(`not a decimal the checks read: ${d}`);
  return f.units * 10n ** BigInt(PLACES - f.places);
}

const OPEN = new Set(['NEW', 'PARTIALLY_FILLED']);

const SHOWN = 5;

export async function checkCase(
  load: FaultLoad,
  users: LoadUser[],
  sql: Sql,
  redis: Redis,
  keys: ShardKeys,
  engine: EngineClient,
  gatewayUrl: string,
): Promise<CheckResult> {
  const problems: string[] = [];
  const kinds = new Map<string, number>();
  const problem = (kind: string, text: string): void => {
    const n = (kinds.get(kind) ?? 0) + 1;
    kinds.set(kind, n);
    if (n <= SHOWN) problems.push(`${kind}: ${text}`);
  };

  const orders = await sql<PgOrder[]>`
    SELECT o.id, o.client_order_id, o.user_id, o.symbol, o.side, o.type, o.time_in_force,
           o.quantity::text, o.price::text, o.filled_quantity::text, o.status, o.reject_reason,
           (extract(epoch FROM o.updated_at) * 1000)::bigint::text AS updated_ms, o.seq::text,
           u.no::text AS owner_no,
           (o.price / i.tick_size)::bigint::text AS price_ticks,
           ((o.quantity - o.filled_quantity) / i.lot_size)::bigint::text AS leaves_lots,
           (o.filled_quantity / i.lot_size)::bigint::text AS filled_lots
    FROM orders o JOIN users u ON u.id = o.user_id JOIN instruments i ON i.symbol = o.symbol`;
  const trades = await sql<PgTrade[]>`
    SELECT id, seq::text, trade_no, symbol, price::text, quantity::text, taker_side,
           taker_order_id, maker_order_id, taker_user_id, maker_user_id FROM trades`;
  const byId = new Map(orders.map((o) => [o.id, o]));
  const byCid = new Map<string, PgOrder[]>();
  for (const o of orders) {
    const k = `${o.user_id}/${o.client_order_id ?? ''}`;
    byCid.set(k, [...(byCid.get(k) ?? []), o]);
  }

  // 1. Every accepted order is in PostgreSQL, once; no refused one is; nothing else is.
  let accepted = 0;
  let inPostgres = 0;
  let lost = 0;
  let phantom = 0;
  let unsettled = 0;
  const claimed = new Set<string>();
  for (const r of load.orders.values()) {
    const userId = (users[r.user] as LoadUser).id;
    const cid = r.body.client_order_id as string | undefined;
    const stored = cid === undefined ? [] : (byCid.get(`${userId}/${cid}`) ?? []);
    for (const row of stored) claimed.add(row.id);
    if (r.outcome === 'accepted') {
      accepted += 1;
      const row = r.id === undefined ? undefined : byId.get(r.id);
      if (
        row === undefined ||
        row.user_id !== userId ||
        (row.client_order_id ?? undefined) !== cid
      ) {
        lost += 1;
        problem('lost', `${r.cid} (${r.id ?? 'no id'}) was answered ${r.status} but is not stored`);
      } else {
        inPostgres += 1;
        claimed.add(row.id);
      }
    } else if (r.outcome === 'unknown') {
      unsettled += 1;
    } else if (stored.length > 0 || (r.id !== undefined && byId.has(r.id))) {
      phantom += 1;
      problem('phantom', `${r.cid} was answered ${r.status} ${r.code ?? ''} but is stored`);
    }
  }
  // What no request accounts for may only be orders whose answer was lost for good.
  const unclaimed = orders.filter((o) => !claimed.has(o.id));
  if (unclaimed.some((o) => o.client_order_id !== null) || unclaimed.length > unsettled) {
    phantom += Math.max(unclaimed.length - unsettled, 1);
    problem(
      'phantom',
      `${unclaimed.length} stored orders no request accounts for (${unsettled} answers lost)`,
    );
  }

  // 2. Each match exactly once: fills add up, trades are whole and consistent.
  let duplicated = 0;
  const fills = new Map<string, bigint>();
  const seen = new Set<string>();
  for (const t of trades) {
    const triple = `${t.seq}/${t.trade_no}`;
    if (seen.has(triple)) {
      duplicated += 1;
      problem('duplicate trade', triple);
    }
    seen.add(triple);
    const taker = byId.get(t.taker_order_id);
    const maker = byId.get(t.maker_order_id);
    if (taker === undefined || maker === undefined) {
      problem('trade', `${t.id} names an order PostgreSQL does not hold`);
      continue;
    }
    if (taker.id === maker.id || taker.side === maker.side || taker.side !== t.taker_side) {
      problem('trade', `${t.id} does not have one buyer and one seller`);
    }
    if (taker.symbol !== t.symbol || maker.symbol !== t.symbol) {
      problem('trade', `${t.id} is on ${t.symbol} but its orders are not`);
    }
    if (taker.user_id !== t.taker_user_id || maker.user_id !== t.maker_user_id) {
      problem('trade', `${t.id} names the wrong users`);
    }
    if (maker.price === null || units(maker.price) !== units(t.price)) {
      problem('trade', `${t.id} at ${t.price} is not at its maker's price ${maker.price}`);
    }
    if (taker.price !== null) {
      const through =
        taker.side === 'BUY'
          ? units(t.price) > units(taker.price)
          : units(t.price) < units(taker.price);
      if (through) problem('trade', `${t.id} at ${t.price} is through its taker's limit`);
    }
    for (const id of [t.taker_order_id, t.maker_order_id]) {
      fills.set(id, (fills.get(id) ?? 0n) + units(t.quantity));
    }
  }
  for (const o of orders) {
    const filled = units(o.filled_quantity);
    if ((fills.get(o.id) ?? 0n) !== filled) {
      duplicated += 1;
      problem('fills', `${o.id} filled ${o.filled_quantity}, its trades sum to another quantity`);
    }
    if (filled > units(o.quantity)) problem('overfill', `${o.id}`);
    const full = filled === units(o.quantity);
    if (o.status === 'PENDING') problem('pending', `${o.id} is still PENDING in PostgreSQL`);
    if ((o.status === 'FILLED') !== full) {
      problem('status', `${o.id} is ${o.status} with ${o.filled_quantity} of ${o.quantity}`);
    }
    if (OPEN.has(o.status) && (o.type === 'MARKET' || o.time_in_force !== 'GTC')) {
      problem('status', `${o.id} (${o.type} ${o.time_in_force}) rests as ${o.status}`);
    }
  }

  // Every amend answered 202 was applied, or refused by the engine as it may be: an open order
  // ends with the quantity of one of its accepted amends, or with its own and all of them at or
  // below what it had filled by then. Orders with an amend whose answer was not definite are
  // passed over: none came (but a refused connection), or a 5xx but OVERLOADED; it may or may
  // not have been queued.
  const placedQuantity = new Map<string, string>();
  for (const r of load.orders.values()) {
    if (r.id !== undefined) placedQuantity.set(r.id, r.body.quantity as string);
  }
  for (const [id, sent] of load.amends) {
    const row = byId.get(id);
    if (row === undefined || !OPEN.has(row.status)) continue;
    const indefinite = (a: AmendSent): boolean =>
      a.status === 0 ? a.code !== 'ECONNREFUSED' : a.status >= 500 && a.code !== 'OVERLOADED';
    if (sent.some(indefinite)) continue;
    const taken = sent.filter((a) => a.status === 202).map((a) => a.quantity);
    if (taken.length === 0) continue;
    const accepted = taken.map(units);
    const quantity = units(row.quantity);
    const own = placedQuantity.get(id);
    const filled = units(row.filled_quantity);
    const kept = own !== undefined && quantity === units(own) && accepted.every((q) => q <= filled);
    if (!accepted.includes(quantity) && !kept) {
      problem(
        'amend',
        `${id} ends with ${row.quantity} (filled ${row.filled_quantity}); accepted amends: ${taken.join(', ')}`,
      );
    }
  }

  // Mass cancels: an order answered 201 before a mass cancel answered 202 was sent was final by
  // the time that mass cancel was taken (its last change is from no later: canceled by it, or
  // before), not open and not changed by a later request; an order canceled by its owner had a
  // cancel sent for it, or a mass cancel that was not answered before the order was sent (one
  // answered 202 before was queued before it, and cannot have canceled it). A mass cancel whose
  // answer was lost may have been queued up to its deadline, so it accounts for any order.
  const requestOf = new Map<string, OrderRequestRecord>();
  for (const r of load.orders.values()) if (r.id !== undefined) requestOf.set(r.id, r);
  const covers = (m: MassCancelSent, o: PgOrder): boolean =>
    (users[m.user] as LoadUser).id === o.user_id &&
    m.symbol === o.symbol &&
    (m.side === undefined || m.side === o.side);
  for (const m of load.massCancels) {
    if (m.status !== 202) continue;
    for (const o of orders) {
      const r = requestOf.get(o.id);
      if (r === undefined || r.answeredAt === 0 || r.answeredAt >= m.sentAt) continue;
      if (r.status !== 201 && r.status !== 200) continue;
      if (!covers(m, o)) continue;
      if (OPEN.has(o.status) || Number(o.updated_ms) > m.answeredAt) {
        problem(
          'mass cancel',
          `${o.id} (${o.symbol} ${o.side}), answered ${r.status} before a mass cancel answered 202 was sent, is ${o.status} as of ${new Date(Number(o.updated_ms)).toISOString()}, after that mass cancel`,
        );
      }
    }
  }
  // The dead man's orders are canceled by its switch alone: checked by its own rules.
  const deadMan = load.deadMan === undefined ? undefined : users[load.deadMan.user]?.id;
  for (const o of orders) {
    if (o.status !== 'CANCELED' || o.reject_reason !== 'CANCELED_BY_OWNER') continue;
    if (load.canceled.has(o.id) || o.user_id === deadMan) continue;
    const r = requestOf.get(o.id);
    const explained = load.massCancels.some((m) => {
      if (!covers(m, o)) return false;
      // Answered 202: queued before its answer. No answer but a refused connection, a 504 or a
      // 500: perhaps queued, by its deadline (750 ms after the gateway took it, before it could
      // answer or die). A 503 or a 4xx: nothing was written.
      const definite = m.status === 202;
      const perhaps =
        (m.status === 0 && m.code !== 'ECONNREFUSED') || m.status === 504 || m.status === 500;
      if (!definite && !perhaps) return false;
      return r === undefined || r.sentAt < m.answeredAt + (definite ? 0 : 1_000);
    });
    if (!explained) {
      problem(
        'mass cancel',
        `${o.id} (${o.symbol} ${o.side}) was canceled by its owner with no cancel sent for it and no mass cancel of it answered after it was sent`,
      );
    }
  }

  for (const p of load.deadMan?.verify(byId) ?? []) problem('dead man’s switch', p);

  // 3. The status cache says what PostgreSQL says.
  const ids = orders.map((o) => o.id);
  for (let i = 0; i < ids.length; i += 500) {
    const chunk = ids.slice(i, i + 500);
    const pipeline = redis.pipeline();
    for (const id of chunk) pipeline.hmget(keys.order(id), 'j', 's');
    const replies = (await pipeline.exec()) ?? [];
    chunk.forEach((id, n) => {
      const [j, s] = (replies[n]?.[1] as (string | null)[] | undefined) ?? [null, null];
      const row = byId.get(id) as PgOrder;
      if (j === null || j === undefined) {
        // Only final orders leave the cache (STATUS_TTL_S after the writer committed them).
        if (OPEN.has(row.status)) problem('cache', `${id} (${row.status}) is not in the cache`);
        return;
      }
      const cachedOrder = JSON.parse(j) as OrderState;
      if (s !== row.status || cachedOrder.status !== row.status) {
        problem('cache', `${id}: cache ${s}, PostgreSQL ${row.status}`);
      }
      if (units(cachedOrder.quantity) !== units(row.quantity)) {
        problem(
          'cache',
          `${id}: cache quantity ${cachedOrder.quantity}, PostgreSQL ${row.quantity}`,
        );
      }
      if (units(cachedOrder.filled_quantity) !== units(row.filled_quantity)) {
        problem(
          'cache',
          `${id}: cache filled ${cachedOrder.filled_quantity}, PostgreSQL ${row.filled_quantity}`,
        );
      }
    });
  }

  // 4. The engine's live orders are exactly PostgreSQL's open orders, and its book the one they
  // build.
  const live = await engine.liveOrders();
  const liveById = new Map<number, LiveOrder>(live.orders.map((o) => [o.orderId, o]));
  const open = orders.filter((o) => OPEN.has(o.status));
  for (const o of open) {
    const e = liveById.get(Number(o.seq));
    if (e === undefined) {
      problem('engine', `${o.id} is ${o.status} in PostgreSQL but not live in the engine`);
      continue;
    }
    liveById.delete(Number(o.seq));
    const same =
      e.symbol === o.symbol &&
      e.side === (o.side === 'BUY' ? Side.BUY : Side.SELL) &&
      String(e.price) === o.price_ticks &&
      String(e.leaves) === o.leaves_lots &&
      String(e.filled) === o.filled_lots &&
      String(e.ownerId) === o.owner_no;
    if (!same) problem('engine', `${o.id}: engine ${JSON.stringify(e)} differs from PostgreSQL`);
  }
  for (const e of liveById.values()) {
    problem('engine', `engine order ${e.orderId} is live but not open in PostgreSQL`);
  }
  for (const symbol of new Set(orders.map((o) => o.symbol))) {
    const depth = await engine.depth(symbol, 100_000);
    const rebuilt = {
      bids: new Map<string, [bigint, number]>(),
      asks: new Map<string, [bigint, number]>(),
    };
    for (const o of open) {
      if (o.symbol !== symbol) continue;
      const side = o.side === 'BUY' ? rebuilt.bids : rebuilt.asks;
      const [q, n] = side.get(o.price_ticks as string) ?? [0n, 0];
      side.set(o.price_ticks as string, [q + BigInt(o.leaves_lots), n + 1]);
    }
    for (const [name, levels] of [
      ['bids', depth.bids],
      ['asks', depth.asks],
    ] as const) {
      const expected = rebuilt[name];
      const got = new Map(levels.map((l) => [String(l.price), [BigInt(l.quantity), l.orders]]));
      const prices = new Set([...expected.keys(), ...got.keys()]);
      for (const p of prices) {
        const a = expected.get(p);
        const b = got.get(p);
        if (a === undefined || b === undefined || a[0] !== b[0] || a[1] !== b[1]) {
          problem(
            'book',
            `${symbol} ${name} at ${p} ticks: engine ${String(b)}, PostgreSQL ${String(a)}`,
          );
        }
      }
    }
  }

  // 5. The API agrees, for a sample of accepted orders.
  const sample = [...load.orders.values()].filter((r) => r.outcome === 'accepted').slice(-100);
  for (const r of sample) {
    const user = users[r.user] as LoadUser;
    const res = await fetch(`${gatewayUrl}/v1/orders/${r.id}`, {
      headers: { authorization: `Bearer ${user.key}` },
    });
    const body = (await res.json()) as { status?: string; filled_quantity?: string };
    const row = byId.get(r.id as string);
    if (res.status !== 200 || row === undefined || body.status !== row.status) {
      problem('api', `${r.id}: API ${res.status} ${body.status}, PostgreSQL ${row?.status}`);
    }
  }

  for (const [kind, n] of kinds) {
    if (n > SHOWN) problems.push(`${kind}: … ${n - SHOWN} more`);
  }
  return {
    accepted,
    inPostgres,
    lost,
    duplicated,
    phantom,
    unsettled,
    unclaimed: unclaimed.length,
    problems,
  };
}
