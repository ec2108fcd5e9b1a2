// The checks in front of user and admin routes: bearer key → caller (401 with one message for a
// missing and a wrong key alike), then the per-key rate limit (429 + Retry-After).
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { GatewayContext } from './app.js';
import { bearer, isAdminToken } from './auth.js';
import { ApiError } from './errors.js';
import type { Caller } from './order-builder.js';

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller;
  }
}

export function userGuard(ctx: GatewayContext) {
  return async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const key = bearer(req.headers.authorization);
    const caller = key === undefined ? undefined : await ctx.keys.lookup(key);
    if (caller === undefined) throw new ApiError('UNAUTHORIZED');
    const wait = ctx.limiter.take(caller.id);
    if (wait > 0) throw new ApiError('RATE_LIMITED', undefined, undefined, wait);
    req.caller = caller;
  };
}

export function adminGuard(ctx: GatewayContext) {
  return async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const token = ctx.config.adminToken;
    if (token === undefined || !isAdminToken(bearer(req.headers.authorization), token)) {
      throw new ApiError('UNAUTHORIZED');
    }
    await Promise.resolve();
  };
}
