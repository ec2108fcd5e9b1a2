// GET /metrics after traffic: every counter moved by exactly what the traffic did, the queue and
// engine gauges say where the pipeline stands, and a part without HTTP of its own (the writer)
// serves its metrics on METRICS_PORT.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../../src/infra/free-port.js';
import { eventually, startTestSystem } from '../support/system.js';
import type { TestSystem } from '../support/system.js';
import { redisUrl } from '../support/services.js';

/** The value of one series, `name{a="x",b="y"}`, labels in any order; 0 when absent. */
function value(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = new Map([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[3]);
  }
  return 0;
}

describe('metrics', () => {
  let t: TestSystem;
  before(async () => {
    t = await startTestSystem();
  });
  after(async () => {
    await t.stop();
  });

  const scrape = async (): Promise<string> => {
    const res = await fetch(`${t.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    return res.text();
  };

  it('counts orders, requests, dispatch, matching and writes by what happened', async () => {
    const maker = await t.user('maker');
    const taker = await t.user('taker');
    const before = await scrape();
    for (const price of ['10.00', '10.01', '10.02']) {
      const r = await t.api(maker.key, 'POST', '/v1/orders', {
        symbol: 'TSLA',
        side: 'SELL',
        type: 'LIMIT',
        quantity: '1',
        price,
      });
      assert.equal(r.status, 201);
    }
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await t.api(taker.key, 'POST', '/v1/orders', {
        symbol: 'TSLA',
        side: 'BUY',
        type: 'MARKET',
        quantity: '1',
      });
      assert.equal(r.status, 201);
      ids.push(r.body.id as string);
    }
    const bad = await t.api(taker.key, 'POST', '/v1/orders', { symbol: 'TSLA', side: 'UP' });
    assert.equal(bad.status, 400);
    // Quiet: both buys filled and everything in PostgreSQL.
    await eventually(async () => {
      const [row] = await t.db.sql<{ n: string }[]>`
        SELECT count(*)::text AS n FROM orders WHERE id = ANY(${ids}) AND status = 'FILLED'`;
      const trades = await t.db.sql`SELECT 1 FROM trades WHERE symbol = 'TSLA'`;
      return row?.n === '2' && trades.length === 2 ? true : undefined;
    });
    // Both streams: a flush acknowledges the order stream, then the event stream, and counts its
    // rows after both (the orders' backlog alone at 0 once met a scrape before the count).
    await eventually(async () => {
      const text = await scrape();
      const backlog = (stream: string): number =>
        value(text, 'matchbox_writer_backlog_entries', { shard: 's0', stream });
      return value(text, 'matchbox_dispatch_lag_commands', { shard: 's0' }) === 0 &&
        backlog('orders') === 0 &&
        backlog('events') === 0
        ? true
        : undefined;
    });
    // The counters from the next scrape: a scrape reads its counters as it starts and the queue
    // gauges from Redis after, so one may see the last acknowledgement in Redis before the writer
    // has had its reply and counted the flush's rows (CI, once: rows moved by fewer than 7).
    const after = await scrape();
    const moved = (name: string, labels: Record<string, string> = {}): number =>
      value(after, name, labels) - value(before, name, labels);

    assert.equal(moved('matchbox_orders_accepted_total', { mode: 'queue' }), 5);
    assert.equal(
      moved('matchbox_http_request_seconds_count', {
        method: 'POST',
        route: '/v1/orders',
        status: '201',
      }),
      5,
    );
    assert.equal(
      moved('matchbox_http_request_seconds_count', {
        method: 'POST',
        route: '/v1/orders',
        status: '400',
      }),
      1,
    );
    assert.equal(moved('matchbox_http_client_errors_total', { code: 'VALIDATION_ERROR' }), 1);
    assert.equal(moved('matchbox_dispatch_commands_total', { shard: 's0' }), 5);
    assert.equal(moved('matchbox_engine_commands_total', { shard: 's0' }), 5);
    assert.equal(
      moved('matchbox_engine_batch_seconds_count', { shard: 's0' }),
      moved('matchbox_dispatch_batches_total', { shard: 's0' }),
    );
    assert.equal(
      value(after, 'matchbox_engine_last_seq', { shard: 's0' }),
      5 + value(before, 'matchbox_engine_last_seq', { shard: 's0' }),
    );
    // One of the three offers is left resting.
    assert.equal(
      value(after, 'matchbox_engine_resting_orders', { shard: 's0', symbol: 'TSLA' }),
      1,
    );
    // Five orders inserted, their states, two trades: at least 5 + 2 rows.
    assert.ok(moved('matchbox_writer_rows_total') >= 7);
    assert.ok(moved('matchbox_writer_flushes_total') >= 1);
    assert.equal(
      moved('matchbox_writer_flush_entries_count'),
      moved('matchbox_writer_flushes_total'),
    );
    // The process's own: event-loop lag and heap.
    assert.ok(value(after, 'matchbox_nodejs_eventloop_lag_seconds', { process: 'gateway' }) >= 0);
    assert.ok(value(after, 'matchbox_nodejs_heap_size_used_bytes', { process: 'gateway' }) > 0);
  });

  it('has every metric the Grafana dashboard queries', async () => {
    const dashboard = readFileSync(
      new URL('../../../docs/grafana/matchbox.json', import.meta.url),
      'utf8',
    );
    const used = new Set([...dashboard.matchAll(/\bmatchbox_\w+/g)].map((m) => m[0]));
    assert.ok(used.size > 15);
    const text = await scrape();
    const served = new Set(
      [...text.matchAll(/^# TYPE (\w+) (\w+)$/gm)].flatMap(([, name, type]) =>
        type === 'histogram'
          ? [`${name}_bucket`, `${name}_sum`, `${name}_count`]
          : [name as string],
      ),
    );
    for (const name of used) assert.ok(served.has(name), `${name} is not served`);
  });

  it('serves a separate part’s metrics on METRICS_PORT', async () => {
    const port = await freePort();
    const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
    const child = spawn(process.execPath, [main, 'writer'], {
      env: {
        ...process.env,
        REDIS_URL: redisUrl(),
        DATABASE_URL: t.db.url,
        REDIS_PREFIX: t.config.redisPrefix,
        METRICS_PORT: String(port),
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    try {
      const text = await eventually(async () =>
        fetch(`http://127.0.0.1:${port}/metrics`).then(
          (r) => r.text(),
          () => undefined,
        ),
      );
      assert.match(text, /^# TYPE matchbox_writer_flushes_total counter$/m);
      assert.ok(value(text, 'matchbox_process_resident_memory_bytes', { process: 'writer' }) > 0);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
});
