// Hostile input, generated: over 10,000 request bodies, query strings and paths that are each
// invalid by construction — malformed JSON, wrong types, huge, negative, zero, NaN/Infinity and
// exponent numbers, over-precision decimals, unknown and prototype-polluting fields, deep nesting,
// a 1 MiB body, odd Unicode, SQL and script fragments. Every answer must be a 4xx in api-v1.md's
// error shape (never a 500, never a stack trace or SQL text), and nothing may be queued or stored.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { Pool } from 'undici';
import { startTestSystem } from '../support/system.js';
import type { TestSystem } from '../support/system.js';

const LISTED = ['AAPL', 'MSFT', 'GOOG', 'AMZN', 'TSLA'];
const VALID = { symbol: 'AAPL', side: 'BUY', type: 'LIMIT', quantity: '1', price: '10.00' };
const FIELDS = [
  'symbol',
  'side',
  'type',
  'quantity',
  'price',
  'stop_price',
  'post_only',
  'self_trade_prevention',
  'time_in_force',
  'client_order_id',
] as const;
const ENUMS: Record<string, readonly string[]> = {
  side: ['BUY', 'SELL'],
  type: ['MARKET', 'LIMIT', 'STOP_MARKET', 'STOP_LIMIT'],
  self_trade_prevention: ['NONE', 'CANCEL_NEWEST', 'CANCEL_OLDEST', 'CANCEL_BOTH'],
  time_in_force: ['GTC', 'IOC', 'FOK'],
};
const HOSTILE_TEXT = [
  "'; DROP TABLE orders; --",
  "' OR '1'='1",
  'AAPL; DELETE FROM users',
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(1)>',
  '${process.exit()}',
  '{{7*7}}',
  '../../etc/passwd',
  '\u0000',
  '\ud800',
  '\u202eLPAA',
  'A\u200bAPL',
  '🚀',
  'ＡＡＰＬ',
  ' AAPL',
  'aapl',
];
/** Decimals that no quantity of lot 1 or price of tick 0.01 may be. */
const BAD_DECIMALS = [
  '0',
  '-1',
  '-0',
  '0.00',
  '1e3',
  '1E-2',
  '1.5e1',
  'NaN',
  'Infinity',
  '-Infinity',
  '0x10',
  '1_000',
  '1,5',
  ' 1',
  '1 ',
  '+1',
  '.5',
  '1.',
  '10.001',
  '0.0000000000000000001',
  '9'.repeat(41),
  '99999999999999999999999999999999999999',
  '',
];
const ERROR_STATUSES = [400, 404, 405, 413, 415];
const CLIENT_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/** A value that is not a valid `field` in an otherwise valid LIMIT order. */
function invalidValue(field: (typeof FIELDS)[number]): fc.Arbitrary<unknown> {
  const anyJson = fc.jsonValue({ maxDepth: 3 });
  switch (field) {
    case 'symbol':
      return fc.oneof(
        fc.constantFrom(...HOSTILE_TEXT),
        fc.string({ unit: 'binary', maxLength: 40 }).filter((s) => !LISTED.includes(s)),
        anyJson.filter((v) => typeof v !== 'string'),
      );
    case 'side':
    case 'type':
    case 'self_trade_prevention':
    case 'time_in_force': {
      const allowed = ENUMS[field] as readonly string[];
      return fc.oneof(
        fc.constantFrom(...HOSTILE_TEXT),
        fc.string({ unit: 'binary', maxLength: 20 }).filter((s) => !allowed.includes(s)),
        anyJson.filter((v) => typeof v !== 'string'),
      );
    }
    case 'quantity':
    case 'price':
      return fc.oneof(
        fc.constantFrom(...BAD_DECIMALS, ...HOSTILE_TEXT),
        // JSON numbers that are not positive, or not whole lots / cents.
        fc.double({ noNaN: true, noDefaultInfinity: true, max: 0 }),
        fc.integer({ min: 1, max: 1_000_000 }).map((n) => n + 0.001),
        // Text that is no plain decimal at all (the curated list covers the near misses).
        fc.string({ unit: 'binary', maxLength: 30 }).filter((s) => !/^[0-9]*\.?[0-9]*$/.test(s)),
        fc.oneof(fc.boolean(), fc.constant(null), fc.array(anyJson), fc.object()),
      );
    case 'stop_price':
      // Forbidden on a LIMIT order whatever its value (null means absent).
      return anyJson.filter((v) => v !== null);
    case 'post_only':
      return anyJson.filter((v) => typeof v !== 'boolean');
    case 'client_order_id':
      return fc.oneof(
        fc.constantFrom(...HOSTILE_TEXT.filter((s) => !CLIENT_ID.test(s)), '', 'x'.repeat(65)),
        fc.string({ unit: 'binary', maxLength: 70 }).filter((s) => !CLIENT_ID.test(s)),
        anyJson.filter((v) => typeof v !== 'string' && v !== null),
      );
  }
}

/** A deeply nested value: arrays or objects `depth` levels down. */
const nested = (depth: number, asObject: boolean): string =>
  asObject
    ? '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
    : '['.repeat(depth) + ']'.repeat(depth);

/** Request bodies for POST /v1/orders, each invalid: the JSON text to send. */
const badBody: fc.Arbitrary<string> = fc.oneof(
  // One field wrong.
  fc
    .constantFrom(...FIELDS)
    .chain((field) => invalidValue(field).map((v) => JSON.stringify({ ...VALID, [field]: v }))),
  // A required field missing.
  fc
    .constantFrom('symbol', 'side', 'type', 'quantity', 'price')
    .map((field) => JSON.stringify({ ...VALID, [field]: undefined })),
  // A field the schema does not know, including prototype-polluting ones.
  fc
    .tuple(
      fc.oneof(
        fc.constantFrom('__proto__', 'constructor', 'prototype', 'user_id', 'id', 'status', 'seq'),
        fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }),
      ),
      fc.jsonValue({ maxDepth: 2 }),
    )
    .filter(([k]) => !(FIELDS as readonly string[]).includes(k))
    .map(
      ([k, v]) =>
        JSON.stringify(VALID).slice(0, -1) + `,${JSON.stringify(k)}:${JSON.stringify(v)}}`,
    ),
  fc.constant(
    JSON.stringify(VALID).slice(0, -1) + ',"constructor":{"prototype":{"polluted":true}}}',
  ),
  // Not JSON: truncated, trailing garbage, or any text.
  fc
    .integer({ min: 0, max: JSON.stringify(VALID).length - 1 })
    .map((n) => JSON.stringify(VALID).slice(0, n)),
  fc
    .string({ unit: 'binary', maxLength: 200 })
    .map((s) => JSON.stringify(VALID) + s)
    .filter((t) => {
      try {
        JSON.parse(t);
        return false;
      } catch {
        return true;
      }
    }),
  fc.string({ unit: 'binary', maxLength: 200 }).filter((t) => {
    try {
      const v: unknown = JSON.parse(t);
      return typeof v !== 'object' || v === null || Array.isArray(v);
    } catch {
      return true;
    }
  }),
  // Valid JSON of the wrong shape.
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
  // Deep nesting, as the body or inside a known field.
  fc.tuple(fc.integer({ min: 100, max: 5_000 }), fc.boolean()).map(([d, o]) => nested(d, o)),
  fc
    .tuple(fc.integer({ min: 100, max: 3_000 }), fc.boolean())
    .map(([d, o]) => JSON.stringify(VALID).replace('"1"', nested(d, o))),
);

/** GET and DELETE requests whose path or query string is invalid. */
const badQuery: fc.Arbitrary<{ method: string; path: string }> = fc.oneof(
  fc
    .record({
      status: fc.oneof(
        fc.constantFrom(...HOSTILE_TEXT, 'open', 'FILLED', ''),
        fc.string({ maxLength: 10 }).filter((s) => !['OPEN', 'CLOSED', 'ALL'].includes(s)),
      ),
      limit: fc.oneof(
        fc.constantFrom('0', '-1', '501', '1000000', '1.5', 'NaN', 'Infinity', '-0.5'),
        fc.string({ maxLength: 10 }).filter((s) => !/[0-9]/.test(s)),
      ),
    })
    .chain(({ status, limit }) =>
      fc.constantFrom(
        `status=${q(status)}`,
        `limit=${q(limit)}`,
        `symbol=${q(status)}&limit=${q(limit)}`,
      ),
    )
    .map((query) => ({ method: 'GET', path: `/v1/orders?${query}` })),
  fc
    .string({ minLength: 1, maxLength: 12 })
    .filter((k) => !['status', 'symbol', 'limit'].includes(k))
    .map((k) => ({ method: 'GET', path: `/v1/orders?${q(k)}=1` })),
  fc
    .tuple(
      fc.constantFrom('GET', 'DELETE'),
      fc.oneof(
        fc.uuid(),
        fc.constantFrom(...HOSTILE_TEXT),
        fc.string({ minLength: 1, maxLength: 40 }),
      ),
      fc.constantFrom('', '/fills'),
    )
    .filter(([method, , suffix]) => !(method === 'DELETE' && suffix !== ''))
    .map(([method, id, suffix]) => ({ method, path: `/v1/orders/${q(id)}${suffix}` })),
  // A bad symbol in the path.
  fc
    .oneof(fc.constantFrom(...HOSTILE_TEXT), fc.string({ minLength: 1, maxLength: 20 }))
    .filter((symbol) => !LISTED.includes(symbol))
    .map((symbol) => ({ method: 'GET', path: `/v1/instruments/${q(symbol)}/book` })),
  // A listed symbol with a bad depth.
  fc
    .tuple(
      fc.constantFrom(...LISTED),
      fc.oneof(
        fc.constantFrom('0', '-1', '1001', 'abc', '2.5'),
        fc.string({ maxLength: 8 }).filter((s) => !/[0-9]/.test(s)),
      ),
    )
    .map(([symbol, depth]) => ({
      method: 'GET',
      path: `/v1/instruments/${symbol}/book?depth=${q(depth)}`,
    })),
);

/** Percent-encodes text, lone surrogates included (as U+FFFD would not be hostile enough). */
function q(text: string): string {
  return Array.from(Buffer.from(text, 'utf8'))
    .map((b) => `%${b.toString(16).padStart(2, '0')}`)
    .join('');
}

describe('hostile input (generated)', () => {
  let t: TestSystem;
  let key: string;
  let userId: string;
  let pool: Pool;
  let answered = 0;

  before(async () => {
    t = await startTestSystem();
    ({ key, id: userId } = await t.user('fuzz'));
    pool = new Pool(t.url, { connections: 4 });
  });
  after(async () => {
    await pool.close();
    await t.stop();
  });

  async function send(method: string, path: string, body?: string): Promise<void> {
    const res = await pool.request({
      method: method,
      path,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body }),
    });
    const text = await res.body.text();
    answered++;
    const what = `${method} ${path.slice(0, 120)} ${body?.slice(0, 200) ?? ''} → ${res.statusCode} ${text.slice(0, 300)}`;
    assert.ok(ERROR_STATUSES.includes(res.statusCode), what);
    const parsed = JSON.parse(text) as { error?: Record<string, unknown> };
    const e = parsed.error;
    assert.ok(e !== undefined && typeof e.code === 'string' && typeof e.message === 'string', what);
    assert.deepEqual(Object.keys(parsed), ['error'], what);
    if (e.details !== undefined) {
      assert.ok(Array.isArray(e.details), what);
      for (const d of e.details as Record<string, unknown>[]) {
        assert.ok(typeof d.field === 'string' && typeof d.message === 'string', what);
      }
    }
    assert.doesNotMatch(
      text,
      /\bat [\w.<>]+ \(|node_modules|\.[jt]s:\d+|SELECT |INSERT |ERROR:/,
      what,
    );
  }

  it('answers every hostile request with a 4xx in the error shape and stores nothing', async () => {
    // Every shard's command sequence: an order queued anywhere would move one.
    const sequences = async (): Promise<(string | null)[]> =>
      Promise.all(t.system.queue.shards.map((k) => t.system.redis.get(k.seq)));
    const queuedBefore = await sequences();

    await fc.assert(
      fc.asyncProperty(badBody, (body) => send('POST', '/v1/orders', body)),
      { numRuns: 8_000, seed: 20261201 },
    );
    await fc.assert(
      fc.asyncProperty(badQuery, ({ method, path }) => send(method, path)),
      { numRuns: 2_500, seed: 20261201 },
    );
    // A body far over the limit: refused before it is read whole.
    await send('POST', '/v1/orders', JSON.stringify({ ...VALID, pad: 'x'.repeat(1 << 20) }));
    assert.ok(answered >= 10_000, `${answered} requests`);

    assert.deepEqual(await sequences(), queuedBefore, 'nothing queued');
    const stored = await t.db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM orders WHERE user_id = ${userId}`;
    assert.equal(stored[0]?.n, 0, 'nothing stored');
    // And the gateway still takes a valid order afterwards.
    const ok = await t.api(key, 'POST', '/v1/orders', VALID);
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
  });
});
