// /v1/admin: users and instruments, behind the admin token.
import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { v7 as uuidv7 } from 'uuid';
import { Scale, plainDecimal } from '../../engine/scale.js';
import type { GatewayContext } from '../app.js';
import { hashApiKey } from '../../db/users.js';
import { ApiError, invalid } from '../errors.js';
import { numberText } from '../order-builder.js';
import { adminGuard } from '../guard.js';
import { withoutBody } from './orders.js';
import {
  Instrument,
  InstrumentRequest,
  SymbolParam,
  User,
  UserHalt,
  UserId,
  UserRequest,
} from '../schemas.js';

const errors = {
  400: { $ref: 'Error#' },
  401: { $ref: 'Error#' },
  404: { $ref: 'Error#' },
  409: { $ref: 'Error#' },
  413: { $ref: 'Error#' },
  415: { $ref: 'Error#' },
  503: { $ref: 'Error#' },
};

/** Below the Redis client's 1 s command timeout, as a request's. */
const CANCEL_DEADLINE_MS = 750;

/** A tick or lot size in its canonical form ("0.010" → "0.01"), or undefined. */
function canonicalStep(value: string | number, raw: string | undefined): string | undefined {
  const text = typeof value === 'string' ? value : plainDecimal(numberText(value, raw) ?? '');
  if (text === undefined) return undefined;
  try {
    const scale = new Scale(text);
    // Trailing zeros of the fraction say nothing about the step.
    return scale
      .toDecimal(1)
      .replace(/(\.[0-9]*?)0+$/, '$1')
      .replace(/\.$/, '');
  } catch {
    return undefined;
  }
}

export function adminRoutes(ctx: GatewayContext): FastifyPluginCallbackTypebox {
  return (app, _options, done) => {
    // Before the body is read, as for user routes.
    app.addHook('onRequest', adminGuard(ctx));

    app.post(
      '/v1/admin/users',
      {
        schema: {
          summary: 'Create a user; the API key is shown once',
          body: UserRequest,
          response: { 201: User, ...errors },
        },
      },
      async (req, reply) => {
        const user = await ctx.store.createUser(req.body.name);
        ctx.keys.add({
          id: user.id,
          no: user.no,
          name: user.name,
          api_key_hash: hashApiKey(user.api_key),
        });
        return reply.code(201).send({ id: user.id, name: user.name, api_key: user.api_key });
      },
    );

    // The kill switch: a user's trading halted (open orders canceled, new orders and amends
    // refused with 403 TRADING_HALTED) or resumed. PostgreSQL first, the copy kept; then Redis,
    // which every submit and amend checks; then the mass cancel, queued after the halt took, so
    // that it cancels every order accepted before it and none is accepted after.
    app.put(
      '/v1/admin/users/:id/halt',
      {
        onRequest: withoutBody,
        schema: {
          summary:
            'Halt a user’s trading: cancel all their open orders and refuse their new orders and amends (403 TRADING_HALTED) until resumed',
          params: UserId,
          response: { 200: UserHalt, ...errors },
        },
      },
      async (req) => {
        const id = req.params.id.toLowerCase();
        const user = await ctx.store.setUserHalt(id, true);
        if (user === undefined) throw new ApiError('NOT_FOUND', 'No such user.');
        await ctx.queue.setHalted(id, true);
        const canceled = await ctx.queue.cancelAll(
          { id: uuidv7(), userId: id, ownerNo: user.no, at: new Date() },
          Date.now() + CANCEL_DEADLINE_MS,
        );
        if (canceled.kind !== 'queued') {
          req.log.warn({ user_id: id, outcome: canceled.kind }, 'halt: mass cancel not queued');
          throw new ApiError(
            'UNAVAILABLE',
            'Trading is halted, but the cancel of the user’s open orders was not confirmed: send the halt again.',
            undefined,
            1,
          );
        }
        req.log.warn({ user_id: id, user_name: user.name }, 'trading halted; open orders canceled');
        return { id: user.id, name: user.name, halted: true, halted_at: user.halted_at };
      },
    );

    app.delete(
      '/v1/admin/users/:id/halt',
      {
        onRequest: withoutBody,
        schema: {
          summary: 'Resume a user’s trading',
          params: UserId,
          response: { 200: UserHalt, ...errors },
        },
      },
      async (req) => {
        const id = req.params.id.toLowerCase();
        const user = await ctx.store.setUserHalt(id, false);
        if (user === undefined) throw new ApiError('NOT_FOUND', 'No such user.');
        await ctx.queue.setHalted(id, false);
        req.log.warn({ user_id: id, user_name: user.name }, 'trading resumed');
        return { id: user.id, name: user.name, halted: false, halted_at: null };
      },
    );

    app.put(
      '/v1/admin/instruments/:symbol',
      {
        schema: {
          summary:
            'List an instrument, or set its price protection (tick and lot size cannot change once listed)',
          params: SymbolParam,
          body: InstrumentRequest,
          response: { 200: Instrument, 201: Instrument, ...errors },
        },
      },
      async (req, reply) => {
        const tick = canonicalStep(req.body.tick_size, req.rawNumbers.tick_size);
        const lot = canonicalStep(req.body.lot_size, req.rawNumbers.lot_size);
        const bad = [
          ...(tick === undefined
            ? [{ field: 'tick_size', message: 'must be a positive decimal' }]
            : []),
          ...(lot === undefined
            ? [{ field: 'lot_size', message: 'must be a positive decimal' }]
            : []),
        ];
        if (tick === undefined || lot === undefined) throw invalid(bad);
        const result = await ctx.store.upsertInstrument({
          symbol: req.params.symbol,
          tick_size: tick,
          lot_size: lot,
          ...(req.body.market_protection_bps === undefined
            ? {}
            : { market_protection_bps: req.body.market_protection_bps }),
        });
        if (result.kind === 'conflict') {
          throw new ApiError(
            'CONFLICT',
            `${req.params.symbol} is listed with tick_size ${result.instrument.tick_size} and ` +
              `lot_size ${result.instrument.lot_size}; they cannot change once listed.`,
          );
        }
        ctx.instruments.put(result.instrument);
        if (result.kind === 'updated') {
          req.log.warn(
            {
              symbol: req.params.symbol,
              market_protection_bps: result.instrument.market_protection_bps,
            },
            'price protection changed',
          );
        }
        return reply.code(result.kind === 'created' ? 201 : 200).send(result.instrument);
      },
    );
    done();
  };
}
