// /v1/orders/cancel-all-after: the caller's dead man's switch (src/queue/cancel-after.ts). Armed,
// and pushed back by arming it again before it runs out, it cancels all the caller's open orders
// once it does: a client that dies or loses its connection leaves no orders behind it.
import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { MAX_TIMEOUT_MS, MIN_TIMEOUT_MS } from '../../queue/cancel-after.js';
import type { CancelAfterState as State } from '../../queue/cancel-after.js';
import type { GatewayContext } from '../app.js';
import { invalid } from '../errors.js';
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
  current_time: s.now.toISOString(),
});

export function cancelAfterRoutes(ctx: GatewayContext): FastifyPluginCallbackTypebox {
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
        return answer(await ctx.queue.setCancelAfter(req.caller.id, req.caller.no, timeout));
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
      async (req) => answer(await ctx.queue.setCancelAfter(req.caller.id, req.caller.no, 0)),
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
