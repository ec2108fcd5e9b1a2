// `npm run bench -- --quick --json` against the whole system: the report is well formed for every
// scenario and every order succeeded. No timing is judged here (the machine is shared). Under the
// test runner REDIS_URL and DATABASE_URL are set, so the bench starts its systems against those
// servers with a fresh key prefix and database each.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';
import { promisify } from 'node:util';

const bench = fileURLToPath(new URL('../../src/bench/run-bench.js', import.meta.url));

type Json = Record<string, unknown>;

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Every object under `v` with a success_rate, failed or errors field says nothing failed. */
function assertAllSucceeded(v: unknown, path: string): void {
  if (Array.isArray(v)) {
    v.forEach((x, i) => assertAllSucceeded(x, `${path}[${i}]`));
    return;
  }
  if (typeof v !== 'object' || v === null) return;
  const o = v as Json;
  if ('success_rate' in o) assert.equal(o.success_rate, 1, `${path}.success_rate`);
  if ('failed' in o) assert.equal(o.failed, 0, `${path}.failed`);
  if ('errors' in o) assert.equal(o.errors, 0, `${path}.errors`);
  for (const [k, x] of Object.entries(o)) assertAllSucceeded(x, `${path}.${k}`);
}

function assertSequential(r: unknown, path: string): void {
  const o = r as Json;
  for (const k of [
    'orders_per_sec',
    'success_rate',
    'failed',
    'queued_in_redis',
    'p50_ms',
    'p99_ms',
  ]) {
    assert.ok(isNumber(o[k]), `${path}.${k} is a number`);
  }
  assert.ok((o.p50_ms as number) <= (o.p99_ms as number), `${path}: p50 ≤ p99`);
}

it(
  'bench --quick --json runs every scenario against the whole system',
  { timeout: 180_000 },
  async () => {
    const out = mkdtempSync(join(tmpdir(), 'mbbench-'));
    try {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [bench, '--quick', '--json', '--out', out],
        { maxBuffer: 64 * 1024 * 1024, timeout: 170_000 },
      );
      const report = JSON.parse(stdout) as { machine: Json; scenarios: Record<string, Json> };
      for (const k of ['cpu', 'cores', 'node', 'redis', 'postgres']) {
        assert.ok(report.machine[k] !== undefined && report.machine[k] !== '', `machine.${k}`);
      }
      const s = report.scenarios;
      for (const name of ['seed', 'sequential']) {
        assertSequential(s[name]?.queue, `${name}.queue`);
        assertSequential(s[name]?.sync, `${name}.sync`);
        assert.ok(isNumber(s[name]?.improvement), `${name}.improvement`);
      }
      for (const mode of ['queue', 'sync']) {
        const levels = (s.concurrency?.[mode] as { levels: Json[] }).levels;
        assert.deepEqual(
          levels.map((l) => l.clients),
          [1, 8, 64],
          `concurrency.${mode} levels`,
        );
        for (const l of levels) assert.ok(isNumber(l.orders_per_sec) && isNumber(l.p999_ms));
      }
      const burst = s.burst?.queue as Json;
      assert.equal(burst.filled, burst.orders, 'every burst order filled');
      assert.ok(isNumber(burst.all_persisted_ms), 'burst persisted in PostgreSQL');
      const e2e = s['end-to-end']?.queue as Json;
      assert.equal(e2e.fills_seen, e2e.orders, 'every end-to-end order seen filled');
      assert.ok(isNumber((e2e.fill_server as Json).p99_ms), 'server-side fill latency');
      assert.ok(isNumber((e2e.fill_client as Json).p99_ms), 'client-side fill latency');
      const writer = s.writer?.default_batch as Json;
      assert.ok(isNumber(writer.rows_written) && writer.rows_written > 0, 'writer rows');
      const held = writer.from_backlog as Json | null;
      assert.ok(held !== null, 'the writer drained a backlog');
      assert.ok(isNumber(held.orders) && held.orders > 0, 'orders queued behind a stopped writer');
      assert.ok(
        isNumber(held.rows) && held.rows >= held.orders,
        'a row at least per order drained',
      );
      const engine = s.engine as { grpc: Json[]; in_process_commands_per_sec: number };
      assert.ok(engine.grpc.length > 0 && engine.grpc.every((g) => isNumber(g.commands_per_sec)));
      assert.ok(isNumber(engine.in_process_commands_per_sec));
      assert.equal((s.generator as { levels: Json[] }).levels.length, 2);
      assertAllSucceeded(s, 'scenarios');
      // The same report on disk, with its Markdown and charts.
      const [dir] = readdirSync(out);
      assert.ok(dir !== undefined, 'a results folder');
      const files = readdirSync(join(out, dir));
      for (const f of ['report.json', 'report.md', 'latency-distribution.svg']) {
        assert.ok(files.includes(f), `${f} written`);
      }
      assert.match(readFileSync(join(out, dir, 'report.md'), 'utf8'), /Improvement vs No Queue/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  },
);
