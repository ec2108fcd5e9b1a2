import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Scale, parseDecimal, plainDecimal } from '../../src/engine/scale.js';

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

  it('reads a JSON number exactly, exponent and all', () => {
    const tiny = new Scale('0.0000001');
    assert.equal(tiny.toUnits('1e-7', true), 1);
    assert.equal(tiny.toUnits('1E-7', true), 1);
    assert.equal(tiny.toUnits('2.5e-6', true), 25);
    assert.equal(lots.toUnits('1e3', true), 1000);
    assert.equal(lots.toUnits('1.5E+3', true), 1500);
    assert.equal(cents.toUnits('18725e-2', true), 18725);
    assert.equal(cents.toUnits('0.0001872500e6', true), 18725);
    assert.equal(cents.toUnits('187.25', true), 18725);
    assert.equal(cents.toUnits('1e-3', true), 'NOT_MULTIPLE');
    assert.equal(cents.toUnits('0e5', true), 'NOT_POSITIVE');
    assert.equal(cents.toUnits('-1', true), 'NOT_POSITIVE');
    assert.equal(cents.toUnits('-1e2', true), 'NOT_POSITIVE');
    assert.equal(lots.toUnits('9.007199254740992e15', true), 'TOO_LARGE');
    assert.equal(lots.toUnits('9.007199254740991e15', true), Number.MAX_SAFE_INTEGER);
    // Written out, these would be longer than any decimal taken: refused without writing them.
    for (const long of ['1e40', '1e-40', '1e999999999999', '1e-999999999999', '1'.repeat(41)]) {
      assert.equal(cents.toUnits(long, true), 'TOO_LONG', long);
    }
    // The same texts as strings are not plain decimals.
    assert.equal(tiny.toUnits('1e-7'), 'FORMAT');
  });

  it('writes out a JSON number as the decimal it is', () => {
    assert.equal(plainDecimal('1e-7'), '0.0000001');
    assert.equal(plainDecimal('1.5e3'), '1500');
    assert.equal(plainDecimal('1.25e1'), '12.5');
    assert.equal(plainDecimal('0.00125e2'), '0.125');
    assert.equal(plainDecimal('120e-1'), '12');
    assert.equal(plainDecimal('0.0e0'), '0');
    assert.equal(plainDecimal('187.250'), '187.250');
    assert.equal(plainDecimal('-1e2'), undefined);
    assert.equal(plainDecimal('1e39'), `1${'0'.repeat(39)}`);
    assert.equal(plainDecimal('1e40'), undefined);
    // Text longer than any JSON writer makes is refused before it is looked at.
    assert.equal(plainDecimal(`1.${'0'.repeat(58)}1e0`), undefined);
    assert.equal(plainDecimal(`1.${'0'.repeat(20_000)}1e0`), undefined);
    assert.equal(plainDecimal(`1.${'0'.repeat(50)}1e0`), undefined);
    assert.equal(plainDecimal(`1.${'0'.repeat(30)}1e0`), `1.${'0'.repeat(30)}1`);
    // What JavaScript writes for a number is read back as that number's decimal.
    fc.assert(
      fc.property(fc.double({ min: 1e-30, max: 1e30, noNaN: true }), (x) => {
        const plain = plainDecimal(String(x));
        return plain === undefined || Number(plain) === x;
      }),
    );
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
