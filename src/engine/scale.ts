// Decimal strings at the edge, integer ticks and lots inside: the exact conversions between them.
// All arithmetic is on BigInt; no price or quantity ever passes through a binary float.

const DECIMAL = /^(0|[1-9][0-9]*)(?:\.([0-9]+))?$/;
/** Longest decimal accepted, so that a hostile input cannot make BigInt work on a megabyte. */
const MAX_LENGTH = 40;

/** A non-negative decimal as an integer `units` over 10^`places`. */
interface Fixed {
  units: bigint;
  places: number;
}

/** A JSON number's text: a sign, an exponent. */
const JSON_NUMBER = /^(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/;

/**
 * Longest JSON number text taken with an exponent. The longest a JSON writer makes is ~24
 * characters ("1.2345678901234567e-100"); the bound keeps the work on hostile text small.
 */
const MAX_EXPONENT_FORM = 64;

/**
 * A non-negative JSON number's text written out as the plain decimal it is, exactly: "1e-7" →
 * "0.0000001", "1.5E3" → "1500", "187.25" as it is. JSON allows an exponent, and JavaScript's and
 * Python's JSON writers use one for small and large numbers. Undefined when the text is not a
 * JSON number, is negative, or is too long: more than MAX_LENGTH characters without an exponent,
 * more than MAX_EXPONENT_FORM with one, or more than MAX_LENGTH written out (worked out from the
 * exponent first, so "1e999999999" costs nothing).
 */
export function plainDecimal(json: string): string | undefined {
  if (json.length > MAX_EXPONENT_FORM) return undefined;
  const m = JSON_NUMBER.exec(json);
  if (m === null || m[1] === '-') return undefined;
  if (m[4] === undefined) return json.length > MAX_LENGTH ? undefined : json;
  const int = m[2] as string;
  // The significant digits, and where the point falls among them (≤ 0: before the first).
  const all = int + (m[3] ?? '');
  let first = 0;
  while (first < all.length && all[first] === '0') first++;
  if (first === all.length) return '0';
  let end = all.length;
  while (all[end - 1] === '0') end--;
  const digits = all.slice(first, end);
  const point = int.length - first + Number(m[4]);
  if (point > MAX_LENGTH || point < -MAX_LENGTH) return undefined;
  const plain =
    point <= 0
      ? `0.${'0'.repeat(-point)}${digits}`
      : point >= digits.length
        ? digits + '0'.repeat(point - digits.length)
        : `${digits.slice(0, point)}.${digits.slice(point)}`;
  return plain.length > MAX_LENGTH ? undefined : plain;
}

/** Parses a plain non-negative decimal ("187.25", "0.001"); undefined for anything else. */
export function parseDecimal(text: string): Fixed | undefined {
  if (text.length > MAX_LENGTH) return undefined;
  const m = DECIMAL.exec(text);
  if (m === null) return undefined;
  const frac = m[2] ?? '';
  return { units: BigInt((m[1] as string) + frac), places: frac.length };
}

function pow10(n: number): bigint {
  return 10n ** BigInt(n);
}

/** Formats units / 10^places as a decimal with exactly `places` digits after the point. */
function formatFixed(units: bigint, places: number): string {
  const negative = units < 0n;
  const digits = (negative ? -units : units).toString().padStart(places + 1, '0');
  const whole = places === 0 ? digits : `${digits.slice(0, -places)}.${digits.slice(-places)}`;
  return negative ? `-${whole}` : whole;
}

export type ScaleError = 'FORMAT' | 'NOT_POSITIVE' | 'NOT_MULTIPLE' | 'TOO_LARGE' | 'TOO_LONG';

/**
 * The step of a price (tick size) or quantity (lot size) of an instrument: converts decimals that
 * are whole multiples of it to integer counts of it and back.
 */
export class Scale {
  /** The step as an integer over 10^places. */
  private readonly step: bigint;
  /** Digits after the point of the step: the instrument's precision. */
  readonly places: number;

  constructor(readonly size: string) {
    const parsed = parseDecimal(size);
    if (parsed === undefined || parsed.units === 0n) {
      throw new RangeError(`a step must be a positive decimal, not ${JSON.stringify(size)}`);
    }
    this.step = parsed.units;
    this.places = parsed.places;
  }

  /**
   * The decimal as a whole number of steps, or why it is not one. `text` is a plain decimal
   * string, or with `json` the text of a JSON number (which may have an exponent or a sign).
   */
  toUnits(text: string, json = false): number | ScaleError {
    if (json) {
      if (text.startsWith('-')) return 'NOT_POSITIVE';
      const plain = plainDecimal(text);
      if (plain === undefined) return JSON_NUMBER.test(text) ? 'TOO_LONG' : 'FORMAT';
      text = plain;
    }
    const d = parseDecimal(text);
    if (d === undefined) return 'FORMAT';
    if (d.units === 0n) return 'NOT_POSITIVE';
    // Bring both to the finer of the two precisions, then divide exactly.
    const places = Math.max(d.places, this.places);
    const value = d.units * pow10(places - d.places);
    const step = this.step * pow10(places - this.places);
    if (value % step !== 0n) return 'NOT_MULTIPLE';
    const n = value / step;
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) return 'TOO_LARGE';
    return Number(n);
  }

  /** A whole number of steps as a decimal with the instrument's precision ("187.25", "10"). */
  toDecimal(units: number): string {
    if (!Number.isSafeInteger(units)) throw new RangeError(`${units} is not a whole count`);
    return formatFixed(BigInt(units) * this.step, this.places);
  }

  /**
   * The quantity-weighted mean price of fills, given as Σ(price × quantity) in ticks × lots and
   * Σ quantity in lots: exact to the precision plus 4 places, rounded half-even, trailing zeros
   * beyond the precision dropped.
   */
  averagePrice(notional: bigint, quantity: bigint): string {
    if (quantity <= 0n) throw new RangeError('average of no quantity');
    const places = this.places + 4;
    // mean = notional × step / 10^this.places / quantity; scaled by 10^places that is
    // notional × step × 10^4 / quantity.
    const num = notional * this.step * 10_000n;
    let q = num / quantity;
    const r = num % quantity;
    const twice = 2n * r;
    if (twice > quantity || (twice === quantity && q % 2n === 1n)) q += 1n;
    const text = formatFixed(q, places);
    let end = text.length;
    for (let kept = 4; kept > 0 && text[end - 1] === '0'; kept--) end--;
    if (text[end - 1] === '.') end--;
    return text.slice(0, end);
  }
}
