import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Scale, parseDecimal } from '../../src/engine/scale.js';

describe('Scale', () => {
  const cents = new Scale('0.01');
  const lots = new Scale('1');
  const fives = new Scale('0.05');

  it('converts multiples of the step exactly, at any written precision', () => {
    assert.equal(cents.toUnits('187.25'), 18725);
    assert.equal(cents.toUnits('187.2500'), 18725);
    assert.equal(cents.toUnits('0.01'), 1);
    assert.equal(cents.toUnits('187'), 18700);
    assert.equal(fives.toUnits('1.15'), 23);
    assert.equal(lots.toUnits('10'), 10);
    // 0.1 + 0.2 in binary floating point is 0.30000000000000004; here it is exact.
    assert.equal(new Scale('0.1').toUnits('0.3'), 3);
  });

  it('refuses what is not a plain positive multiple of the step, or is too large', () => {
    for (const bad of ['', '-1', '+1', '1e2', '1.', '.5', '01', '0x10', ' 1', 'NaN', 'Infinity']) {
      assert.equal(cents.toUnits(bad), 'FORMAT', bad);
    }
    assert.equal(cents.toUnits('0'), 'NOT_POSITIVE');
    assert.equal(cents.toUnits('0.000'), 'NOT_POSITIVE');
    assert.equal(cents.toUnits('187.251'), 'NOT_MULTIPLE');
    assert.equal(fives.toUnits('1.12'), 'NOT_MULTIPLE');
    assert.equal(lots.toUnits('1.5'), 'NOT_MULTIPLE');
    assert.equal(lots.toUnits('9007199254740992'), 'TOO_LARGE');
    assert.equal(lots.toUnits('9007199254740991'), Number.MAX_SAFE_INTEGER);
    assert.equal(cents.toUnits('1'.repeat(41)), 'FORMAT');
  });

  it('formats counts with exactly the instrument precision', () => {
    assert.equal(cents.toDecimal(18725), '187.25');
    assert.equal(cents.toDecimal(18700), '187.00');
    assert.equal(cents.toDecimal(1), '0.01');
    assert.equal(fives.toDecimal(23), '1.15');
    assert.equal(lots.toDecimal(10), '10');
    assert.equal(new Scale('0.001').toDecimal(1500), '1.500');
    assert.equal(lots.toDecimal(Number.MAX_SAFE_INTEGER), '9007199254740991');
  });

  it('round-trips every count', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('0.01', '0.05', '1', '0.0001', '25', '0.5'),
        fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
        (step, n) => {
          const s = new Scale(step);
          const text = s.toDecimal(n);
          if (s.toUnits(text) !== n) return false;
          return parseDecimal(text) !== undefined;
        },
      ),
    );
  });

  it('averages fill prices to precision + 4 places, half-even, without trailing zeros', () => {
    // 1 @ 100.00 and 2 @ 100.01 → 100.006666… → 100.006667
    assert.equal(cents.averagePrice(10000n + 2n * 10001n, 3n), '100.006667');
    assert.equal(cents.averagePrice(18725n * 4n, 4n), '187.25');
    assert.equal(cents.averagePrice(18700n, 1n), '187.00');
    assert.equal(new Scale('0.000001').averagePrice(1n, 2n), '0.0000005');
    // Exact halves at the last place round to even: 0.00005 → 0.0000, 0.00015 → 0.0002.
    assert.equal(lots.averagePrice(1n, 20000n), '0');
    assert.equal(lots.averagePrice(3n, 20000n), '0.0002');
    assert.equal(lots.averagePrice(3n, 40000n), '0.0001');
    assert.equal(lots.averagePrice(5n, 2n), '2.5');
  });
});
