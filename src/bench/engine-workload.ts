// The engine benchmark's workload, generated before anything is measured: a shadow engine plays
// the workload once so that every cancel names a live order, and the commands are kept as
// columns of typed arrays (no million objects on the heap while the measured engine runs).

import { EventBuffer } from '../engine/event-buffer.js';
import { blankCommand } from '../engine/command.js';
import { MatchingEngine } from '../engine/matching-engine.js';
import { CommandType, EventKind, OrderType, Side, TimeInForce } from '../engine/types.js';
import type { Command } from '../engine/types.js';

export interface WorkloadSpec {
  symbols: number;
  /** Resting orders per symbol that the prefill builds and the run keeps near. */
  target: number;
  warmup: number;
  measured: number;
  seed: number;
}

/** A small, fast, seeded generator (mulberry32): the same seed gives the same workload. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Commands stored column-wise; `load(i, cmd)` writes the i-th into a reused Command object. */
export class CommandColumns {
  readonly type: Uint8Array;
  readonly symbol: Uint8Array;
  readonly side: Uint8Array;
  readonly orderType: Uint8Array;
  readonly tif: Uint8Array;
  readonly orderId: Float64Array;
  readonly price: Float64Array;
  readonly quantity: Float64Array;
  length = 0;

  constructor(
    capacity: number,
    readonly symbolNames: readonly string[],
  ) {
    this.type = new Uint8Array(capacity);
    this.symbol = new Uint8Array(capacity);
    this.side = new Uint8Array(capacity);
    this.orderType = new Uint8Array(capacity);
    this.tif = new Uint8Array(capacity);
    this.orderId = new Float64Array(capacity);
    this.price = new Float64Array(capacity);
    this.quantity = new Float64Array(capacity);
  }

  push(cmd: Command, symbolIndex: number): void {
    const i = this.length++;
    this.type[i] = cmd.type;
    this.symbol[i] = symbolIndex;
    this.side[i] = cmd.side;
    this.orderType[i] = cmd.orderType;
    this.tif[i] = cmd.tif;
    this.orderId[i] = cmd.orderId;
    this.price[i] = cmd.price;
    this.quantity[i] = cmd.quantity;
  }

  /** Fills `cmd` with command i, giving it sequence `seq`. */
  load(i: number, seq: number, cmd: Command): void {
    cmd.type = this.type[i] as Command['type'];
    cmd.seq = seq;
    cmd.ts = seq;
    cmd.symbol = this.symbolNames[this.symbol[i] as number] as string;
    cmd.side = this.side[i] as Command['side'];
    cmd.orderType = this.orderType[i] as Command['orderType'];
    cmd.tif = this.tif[i] as Command['tif'];
    cmd.orderId = this.orderId[i] as number;
    cmd.ownerId = (this.orderId[i] as number) % 97;
    cmd.price = this.price[i] as number;
    cmd.quantity = this.quantity[i] as number;
  }
}

export { blankCommand };

/** Live resting ids of one symbol, with O(1) add, remove and random pick. */
class LiveSet {
  private readonly ids: number[] = [];
  private readonly at = new Map<number, number>();

  get size(): number {
    return this.ids.length;
  }

  add(id: number): void {
    this.at.set(id, this.ids.length);
    this.ids.push(id);
  }

  remove(id: number): void {
    const i = this.at.get(id);
    if (i === undefined) return;
    const last = this.ids.pop() as number;
    if (last !== id) {
      this.ids[i] = last;
      this.at.set(last, i);
    }
    this.at.delete(id);
  }

  pick(r: number): number {
    return this.ids[Math.floor(r * this.ids.length)] as number;
  }
}

const MID = 100_000;

export interface Workload {
  spec: WorkloadSpec;
  symbols: string[];
  /** Builds every book to its target; not measured. */
  prefill: CommandColumns;
  warmup: CommandColumns;
  measured: CommandColumns;
}

/** Generates the prefill, warm-up and measured commands of one run. */
export function generateWorkload(spec: WorkloadSpec): Workload {
  const symbols = Array.from({ length: spec.symbols }, (_, i) => `SYM${i}`);
  const random = rng(spec.seed);
  const engine = new MatchingEngine();
  for (const s of symbols) engine.listInstrument(s);
  const live = symbols.map(() => new LiveSet());
  const out = new EventBuffer();
  const cmd = blankCommand();
  let seq = 0;
  let nextId = 1;

  const play = (cols: CommandColumns, symbolIndex: number): void => {
    cmd.seq = ++seq;
    cmd.ts = seq;
    cmd.ownerId = cmd.orderId % 97;
    cols.push(cmd, symbolIndex);
    out.clear();
    engine.apply(cmd, out);
    for (let i = 0; i < out.length; i++) {
      const e = out.at(i);
      const set = live[symbols.indexOf(e.symbol)] as LiveSet;
      if (e.kind === EventKind.TRADE && e.makerLeaves === 0) set.remove(e.makerOrderId);
      else if (e.kind === EventKind.CANCELED) set.remove(e.orderId);
    }
    if (
      cmd.type === CommandType.PLACE &&
      cmd.orderType === OrderType.LIMIT &&
      engine.order(cmd.orderId) !== undefined
    ) {
      (live[symbolIndex] as LiveSet).add(cmd.orderId);
    }
  };

  const prefill = new CommandColumns(spec.symbols * spec.target, symbols);
  for (let s = 0; s < spec.symbols; s++) {
    for (let n = 0; n < spec.target; n++) {
      const buy = n % 2 === 0;
      const offset = 1 + Math.floor(random() * 50);
      Object.assign(cmd, {
        type: CommandType.PLACE,
        symbol: symbols[s],
        orderId: nextId++,
        side: buy ? Side.BUY : Side.SELL,
        orderType: OrderType.LIMIT,
        tif: TimeInForce.GTC,
        price: buy ? MID - offset : MID + offset,
        quantity: 1 + Math.floor(random() * 10),
      });
      play(prefill, s);
    }
  }

  const mixed = (count: number): CommandColumns => {
    const cols = new CommandColumns(count, symbols);
    for (let n = 0; n < count; n++) {
      const s = Math.floor(random() * spec.symbols);
      const symbol = symbols[s] as string;
      const set = live[s] as LiveSet;
      const roll = random();
      const side = random() < 0.5 ? Side.BUY : Side.SELL;
      const quantity = 1 + Math.floor(random() * 10);
      const price = (): number => {
        const depth = engine.depth(symbol, 1);
        const bid = depth?.bids[0]?.price ?? MID - 1;
        const ask = depth?.asks[0]?.price ?? MID + 1;
        // From 5 ticks behind the touch to 1 tick through the opposite touch.
        const k = Math.floor(random() * 7) - 5;
        return side === Side.BUY ? Math.max(1, ask + k) : Math.max(1, bid - k);
      };
      if (roll >= 0.1 && set.size > 0 && (roll >= 0.8 || set.size >= spec.target)) {
        Object.assign(cmd, { type: CommandType.CANCEL, symbol, orderId: set.pick(random()) });
        Object.assign(cmd, { price: 0, quantity: 0 });
      } else {
        const limit = roll >= 0.1 && roll < 0.8 && set.size < spec.target;
        Object.assign(cmd, { type: CommandType.PLACE, symbol, orderId: nextId++, side, quantity });
        Object.assign(cmd, {
          orderType: limit ? OrderType.LIMIT : OrderType.MARKET,
          tif: limit ? TimeInForce.GTC : TimeInForce.IOC,
          price: limit ? price() : 0,
        });
      }
      play(cols, s);
    }
    return cols;
  };
  const warmup = mixed(spec.warmup);
  const measured = mixed(spec.measured);
  return { spec, symbols, prefill, warmup, measured };
}
