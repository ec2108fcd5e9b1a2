// /v1/orders: submit, read, list, cancel, amend, fills. The submit path is the system's hot path:
// no I/O before the one Redis round trip but what an idempotency key needs.
import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { v7 as uuidv7 } from 'uuid';
import { LAYOUT_CHANGING } from '../../queue/keys.js';
import { FINAL_STATUSES, apiOrder } from '../../queue/records.js';
import type { OrderState, StatusName } from '../../queue/records.js';
import type { GatewayContext } from '../app.js';
import { ApiError, invalid } from '../errors.js';
import { userGuard } from '../guard.js';
import { newestFirst } from '../newest-first.js';
import { buildAmend, buildOrder, filledPast, moneyDetails, sameOrder } from '../order-builder.js';
import {
  AmendRequest,
  Fills,
  MassCancelAccepted,
  MassCancelQuery,
  Order,
  OrderId,
  OrderList,
  OrderListQuery,
  OrderRequest,
} from '../schemas.js';

const errors = {
  400: { $ref: 'Error#' },
  401: { $ref: 'Error#' },
  403: { $ref: 'Error#' },
  404: { $ref: 'Error#' },
  409: { $ref: 'Error#' },
  413: { $ref: 'Error#' },
  415: { $ref: 'Error#' },
  429: { $ref: 'Error#' },
  503: { $ref: 'Error#' },
  504: { $ref: 'Error#' },
};

const OPEN: readonly StatusName[] = ['PENDING', 'NEW', 'PARTIALLY_FILLED'];
const SYNC_TIMEOUT_MS = 5_000;
/** Below the Redis client's 1 s command timeout: Redis refuses the script after it. */
const SUBMIT_DEADLINE_MS = 750;

/**
 * An order id as the system keeps it: a UUID is case-insensitive, and a client may send one in
 * capitals, but Redis's keys are not.
 */
const orderId = (params: { id: string }): string => params.id.toLowerCase();

/**
 * A cancel has no body. Many clients send `Content-Type: application/json` with every request;
 * with no body to go with it, that header is dropped rather than sending an empty body to the JSON
 * parser (a 400) or refusing another type (a 415). A cancel that does send a body still has it
 * parsed.
 */
export function withoutBody(req: FastifyRequest, _reply: FastifyReply, done: () => void): void {
  const h = req.headers;
  const empty =
    h['transfer-encoding'] === undefined &&
    (h['content-length'] === undefined || h['content-length'] === '0');
  if (empty) delete h['content-type'];
  done();
}

export function orderRoutes(ctx: GatewayContext): FastifyPluginCallbackTypebox {
  const { queue, store } = ctx;

  /** The recorded shard layout last refused by (logged once per value). */
  let misrouted: string | undefined;

  /** The order with this id if the caller owns it: the status cache first, then PostgreSQL. */
  async function ownOrder(id: string, userId: string): Promise<OrderState> {
    const order = (await queue.getOrder(id)) ?? (await store.getOrder(id));
    if (order === undefined || order.user_id !== userId) throw new ApiError('NOT_FOUND');
    return order;
  }

  /**
   * The answer to a cancel or an amend of an order the status cache no longer holds: final (and
   * expired from the cache) is 409; open in PostgreSQL, the cache was lost: refuse rather than
   * guess.
   */
  function closedOrUnavailable(order: OrderState): ApiError {
    if (FINAL_STATUSES.includes(order.status)) {
      return new ApiError('ORDER_CLOSED', `The order is already ${order.status}.`);
    }
    return new ApiError('UNAVAILABLE', 'The order’s live state is unavailable.', undefined, 1);
  }

  /** 503 at the queue's high-water mark, counted. */
  function overloaded(backlog: number): ApiError {
    ctx.metrics.ordersRefused.inc({ code: 'OVERLOADED' });
    return new ApiError(
      'OVERLOADED',
      `The order queue holds ${backlog} commands; retry shortly.`,
      undefined,
      1,
    );
  }

  /**
   * 503 for a request refused because Redis records another shard layout than this gateway's, or
   * none: logged once per layout seen, not per request (every one is refused alike until a
   * restart).
   */
  function misroutedError(req: FastifyRequest, recorded: string): ApiError {
    if (recorded === '' && misrouted !== '') {
      misrouted = '';
      req.log.error(
        'no shard layout in Redis, and none could be put back from PostgreSQL: orders are refused until one is (restart a gateway)',
      );
    }
    if (recorded.startsWith(LAYOUT_CHANGING) || recorded === '') {
      return new ApiError(
        'UNAVAILABLE',
        'The engines are being laid out anew; retry shortly.',
        undefined,
        1,
      );
    }
    if (misrouted !== recorded) {
      misrouted = recorded;
      req.log.error(
        { recorded, routes_by: queue.layout },
        'the shard layout is not the one this gateway routes by: restart it with the SHARDS and SHARD_PINS of the other parts',
      );
    }
    return new ApiError(
      'UNAVAILABLE',
      'This gateway is out of date with the engines; send orders to another, or retry once it has been restarted.',
      undefined,
      5,
    );
  }

  /** 400 for a symbol that is not listed. */
  function unknownSymbol(symbol: string): ApiError {
    return new ApiError('UNKNOWN_SYMBOL', `${symbol} is not a listed instrument.`, [
      { field: 'symbol', message: 'is not listed' },
    ]);
  }

  /** 403 for a new order or amend of a user whose trading is halted, counted. */
  function halted(): ApiError {
    ctx.metrics.ordersRefused.inc({ code: 'TRADING_HALTED' });
    return new ApiError('TRADING_HALTED');
  }

  /** 503 for a script Redis ran only past its deadline: nothing was written. */
  function expired(): ApiError {
    return new ApiError('UNAVAILABLE', 'The queue did not answer in time.', undefined, 1);
  }

  /** Answer for a client_order_id seen before: the original (200) or a conflict (409). */
  async function repeated(
    existingId: string,
    order: OrderState,
    found?: OrderState,
  ): Promise<OrderState> {
    const existing =
      found ?? (await queue.getOrder(existingId)) ?? (await store.getOrder(existingId));
    if (existing === undefined) throw new ApiError('UNAVAILABLE', undefined, undefined, 1);
    if (!sameOrder(existing, order)) {
      throw new ApiError(
        'CONFLICT',
        `client_order_id ${order.client_order_id} was used for a different order (${existingId}).`,
      );
    }
    return existing;
  }

  return (app, _options, done) => {
    // Before the body is read: a caller without a valid key (or over its rate) is refused
    // before its body costs a parse and a validation, whatever the body is.
    app.addHook('onRequest', userGuard(ctx));

    app.post(
      '/v1/orders',
      {
        config: {
          moreDetails: async (req, named) => {
            const symbol = (req.body as { symbol?: unknown } | null)?.symbol;
            const listed =
              typeof symbol === 'string' && !named.has('symbol')
                ? await ctx.instruments.get(symbol)
                : undefined;
            return moneyDetails(req.body, req.rawNumbers, listed, named);
          },
        },
        schema: {
          summary: 'Submit an order',
          body: OrderRequest,
          response: { 200: Order, 201: Order, ...errors },
        },
      },
      async (req, reply) => {
        const body = req.body;
        const instrument = await ctx.instruments.get(body.symbol);
        if (instrument === undefined) {
          throw unknownSymbol(body.symbol);
        }
        const built = buildOrder(body, req.rawNumbers, instrument, req.caller, new Date());
        if (built instanceof ApiError) throw built;
        const order = built;

        // Redis remembers a client_order_id for days; PostgreSQL's unique index for good.
        if (order.client_order_id !== null) {
          const old = await store.findByClientOrderId(order.user_id, order.client_order_id);
          if (old !== undefined)
            return reply.code(200).send(apiOrder(await repeated(old.id, order)));
        }
        const sync = ctx.config.orderPath === 'sync';
        if (sync && !(await store.insertPendingOrder(order))) {
          // Another request with this client_order_id stored its row since the look-up above
          // (ids are fresh): answer as its repeat once it is queued; until then it may yet be
          // refused, so this one is refused too, having changed nothing.
          const cid = order.client_order_id as string;
          const other = await store.findByClientOrderId(order.user_id, cid);
          const queued = other && (await queue.getOrder(other.id));
          if (other === undefined || queued === undefined) {
            throw new ApiError(
              'UNAVAILABLE',
              `An order with client_order_id ${cid} is being accepted; retry shortly.`,
              undefined,
              1,
            );
          }
          return reply.code(200).send(apiOrder(await repeated(other.id, order, queued)));
        }
        const deadline = Date.now() + SUBMIT_DEADLINE_MS;
        const result = await queue.submit(order, deadline).catch(async (err: unknown) => {
          if (sync) await store.deletePendingOrder(order.id);
          throw err;
        });
        if (result.kind === 'overloaded') {
          if (sync) await store.deletePendingOrder(order.id);
          throw overloaded(result.backlog);
        }
        if (result.kind === 'misrouted') {
          if (sync) await store.deletePendingOrder(order.id);
          throw misroutedError(req, result.recorded);
        }
        if (result.kind === 'expired') {
          if (sync) await store.deletePendingOrder(order.id);
          throw expired();
        }
        if (result.kind === 'unknown') {
          // Redis took the script and then could not be reached to say whether it ran. Sync mode:
          // the pending row goes; if the order was queued, the writer stores it from the stream.
          if (sync) await store.deletePendingOrder(order.id);
          req.log.warn({ order_id: order.id }, 'submit outcome unknown: Redis unreachable');
          throw new ApiError(
            'OUTCOME_UNKNOWN',
            `The queue did not confirm order ${order.id} in time; it may have been accepted. ` +
              'Look it up by id, or re-send it with the same client_order_id.',
            [{ field: 'id', message: order.id }],
            1,
          );
        }
        if (result.kind === 'duplicate') {
          if (sync) await store.deletePendingOrder(order.id);
          return reply.code(200).send(apiOrder(await repeated(result.orderId, order)));
        }
        if (result.kind === 'halted') {
          if (sync) await store.deletePendingOrder(order.id);
          throw halted();
        }
        ctx.metrics.ordersAccepted.inc({ mode: ctx.config.orderPath });
        if (!sync) return reply.code(201).send(apiOrder(order));
        // The seed's synchronous baseline: answer once the engine has taken the order. It is
        // queued and stored whatever the engine does, so an engine slow to take it still gets a
        // 201, with the order as it stands (PENDING): a 503 would say it was not accepted.
        const shard = queue.shardIndex(order.symbol);
        if (!(await ctx.applied.wait(shard, result.seq, SYNC_TIMEOUT_MS))) {
          req.log.warn(
            { order_id: order.id },
            'sync mode: the engine did not take the order in time',
          );
        }
        return reply.code(201).send(apiOrder((await queue.getOrder(order.id)) ?? order));
      },
    );

    app.get(
      '/v1/orders/:id',
      { schema: { summary: 'One order', params: OrderId, response: { 200: Order, ...errors } } },
      async (req) => apiOrder(await ownOrder(orderId(req.params), req.caller.id)),
    );

    app.get(
      '/v1/orders',
      {
        schema: {
          summary: 'The caller’s orders, newest first',
          querystring: OrderListQuery,
          response: { 200: OrderList, ...errors },
        },
      },
      async (req) => {
        const status = req.query.status ?? 'ALL';
        const limit = req.query.limit ?? 100;
        const symbol = req.query.symbol;
        const keep = (o: OrderState): boolean =>
          (symbol === undefined || o.symbol === symbol) &&
          (status === 'ALL' || (status === 'OPEN') === OPEN.includes(o.status));
        // Recent orders from the cache (PostgreSQL may be a flush behind), the rest from
        // PostgreSQL; the newer version of an order wins.
        const query = { userId: req.caller.id, status, symbol, limit };
        const [recent, first] = await Promise.all([
          queue.recentOrders(req.caller.id, 500),
          store.listOrders(query),
        ]);
        const cached = new Map<string, OrderState>();
        for (const o of recent) {
          const seen = cached.get(o.id);
          if (seen === undefined || seen.version <= o.version) cached.set(o.id, o);
        }
        const current = (o: OrderState): OrderState => {
          const c = cached.get(o.id);
          return c !== undefined && c.version >= o.version ? c : o;
        };
        // PostgreSQL filtered by the statuses it holds; a row the cache has since moved out of
        // the filter (an OPEN order filled a moment ago) is dropped, and then the next rows are
        // needed: no older row can be among the first `limit` only once `limit` of PostgreSQL's
        // rows are kept, or it has no more. Only cached orders are dropped, so `limit` more than
        // those is always enough; the count doubles towards it.
        let stored = first;
        for (;;) {
          const kept = stored.filter((o) => keep(current(o))).length;
          if (kept >= limit || stored.length < query.limit) break;
          query.limit = Math.min(query.limit * 2, limit + cached.size);
          stored = await store.listOrders(query);
        }
        const byId = new Map(cached);
        for (const o of stored) byId.set(o.id, current(o));
        const orders = [...byId.values()]
          .filter(keep)
          .sort(newestFirst((o) => o.created_at))
          .slice(0, limit)
          .map(apiOrder);
        return { orders };
      },
    );

    app.delete(
      '/v1/orders/:id',
      {
        onRequest: withoutBody,
        schema: {
          summary: 'Cancel an order (202: the engine takes the cancel unless it filled first)',
          params: OrderId,
          response: { 202: Order, ...errors },
        },
      },
      async (req, reply) => {
        const id = orderId(req.params);
        const result = await queue.cancel(id, req.caller.id, req.caller.no, new Date());
        if (result.kind === 'foreign') throw new ApiError('NOT_FOUND');
        if (result.kind === 'queued') return reply.code(202).send(apiOrder(result.order));
        throw closedOrUnavailable(
          result.kind === 'final' ? result.order : await ownOrder(id, req.caller.id),
        );
      },
    );

    app.delete(
      '/v1/orders',
      {
        onRequest: withoutBody,
        schema: {
          summary:
            'Cancel all the caller’s open orders, or those of one symbol or side (202: each engine cancels every order accepted before it that is still open when it takes the request)',
          querystring: MassCancelQuery,
          response: { 202: MassCancelAccepted, ...errors },
        },
      },
      async (req, reply) => {
        const { symbol, side } = req.query;
        if (symbol !== undefined && (await ctx.instruments.get(symbol)) === undefined) {
          throw unknownSymbol(symbol);
        }
        const at = new Date();
        const mass = {
          id: uuidv7({ msecs: at.getTime() }),
          userId: req.caller.id,
          ownerNo: req.caller.no,
          ...(symbol === undefined ? {} : { symbol }),
          ...(side === undefined ? {} : { side }),
          at,
        };
        const result = await queue.cancelAll(mass, Date.now() + SUBMIT_DEADLINE_MS);
        if (result.kind === 'misrouted') throw misroutedError(req, result.recorded);
        if (result.kind === 'expired') throw expired();
        if (result.kind === 'unknown') {
          req.log.warn({ request_id: mass.id }, 'mass cancel outcome unknown: Redis unreachable');
          throw new ApiError(
            'OUTCOME_UNKNOWN',
            'The queue did not confirm the mass cancel for every engine in time; it may have ' +
              'been queued for some. Send it again (it cancels what is open when each engine ' +
              'takes it).',
            undefined,
            1,
          );
        }
        req.log.info(
          { request_id: mass.id, user_id: mass.userId, symbol: symbol ?? null, side: side ?? null },
          'mass cancel queued',
        );
        return reply
          .code(202)
          .send({ symbol: symbol ?? null, side: side ?? null, requested_at: at.toISOString() });
      },
    );

    app.patch(
      '/v1/orders/:id',
      {
        config: {
          // A body the schema refused: its money fields judged against the order's instrument
          // when the caller's order is found, else by their form alone.
          moreDetails: async (req, named) => {
            const params = req.params as { id?: unknown };
            const id = typeof params.id === 'string' ? params.id.toLowerCase() : '';
            const order = await queue.getOrder(id).catch(() => undefined);
            const listed =
              order !== undefined && order.user_id === req.caller.id
                ? await ctx.instruments.get(order.symbol)
                : undefined;
            return moneyDetails(req.body, req.rawNumbers, listed, named);
          },
        },
        schema: {
          summary:
            'Amend a LIMIT GTC order: a new price, total quantity, or both (202: the engine takes the amend unless the order is final by then, or the amend would not leave it valid)',
          params: OrderId,
          body: AmendRequest,
          response: { 202: Order, ...errors },
        },
      },
      async (req, reply) => {
        const id = orderId(req.params);
        const order = await ownOrder(id, req.caller.id);
        if (FINAL_STATUSES.includes(order.status)) {
          throw new ApiError('ORDER_CLOSED', `The order is already ${order.status}.`);
        }
        if (order.type !== 'LIMIT' || order.time_in_force !== 'GTC') {
          throw new ApiError(
            'NOT_AMENDABLE',
            `Only a LIMIT GTC order rests to be amended; this one is ${order.type} ${order.time_in_force}.`,
          );
        }
        const instrument = await ctx.instruments.get(order.symbol);
        if (instrument === undefined) {
          throw new ApiError('UNAVAILABLE', 'The order’s instrument is unavailable.', undefined, 1);
        }
        const values = buildAmend(req.body, req.rawNumbers, instrument, order);
        if (values instanceof ApiError) throw values;
        const result = await queue.replace(
          {
            orderId: id,
            userId: req.caller.id,
            ownerNo: req.caller.no,
            symbol: order.symbol,
            ...values,
            at: new Date(),
          },
          Date.now() + SUBMIT_DEADLINE_MS,
        );
        switch (result.kind) {
          case 'queued':
            return reply.code(202).send(apiOrder(result.order));
          case 'foreign':
            throw new ApiError('NOT_FOUND');
          case 'final':
            throw closedOrUnavailable(result.order);
          case 'missing':
            // Gone from the cache since the read above: final, and expired; or the cache lost.
            throw closedOrUnavailable(await ownOrder(id, req.caller.id));
          case 'filled-past':
            throw invalid([filledPast(result.order)]);
          case 'overloaded':
            throw overloaded(result.backlog);
          case 'halted':
            throw halted();
          case 'expired':
            throw expired();
          case 'unknown':
            req.log.warn({ order_id: id }, 'amend outcome unknown: Redis unreachable');
            throw new ApiError(
              'OUTCOME_UNKNOWN',
              `The queue did not confirm the amend of order ${id} in time; it may have been queued. ` +
                'Read the order, or send the same amend again.',
              [{ field: 'id', message: id }],
              1,
            );
          case 'not-amendable':
            // Checked above; the type and time in force of an order never change.
            throw new ApiError('NOT_AMENDABLE');
          default:
            // 'present' and 'superseded' answer only an amend sent again after a Redis restart.
            throw new Error(`amend of ${id}: unexpected ${result.kind}`);
        }
      },
    );

    app.get(
      '/v1/orders/:id/fills',
      {
        schema: {
          summary: 'Fills of one order, oldest first',
          params: OrderId,
          response: { 200: Fills, ...errors },
        },
      },
      async (req) => {
        const order = await ownOrder(orderId(req.params), req.caller.id);
        const fills = (await queue.fills(order.id)) ?? (await store.fillsOfOrder(order.id));
        return { fills };
      },
    );
    done();
  };
}
