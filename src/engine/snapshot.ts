// The engine's state as bytes: every book's queues in order, waiting stops in trigger order, last
// trade prices and the last applied sequence. Integers are unsigned LEB128 varints (a resting order
// takes about 21 bytes), the whole ends with an FNV-1a checksum so a damaged snapshot is refused
// rather than half-loaded.

import type { Order } from './order.js';
import { OrderBook } from './order-book.js';
import { MAX_PROTECTION, OrderType } from './types.js';

const MAGIC = 0x4d42_5831; // "MBX1"
/** 2 added each order's price protection; a version 1 snapshot is read with none. */
const VERSION = 2;

const FNV_OFFSET = 0x811c9dc5;

function fnv1a(buf: Uint8Array, from: number, to: number, h = FNV_OFFSET): number {
  for (let i = from; i < to; i++) {
    h ^= buf[i] as number;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

class Writer {
  private buf = new Uint8Array(1 << 16);
  private pos = 0;
  /** FNV-1a of buf[0, hashed). */
  private hash = FNV_OFFSET;
  private hashed = 0;

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.buf.subarray(0, this.pos));
    this.buf = bigger;
  }

  /** A safe non-negative integer as an unsigned varint. */
  uint(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`cannot encode ${n}`);
    this.room(8);
    while (n >= 0x80) {
      this.buf[this.pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.pos++] = n;
  }

  text(s: string): void {
    const bytes = new TextEncoder().encode(s);
    this.uint(bytes.length);
    this.room(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  u32(n: number): void {
    this.room(4);
    new DataView(this.buf.buffer).setUint32(this.pos, n);
    this.pos += 4;
  }

  /** Brings the checksum up to what is written so far (so that no step hashes it all). */
  hashSoFar(): void {
    this.hash = fnv1a(this.buf, this.hashed, this.pos, this.hash);
    this.hashed = this.pos;
  }

  finish(): Uint8Array {
    this.hashSoFar();
    this.u32(this.hash);
    return this.buf.slice(0, this.pos);
  }
}

class Reader {
  private pos = 0;
  private readonly view: DataView;

  constructor(
    private readonly buf: Uint8Array,
    private readonly end: number,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  uint(): number {
    let n = 0;
    let scale = 1;
    for (;;) {
      if (this.pos >= this.end) throw new Error('snapshot truncated');
      const b = this.buf[this.pos++] as number;
      n += (b & 0x7f) * scale;
      if (b < 0x80) break;
      scale *= 0x80;
      if (scale > 2 ** 56) throw new Error('snapshot varint too long');
    }
    if (!Number.isSafeInteger(n)) throw new Error('snapshot integer out of range');
    return n;
  }

  text(): string {
    const len = this.uint();
    if (this.pos + len > this.end) throw new Error('snapshot truncated');
    const s = new TextDecoder().decode(this.buf.subarray(this.pos, this.pos + len));
    this.pos += len;
    return s;
  }

  u32(): number {
    if (this.pos + 4 > this.end) throw new Error('snapshot truncated');
    const n = this.view.getUint32(this.pos);
    this.pos += 4;
    return n;
  }

  get done(): boolean {
    return this.pos === this.end;
  }
}

/** The fields of an order a snapshot holds, in their order. */
const ORDER_FIELDS = 14;

function copyOrder(values: Float64Array, at: number, o: Order): number {
  values[at] = o.id;
  values[at + 1] = o.owner;
  values[at + 2] = o.side;
  values[at + 3] = o.type;
  values[at + 4] = o.tif;
  values[at + 5] = o.stp;
  values[at + 6] = o.postOnly ? 1 : 0;
  values[at + 7] = o.price;
  values[at + 8] = o.stopPrice;
  values[at + 9] = o.quantity;
  values[at + 10] = o.leaves;
  values[at + 11] = o.filled;
  values[at + 12] = o.priority;
  values[at + 13] = o.protection;
  // Checked here, as the copy is made, so that an order no snapshot can hold fails the snapshot
  // at once, on the engine's thread, rather than later in an encoding step.
  for (let i = at; i < at + ORDER_FIELDS; i++) {
    const v = values[i] as number;
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new RangeError(`order ${o.id}: cannot encode ${v}`);
    }
  }
  return at + ORDER_FIELDS;
}

function readOrder(r: Reader, o: Order, book: OrderBook, version: number): Order {
  o.id = r.uint();
  o.owner = r.uint();
  o.book = book;
  o.side = r.uint() as Order['side'];
  o.type = r.uint() as Order['type'];
  o.tif = r.uint() as Order['tif'];
  o.stp = r.uint() as Order['stp'];
  o.postOnly = r.uint() === 1;
  o.price = r.uint();
  o.stopPrice = r.uint();
  o.quantity = r.uint();
  o.leaves = r.uint();
  o.filled = r.uint();
  o.priority = r.uint();
  o.protection = version >= 2 ? r.uint() : 0;
  if (
    o.side > 1 ||
    o.type > 3 ||
    o.tif > 2 ||
    o.stp > 3 ||
    o.protection > MAX_PROTECTION ||
    (o.protection !== 0 && o.type !== OrderType.MARKET && o.type !== OrderType.STOP_MARKET) ||
    o.leaves + o.filled !== o.quantity
  ) {
    throw new Error(`snapshot holds an impossible order ${o.id}`);
  }
  return o;
}

/**
 * The engine's state copied flat at one point between commands: per book its symbol and every
 * integer the snapshot holds for it, in the snapshot's order (112 bytes a resting order, for as
 * long as the encoding takes). The copy is the walk over every order, and stays synchronous: it
 * is what makes the snapshot one consistent point. The varints and the checksum, as long again,
 * then run from the copy in steps (`encodeInSteps`) while the engine that took it (the snapshot
 * replica of src/engine-service) goes on applying batches.
 */
export interface SnapshotCapture {
  seq: number;
  books: { symbol: string; values: Float64Array }[];
}

/** Copies the state (every integer is a safe integer: exact in a Float64Array). */
export function captureSnapshot(
  seq: number,
  books: ReadonlyMap<string, OrderBook>,
): SnapshotCapture {
  const captured: SnapshotCapture['books'] = [];
  for (const book of books.values()) {
    const sides = [book.bids.levels, book.asks.levels];
    const stops = [book.stops.buys, book.stops.sells];
    const resting = sides.map((levels) => levels.reduce((n, level) => n + level.count, 0));
    const orders = book.stops.size + resting.reduce((a, b) => a + b, 0);
    // lastTradePrice, then a count before each of the four lists.
    const values = new Float64Array(5 + orders * ORDER_FIELDS);
    let at = 0;
    if (!Number.isSafeInteger(book.lastTradePrice) || book.lastTradePrice < 0) {
      throw new RangeError(`book ${book.symbol}: cannot encode ${book.lastTradePrice}`);
    }
    values[at++] = book.lastTradePrice;
    for (const [side, levels] of sides.entries()) {
      values[at++] = resting[side] as number;
      for (const level of levels) {
        for (let o = level.head; o !== null; o = o.next) at = copyOrder(values, at, o);
      }
    }
    for (const list of stops) {
      values[at++] = list.length;
      for (const o of list) at = copyOrder(values, at, o);
    }
    if (at !== values.length) {
      throw new Error(
        `book ${book.symbol}: its counts say ${values.length} values, its lists ${at}`,
      );
    }
    captured.push({ symbol: book.symbol, values });
  }
  return { seq, books: captured };
}

/** Integers encoded between two yields to the event loop (~2 ms of work here). */
const STEP_VALUES = 1 << 16;

/**
 * The snapshot's bytes from a capture, yielding (with the checksum so far) after every
 * `STEP_VALUES` integers; the generator's return value is the finished snapshot.
 */
function* encodeSteps(capture: SnapshotCapture): Generator<void, Uint8Array> {
  const w = new Writer();
  w.u32(MAGIC);
  w.uint(VERSION);
  w.uint(capture.seq);
  w.uint(capture.books.length);
  let untilYield = STEP_VALUES;
  for (const { symbol, values } of capture.books) {
    w.text(symbol);
    for (let i = 0; i < values.length; i++) {
      w.uint(values[i] as number);
      if (--untilYield === 0) {
        w.hashSoFar();
        yield;
        untilYield = STEP_VALUES;
      }
    }
  }
  return w.finish();
}

/** Encodes a capture in steps of a few ms, letting the event loop run between them. */
export async function encodeInSteps(capture: SnapshotCapture): Promise<Uint8Array> {
  const steps = encodeSteps(capture);
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
    await new Promise<void>((resume) => setImmediate(resume));
  }
}

/** Serialises the engine's state at once: the same steps, none of them waited for. */
export function encodeSnapshot(seq: number, books: ReadonlyMap<string, OrderBook>): Uint8Array {
  const steps = encodeSteps(captureSnapshot(seq, books));
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/** Rebuilds books from a snapshot; `take` supplies the Order objects. Throws on a damaged one. */
export function decodeSnapshot(
  bytes: Uint8Array,
  take: () => Order,
): { seq: number; books: OrderBook[] } {
  if (bytes.length < 8) throw new Error('snapshot truncated');
  const end = bytes.length - 4;
  const sum = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(end);
  if (sum !== fnv1a(bytes, 0, end)) throw new Error('snapshot checksum mismatch');
  const r = new Reader(bytes, end);
  if (r.u32() !== MAGIC) throw new Error('not a matchbox engine snapshot');
  const version = r.uint();
  if (version !== 1 && version !== VERSION) {
    throw new Error(`snapshot version ${version} is not supported`);
  }
  const seq = r.uint();
  const books: OrderBook[] = [];
  for (let b = r.uint(); b > 0; b--) {
    const book = new OrderBook(r.text());
    book.lastTradePrice = r.uint();
    for (const side of [book.bids, book.asks]) {
      for (let n = r.uint(); n > 0; n--) {
        if (!side.add(readOrder(r, take(), book, version)))
          throw new Error('snapshot level over 2^53 lots');
      }
    }
    // Buy stops, then sell stops, each in its saved (trigger) order.
    for (let sides = 2; sides > 0; sides--) {
      for (let n = r.uint(); n > 0; n--) {
        const o = readOrder(r, take(), book, version);
        o.waiting = true;
        book.stops.restore(o);
      }
    }
    books.push(book);
  }
  if (!r.done) throw new Error('snapshot has trailing bytes');
  return { seq, books };
}
