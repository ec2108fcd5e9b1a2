// Health and metrics.
import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import type { GatewayContext } from '../app.js';
import { Health } from '../schemas.js';

/** Resolves 'ok' when `check` succeeds within `ms`, else 'down'. */
async function probe(check: () => Promise<unknown>, ms = 1000): Promise<'ok' | 'down'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'down'>((resolve) => {
    timer = setTimeout(() => resolve('down'), ms);
  });
  try {
    return await Promise.race([check().then(() => 'ok' as const), timeout]);
  } catch {
    return 'down';
  } finally {
    clearTimeout(timer);
  }
}

export function operationsRoutes(ctx: GatewayContext): FastifyPluginCallbackTypebox {
  return (app, _options, done) => {
    app.get(
      '/health',
      {
        schema: {
          summary: 'Health of the gateway and the components it needs',
          security: [],
          response: { 200: Health, 503: Health },
        },
      },
      async (_req, reply) => {
        const [redis, postgres, engine] = await Promise.all([
          probe(() => ctx.pingRedis()),
          probe(() => ctx.store.ping()),
          probe(() => ctx.engine.lastApplied()),
        ]);
        const up = redis === 'ok' && postgres === 'ok' && engine === 'ok';
        return reply
          .code(up ? 200 : 503)
          .send({ status: up ? 'ok' : 'degraded', components: { redis, postgres, engine } });
      },
    );

    app.get(
      '/metrics',
      { schema: { summary: 'Prometheus metrics', security: [], hide: false } },
      async (_req, reply) => reply.type(ctx.metrics.contentType).send(await ctx.metrics.text()),
    );
    done();
  };
}
