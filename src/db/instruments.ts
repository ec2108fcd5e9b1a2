// Listed instruments. Resting orders are kept in integer ticks and lots, so a symbol's tick and lot
// size can never change once it exists: an upsert with other values is refused, not applied.
import { Scale, parseDecimal } from '../engine/scale.js';
import { SYMBOL } from '../config/config.js';
import type { Sql } from './client.js';

/** An instrument as the API shows it; sizes are decimal strings without trailing zeros. */
export interface Instrument {
  symbol: string;
  tick_size: string;
  lot_size: string;
}

export type UpsertInstrumentResult =
  | { kind: 'ok'; instrument: Instrument; created: boolean }
  /** The symbol exists with other sizes; nothing was changed. */
  | { kind: 'conflict'; existing: Instrument }
  /** A value is malformed: `field` names it. */
  | { kind: 'invalid'; field: 'symbol' | 'tick_size' | 'lot_size'; message: string };

export const DEFAULT_INSTRUMENTS: readonly Instrument[] = [
  'AAPL',
  'MSFT',
  'GOOG',
  'AMZN',
  'TSLA',
].map((symbol) => ({ symbol, tick_size: '0.01', lot_size: '1' }));

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

/** Creates the instrument, or confirms it when it exists with the same sizes. */
export async function upsertInstrument(
  sql: Sql,
  input: Instrument,
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
  const inserted = await sql<Instrument[]>`
    INSERT INTO instruments (symbol, tick_size, lot_size) VALUES (${input.symbol}, ${tick}, ${lot})
    ON CONFLICT (symbol) DO NOTHING
    RETURNING symbol, tick_size::text, lot_size::text`;
  const created = inserted[0];
  if (created !== undefined) return { kind: 'ok', instrument: { ...created }, created: true };
  const existing = await getInstrument(sql, input.symbol);
  // Deleted between the two statements: nothing in matchbox deletes instruments, so say conflict.
  if (existing === undefined) return { kind: 'conflict', existing: { ...input } };
  // Compared as numbers, so a row written before normalisation existed still matches.
  const same =
    (
      await sql<{ same: boolean }[]>`
      SELECT ${existing.tick_size}::numeric = ${tick}::numeric
         AND ${existing.lot_size}::numeric = ${lot}::numeric AS same`
    )[0]?.same === true;
  return same
    ? { kind: 'ok', instrument: existing, created: false }
    : { kind: 'conflict', existing };
}

/** Every instrument, by symbol. */
export async function listInstruments(sql: Sql): Promise<Instrument[]> {
  const rows = await sql<Instrument[]>`
    SELECT symbol, tick_size::text, lot_size::text FROM instruments ORDER BY symbol`;
  return rows.map((r) => ({ ...r }));
}

/** One instrument, if listed. */
export async function getInstrument(sql: Sql, symbol: string): Promise<Instrument | undefined> {
  const [row] = await sql<Instrument[]>`
    SELECT symbol, tick_size::text, lot_size::text FROM instruments WHERE symbol = ${symbol}`;
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
