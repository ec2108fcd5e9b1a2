// The fault suite's cases (issue 5): each injects one fault into a loaded system and says when it
// is over; some check what is particular to them.
import type { Redis } from 'ioredis';
import { aofState } from '../queue/aof.js';
import { WRITER_GROUP } from '../queue/keys.js';
import type { CaseContext, FaultCase } from './suite.js';
import type { LoadSummary } from './load.js';
import type { PartName } from './parts.js';

/** kill -9 of one process, started again after `downMs`. */
function killed(part: PartName, downMs: number, title: string): FaultCase {
  return {
    name: `${part}-kill`,
    title,
    async inject(ctx) {
      const p = ctx.parts[part];
      p.kill('SIGKILL');
      await p.exited();
      await ctx.sleep(downMs);
      await p.start();
    },
  };
}

/** Entries delivered to the writer and not yet acknowledged, on both streams. */
async function writerPending(redis: Redis, streams: string[]): Promise<number> {
  let n = 0;
  for (const s of streams) {
    const summary = (await redis.xpending(s, WRITER_GROUP)) as [number, ...unknown[]];
    n += Number(summary[0]);
  }
  return n;
}

/** SIGTERM: exit 0 (the process's own limit is 10 s, past which it exits 1). */
async function terminated(ctx: CaseContext, part: PartName): Promise<number> {
  const p = ctx.parts[part];
  const sent = Date.now();
  p.kill('SIGTERM');
  const exit = await p.exited();
  if (exit.code !== 0)
    ctx.fail(`${part}: SIGTERM ended it with ${exit.code ?? exit.signal}, not 0`);
  ctx.note(`${part} exited ${exit.code ?? exit.signal} ${exit.at - sent} ms after SIGTERM`);
  return sent;
}

/** A key outside the system's prefix, whose size makes Redis's next fsync slow. */
const BALLAST_KEY = 'faults:ballast';

/** Bytes in Redis's AOF buffer once some are (a write postponed), or 0 after `ms`. */
async function waitForUnwrittenAof(redis: Redis, ms: number): Promise<number> {
  const until = Date.now() + ms;
  for (;;) {
    const { buffered } = await aofState(redis);
    if (buffered > 0 || Date.now() > until) return buffered;
    // Keep a write going, so that there is something to postpone.
    await redis.set(`${BALLAST_KEY}:tick`, String(Date.now()));
  }
}

/** When the gateway's SIGTERM was sent and when it exited (set by the sigterm case). */
const gatewayStop = { sent: 0, exited: 0 };

/** The longest the engine-pause case keeps the engine stopped while waiting for load to be shed. */
const PAUSE_LIMIT_MS = 20_000;

/** Orders answered 503 OVERLOADED (refused at the queue's high-water mark). */
const overloaded = (load: LoadSummary): number => load.byStatus['503 OVERLOADED'] ?? 0;

export const CASES: FaultCase[] = [
  killed('engine', 2_000, 'kill -9 engine, restarted after 2 s'),
  killed('gateway', 500, 'kill -9 gateway, restarted'),
  killed('dispatcher', 500, 'kill -9 dispatcher, restarted'),
  killed('writer', 500, 'kill -9 writer, restarted'),
  {
    name: 'redis-kill',
    title: 'kill -9 Redis (AOF everysec) behind a slow fsync, restarted',
    async inject(ctx) {
      // With everysec, Redis answers before its AOF write while a background fsync runs (it
      // postpones the write up to 2 s): killed then, it comes back without what it answered last.
      // A 16 MB write makes the next fsync long, so the kill lands in that window, not by luck.
      await ctx.redis.set(BALLAST_KEY, 'x'.repeat(16 * 1024 * 1024));
      const unwritten = await waitForUnwrittenAof(ctx.redis, 2_000);
      ctx.note(`killed with ${unwritten} bytes of AOF buffer unwritten`);
      ctx.redisServer.kill('SIGKILL');
      await ctx.redisServer.exited();
      await ctx.sleep(500);
      await ctx.redisServer.restart();
      // Gone once Redis answers again (if its write reached the AOF at all).
      for (let tries = 0; ; tries++) {
        try {
          await ctx.redis.del(BALLAST_KEY, `${BALLAST_KEY}:tick`);
          break;
        } catch (err) {
          if (tries >= 20) throw err;
          await ctx.sleep(100);
        }
      }
    },
  },
  {
    name: 'postgres-stop',
    title: 'PostgreSQL stopped, then started',
    async inject(ctx) {
      const ms = ctx.timing.pgOutageMs;
      ctx.note(`PostgreSQL down for ${ms / 1000} s`);
      await ctx.postgres.stop();
      await ctx.sleep(ms);
      await ctx.postgres.restart();
      ctx.placePostgres();
    },
    verify(ctx, load) {
      // Orders without a client_order_id need no PostgreSQL: they went on being accepted.
      ctx.note(`answers: ${JSON.stringify(load.byStatus)}`);
    },
  },
  {
    name: 'redis-unreachable',
    title: 'Redis unreachable (connections cut), then back',
    proxy: true,
    async inject(ctx) {
      const before = ctx.load.answers.length;
      await ctx.proxy?.cut();
      await ctx.sleep(ctx.timing.outageMs);
      const during = ctx.load.answers.slice(before);
      await ctx.proxy?.restore();
      const refused = during.filter((a) => a.status === 503).length;
      const accepted = during.filter((a) => a.status === 201).length;
      ctx.note(`during the cut: ${refused} answered 503, ${accepted} answered 201`);
      if (refused === 0) ctx.fail('no request was answered 503 while Redis was unreachable');
    },
    verify(ctx, load) {
      ctx.note(`slowest answer ${load.slowestMs} ms`);
    },
  },
  {
    name: 'engine-pause',
    title: 'engine paused (SIGSTOP), load shed past the high-water mark',
    // The stream keeps what lies above the engine's newest snapshot: frequent snapshots keep that
    // well below the mark, so that only the pause reaches it.
    env: { QUEUE_HIGH_WATER: '6000', ENGINE_SNAPSHOT_EVERY: '1000' },
    async inject(ctx) {
      const engine = ctx.parts.engine;
      const before = overloaded(ctx.load.summary());
      engine.kill('SIGSTOP');
      // Paused for the outage, and on until the gateway sheds load, up to 20 s: a slower host
      // (or gateway) takes longer to fill the stream up to the mark.
      const paused = Date.now();
      await ctx.sleep(ctx.timing.outageMs);
      while (overloaded(ctx.load.summary()) === before && Date.now() - paused < PAUSE_LIMIT_MS) {
        await ctx.sleep(200);
      }
      engine.kill('SIGCONT');
      ctx.note(`engine paused for ${((Date.now() - paused) / 1000).toFixed(1)} s`);
    },
    verify(ctx, load) {
      const highWater = Number(ctx.env.QUEUE_HIGH_WATER);
      const shed = overloaded(load);
      ctx.note(
        `${shed} answered 503 OVERLOADED; order stream peaked at ${ctx.maxBacklog()} (high water ${highWater})`,
      );
      if (shed === 0) ctx.fail('the gateway never shed load while the engine was paused');
      if (load.retryAfter503 < shed) ctx.fail('a 503 came without Retry-After');
      // Cancels are not refused at the high-water mark (they shrink the book; a mass cancel of
      // both sides is two entries); amends are.
      const sum = (answers: Record<string, number>): number =>
        Object.values(answers).reduce((a, b) => a + b, 0);
      const cancels = sum(load.cancels) + 2 * sum(load.massCancels);
      if (ctx.maxBacklog() > highWater + cancels) {
        ctx.fail(`the order stream grew to ${ctx.maxBacklog()}, past the high-water mark`);
      }
    },
  },
  {
    name: 'sigterm',
    title: 'SIGTERM of each process in turn, restarted',
    // Only the final snapshot can account for the engine's state at its stop.
    env: { ENGINE_SNAPSHOT_EVERY: '100000000', ENGINE_SNAPSHOT_INTERVAL_MS: '3600000' },
    async inject(ctx) {
      const gap = ctx.timing.warmMs / 2;
      // Gateway: checked in `verify`, once lost answers are settled.
      gatewayStop.sent = await terminated(ctx, 'gateway');
      gatewayStop.exited = (await ctx.parts.gateway.exited()).at;
      await ctx.parts.gateway.start();
      await ctx.sleep(gap);
      await terminated(ctx, 'dispatcher');
      await ctx.parts.dispatcher.start();
      await ctx.sleep(gap);
      // Writer: everything it had read is committed and acknowledged.
      await terminated(ctx, 'writer');
      const pending = await writerPending(ctx.redis, [ctx.keys.orders, ctx.keys.events]);
      if (pending > 0) ctx.fail(`writer: ${pending} entries read but not committed at its exit`);
      await ctx.parts.writer.start();
      await ctx.sleep(gap);
      // Engine: its final snapshot holds everything it applied.
      const applied = await ctx.engine.lastApplied();
      await terminated(ctx, 'engine');
      const [row] = await ctx.sql<{ seq: string | null }[]>`
        SELECT max(seq)::text AS seq FROM engine_snapshots WHERE shard = 's0'`;
      const snap = Number(row?.seq ?? 0);
      if (snap < applied) {
        ctx.fail(
          `engine: newest snapshot at ${snap}, but it had applied ${applied} before SIGTERM`,
        );
      }
      await ctx.parts.engine.start();
    },
    verify(ctx, _load, check) {
      // Every request the stopping gateway took was answered: of those that got no answer, none
      // turned out to have been accepted (re-sent: 201, not 200), and no stored order lacks a
      // request that was answered.
      const around = [...ctx.load.orders.values()].filter(
        (r) => r.sentAt >= gatewayStop.sent - 50 && r.sentAt <= gatewayStop.exited,
      );
      const noAnswer = around.filter((r) => r.settledBy !== undefined || r.outcome === 'unknown');
      const taken = noAnswer.filter((r) => r.settledBy === 200);
      ctx.note(
        `gateway: ${around.length} requests around its stop, ${noAnswer.length} without an answer`,
      );
      if (taken.length > 0 || check.unclaimed > 0) {
        ctx.fail(
          `gateway: ${taken.length + check.unclaimed} orders were taken but their answer was lost`,
        );
      }
    },
  },
];
