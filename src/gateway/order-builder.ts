// From a validated request body to the order the queue carries: the rules that a JSON schema says
// badly (which fields each type requires or forbids, multiples of tick and lot size), and the
// exact conversion of decimals to ticks and lots.
import { randomFillSync } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import { Scale } from '../engine/scale.js';
import type { ScaleError } from '../engine/scale.js';
import type { OrderState, TifName } from '../queue/records.js';
import { invalid } from './errors.js';
import type { ApiError, ErrorDetail } from './errors.js';
import type { AmendRequest, OrderRequest } from './schemas.js';

/** A listed instrument with its scales. */
export interface InstrumentScales {
  symbol: string;
  tickSize: string;
  lotSize: string;
  ticks: Scale;
  lots: Scale;
  /** Price protection of its MARKET and STOP_MARKET orders, in basis points; 0 for none. */
  protectionBps: number;
}

export function instrumentScales(
  symbol: string,
  tickSize: string,
  lotSize: string,
  protectionBps = 0,
): InstrumentScales {
  const [ticks, lots] = [new Scale(tickSize), new Scale(lotSize)];
  return { symbol, tickSize, lotSize, ticks, lots, protectionBps };
}

/**
 * Random bytes for order ids, drawn from a pool refilled 4 KiB at a time: asking the kernel for
 * 16 bytes per order costs more than the rest of building it.
 */
const pool = Buffer.alloc(4096);
let poolAt = pool.length;
function random16(): Uint8Array {
  if (poolAt + 16 > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  poolAt += 16;
  return pool.subarray(poolAt - 16, poolAt);
}

/** The authenticated caller. */
export interface Caller {
  id: string;
  no: number;
}

const SCALE_MESSAGES: Record<ScaleError, string> = {
  FORMAT: 'must be a plain decimal such as "187.25" (no sign, exponent or spaces)',
  NOT_POSITIVE: 'must be greater than 0',
  NOT_MULTIPLE: 'must be a multiple of the ',
  TOO_LARGE: 'is too large',
  TOO_LONG: 'has more than 40 characters written out as a decimal',
};

/**
 * The text of a JSON number in a request, as the body has it (so that 0.1000000000000000055 is
 * refused rather than rounded). Undefined when the text the parser kept is not this number's: its
 * key was written with escapes (`"pr\u0069ce"`, which the text scan does not see) or twice. The
 * number as parsed has passed through a float, so it is never used instead.
 */
export function numberText(value: number, raw: string | undefined): string | undefined {
  return raw !== undefined && Number(raw) === value ? raw : undefined;
}

/** Why a JSON number whose own text could not be told apart is refused. */
export const UNREADABLE_NUMBER =
  'must be written once, with its name unescaped, to be read exactly';

type MoneyField = 'quantity' | 'price' | 'stop_price';

interface MoneyProblem {
  kind: ScaleError | 'UNREADABLE';
  /** The message of its detail. */
  message: string;
}

/** A money field's value as a whole number of the instrument's steps, or what is wrong with it. */
function readMoney(
  field: MoneyField,
  value: string | number,
  raw: string | undefined,
  instrument: InstrumentScales,
): number | MoneyProblem {
  const text = typeof value === 'string' ? value : numberText(value, raw);
  if (text === undefined) return { kind: 'UNREADABLE', message: UNREADABLE_NUMBER };
  const quantity = field === 'quantity';
  const scale = quantity ? instrument.lots : instrument.ticks;
  const result = scale.toUnits(text, typeof value === 'number');
  if (typeof result === 'number') return result;
  const what = quantity ? `lot size ${instrument.lotSize}` : `tick size ${instrument.tickSize}`;
  return {
    kind: result,
    message: SCALE_MESSAGES[result] + (result === 'NOT_MULTIPLE' ? what : ''),
  };
}

/** A money field in steps, or 0 when absent (or bad: what is wrong goes to `details`). */
function moneyOrZero(
  value: string | number | null | undefined,
  field: MoneyField,
  rawNumbers: Readonly<Record<string, string>>,
  instrument: InstrumentScales,
  details: ErrorDetail[],
): number {
  if (value === undefined || value === null) return 0;
  const read = readMoney(field, value, rawNumbers[field], instrument);
  if (typeof read === 'number') return read;
  details.push({ field, message: read.message });
  return 0;
}

/** Steps of 1, for judging what no step decides: the form, the sign, the length. */
const ANY_INSTRUMENT = instrumentScales('', '1', '1');

/**
 * The money fields of a body the schema refused, judged as far as they can be: against the
 * instrument's steps when the body names a listed one, else only their form, sign and length.
 * Fields in `named` (the schema's own findings) are left out. So one answer names every bad
 * field, as api-v1.md says, rather than the schema's and then the rest on the next try.
 */
export function moneyDetails(
  body: unknown,
  rawNumbers: Readonly<Record<string, string>>,
  instrument: InstrumentScales | undefined,
  named: ReadonlySet<string>,
): ErrorDetail[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return [];
  const details: ErrorDetail[] = [];
  for (const field of ['quantity', 'price', 'stop_price'] as const) {
    const value = (body as Record<string, unknown>)[field];
    if (named.has(field) || (typeof value !== 'string' && typeof value !== 'number')) continue;
    const read = readMoney(field, value, rawNumbers[field], instrument ?? ANY_INSTRUMENT);
    if (typeof read === 'number') continue;
    const stepped = read.kind === 'NOT_MULTIPLE' || read.kind === 'TOO_LARGE';
    if (instrument !== undefined || !stepped) details.push({ field, message: read.message });
  }
  return details;
}

/** Builds the order to queue, or the 400 that names every bad field. */
export function buildOrder(
  body: OrderRequest,
  rawNumbers: Readonly<Record<string, string>>,
  instrument: InstrumentScales,
  caller: Caller,
  now: Date,
): OrderState | ApiError {
  const details: ErrorDetail[] = [];
  const priced = body.type === 'LIMIT' || body.type === 'STOP_LIMIT';
  const stop = body.type === 'STOP_LIMIT' || body.type === 'STOP_MARKET';

  const convert = (field: MoneyField): number =>
    moneyOrZero(body[field], field, rawNumbers, instrument, details);

  const lots = convert('quantity');
  const hasPrice = body.price !== undefined && body.price !== null;
  const hasStop = body.stop_price !== undefined && body.stop_price !== null;
  let ticks = 0;
  let stopTicks = 0;
  if (priced && !hasPrice)
    details.push({ field: 'price', message: `is required for ${body.type}` });
  if (!priced && hasPrice)
    details.push({ field: 'price', message: `is forbidden for ${body.type}` });
  if (priced && hasPrice) ticks = convert('price');
  if (stop && !hasStop) {
    details.push({ field: 'stop_price', message: `is required for ${body.type}` });
  }
  if (!stop && hasStop) {
    details.push({ field: 'stop_price', message: `is forbidden for ${body.type}` });
  }
  if (stop && hasStop) stopTicks = convert('stop_price');

  const marketLike = body.type === 'MARKET' || body.type === 'STOP_MARKET';
  const tif: TifName = body.time_in_force ?? (marketLike ? 'IOC' : 'GTC');
  if (marketLike && tif === 'GTC') {
    details.push({ field: 'time_in_force', message: `${body.type} orders cannot be GTC` });
  }
  const postOnly = body.post_only ?? false;
  if (postOnly && body.type !== 'LIMIT') {
    details.push({ field: 'post_only', message: 'applies to LIMIT orders only' });
  } else if (postOnly && tif !== 'GTC') {
    details.push({ field: 'post_only', message: 'applies to GTC orders only' });
  }
  if (details.length > 0) return invalid(details);

  const at = now.toISOString();
  const order: OrderState = {
    id: uuidv7({ msecs: now.getTime(), random: random16() }),
    client_order_id: body.client_order_id ?? null,
    user_id: caller.id,
    symbol: body.symbol,
    side: body.side,
    type: body.type,
    time_in_force: tif,
    quantity: instrument.lots.toDecimal(lots),
    price: priced ? instrument.ticks.toDecimal(ticks) : null,
    stop_price: stop ? instrument.ticks.toDecimal(stopTicks) : null,
    post_only: postOnly,
    self_trade_prevention: body.self_trade_prevention ?? 'NONE',
    filled_quantity: instrument.lots.toDecimal(0),
    average_fill_price: null,
    status: 'PENDING',
    reject_reason: null,
    created_at: at,
    updated_at: at,
    seq: 0,
    version: 0,
    owner_no: caller.no,
    quantity_lots: lots,
    price_ticks: ticks,
    stop_ticks: stopTicks,
    filled_lots: 0,
    notional: '0',
  };
  // The instrument's, as this order is accepted: the engine bands it when it comes to match.
  if (marketLike && instrument.protectionBps > 0) order.protection_bps = instrument.protectionBps;
  return order;
}

/** The new price (ticks) and total quantity (lots) of an amend; 0 leaves either as it is. */
export interface AmendValues {
  priceTicks: number;
  quantityLots: number;
}

/**
 * The price and total quantity an amend gives `order`, or the 400 that names every bad field. A
 * field left out is 0: the engine keeps the order's own as it is when it applies the amend (not as
 * this read of it, which another amend queued meanwhile may have changed). A new quantity must be
 * above what has filled of the order as it stands here; the queue checks that again against the
 * order as it is then, and the engine once more.
 */
export function buildAmend(
  body: AmendRequest,
  rawNumbers: Readonly<Record<string, string>>,
  instrument: InstrumentScales,
  order: OrderState,
): AmendValues | ApiError {
  const details: ErrorDetail[] = [];
  const priceTicks = moneyOrZero(body.price, 'price', rawNumbers, instrument, details);
  const quantityLots = moneyOrZero(body.quantity, 'quantity', rawNumbers, instrument, details);
  if (details.length === 0 && quantityLots > 0 && quantityLots <= order.filled_lots) {
    details.push(filledPast(order));
  }
  return details.length > 0 ? invalid(details) : { priceTicks, quantityLots };
}

/** What is wrong with an amend's quantity that would leave nothing of `order` open. */
export const filledPast = (order: OrderState): ErrorDetail => ({
  field: 'quantity',
  message: `must be above the quantity already filled, ${order.filled_quantity} (it is the new total)`,
});

/** True when a repeated client_order_id carries the same order as the one first accepted. */
export function sameOrder(a: OrderState, b: OrderState): boolean {
  return (
    a.symbol === b.symbol &&
    a.side === b.side &&
    a.type === b.type &&
    a.time_in_force === b.time_in_force &&
    a.quantity === b.quantity &&
    a.price === b.price &&
    a.stop_price === b.stop_price &&
    a.post_only === b.post_only &&
    a.self_trade_prevention === b.self_trade_prevention
  );
}
