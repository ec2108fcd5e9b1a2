// The engine benchmark runs and reports the documented JSON; its figures are not judged here.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';
import { promisify } from 'node:util';

const bench = fileURLToPath(new URL('../../src/bench/engine-bench.js', import.meta.url));

it('bench:engine --quick --json prints steady and deep figures', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [
    '--expose-gc',
    bench,
    '--quick',
    '--json',
  ]);
  const report = JSON.parse(stdout) as Record<string, Record<string, number>>;
  for (const run of ['steady', 'deep']) {
    const r = report[run];
    assert.ok(r, `${run} present`);
    for (const key of [
      'commands_per_sec',
      'p50_us',
      'p99_us',
      'p999_us',
      'bytes_per_resting_order',
    ]) {
      assert.equal(typeof r[key], 'number', `${run}.${key}`);
      assert.ok((r[key] as number) > 0, `${run}.${key} > 0`);
    }
    assert.ok((r.p50_us as number) <= (r.p99_us as number));
    assert.ok((r.p99_us as number) <= (r.p999_us as number));
    assert.equal(r.measured_commands, 50_000);
  }
  assert.equal(report.steady?.resting_orders, 10 * 1_000);
  assert.equal(report.deep?.resting_orders, 10 * 5_000);
});
