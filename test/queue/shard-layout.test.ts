// The shard layout (src/queue/shard-layout.ts): symbols spread over the shards, and a SHARDS that
// would move a symbol with resting orders to another engine is refused at start, where before
// its new orders went to an empty book on the new engine and its resting ones were stranded.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/config.js';
import { DEFAULT_INSTRUMENTS } from '../../src/db/instruments.js';
import { shardKeys, shardLayout, shardOf } from '../../src/queue/keys.js';
import { adoptShardLayout, layoutKey, ShardLayoutError } from '../../src/queue/shard-layout.js';
import { startSystem } from '../../src/system/system.js';
import type { RunningSystem } from '../../src/system/system.js';
import { freshDatabase, freshRedis, redisUrl } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';
import { eventually } from '../support/system.js';

const quiet = pino({ level: 'silent' });
const ALL = { engine: true, dispatcher: true, writer: true, gateway: true };

describe('shardOf', () => {
  it('spreads the default symbols over two shards', () => {
    const used = new Set(DEFAULT_INSTRUMENTS.map((i) => shardOf(i.symbol, 2)));
    assert.deepEqual([...used].sort(), [0, 1]);
  });

  it('keeps each symbol where it was: a change moves books between engines', () => {
    // Pinned: a change of the hash must come with a new SHARD_HASH (the layout check then
    // refuses it while books on moving symbols are open).
    assert.equal(shardLayout(2), 'fnv1a-fmix32/2');
    const placed = ['AAPL', 'MSFT', 'GOOG', 'AMZN', 'TSLA'].map((s) =>
      [2, 3, 4, 8].map((n) => shardOf(s, n)).join(''),
    );
    assert.deepEqual(placed, ['0122', '0222', '1033', '0004', '0204']);
  });

  it('uses every bit of every character, not only the low ones', () => {
    // Pairs of symbols one letter apart by 16 (A and Q, B and R…): their characters' four low bits
    // are equal, so FNV-1a alone put both of every pair on one shard of 16 (or 2, 4, 8).
    let together = 0;
    const pairs = 400;
    for (let i = 0; i < pairs; i++) {
      const base = `X${i.toString(36).toUpperCase()}`;
      if (shardOf(`A${base}`, 16) === shardOf(`Q${base}`, 16)) together++;
    }
    // One pair in 16 expected (25 of 400).
    assert.ok(together < 60, `${together} of ${pairs} pairs on one shard`);
  });

  it('fills sixteen shards evenly', () => {
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < 1600; i++) {
      const n = shardOf(`S${i.toString(36).toUpperCase()}`, 16);
      counts[n] = (counts[n] ?? 0) + 1;
    }
    assert.ok(Math.min(...counts) > 60, `counts ${counts.join(',')}`);
    assert.ok(Math.max(...counts) < 140, `counts ${counts.join(',')}`);
  });
});

describe('the shard layout at start', () => {
  let db: TestDatabase;
  let prefix: string;
  let redisCleanup: () => Promise<void>;
  let redis: Awaited<ReturnType<typeof freshRedis>>['redis'];
  const adminToken = randomBytes(18).toString('base64url');
  // Under two shards GOOG moves to shard 1 and AAPL stays on shard 0.
  const MOVES = 'GOOG';
  const STAYS = 'AAPL';

  before(async () => {
    db = await freshDatabase();
    const r = await freshRedis();
    ({ redis, prefix } = r);
    redisCleanup = () => r.cleanup();
  });
  after(async () => {
    await redisCleanup();
    await db.drop();
  });

  const run = (shards: number, components = ALL): Promise<RunningSystem> => {
    const config = loadConfig({
      REDIS_URL: redisUrl(),
      DATABASE_URL: db.url,
      REDIS_PREFIX: prefix,
      PORT: '0',
      ENGINE_ADDRESS: '127.0.0.1:0',
      WRITER_FLUSH_MS: '50',
      MATCHBOX_ADMIN_TOKEN: adminToken,
      LOG_LEVEL: 'silent',
      SHARDS: String(shards),
    });
    return startSystem(config, components, quiet);
  };

  const call = async (
    s: RunningSystem,
    key: string,
    method: string,
    path: string,
    body?: object,
  ) => {
    const res = await fetch(`${s.url as string}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  const status = async (id: string): Promise<string | undefined> => {
    const [row] = await db.sql<{ status: string }[]>`SELECT status FROM orders WHERE id = ${id}`;
    return row?.status;
  };

  let alice: string;
  let bob: string;
  let moving: string;
  let staying: string;

  it('records the layout on the first start, and starts with it again', async () => {
    const s = await run(1);
    try {
      assert.equal(await redis.get(layoutKey(prefix)), 'fnv1a-fmix32/1');
      const users = await Promise.all(
        ['alice', 'bob'].map((name) => call(s, adminToken, 'POST', '/v1/admin/users', { name })),
      );
      [alice, bob] = users.map((u) => u.body.api_key as string) as [string, string];
      const sell = (symbol: string) =>
        call(s, alice, 'POST', '/v1/orders', {
          symbol,
          side: 'SELL',
          type: 'LIMIT',
          quantity: '3',
          price: '100.00',
        });
      const [m, st] = await Promise.all([sell(MOVES), sell(STAYS)]);
      moving = m.body.id as string;
      staying = st.body.id as string;
      await eventually(async () =>
        (await status(moving)) === 'NEW' && (await status(staying)) === 'NEW' ? true : undefined,
      );
    } finally {
      await s.stop();
    }
    await (await run(1)).stop();
  });

  it('refuses two shards while an order rests on a symbol that would move, and says which', async () => {
    assert.equal(shardOf(MOVES, 2), 1);
    assert.equal(shardOf(STAYS, 2), 0);
    await assert.rejects(run(2), (err: Error) => {
      assert.ok(err instanceof ShardLayoutError, String(err));
      assert.match(err.message, /SHARDS=2/);
      assert.match(err.message, new RegExp(`${MOVES} \\(1 open on s0, would move to s1\\)`));
      assert.doesNotMatch(err.message, new RegExp(STAYS));
      return true;
    });
    assert.equal(await redis.get(layoutKey(prefix)), 'fnv1a-fmix32/1', 'the record is unchanged');
    // A deployment from before the layout was recorded (and the former hash) is checked alike.
    await redis.del(layoutKey(prefix));
    await assert.rejects(run(2), ShardLayoutError);
    assert.equal(await redis.get(layoutKey(prefix)), null);
  });

  it('takes two shards once that symbol has no open order; the one that stays keeps its book', async () => {
    const s1 = await run(1);
    try {
      const cancel = await call(s1, alice, 'DELETE', `/v1/orders/${moving}`);
      assert.equal(cancel.status, 202);
      await eventually(async () => ((await status(moving)) === 'CANCELED' ? true : undefined));
    } finally {
      await s1.stop();
    }
    const s2 = await run(2);
    try {
      assert.equal(await redis.get(layoutKey(prefix)), 'fnv1a-fmix32/2');
      // The resting SELL on the symbol that stayed is still on its engine and fills.
      const buy = await call(s2, bob, 'POST', '/v1/orders', {
        symbol: STAYS,
        side: 'BUY',
        type: 'LIMIT',
        quantity: '3',
        price: '100.00',
      });
      assert.equal(buy.status, 201);
      await eventually(async () => ((await status(staying)) === 'FILLED' ? true : undefined));
      // The moved symbol trades on its new shard.
      const sell = await call(s2, alice, 'POST', '/v1/orders', {
        symbol: MOVES,
        side: 'SELL',
        type: 'LIMIT',
        quantity: '1',
        price: '50.00',
      });
      const buyMoved = await call(s2, bob, 'POST', '/v1/orders', {
        symbol: MOVES,
        side: 'BUY',
        type: 'MARKET',
        quantity: '1',
      });
      assert.deepEqual([sell.status, buyMoved.status], [201, 201]);
      await eventually(async () =>
        (await status(buyMoved.body.id as string)) === 'FILLED' ? true : undefined,
      );
      const [row] = await db.sql<{ shard: string }[]>`
        SELECT shard FROM orders WHERE id = ${buyMoved.body.id as string}`;
      assert.equal(row?.shard, 's1');
    } finally {
      await s2.stop();
    }
  });

  it('refuses a change while a shard has orders not yet matched or written', async () => {
    // One command accepted on shard 0 (its sequence moved) that no dispatcher has matched.
    await redis.incr(shardKeys(prefix, 0).seq);
    await assert.rejects(
      adoptShardLayout(redis, db.sql, prefix, 3, quiet),
      (err: Error) => err instanceof ShardLayoutError && /s0: 1 to match/.test(err.message),
    );
    // A shard past the new count is looked at too.
    await redis.decr(shardKeys(prefix, 0).seq);
    await redis.set(layoutKey(prefix), shardLayout(2));
    await redis.incr(shardKeys(prefix, 1).seq);
    await assert.rejects(
      adoptShardLayout(redis, db.sql, prefix, 1, quiet),
      (err: Error) => err instanceof ShardLayoutError && /s1: \d+ to match/.test(err.message),
    );
    assert.equal(await redis.get(layoutKey(prefix)), 'fnv1a-fmix32/2');
    await redis.decr(shardKeys(prefix, 1).seq);
  });

  it('a dispatcher or a writer with another SHARDS than the recorded one refuses to start', async () => {
    await redis.set(layoutKey(prefix), shardLayout(2));
    const pipeline = { engine: true, dispatcher: true, writer: true, gateway: false };
    await assert.rejects(
      run(1, pipeline),
      (err: Error) =>
        err instanceof ShardLayoutError &&
        err.message.includes('the layout the gateways route by (fnv1a-fmix32/2)'),
    );
    assert.equal(await redis.get(layoutKey(prefix)), 'fnv1a-fmix32/2', 'it records nothing');
    await (await run(2, pipeline)).stop();
  });
});
