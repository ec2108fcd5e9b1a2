// Health and metrics.
import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import type { GatewayContext } from '../app.js';
import { probeValue } from '../../infra/probe-value.js';
import { Health, Ready } from '../schemas.js';

/** 'ok' when `check` succeeds within `ms`, else 'down'. */
async function probe(check: () => Promise<unknown>, ms = 1000): Promise<'ok' | 'down'> {
  const ok = await probeValue(async () => {
    await check();
    return 'ok' as const;
  }, ms);
  return ok ?? 'down';
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
      '/ready',
      {
        schema: {
          summary:
            'Ready for traffic: the recorded shard layout is the one this gateway routes by, and every engine has applied its stream to within READY_MAX_LAG commands of the head',
          security: [],
          response: { 200: Ready, 503: Ready },
        },
      },
      async (_req, reply) => {
        const [heads, recorded] = await Promise.all([
          Promise.all(ctx.queue.shards.map((k) => ctx.redis.get(k.seq))),
          ctx.queue.recordedLayout(),
        ]).catch(() => [undefined, null] as const);
        const applied = await probeValue(() => ctx.engine.lastApplied());
        const shards = ctx.queue.shards.map((k, n) => ({
          shard: k.shard,
          head: Number(heads?.[n] ?? 0),
          applied: applied?.[n] ?? null,
        }));
        // A gateway whose SHARDS the others do not share, or one during a change of layout,
        // refuses every order (503): a load balancer should send them elsewhere.
        const layout = { routes_by: ctx.queue.layout, recorded };
        const ready =
          heads !== undefined &&
          recorded === ctx.queue.layout &&
          shards.every((s) => s.applied !== null && s.head - s.applied <= ctx.config.readyMaxLag);
        return reply.code(ready ? 200 : 503).send({ ready, layout, shards });
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
