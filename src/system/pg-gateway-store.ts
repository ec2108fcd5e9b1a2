// The gateway's store over PostgreSQL: the repositories of src/db behind GatewayStore.
import type { Sql } from '../db/client.js';
import { fromPostgres, isConnectionFailure } from '../db/pg-errors.js';
import * as instruments from '../db/instruments.js';
import * as orders from '../db/orders.js';
import * as trades from '../db/trades.js';
import * as users from '../db/users.js';
import type { GatewayStore, InstrumentInput, UpsertResult } from '../gateway/store.js';
import type { ShardPlacement } from '../queue/keys.js';
import type { OrderState } from '../queue/records.js';

/**
 * How long a request waits for PostgreSQL before it is answered 503. While PostgreSQL is down the
 * pool waits to reconnect and a query would wait with it, holding the request (and the client)
 * for as long as the outage.
 */
const QUERY_DEADLINE_MS = 1_000;
/** Once PostgreSQL has failed, one request in this long tries it; the others fail at once. */
const PROBE_EVERY_MS = 250;

const unreachable = (why: string): Error =>
  fromPostgres(Object.assign(new Error(`PostgreSQL ${why}`), { code: 'ETIMEDOUT' }));

/**
 * A guard on PostgreSQL for the request path: each call fails with ETIMEDOUT (a 503
 * UNAVAILABLE) after QUERY_DEADLINE_MS; and after a failure to reach it, calls fail at once but
 * for one every PROBE_EVERY_MS, which finds out when it is back. So an outage costs a client one
 * quick 503, not a second's wait per request.
 */
function breaker(): <A extends unknown[], R>(
  f: (...args: A) => Promise<R>,
) => (...args: A) => Promise<R> {
  let failedAt = 0;
  let probedAt = 0;
  return (f) =>
    (...args) => {
      const now = Date.now();
      if (failedAt > 0 && now - probedAt < PROBE_EVERY_MS) {
        return Promise.reject(unreachable('is unreachable (retrying shortly)'));
      }
      if (failedAt > 0) probedAt = now;
      return new Promise((resolve, reject) => {
        const fail = (err: Error): void => {
          // Any answer from PostgreSQL (an error reply too) shows it reachable; the deadline's
          // error is ETIMEDOUT, a connection failure.
          if (isConnectionFailure(err)) {
            failedAt = probedAt = Date.now();
          } else failedAt = 0;
          reject(fromPostgres(err));
        };
        const timer = setTimeout(
          () => fail(unreachable(`did not answer within ${QUERY_DEADLINE_MS} ms`)),
          QUERY_DEADLINE_MS,
        );
        f(...args).then(
          (v) => {
            clearTimeout(timer);
            failedAt = 0;
            resolve(v);
          },
          (e: unknown) => {
            clearTimeout(timer);
            fail(e instanceof Error ? e : new Error(String(e)));
          },
        );
      });
    };
}

/** `f` with its failures marked as PostgreSQL's (the calls without the request path's guard). */
function tagged<A extends unknown[], R>(f: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return (...args) =>
    f(...args).catch((err: unknown) => {
      throw fromPostgres(err);
    });
}

export function pgGatewayStore(sql: Sql, placement: ShardPlacement): GatewayStore {
  const timed = breaker();
  const heavy = breaker();
  return {
    loadUsers: tagged(() => users.loadUsers(sql)),
    createUser: tagged((name: string) => users.createUser(sql, name)),
    setUserHalt: tagged((userId: string, halted: boolean) =>
      users.setUserHalt(sql, userId, halted),
    ),
    listInstruments: tagged(() => instruments.listInstruments(sql)),
    upsertInstrument: tagged(async (row: InstrumentInput): Promise<UpsertResult> => {
      const r = await instruments.upsertInstrument(sql, row);
      if (r.kind === 'conflict') return { kind: 'conflict', instrument: r.existing };
      if (r.kind === 'invalid') throw new Error(`instrument ${r.field}: ${r.message}`);
      const kind = r.created ? 'created' : r.updated ? 'updated' : 'unchanged';
      return { kind, instrument: r.instrument };
    }),
    getOrder: timed((id: string) => orders.getOrder(sql, id)),
    listOrders: timed((q: orders.ListOrdersQuery) => orders.listOrders(sql, q)),
    findByClientOrderId: timed((userId: string, cid: string) =>
      orders.findByClientOrderId(sql, userId, cid),
    ),
    insertPendingOrder: tagged((order: OrderState) =>
      orders.insertPendingOrder(sql, order, `s${placement.of(order.symbol)}`),
    ),
    deletePendingOrder: tagged(async (orderId: string) => {
      await sql`DELETE FROM orders WHERE id = ${orderId} AND status = 'PENDING'`;
    }),
    fillsOfOrder: timed((orderId: string) => trades.fillsOfOrder(sql, orderId)),
    recentTrades: timed((symbol: string, limit: number) => trades.recentTrades(sql, symbol, limit)),
    // A guard of its own: a wide window that runs out its time is no sign that the rest of the
    // requests should fail fast.
    candles: heavy((symbol: string, seconds: number, from: Date, to: Date) =>
      trades.candles(sql, symbol, seconds, from, to),
    ),
    ping: timed(async () => {
      await sql`SELECT 1`;
    }),
  };
}
