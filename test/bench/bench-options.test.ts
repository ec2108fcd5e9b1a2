import assert from 'node:assert/strict';
import { it } from 'node:test';
import { parseOptions } from '../../src/bench/bench-options.js';
import type { Options } from '../../src/bench/bench-options.js';

const parse = (argv: string[]) => parseOptions(argv) as Options;

it('--rate sets the end-to-end offered load, full or quick; the defaults are 5,000 and 300', () => {
  assert.equal(parse([]).sizes.e2eRate, 5_000);
  assert.equal(parse(['--quick']).sizes.e2eRate, 300);
  assert.equal(parse(['--rate', '2000']).sizes.e2eRate, 2_000);
  assert.equal(parse(['--quick', '--rate', '50']).sizes.e2eRate, 50);
  // Nothing else of the sizes moves with it.
  assert.deepEqual({ ...parse(['--rate', '2000']).sizes, e2eRate: 5_000 }, parse([]).sizes);
});

it('refuses a rate that is not a positive integer', () => {
  for (const bad of ['0', '-5', '2.5', 'fast', '']) {
    assert.throws(() => parseOptions([`--rate=${bad}`]), /--rate must be an integer/);
  }
});

it('--resting asks for a deep book first; none by default, and a count it can place', () => {
  assert.equal(parse([]).sizes.resting, 0);
  assert.equal(parse(['--resting', '250000']).sizes.resting, 250_000);
  assert.deepEqual({ ...parse(['--resting', '9']).sizes, resting: 0 }, parse([]).sizes);
  for (const bad of ['-1', '1.5', 'deep', '', '10000001']) {
    assert.throws(() => parseOptions([`--resting=${bad}`]), /--resting must be an integer/);
  }
});
