// The engine's state as bytes: every book's queues in order, waiting stops in trigger order, last
// trade prices and the last applied sequence. Integers are unsigned LEB128 varints (a resting order
// takes about 20 bytes), the whole ends with an FNV-1a checksum so a damaged snapshot is refused
// rather than half-loaded.

import type { Order } from './order.js';
import { OrderBook } from './order-book.js';
import type { PriceLevel } from './price-level.js';

const MAGIC = 0x4d42_5831; // "MBX1"
const VERSION = 1;

class Writer {
  private buf = new Uint8Array(1 << 16);
  private pos = 0;

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

  finish(): Uint8Array {
    this.u32(fnv1a(this.buf, 0, this.pos));
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

function fnv1a(buf: Uint8Array, from: number, to: number): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) {
    h ^= buf[i] as number;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

function writeOrder(w: Writer, o: Order): void {
  w.uint(o.id);
  w.uint(o.owner);
  w.uint(o.side);
  w.uint(o.type);
  w.uint(o.tif);
  w.uint(o.stp);
  w.uint(o.postOnly ? 1 : 0);
  w.uint(o.price);
  w.uint(o.stopPrice);
  w.uint(o.quantity);
  w.uint(o.leaves);
  w.uint(o.filled);
  w.uint(o.priority);
}

function readOrder(r: Reader, o: Order, book: OrderBook): Order {
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
  if (o.side > 1 || o.type > 3 || o.tif > 2 || o.stp > 3 || o.leaves + o.filled !== o.quantity) {
    throw new Error(`snapshot holds an impossible order ${o.id}`);
  }
  return o;
}

function writeQueues(w: Writer, levels: readonly PriceLevel[]): void {
  let count = 0;
  for (const level of levels) count += level.count;
  w.uint(count);
  for (const level of levels) for (let o = level.head; o !== null; o = o.next) writeOrder(w, o);
}

/** Serialises the engine's state. */
export function encodeSnapshot(seq: number, books: ReadonlyMap<string, OrderBook>): Uint8Array {
  const w = new Writer();
  w.u32(MAGIC);
  w.uint(VERSION);
  w.uint(seq);
  w.uint(books.size);
  for (const book of books.values()) {
    w.text(book.symbol);
    w.uint(book.lastTradePrice);
    writeQueues(w, book.bids.levels);
    writeQueues(w, book.asks.levels);
    for (const stops of [book.stops.buys, book.stops.sells]) {
      w.uint(stops.length);
      for (const o of stops) writeOrder(w, o);
    }
  }
  return w.finish();
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
  if (version !== VERSION) throw new Error(`snapshot version ${version} is not supported`);
  const seq = r.uint();
  const books: OrderBook[] = [];
  for (let b = r.uint(); b > 0; b--) {
    const book = new OrderBook(r.text());
    book.lastTradePrice = r.uint();
    for (const side of [book.bids, book.asks]) {
      for (let n = r.uint(); n > 0; n--) {
        if (!side.add(readOrder(r, take(), book))) throw new Error('snapshot level over 2^53 lots');
      }
    }
    // Buy stops, then sell stops, each in its saved (trigger) order.
    for (let sides = 2; sides > 0; sides--) {
      for (let n = r.uint(); n > 0; n--) {
        const o = readOrder(r, take(), book);
        o.waiting = true;
        book.stops.restore(o);
      }
    }
    books.push(book);
  }
  if (!r.done) throw new Error('snapshot has trailing bytes');
  return { seq, books };
}
