// Differential and determinism properties of the matching engine: random command streams run
// through the real engine and through the slow ReferenceEngine must give the same reports, event
// for event, and the same books; the engine must give byte-identical reports when run twice and
// when snapshotted and restored part way.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';

import { EventBuffer } from '../../src/engine/event-buffer.js';
import { MatchingEngine } from '../../src/engine/matching-engine.js';
import {
  CommandType,
  EventKind,
  OrderStatus,
  OrderType,
  Side,
  Stp,
  TimeInForce,
} from '../../src/engine/types.js';
import type { Command, Depth, ExecutionReport, OrderView } from '../../src/engine/types.js';
import { cancel, command, place, replace } from './commands.js';
import { ReferenceEngine } from './reference-model.js';

const SYMBOLS = ['AAA', 'BBB'] as const;
const UNLISTED = 'ZZZ';
const LOW = 95;
const HIGH = 105;
const TS_BASE = 1_700_000_000_000;
/** Multiplies every property's run count, for a long hunt: ENGINE_FUZZ_SCALE=20 node --test … */
const SCALE = Number(process.env['ENGINE_FUZZ_SCALE'] ?? '1') || 1;
const runs = (n: number): number => Math.ceil(n * SCALE);

// --- generation ---------------------------------------------------------------------------------
// Steps are abstract (cancel "the order placed 3 places ago") and become concrete commands in
// `toCommands`, so a shrunk sequence still refers to orders it places itself.

interface PlaceStep {
  k: 'place';
  sym: number;
  owner: number;
  side: Side;
  type: OrderType;
  tif: TimeInForce;
  price: number;
  stop: number;
  qty: number;
  postOnly: boolean;
  stp: Stp;
  /** Price protection in basis points; used by MARKET and STOP_MARKET orders only. */
  protection: number;
  /** Indexes into MUTATIONS; each makes the order invalid in one way. */
  faults: number[];
  back: number;
}

interface CancelStep {
  k: 'cancel';
  /** Name a live order (else any order placed before). */
  live: boolean;
  back: number;
  /** 0: the order's owner, 1: another owner, 2: an id never used. */
  who: number;
  otherSymbol: boolean;
}

interface ReplaceStep {
  k: 'replace';
  live: boolean;
  back: number;
  who: number;
  /** Added to the order's generated price; 0 keeps it. */
  dPrice: number;
  /** Added to the order's generated quantity. */
  dQty: number;
  /** 0: as computed, 1: price 0, 2: quantity 0. */
  bad: number;
}

/** A FORGET of a listed symbol (a symbol moved onto the engine's shard). */
interface ForgetStep {
  k: 'forget';
  sym: number;
}

/** A CANCEL_ALL of one owner's orders on one side: of one symbol, of all, or of an unlisted one. */
interface CancelAllStep {
  k: 'cancelAll';
  owner: number;
  side: Side;
  /** 0, 1: SYMBOLS[sym]; 2: every symbol (''); 3: UNLISTED. */
  sym: number;
}

type Step = (PlaceStep | CancelStep | ReplaceStep | ForgetStep | CancelAllStep) & {
  seqMode: number;
};

type Mutation = (c: Command, recentId: number) => void;

const nonSafe = (c: Command): number => [-1, 2.5, 2 ** 53][c.seq % 3] ?? -1;
const MUTATIONS: readonly Mutation[] = [
  (c) => (c.orderId = nonSafe(c)),
  (c) => (c.side = 2 as number as Side),
  (c) => (c.orderType = 4 as number as OrderType),
  (c) => (c.tif = 3 as number as TimeInForce),
  (c) => (c.stp = (c.seq % 2 === 0 ? 4 : -1) as number as Stp),
  (c) => (c.symbol = UNLISTED),
  (c, recentId) => (c.orderId = recentId),
  (c) => (c.quantity = [0, -2, 2.5, 2 ** 53][c.seq % 4] ?? 0),
  (c) => (c.price = hasLimitPrice(c.orderType) ? ([0, -1, 1.5][c.seq % 3] ?? 0) : 100),
  (c) => (c.stopPrice = isStop(c.orderType) ? ([0, -4, 7.5][c.seq % 3] ?? 0) : 100),
  (c) => {
    c.orderType = c.seq % 2 === 0 ? OrderType.MARKET : OrderType.STOP_MARKET;
    c.tif = TimeInForce.GTC;
  },
  (c) => (c.postOnly = true),
  // Not integers, so out of range though between the bounds.
  (c) => (c.tif = 0.5 as number as TimeInForce),
  (c) => (c.orderType = 1.5 as number as OrderType),
  (c) => (c.stp = 2.5 as number as Stp),
  (c) => (c.type = 5 as number as CommandType),
  (c) => (c.protection = [-1, 10_001, 2.5][c.seq % 3] ?? -1),
  // Price protection is for orders without a limit price.
  (c) => (c.protection = hasLimitPrice(c.orderType) ? 50 : 10_001),
];

const side = fc.constantFrom<Side>(Side.BUY, Side.SELL);
const stp = fc.oneof(
  { arbitrary: fc.constant<Stp>(Stp.NONE), weight: 4 },
  {
    arbitrary: fc.constantFrom<Stp>(Stp.CANCEL_NEWEST, Stp.CANCEL_OLDEST, Stp.CANCEL_BOTH),
    weight: 6,
  },
);
const orderType = fc.oneof(
  { arbitrary: fc.constant<OrderType>(OrderType.LIMIT), weight: 14 },
  { arbitrary: fc.constant<OrderType>(OrderType.MARKET), weight: 2 },
  { arbitrary: fc.constant<OrderType>(OrderType.STOP_LIMIT), weight: 3 },
  { arbitrary: fc.constant<OrderType>(OrderType.STOP_MARKET), weight: 3 },
);
const tif = fc.oneof(
  { arbitrary: fc.constant<TimeInForce>(TimeInForce.GTC), weight: 7 },
  { arbitrary: fc.constantFrom<TimeInForce>(TimeInForce.IOC, TimeInForce.FOK), weight: 3 },
);
const price = fc.integer({ min: LOW, max: HIGH });
const back = fc.nat({ max: 12 });
const live = fc.oneof(
  { arbitrary: fc.constant(true), weight: 5 },
  { arbitrary: fc.constant(false), weight: 1 },
);
const who = fc.oneof(
  { arbitrary: fc.constant(0), weight: 16 },
  { arbitrary: fc.constant(1), weight: 3 },
  { arbitrary: fc.constant(2), weight: 1 },
);

const placeStep: fc.Arbitrary<PlaceStep> = fc.record({
  k: fc.constant('place' as const),
  sym: fc.oneof({ arbitrary: fc.constant(0), weight: 3 }, { arbitrary: fc.constant(1), weight: 1 }),
  owner: fc.integer({ min: 1, max: 3 }),
  side,
  type: orderType,
  tif,
  price,
  stop: price,
  qty: fc.integer({ min: 1, max: 10 }),
  postOnly: fc.oneof(
    { arbitrary: fc.constant(false), weight: 6 },
    { arbitrary: fc.constant(true), weight: 1 },
  ),
  stp,
  // 1–1,000 bps of a best near 100 is a band of 0–10 ticks: inside, across and past the book.
  protection: fc.oneof(
    { arbitrary: fc.constant(0), weight: 2 },
    { arbitrary: fc.integer({ min: 1, max: 1000 }), weight: 3 },
  ),
  faults: fc.oneof(
    { arbitrary: fc.constant<number[]>([]), weight: 20 },
    {
      arbitrary: fc.array(fc.nat({ max: MUTATIONS.length - 1 }), { minLength: 1, maxLength: 1 }),
      weight: 1,
    },
    {
      arbitrary: fc.array(fc.nat({ max: MUTATIONS.length - 1 }), { minLength: 2, maxLength: 3 }),
      weight: 1,
    },
  ),
  back,
});

const cancelStep: fc.Arbitrary<CancelStep> = fc.record({
  k: fc.constant('cancel' as const),
  live,
  back,
  who,
  otherSymbol: fc.oneof(
    { arbitrary: fc.constant(false), weight: 15 },
    { arbitrary: fc.constant(true), weight: 1 },
  ),
});

const replaceStep: fc.Arbitrary<ReplaceStep> = fc.record({
  k: fc.constant('replace' as const),
  live,
  back,
  who,
  dPrice: fc.oneof(
    { arbitrary: fc.constant(0), weight: 1 },
    { arbitrary: fc.integer({ min: -3, max: 3 }), weight: 1 },
  ),
  dQty: fc.integer({ min: -6, max: 4 }),
  // 1, 2: a price or quantity that is refused; 3, 4: 0 for either, the order's own kept.
  bad: fc.oneof(
    { arbitrary: fc.constant(0), weight: 20 },
    { arbitrary: fc.constantFrom(1, 2), weight: 1 },
    { arbitrary: fc.constantFrom(3, 4), weight: 4 },
  ),
});

const forgetStep: fc.Arbitrary<ForgetStep> = fc.record({
  k: fc.constant('forget' as const),
  sym: fc.constantFrom(0, 1),
});

const cancelAllStep: fc.Arbitrary<CancelAllStep> = fc.record({
  k: fc.constant('cancelAll' as const),
  owner: fc.integer({ min: 1, max: 3 }),
  side,
  sym: fc.oneof(
    { arbitrary: fc.constantFrom(0, 1), weight: 6 },
    { arbitrary: fc.constant(2), weight: 3 },
    { arbitrary: fc.constant(3), weight: 1 },
  ),
});

/** 0: next, 1: a gap, 2: the last applied seq again, 3: an older one, 4: not an integer. */
const seqMode = fc.oneof(
  { arbitrary: fc.constant(0), weight: 80 },
  { arbitrary: fc.constantFrom(1, 2, 3, 4), weight: 4 },
);

const step: fc.Arbitrary<Step> = fc
  .tuple(
    fc.oneof(
      { arbitrary: placeStep, weight: 16 },
      { arbitrary: cancelStep, weight: 2 },
      { arbitrary: replaceStep, weight: 3 },
      { arbitrary: forgetStep, weight: 1 },
      { arbitrary: cancelAllStep, weight: 1 },
    ),
    seqMode,
  )
  .map(([s, m]) => ({ ...s, seqMode: m }));

function hasLimitPrice(t: OrderType): boolean {
  return t === OrderType.LIMIT || t === OrderType.STOP_LIMIT;
}

function isStop(t: OrderType): boolean {
  return t === OrderType.STOP_LIMIT || t === OrderType.STOP_MARKET;
}

interface Placed {
  id: number;
  owner: number;
  symbol: string;
  side: Side;
  price: number;
  qty: number;
}

/**
 * Turns abstract steps into the concrete command stream, deterministically. A reference engine
 * runs alongside so that most cancels and replaces (and duplicate ids) name orders still live;
 * the rest name any order placed before, done or not.
 */
function toCommands(steps: readonly Step[]): Command[] {
  const out: Command[] = [];
  const placed: Placed[] = [];
  const shadow = newReference();
  let seq = 0;
  let nextId = 1;
  const pick = (live: boolean, back: number): Placed | undefined => {
    if (!live) return placed[placed.length - 1 - back];
    const orders = shadow.liveOrders().sort((a, b) => b.orderId - a.orderId);
    const o = orders[back % Math.max(1, orders.length)];
    if (o === undefined) return placed[placed.length - 1 - back];
    return {
      id: o.orderId,
      owner: o.ownerId,
      symbol: o.symbol,
      side: o.side,
      price: o.price,
      qty: o.quantity,
    };
  };
  for (const s of steps) {
    let cmdSeq = seq + 1;
    if (s.seqMode === 1) cmdSeq = seq + 3;
    else if (s.seqMode === 2) cmdSeq = seq;
    else if (s.seqMode === 3) cmdSeq = Math.max(0, seq - 4);
    else if (s.seqMode === 4) cmdSeq = seq + 0.5;
    if (Number.isSafeInteger(cmdSeq)) seq = Math.max(seq, cmdSeq);
    const ts = TS_BASE + cmdSeq * 7;
    let c: Command;
    if (s.k === 'forget') {
      c = command(cmdSeq, { ts, type: CommandType.FORGET, symbol: SYMBOLS[s.sym] ?? 'AAA' });
    } else if (s.k === 'cancelAll') {
      const symbol = s.sym === 2 ? '' : s.sym === 3 ? UNLISTED : (SYMBOLS[s.sym] ?? 'AAA');
      c = command(cmdSeq, {
        ts,
        type: CommandType.CANCEL_ALL,
        symbol,
        ownerId: s.owner,
        side: s.side,
      });
    } else if (s.k === 'place') {
      const market = !hasLimitPrice(s.type);
      const t = market && s.tif === TimeInForce.GTC ? TimeInForce.IOC : s.tif;
      c = place(cmdSeq, {
        ts,
        symbol: SYMBOLS[s.sym] ?? 'AAA',
        orderId: nextId++,
        ownerId: s.owner,
        side: s.side,
        orderType: s.type,
        tif: t,
        // Buyers bid a little higher than sellers ask, so that orders cross often.
        price: market ? 0 : s.price + (s.side === Side.BUY ? 1 : -1),
        stopPrice: isStop(s.type) ? s.stop : 0,
        quantity: s.qty,
        postOnly: s.postOnly && s.type === OrderType.LIMIT && t === TimeInForce.GTC,
        stp: s.stp,
        protection: market ? s.protection : 0,
      });
      for (const f of s.faults) MUTATIONS[f]?.(c, pick(true, s.back)?.id ?? 1);
      placed.push({
        id: c.orderId,
        owner: c.ownerId,
        symbol: c.symbol,
        side: c.side,
        price: c.price,
        qty: c.quantity,
      });
    } else {
      const target = pick(s.live, s.back);
      const id = s.who === 2 || target === undefined ? 900_000 + cmdSeq : target.id;
      const owner = target === undefined ? 1 : s.who === 1 ? (target.owner % 3) + 1 : target.owner;
      const symbol = target === undefined ? 'AAA' : target.symbol;
      const fields: Partial<Command> = {
        ts,
        ownerId: owner,
        side: target?.side ?? Side.BUY,
        symbol: s.k === 'cancel' && s.otherSymbol ? UNLISTED : symbol,
      };
      if (s.k === 'cancel') {
        c = cancel(cmdSeq, id, fields);
      } else {
        // A market order's price is 0; replacing it to 0 + delta would mostly test INVALID_PRICE.
        const p = Math.max(1, (target?.price || 100) + s.dPrice);
        const q = Math.max(1, (target?.qty ?? 5) + s.dQty);
        const price = s.bad === 1 ? -1 : s.bad === 3 ? 0 : p;
        c = replace(cmdSeq, id, price, s.bad === 2 ? -1 : s.bad === 4 ? 0 : q, fields);
      }
    }
    out.push(c);
    if (c.type === CommandType.PLACE && (SYMBOLS as readonly string[]).includes(c.symbol))
      shadow.listInstrument(c.symbol);
    shadow.apply(c);
  }
  return out;
}

const commands = (maxLength: number): fc.Arbitrary<Command[]> =>
  fc.array(step, { minLength: 1, maxLength, size: 'max' }).map(toCommands);

// --- describing failures ------------------------------------------------------------------------

const KIND_NAMES = Object.keys(EventKind);

/** A command as a call to the builders in commands.ts, to paste into a scenario test. */
function describe(c: Command): string {
  if (c.type === CommandType.FORGET) {
    return `command(${c.seq}, { type: CommandType.FORGET, symbol: ${JSON.stringify(c.symbol)} })`;
  }
  if (c.type === CommandType.CANCEL_ALL) {
    const { symbol, ownerId, side } = c;
    return `command(${c.seq}, { type: CommandType.CANCEL_ALL, ${JSON.stringify({ symbol, ownerId, side }).slice(1, -1)} })`;
  }
  const base =
    c.type === CommandType.PLACE
      ? place(c.seq)
      : c.type === CommandType.CANCEL
        ? cancel(c.seq, c.orderId)
        : replace(c.seq, c.orderId, c.price, c.quantity);
  const diff = Object.entries(c)
    .filter(([k, v]) => base[k as keyof Command] !== v)
    .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
    .join(', ');
  const extra = diff === '' ? '' : `, { ${diff} }`;
  if (c.type === CommandType.PLACE) return `place(${c.seq}${extra})`;
  if (c.type === CommandType.CANCEL) return `cancel(${c.seq}, ${c.orderId}${extra})`;
  return `replace(${c.seq}, ${c.orderId}, ${c.price}, ${c.quantity}${extra})`;
}

function describeReport(r: ExecutionReport): string {
  const { kind, ...rest } = r;
  return `${KIND_NAMES[kind] ?? kind} ${JSON.stringify(rest)}`;
}

function failure(
  history: readonly Command[],
  what: string,
  expected: unknown,
  actual: unknown,
): Error {
  const fmt = (v: unknown): string =>
    Array.isArray(v) && v.every((r) => typeof r === 'object' && r !== null && 'kind' in r)
      ? (v as ExecutionReport[]).map((r) => '  ' + describeReport(r)).join('\n')
      : JSON.stringify(v);
  return new Error(
    `${what} differs after command ${history.length}:\n` +
      history.map((c) => '  ' + describe(c)).join('\n') +
      `\nexpected (reference):\n${fmt(expected)}\nactual (engine):\n${fmt(actual)}`,
  );
}

function same(history: readonly Command[], what: string, expected: unknown, actual: unknown): void {
  try {
    assert.deepStrictEqual(actual, expected);
  } catch {
    throw failure(history, what, expected, actual);
  }
}

// --- invariants ---------------------------------------------------------------------------------

const byId = (a: OrderView, b: OrderView): number => a.orderId - b.orderId;

function checkBooks(engine: MatchingEngine, live: OrderView[]): void {
  for (const o of live) {
    assert.ok(o.filled <= o.quantity, `order ${o.orderId}: filled above quantity`);
    assert.equal(o.leaves + o.filled, o.quantity, `order ${o.orderId}: leaves + filled`);
    assert.ok(o.leaves > 0, `order ${o.orderId}: live with no leaves`);
  }
  for (const symbol of SYMBOLS) {
    const d = engine.depth(symbol, 1000);
    if (d === undefined) {
      // Forgotten: only a book with no order goes.
      assert.ok(!live.some((o) => o.symbol === symbol), `${symbol} forgotten with orders`);
      continue;
    }
    const resting = live.filter(
      (o) => o.symbol === symbol && o.status !== OrderStatus.WAITING_TRIGGER,
    );
    for (const [levels, s] of [
      [d.bids, Side.BUY],
      [d.asks, Side.SELL],
    ] as const) {
      const mine = resting.filter((o) => o.side === s);
      let count = 0;
      for (let i = 0; i < levels.length; i++) {
        const l = levels[i];
        assert.ok(l !== undefined);
        const prev = levels[i - 1];
        if (prev !== undefined) {
          assert.ok(s === Side.BUY ? prev.price > l.price : prev.price < l.price, 'level order');
        }
        const at = mine.filter((o) => o.price === l.price);
        assert.ok(l.quantity > 0, `empty level ${symbol} ${l.price}`);
        assert.equal(
          l.quantity,
          at.reduce((n, o) => n + o.leaves, 0),
          `level ${l.price} quantity`,
        );
        assert.equal(l.orders, at.length, `level ${l.price} orders`);
        count += at.length;
      }
      assert.equal(count, mine.length, `${symbol} side ${s}: resting orders outside the levels`);
    }
    const bid = d.bids[0];
    const ask = d.asks[0];
    if (bid !== undefined && ask !== undefined) {
      assert.ok(bid.price < ask.price, `${symbol} crossed: ${bid.price} >= ${ask.price}`);
    }
  }
}

function checkTrades(cmd: Command, before: OrderView[], events: ExecutionReport[]): void {
  const known = new Map<number, { side: number; ownerId: number; stp: number }>();
  for (const o of before) known.set(o.orderId, o);
  if (cmd.type === CommandType.PLACE) known.set(cmd.orderId, cmd);
  for (const e of events) {
    assert.equal(e.seq, cmd.seq);
    assert.equal(e.ts, cmd.ts);
    if (e.kind !== EventKind.TRADE) continue;
    assert.ok(e.quantity > 0, 'empty trade');
    assert.ok(e.leaves >= 0 && e.makerLeaves >= 0, 'negative leaves in a trade');
    const maker = known.get(e.makerOrderId);
    const taker = known.get(e.orderId);
    assert.ok(maker !== undefined && taker !== undefined, 'trade between unknown orders');
    assert.notEqual(maker.side, e.side, 'maker and taker on the same side');
    assert.equal(taker.side, e.side, 'taker side');
    assert.equal(maker.ownerId, e.makerOwnerId, 'maker owner');
    if (e.makerOwnerId === e.ownerId) assert.equal(taker.stp, Stp.NONE, 'self-trade under STP');
  }
}

// --- the properties -----------------------------------------------------------------------------

function newEngine(): MatchingEngine {
  const e = new MatchingEngine();
  for (const s of SYMBOLS) e.listInstrument(s);
  return e;
}

function newReference(): ReferenceEngine {
  const r = new ReferenceEngine();
  for (const s of SYMBOLS) r.listInstrument(s);
  return r;
}

function runDifferential(cmds: readonly Command[]): void {
  const engine = newEngine();
  const ref = newReference();
  const out = new EventBuffer();
  const history: Command[] = [];
  for (const cmd of cmds) {
    history.push(cmd);
    const before = engine.liveOrders();
    const seqBefore = ref.lastSeq;
    out.clear();
    // Close to the service (which lists only on a PLACE it applies): a symbol is listed on its
    // first PLACE, and again after a FORGET.
    if (cmd.type === CommandType.PLACE && (SYMBOLS as readonly string[]).includes(cmd.symbol)) {
      engine.listInstrument(cmd.symbol);
      ref.listInstrument(cmd.symbol);
    }
    const applied = engine.apply(cmd, out);
    const expected = ref.apply(cmd);
    const actual = out.toArray();
    same(history, 'reports', expected, actual);
    same(history, 'apply() result', ref.lastSeq !== seqBefore, applied);
    same(history, 'lastSeq', ref.lastSeq, engine.lastSeq);
    for (const s of [...SYMBOLS, UNLISTED]) {
      same(history, `depth(${s})`, ref.depth(s, 1000), engine.depth(s, 1000));
    }
    for (const n of [0, 1, 2]) {
      same(history, `depth(AAA, ${n})`, ref.depth('AAA', n), engine.depth('AAA', n));
    }
    const live = engine.liveOrders().sort(byId);
    same(history, 'liveOrders()', ref.liveOrders().sort(byId), live);
    same(history, 'restingCount', ref.restingCount, engine.restingCount);
    same(history, `order(${cmd.orderId})`, ref.order(cmd.orderId), engine.order(cmd.orderId));
    for (const o of live) same(history, `order(${o.orderId})`, o, engine.order(o.orderId));
    try {
      checkBooks(engine, live);
      checkTrades(cmd, before, actual);
    } catch (e) {
      throw failure(history, `invariant (${(e as Error).message})`, '', actual);
    }
  }
}

/** Applies `cmds` and returns each command's reports serialised. */
function record(engine: MatchingEngine, cmds: readonly Command[]): string[] {
  const out = new EventBuffer();
  return cmds.map((c) => {
    out.clear();
    engine.apply(c, out);
    return JSON.stringify(out.toArray());
  });
}

function state(engine: MatchingEngine): string {
  const depths: (Depth | undefined)[] = SYMBOLS.map((s) => engine.depth(s, 1000));
  return JSON.stringify([engine.lastSeq, depths, engine.liveOrders().sort(byId)]);
}

/** A copy of `bytes` that starts at an odd offset of a larger buffer, as bytes off a wire would. */
function offsetCopy(bytes: Uint8Array): Uint8Array {
  const wide = new Uint8Array(bytes.length + 7);
  wide.set(bytes, 3);
  return wide.subarray(3, 3 + bytes.length);
}

void test('engine matches the reference model, report for report', () => {
  fc.assert(
    fc.property(commands(200), (cmds) => {
      runDifferential(cmds);
    }),
    { numRuns: runs(900), includeErrorInReport: true },
  );
});

void test('engine matches the reference model on short streams', () => {
  // Short streams reach the odd corners (empty books, first trades) far more often.
  fc.assert(
    fc.property(commands(25), (cmds) => {
      runDifferential(cmds);
    }),
    { numRuns: runs(2000), includeErrorInReport: true },
  );
});

void test('the same commands give byte-identical reports', () => {
  fc.assert(
    fc.property(commands(150), (cmds) => {
      const a = record(newEngine(), cmds);
      const b = record(newEngine(), cmds);
      assert.deepStrictEqual(b, a);
    }),
    { numRuns: runs(200), includeErrorInReport: true },
  );
});

void test('snapshot and restore at any point continue exactly as the original', () => {
  fc.assert(
    fc.property(commands(150), fc.nat(), (cmds, at) => {
      const cut = at % (cmds.length + 1);
      const head = cmds.slice(0, cut);
      const tail = cmds.slice(cut);
      const original = newEngine();
      record(original, head);
      const bytes = original.snapshot();
      const saved = Uint8Array.from(bytes);
      const restored = MatchingEngine.restore(bytes);
      const fromCopy = MatchingEngine.restore(offsetCopy(saved));
      assert.equal(state(restored), state(original), 'state right after restore');
      assert.equal(state(fromCopy), state(original), 'state right after restore from a copy');

      const expected = record(original, tail);
      assert.deepStrictEqual(record(restored, tail), expected, 'reports after restore');
      assert.deepStrictEqual(record(fromCopy, tail), expected, 'reports after restore (copy)');
      assert.equal(state(restored), state(original), 'state after the tail');
      assert.equal(state(fromCopy), state(original), 'state after the tail (copy)');

      // The bytes must not alias engine state that kept changing after the snapshot.
      assert.deepStrictEqual(bytes, saved, 'snapshot bytes changed after the snapshot');
      const late = MatchingEngine.restore(bytes);
      assert.deepStrictEqual(record(late, tail), expected, 'reports after a late restore');
    }),
    { numRuns: runs(300), includeErrorInReport: true },
  );
});

void test('tif, orderType and stp that are not integers are INVALID_ORDER', () => {
  // Between the bounds but not members of the enumerations: "out of range" all the same.
  const bad: Partial<Command>[] = [
    { tif: 0.5 as number as TimeInForce },
    { orderType: 1.5 as number as OrderType },
    { stp: 2.5 as number as Stp },
  ];
  bad.forEach((fields, i) => {
    const engine = newEngine();
    const out = new EventBuffer();
    const cmd = place(i + 1, fields);
    engine.apply(cmd, out);
    assert.deepStrictEqual(out.toArray(), newReference().apply(cmd), JSON.stringify(fields));
  });
});

void test('a level never holds more than 2^53 - 1 lots, so its total stays exact', () => {
  // Each order is a safe integer, but a running level total above 2^53 would round: the second
  // order's rest is canceled instead, and the level shows the exact sum of its orders' leaves.
  const max = Number.MAX_SAFE_INTEGER;
  const cmds = [
    place(1, { side: Side.SELL, quantity: max }),
    place(2, { side: Side.SELL, quantity: max, ownerId: 2 }),
    place(3, { quantity: 1, ownerId: 3 }),
    place(4, { quantity: 1, ownerId: 3 }),
    place(5, { quantity: 1, ownerId: 3 }),
    cancel(6, 2, { ownerId: 2 }),
  ];
  const engine = newEngine();
  const out = new EventBuffer();
  for (const c of cmds) engine.apply(c, out);
  assert.deepStrictEqual(engine.depth('AAA', 5)?.asks, [
    { price: 100, quantity: max - 3, orders: 1 },
  ]);
});

void test('builders fill every field of a command', () => {
  const c = command(3);
  assert.equal(Object.keys(c).length, 15);
  assert.deepStrictEqual(place(3, { side: Side.SELL }), {
    ...c,
    orderId: 3,
    price: 100,
    quantity: 1,
    side: Side.SELL,
  });
});
