// Listed instruments. Resting orders are kept in integer ticks and lots, so a symbol's tick and lot
// size can never change once it exists: an upsert with other values is refused, not applied. Its
// price protection (what MARKET orders may trade, see docs/engine-rules.md) may change at any time.
import { Scale, parseDecimal } from '../engine/scale.js';
import { MAX_PROTECTION } from '../engine/types.js';
import { SYMBOL } from '../config/config.js';
import type { Sql } from './client.js';

/** An instrument as the API shows it; sizes are decimal strings without trailing zeros. */
export interface Instrument {
  symbol: string;
  tick_size: string;
  lot_size: string;
  /** Price protection of MARKET and STOP_MARKET orders, in basis points; 0 for none. */
  market_protection_bps: number;
}

/** What an upsert is given: a protection left out is kept (0 for a new instrument). */
export type InstrumentInput = Omit<Instrument, 'market_protection_bps'> & {
  market_protection_bps?: number;
};

export type UpsertInstrumentResult =
  /** `updated`: it existed, and its price protection was changed. */
  | { kind: 'ok'; instrument: Instrument; created: boolean; updated: boolean }
  /** The symbol exists with other sizes; nothing was changed. */
  | { kind: 'conflict'; existing: Instrument }
  /** A value is malformed: `field` names it. */
  | {
      kind: 'invalid';
      field: 'symbol' | 'tick_size' | 'lot_size' | 'market_protection_bps';
      message: string;
    };

export const DEFAULT_INSTRUMENTS: readonly Omit<Instrument, 'market_protection_bps'>[] = [
  'AAPL',
  'MSFT',
  'GOOG',
  'AMZN',
  'TSLA',
].map((symbol) => ({ symbol, tick_size: '0.01', lot_size: '1' }));

/** The columns of Instrument, as the API shows them. */
const COLUMNS = 'symbol, tick_size::text, lot_size::text, market_protection_bps';

/**
 * A positive decimal in its one canonical spelling ("0.010" → "0.01", "1.0" → "1"), or undefined
 * when it is not a plain positive decimal. Canonical spellings make stored sizes compare as text
 * and come back exactly as the API shows them.
 */
export function normaliseSize(text: string): string | undefined {
  const d = parseDecimal(text);
  if (d === undefined || d.units === 0n) return undefined;
  const canonical = text.includes('.') ? text.replace(/\.?0+$/, '') : text;
  // Scale is what every later conversion uses, so it is the judge of validity.
  try {
    new Scale(canonical);
  } catch {
    return undefined;
  }
  return canonical;
}

/**
 * Creates the instrument, or confirms it when it exists with the same sizes, setting its price
 * protection when the input gives one.
 */
export async function upsertInstrument(
  sql: Sql,
  input: InstrumentInput,
): Promise<UpsertInstrumentResult> {
  if (!SYMBOL.test(input.symbol)) {
    return {
      kind: 'invalid',
      field: 'symbol',
      message: '1–16 characters of A-Z 0-9 . - _, not `.` or `..`',
    };
  }
  const tick = normaliseSize(input.tick_size);
  if (tick === undefined) {
    return { kind: 'invalid', field: 'tick_size', message: 'a positive decimal' };
  }
  const lot = normaliseSize(input.lot_size);
  if (lot === undefined) {
    return { kind: 'invalid', field: 'lot_size', message: 'a positive decimal' };
  }
  const protection = input.market_protection_bps;
  if (
    protection !== undefined &&
    !(Number.isInteger(protection) && protection >= 0 && protection <= MAX_PROTECTION)
  ) {
    return {
      kind: 'invalid',
      field: 'market_protection_bps',
      message: `an integer from 0 to ${MAX_PROTECTION}`,
    };
  }
  const inserted = await sql<Instrument[]>`
    INSERT INTO instruments (symbol, tick_size, lot_size, market_protection_bps)
    VALUES (${input.symbol}, ${tick}, ${lot}, ${protection ?? 0})
    ON CONFLICT (symbol) DO NOTHING
    RETURNING ${sql.unsafe(COLUMNS)}`;
  const created = inserted[0];
  if (created !== undefined) {
    return { kind: 'ok', instrument: { ...created }, created: true, updated: false };
  }
  const existing = await getInstrument(sql, input.symbol);
  // Deleted between the two statements: nothing in matchbox deletes instruments, so say conflict.
  if (existing === undefined) {
    return { kind: 'conflict', existing: { ...input, market_protection_bps: protection ?? 0 } };
  }
  // Compared as numbers, so a row written before normalisation existed still matches.
  const same =
    (
      await sql<{ same: boolean }[]>`
      SELECT ${existing.tick_size}::numeric = ${tick}::numeric
         AND ${existing.lot_size}::numeric = ${lot}::numeric AS same`
    )[0]?.same === true;
  if (!same) return { kind: 'conflict', existing };
  if (protection === undefined || protection === existing.market_protection_bps) {
    return { kind: 'ok', instrument: existing, created: false, updated: false };
  }
  const [updated] = await sql<Instrument[]>`
    UPDATE instruments SET market_protection_bps = ${protection} WHERE symbol = ${input.symbol}
    RETURNING ${sql.unsafe(COLUMNS)}`;
  return updated === undefined
    ? { kind: 'conflict', existing }
    : { kind: 'ok', instrument: { ...updated }, created: false, updated: true };
}

/** Every instrument, by symbol. */
export async function listInstruments(sql: Sql): Promise<Instrument[]> {
  const rows = await sql<Instrument[]>`
    SELECT ${sql.unsafe(COLUMNS)} FROM instruments ORDER BY symbol`;
  return rows.map((r) => ({ ...r }));
}

/** One instrument, if listed. */
export async function getInstrument(sql: Sql, symbol: string): Promise<Instrument | undefined> {
  const [row] = await sql<Instrument[]>`
    SELECT ${sql.unsafe(COLUMNS)} FROM instruments WHERE symbol = ${symbol}`;
  return row === undefined ? undefined : { ...row };
}

/** Lists the default instruments when none exist yet (first start); returns how many it added. */
export async function seedDefaultInstruments(sql: Sql): Promise<number> {
  const symbols = DEFAULT_INSTRUMENTS.map((i) => i.symbol);
  const ticks = DEFAULT_INSTRUMENTS.map((i) => i.tick_size);
  const lots = DEFAULT_INSTRUMENTS.map((i) => i.lot_size);
  // ON CONFLICT: two processes starting together both see an empty table.
  const result = await sql`
    INSERT INTO instruments (symbol, tick_size, lot_size)
    SELECT * FROM unnest(${symbols}::text[], ${ticks}::numeric[], ${lots}::numeric[])
    WHERE NOT EXISTS (SELECT 1 FROM instruments)
    ON CONFLICT (symbol) DO NOTHING`;
  return result.count;
}
