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

export type ScaleError = 'FORMAT' | 'NOT_POSITIVE' | 'NOT_MULTIPLE' | 'TOO_LARGE';

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

  /** The decimal as a whole number of steps, or why it is not one. */
  toUnits(text: string): number | ScaleError {
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
