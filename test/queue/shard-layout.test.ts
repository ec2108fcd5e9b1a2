// The shard layout (src/queue/shard-layout.ts). A SHARDS that would move a symbol with resting
// orders to another engine is refused at start, and a gateway left with another SHARDS than the
// recorded one queues nothing: before, new orders on a moved symbol went to an empty book on
// its new engine while its resting orders stayed on the old one, matched against nothing.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/config.js';
import {
  layoutKey,
  ShardPlacement,
  shardKeys,
  shardLayout,
  shardOf,
  WRITER_GROUP,
} from '../../src/queue/keys.js';
import { dispatchedThrough, writerBacklog } from '../../src/queue/stream-info.js';
import { rejectsKey } from '../../src/writer/batch-writer.js';
import {
  adoptShardLayout,
  followShardLayout,
  ShardLayoutError,
  storedShardLayout,
} from '../../src/queue/shard-layout.js';
import { startSystem } from '../../src/system/system.js';
import type { Components, RunningSystem } from '../../src/system/system.js';
import { freshDatabase, freshRedis, redisUrl } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';
import { apiOf, eventually } from '../support/system.js';

const quiet = pino({ level: 'silent' });
const ALL: Components = { engine: true, dispatcher: true, writer: true, gateway: true };
const PIPELINE: Components = { engine: true, dispatcher: true, writer: true, gateway: false };

describe('shardOf', () => {
  it('keeps each symbol where it was: a change of the hash would move books between engines', () => {
    assert.equal(shardLayout(3), 'fnv1a/3');
    const placed = ['AAPL', 'MSFT', 'GOOG', 'AMZN', 'TSLA'].map((s) =>
      [2, 3, 4, 8].map((n) => shardOf(s, n)).join(''),
    );
    assert.deepEqual(placed, ['1133', '1133', '1111', '1037', '1137']);
  });

  it('records the pins that move a symbol off its hashed shard, in symbol order', () => {
    const pins = new Map([
      ['MSFT', 0],
      ['AMZN', 1], // where the hash puts it anyway: no change, not recorded
      ['AAPL', 0],
    ]);
    assert.equal(new ShardPlacement(2, pins).layout, 'fnv1a/2;AAPL=0,MSFT=0');
    assert.deepEqual(
      ['AAPL', 'MSFT', 'AMZN', 'TSLA'].map((s) => new ShardPlacement(2, pins).of(s)),
      [0, 0, 1, 1],
    );
    assert.throws(() => new ShardPlacement(2, new Map([['AAPL', 2]])), RangeError);
    // Read back from its record, as a change reads the layout it leaves.
    for (const layout of ['fnv1a/1', 'fnv1a/2;AAPL=0,MSFT=0']) {
      assert.equal(ShardPlacement.parse(layout)?.layout, layout);
    }
    for (const other of ['murmur/2', 'fnv1a/2;AAPL=2', 'fnv1a/x', 'changing:fnv1a/2']) {
      assert.equal(ShardPlacement.parse(other), undefined, other);
    }
  });
});

describe('the shard layout', () => {
  let db: TestDatabase;
  let prefix: string;
  let redis: Redis;
  let redisCleanup: () => Promise<void>;
  const adminToken = randomBytes(18).toString('base64url');
  // Under three shards GOOG moves to shard 1 and AMZN stays on shard 0.
  const MOVES = 'GOOG';
  const STAYS = 'AMZN';

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

  const run = (
    shards: number,
    components = ALL,
    logger = quiet,
    pins = '',
  ): Promise<RunningSystem> => {
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
      SHARD_PINS: pins,
    });
    return startSystem(config, components, logger);
  };

  const call = (
    s: RunningSystem,
    key: string | undefined,
    method: string,
    path: string,
    body?: object,
  ) => apiOf(s.url as string)(key, method, path, body);

  const limit = (symbol: string, side: 'BUY' | 'SELL', quantity = '3') => ({
    symbol,
    side,
    type: 'LIMIT',
    quantity,
    price: '100.00',
  });

  const status = async (id: string): Promise<string | undefined> => {
    const [row] = await db.sql<{ status: string }[]>`SELECT status FROM orders WHERE id = ${id}`;
    return row?.status;
  };
  const until = (id: string, wanted: string) =>
    eventually(async () => ((await status(id)) === wanted ? true : undefined));

  const adopt = (shards: number, drainMs = 300, pins = new Map<string, number>()) =>
    adoptShardLayout(redis, db.sql, prefix, new ShardPlacement(shards, pins), quiet, drainMs);

  let alice: string;
  let bob: string;
  let moving: string;
  let staying: string;

  it('records the layout on the first start, and starts with it again', async () => {
    const errors: string[] = [];
    const logged = pino({ level: 'error' }, { write: (line: string) => void errors.push(line) });
    const s = await run(1, ALL, logged);
    try {
      assert.equal(await redis.get(layoutKey(prefix)), 'fnv1a/1');
      const users = await Promise.all(
        ['alice', 'bob'].map((name) => call(s, adminToken, 'POST', '/v1/admin/users', { name })),
      );
      [alice, bob] = users.map((u) => u.body.api_key as string) as [string, string];
      const [m, st] = await Promise.all([
        call(s, alice, 'POST', '/v1/orders', limit(MOVES, 'SELL')),
        call(s, alice, 'POST', '/v1/orders', limit(STAYS, 'SELL')),
      ]);
      moving = m.body.id as string;
      staying = st.body.id as string;
      // Partly filled: open all the same.
      await call(s, bob, 'POST', '/v1/orders', limit(MOVES, 'BUY', '1'));
      await until(moving, 'PARTIALLY_FILLED');
      await until(staying, 'NEW');
      // /ready, as a submit, puts back a layout Redis lost, and is ready by it.
      await redis.del(layoutKey(prefix));
      const ready = await call(s, undefined, 'GET', '/ready');
      assert.equal(ready.status, 200);
      assert.deepEqual(ready.body.layout, { routes_by: 'fnv1a/1', recorded: 'fnv1a/1' });
      assert.equal(await redis.get(layoutKey(prefix)), 'fnv1a/1');
      // Nor any copy to put back (PostgreSQL cannot be read): orders are refused, and the cause
      // is logged once, not per order.
      await db.sql`ALTER TABLE shard_layout RENAME TO shard_layout_away`;
      try {
        await redis.del(layoutKey(prefix));
        for (let i = 0; i < 2; i++) {
          const r = await call(s, bob, 'POST', '/v1/orders', limit(STAYS, 'BUY'));
          assert.equal(r.status, 503);
        }
        assert.equal((await call(s, undefined, 'GET', '/ready')).status, 503);
      } finally {
        await db.sql`ALTER TABLE shard_layout_away RENAME TO shard_layout`;
      }
      const causes = errors.filter((line) => line.includes('could not be put back in Redis'));
      assert.equal(causes.length, 1, errors.join(''));
      assert.match(causes[0] as string, /shard_layout/);
      assert.equal((await call(s, undefined, 'GET', '/ready')).status, 200);
    } finally {
      await s.stop();
    }
    await (await run(1)).stop();
  });

  it('refuses three shards while an order rests on a symbol that would move, and says which', async () => {
    assert.deepEqual([shardOf(MOVES, 3), shardOf(STAYS, 3)], [1, 0]);
    await assert.rejects(run(3), (err: Error) => {
      assert.ok(err instanceof ShardLayoutError, String(err));
      assert.match(err.message, /SHARDS=3 \(fnv1a\/3\) differs from fnv1a\/1/);
      assert.match(err.message, new RegExp(`${MOVES} \\(1 open on s0, would move to s1\\)`));
      assert.doesNotMatch(err.message, new RegExp(STAYS));
      return true;
    });
    assert.equal(await redis.get(layoutKey(prefix)), 'fnv1a/1', 'the record is put back');
    // A Redis that lost the key has it put back from PostgreSQL, and the change is checked alike.
    await redis.del(layoutKey(prefix));
    await assert.rejects(run(3), ShardLayoutError);
    assert.equal(await redis.get(layoutKey(prefix)), 'fnv1a/1');
    // A deployment from before the layout was recorded anywhere: PostgreSQL is asked, and the
    // streams for what it may not have yet.
    await db.sql`DELETE FROM shard_layout`;
    await redis.del(layoutKey(prefix));
    await assert.rejects(run(3), /the layout before one was recorded: it would move symbols/);
    assert.equal(await redis.get(layoutKey(prefix)), null);
    assert.equal(await storedShardLayout(db.sql), undefined);
    // Two copies that differ: neither is taken, whichever part starts.
    await redis.set(layoutKey(prefix), 'fnv1a/1');
    await db.sql`INSERT INTO shard_layout (layout) VALUES ('fnv1a/2')`;
    for (const [shards, components] of [
      [1, ALL],
      [1, PIPELINE],
    ] as const) {
      await assert.rejects(run(shards, components), /Redis records the shard layout fnv1a\/1/);
    }
    await db.sql`UPDATE shard_layout SET layout = 'fnv1a/1'`;
  });

  it('a gateway running with the layout before a change queues nothing after it', async () => {
    const old = await run(1);
    try {
      assert.equal((await call(old, alice, 'DELETE', `/v1/orders/${moving}`)).status, 202);
      await until(moving, 'CANCELED');
      // While a change is under way no gateway accepts an order. A marker left by a part that
      // died expires; the key is then put back from PostgreSQL (not taken by the next submit),
      // and a part waiting for the change to end goes on from there.
      await redis.set(layoutKey(prefix), 'changing:fnv1a/3', 'PX', 1_500);
      const held = await call(old, bob, 'POST', '/v1/orders', limit(STAYS, 'BUY'));
      assert.equal(held.status, 503);
      assert.equal(held.body.error?.code, 'UNAVAILABLE');
      // Nor is any ready: a load balancer holds traffic back rather than have it refused.
      const changing = await call(old, undefined, 'GET', '/ready');
      assert.equal(changing.status, 503);
      assert.equal((changing.body.layout as { recorded: string }).recorded, 'changing:fnv1a/3');
      assert.deepEqual(await adopt(1), { was: 'fnv1a/1', now: 'fnv1a/1', changed: false });
      assert.equal(await redis.get(layoutKey(prefix)), 'fnv1a/1');
      // A row a sync-mode gateway left PENDING (it died before its submit, so Redis never had the
      // order) holds nothing back. One Redis has open (its outcome not yet written) does.
      await db.sql`UPDATE orders SET status = 'PENDING' WHERE id = ${moving}`;
      const cached = shardKeys(prefix, 0).order(moving);
      await redis.hset(cached, 's', 'NEW');
      await assert.rejects(adopt(3), /GOOG \(1 open on s0, would move to s1\)/);
      await redis.del(shardKeys(prefix, 0).order(moving));
      // Another gateway takes three shards while this one runs: its queues drain, and the one
      // symbol that moves has no open order left.
      const seq = await redis.get(shardKeys(prefix, 0).seq);
      assert.deepEqual(await adopt(3), { was: 'fnv1a/1', now: 'fnv1a/3', changed: true });
      for (const symbol of [MOVES, STAYS]) {
        const r = await call(old, bob, 'POST', '/v1/orders', limit(symbol, 'BUY'));
        assert.equal(r.status, 503, `${symbol} refused`);
      }
      assert.equal(await redis.get(shardKeys(prefix, 0).seq), seq, 'nothing was queued');
      // It says so to its load balancer, which sends orders to the gateways that take them.
      const stale = await call(old, undefined, 'GET', '/ready');
      assert.deepEqual([stale.status, stale.body.ready], [503, false]);
      assert.deepEqual(stale.body.layout, { routes_by: 'fnv1a/1', recorded: 'fnv1a/3' });
      // Redis loses the key: the stale gateway puts back PostgreSQL's, and is refused by it.
      await redis.del(layoutKey(prefix));
      const again = await call(old, bob, 'POST', '/v1/orders', limit(MOVES, 'BUY'));
      assert.equal(again.status, 503);
      assert.equal(await redis.get(layoutKey(prefix)), 'fnv1a/3');
      assert.equal(await redis.get(shardKeys(prefix, 0).seq), seq, 'nothing was queued');
    } finally {
      await old.stop();
    }
  });

  it('with three shards, the symbol that stayed keeps its book and the moved one trades anew', async () => {
    const s = await run(3);
    try {
      const buy = await call(s, bob, 'POST', '/v1/orders', limit(STAYS, 'BUY'));
      assert.equal(buy.status, 201);
      await until(staying, 'FILLED');
      const sell = await call(s, alice, 'POST', '/v1/orders', limit(MOVES, 'SELL', '1'));
      const take = await call(s, bob, 'POST', '/v1/orders', limit(MOVES, 'BUY', '1'));
      assert.deepEqual([sell.status, take.status], [201, 201]);
      await until(take.body.id as string, 'FILLED');
      const [row] = await db.sql<{ shard: string }[]>`
        SELECT shard FROM orders WHERE id = ${take.body.id as string}`;
      assert.equal(row?.shard, 's1');
    } finally {
      await s.stop();
    }
  });

  it('refuses a change while any shard has orders not yet matched or written', async () => {
    const s0 = shardKeys(prefix, 0);
    const s2 = shardKeys(prefix, 2);
    // One command accepted on shard 0 that no dispatcher matches.
    await redis.incr(s0.seq);
    await assert.rejects(adopt(1), /s0: 1 to match, 0 to write/);
    // The same once the marker of a change whose part died has expired: the key comes back from
    // PostgreSQL, not as "nothing recorded" (which would skip the queues).
    await redis.set(layoutKey(prefix), 'changing:fnv1a/2', 'PX', 200);
    await assert.rejects(adopt(1), /differs from fnv1a\/3: .*s0: 1 to match/);
    await redis.decr(s0.seq);
    assert.equal(await redis.get(layoutKey(prefix)), 'fnv1a/3', 'the record is put back');
    // Shard 2 holds no default symbol and has had no queue: one there, past the gap, still counts.
    await redis.incr(s2.seq);
    await assert.rejects(adopt(1), /s2: 1 to match/);
    // Matched, but in a stream the writer never read (it has no group there): unwritten.
    await redis.xadd(s2.orders, '0-1', 'c', '{}');
    await redis.xadd(s2.events, '0-1', 'b', '{}');
    await assert.rejects(adopt(1), /s2: 0 to match, 2 to write/);
    await redis.del(s2.seq, s2.orders, s2.events);
    assert.equal(await redis.get(layoutKey(prefix)), 'fnv1a/3');
    // With no layout recorded anywhere nothing waits for the queues: a PLACE the writer has not
    // written, on a symbol that would move, refuses the change.
    const [stored] = await db.sql<{ layout: string }[]>`DELETE FROM shard_layout RETURNING layout`;
    await redis.del(layoutKey(prefix));
    const place = (symbol: string) =>
      JSON.stringify({ k: 'place', order: { id: randomBytes(4).toString('hex'), symbol } });
    await redis.xadd(s2.orders, '0-7', 'c', place(STAYS));
    await redis.set(s2.seq, 7);
    await assert.rejects(adopt(1), /AMZN \(1 open on s2, would move to s0\)/);
    // Where the writer has a group: what it acknowledged is PostgreSQL's to say; what it holds
    // pending, and what it was never given, is read.
    await redis.del(s2.orders);
    await redis.xgroup('CREATE', s2.orders, WRITER_GROUP, '0-0', 'MKSTREAM');
    await redis.xadd(s2.orders, '0-5', 'c', place(MOVES));
    await redis.xadd(s2.orders, '0-6', 'c', place(STAYS));
    await redis.xadd(s2.orders, '0-7', 'c', place('TSLA'));
    await redis.xreadgroup('GROUP', WRITER_GROUP, 'w', 'COUNT', 2, 'STREAMS', s2.orders, '>');
    await redis.xack(s2.orders, WRITER_GROUP, '0-5');
    await assert.rejects(adopt(1), (err: Error) => {
      assert.match(err.message, /AMZN \(1 open on s2, would move to s0\), TSLA \(1 open on s2/);
      assert.doesNotMatch(err.message, /GOOG/);
      return true;
    });
    await redis.del(s2.seq, s2.orders);
    await db.sql`INSERT INTO shard_layout (layout) VALUES (${stored?.layout ?? ''})`;
    await redis.set(layoutKey(prefix), stored?.layout ?? '');
  });

  it('a dispatcher or a writer with another SHARDS than the recorded one refuses to start', async () => {
    await assert.rejects(
      run(1, PIPELINE),
      (err: Error) =>
        err instanceof ShardLayoutError &&
        err.message.includes('the layout the gateways route by (fnv1a/3)'),
    );
    assert.equal(await redis.get(layoutKey(prefix)), 'fnv1a/3', 'it records nothing');
    // During a change, those of the layout before start: they are what drains it.
    await redis.set(layoutKey(prefix), 'changing:fnv1a/2');
    await followShardLayout(redis, db.sql, prefix, new ShardPlacement(1));
    await redis.set(layoutKey(prefix), 'fnv1a/3');
    await (await run(3, PIPELINE)).stop();
  });

  it('two gateways taking the same new layout at once both start', async () => {
    // The PENDING row left above moves too, under two shards; Redis has its order final
    // (PostgreSQL refused its outcome, say): no open order.
    await redis.hset(shardKeys(prefix, 0).order(moving), 's', 'CANCELED');
    // Forgets a change queued and then failed to take (left where no dispatcher runs) hold no
    // change back: run late, they drop only what they would have dropped then.
    const s5 = shardKeys(prefix, 5);
    const forget = { k: 'forget', symbol: 'TSLA', requested_at: new Date().toISOString() };
    await redis.xadd(s5.orders, '0-1', 'c', JSON.stringify(forget));
    await redis.set(s5.seq, 1);
    const shards = [0, 1, 2].map((n) => shardKeys(prefix, n));
    const heads = await Promise.all(shards.map(async (k) => Number(await redis.get(k.seq))));
    const both = await Promise.all([adopt(2), adopt(2)]);
    assert.deepEqual(both.map((c) => c.changed).sort(), [false, true]);
    assert.equal(await redis.get(layoutKey(prefix)), 'fnv1a/2');
    assert.equal(await storedShardLayout(db.sql), 'fnv1a/2');
    await redis.del(s5.seq, s5.orders);
    // From three shards to two only AMZN moves, from 0 onto 1: one forget, there alone.
    const queued = await Promise.all(
      shards.map(async (k, n) => {
        const entries = await redis.xrange(k.orders, `(0-${heads[n] ?? 0}`, '+');
        return entries.map(([, fields]) => JSON.parse(fields[1] ?? '{}') as { k: string });
      }),
    );
    assert.deepEqual(
      queued.map((entries) => entries.map((e) => `${e.k} ${(e as { symbol?: string }).symbol}`)),
      [[], [`forget ${STAYS}`], []],
    );
  });

  it('a pinned symbol is matched on its shard, and a pin is changed as SHARDS is', async () => {
    // By the hash, every default symbol is on shard 1 of two.
    assert.deepEqual(
      [STAYS, MOVES].map((sym) => shardOf(sym, 2)),
      [1, 1],
    );
    // The change to two shards above moved AMZN onto shard 1, and queued there a forget of it
    // (the engine drops what it held of AMZN from an earlier stay); the parts then take it.
    const s1 = shardKeys(prefix, 1);
    const plain = await run(2);
    try {
      await eventually(async () => {
        const head = Number(await redis.get(s1.seq));
        const through = await dispatchedThrough(redis, s1.events);
        const unwritten = await writerBacklog(redis, s1.orders);
        return through === head && unwritten === 0 ? true : undefined;
      });
      // Passed over by the writer, as a cancel is: not set aside.
      assert.equal(await redis.xlen(rejectsKey(s1.orders)), 0);
    } finally {
      await plain.stop();
    }
    // Pinned to shard 0, AMZN moves back to the engine it traded on (at 100.00, its book empty
    // since): a forget there too, so that a stop does not take that price for the market's.
    const s = await run(2, ALL, quiet, `${STAYS}=0`);
    let resting: string;
    try {
      assert.equal(await redis.get(layoutKey(prefix)), `fnv1a/2;${STAYS}=0`);
      assert.equal(await storedShardLayout(db.sql), `fnv1a/2;${STAYS}=0`);
      const stop = await call(s, alice, 'POST', '/v1/orders', {
        symbol: STAYS,
        side: 'SELL',
        type: 'STOP_MARKET',
        quantity: '1',
        stop_price: '150.00',
      });
      const next = await call(s, bob, 'POST', '/v1/orders', limit(STAYS, 'BUY', '1'));
      // Matched in order: once the later order rests, the stop's fate is decided. By a last
      // trade at 100.00 it would have triggered (and, with no bid, been canceled); with none
      // known on this engine, it waits.
      await until(next.body.id as string, 'NEW');
      assert.equal(await status(stop.body.id as string), 'NEW');
      for (const [key, id] of [
        [alice, stop.body.id],
        [bob, next.body.id],
      ] as [string, string][]) {
        assert.equal((await call(s, key, 'DELETE', `/v1/orders/${id}`)).status, 202);
        await until(id, 'CANCELED');
      }
      const sell = await call(s, alice, 'POST', '/v1/orders', limit(STAYS, 'SELL'));
      const buy = await call(s, bob, 'POST', '/v1/orders', limit(STAYS, 'BUY', '1'));
      resting = sell.body.id as string;
      await until(resting, 'PARTIALLY_FILLED');
      const rows = await db.sql<{ shard: string }[]>`
        SELECT shard FROM orders WHERE id IN (${resting}, ${buy.body.id as string})`;
      assert.deepEqual(
        rows.map((r) => r.shard),
        ['s0', 's0'],
      );
      // The book is asked of the engine that holds it.
      const book = await call(s, alice, 'GET', `/v1/instruments/${STAYS}/book`);
      assert.deepEqual(book.body.asks, [{ price: '100.00', quantity: '2' }]);
      // The other symbols stay where the hash puts them.
      const other = await call(s, alice, 'POST', '/v1/orders', limit(MOVES, 'SELL', '1'));
      await until(other.body.id as string, 'NEW');
      const [row] = await db.sql<{ shard: string }[]>`
        SELECT shard FROM orders WHERE id = ${other.body.id as string}`;
      assert.equal(row?.shard, 's1');
      assert.equal(
        (await call(s, alice, 'DELETE', `/v1/orders/${other.body.id as string}`)).status,
        202,
      );
      await until(other.body.id as string, 'CANCELED');
    } finally {
      await s.stop();
    }
    // Unpinned, the symbol would move off the engine that holds its resting order: refused.
    await assert.rejects(run(2), (err: Error) => {
      assert.match(err.message, /^SHARDS=2 \(fnv1a\/2\) differs from fnv1a\/2;AMZN=0: /);
      assert.match(err.message, new RegExp(`${STAYS} \\(1 open on s0, would move to s1\\)`));
      return true;
    });
    // A dispatcher or writer without the pin does not start.
    await assert.rejects(run(2, PIPELINE), /must run with the same SHARDS and SHARD_PINS/);
    assert.equal(await redis.get(layoutKey(prefix)), `fnv1a/2;${STAYS}=0`);
  });
});
