// /v1/orders/cancel-all-after: the caller's dead man's switch (src/queue/cancel-after.ts). Armed,
// and pushed back by arming it again before it runs out, it cancels all the caller's open orders
// once it does: a client that dies or loses its connection leaves no orders behind it.
import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { MAX_TIMEOUT_MS, MIN_TIMEOUT_MS } from '../../queue/cancel-after.js';
import type { CancelAfterState as State } from '../../queue/cancel-after.js';
import type { GatewayContext } from '../app.js';
import { ApiError, invalid } from '../errors.js';
import { userGuard } from '../guard.js';
import { CancelAfterRequest, CancelAfterState } from '../schemas.js';
import { withoutBody } from './orders.js';

const errors = {
  400: { $ref: 'Error#' },
  401: { $ref: 'Error#' },
  413: { $ref: 'Error#' },
  415: { $ref: 'Error#' },
  429: { $ref: 'Error#' },
  503: { $ref: 'Error#' },
};

const PATH = '/v1/orders/cancel-all-after';

const answer = (s: State) => ({
  timeout_ms: s.timeoutMs,
  trigger_at: s.triggerAt?.toISOString() ?? null,
  fired_at: s.firedAt?.toISOString() ?? null,
  current_time: s.now.toISOString(),
});

export function cancelAfterRoutes(ctx: GatewayContext): FastifyPluginCallbackTypebox {
  /** Arms (or with 0 disarms) the caller's switch, firing first one that has run out. */
  async function set(req: FastifyRequest, timeout: number) {
    const r = await ctx.queue.setCancelAfter(req.caller.id, req.caller.no, timeout);
    if (r.kind === 'unavailable') {
      throw new ApiError(
        'UNAVAILABLE',
        'The switch has run out, and the cancel of the open orders could not be queued yet; send this again.',
        undefined,
        1,
      );
    }
    if (r.fired !== undefined) {
      req.log.warn(
        {
          user_id: req.caller.id,
          request_id: r.fired.switch.fireId,
          trigger_at: new Date(Number(r.fired.switch.state)).toISOString(),
        },
        'cancel-all-after had run out when armed again: the user’s open orders are canceled',
      );
      return answer({ ...r.state, firedAt: r.fired.at });
    }
    return answer(r.state);
  }

  return (app, _options, done) => {
    app.addHook('onRequest', userGuard(ctx));

    app.put(
      PATH,
      {
        schema: {
          summary:
            'Arm the dead man’s switch: all the caller’s open orders are canceled if it is not armed again within timeout_ms (0 disarms)',
          body: CancelAfterRequest,
          response: { 200: CancelAfterState, ...errors },
        },
      },
      async (req) => {
        const timeout = req.body.timeout_ms;
        if (timeout !== 0 && timeout < MIN_TIMEOUT_MS) {
          throw invalid([
            {
              field: 'timeout_ms',
              message: `must be 0 (disarm) or from ${MIN_TIMEOUT_MS} to ${MAX_TIMEOUT_MS}`,
            },
          ]);
        }
        return set(req, timeout);
      },
    );

    app.delete(
      PATH,
      {
        onRequest: withoutBody,
        schema: {
          summary: 'Disarm the dead man’s switch',
          response: { 200: CancelAfterState, ...errors },
        },
      },
      async (req) => set(req, 0),
    );

    app.get(
      PATH,
      {
        schema: {
          summary: 'The dead man’s switch',
          response: { 200: CancelAfterState, ...errors },
        },
      },
      async (req) => answer(await ctx.queue.cancelAfter.get(req.caller.id)),
    );
    done();
  };
}
