import type { Order } from './order.js';

const EMPTY = -1;

/**
 * Live orders by id: an open-addressing hash table with linear probing over a Float64Array of
 * keys and a parallel array of orders. With a million resting orders a built-in Map costs about
 * three cache misses per lookup and reallocates its whole backing store as it churns; this table
 * probes one contiguous key array, deletes by backward shift (no tombstones, so it never needs a
 * rehash to stay fast) and only grows. Keys are the caller's order ids: safe integers ≥ 0.
 */
export class OrderIndex {
  private keys: Float64Array;
  private values: (Order | undefined)[];
  private mask: number;
  private shift: number;
  private count = 0;

  constructor(capacity = 1024) {
    let size = 16;
    while (size < capacity * 2) size *= 2;
    this.keys = new Float64Array(size).fill(EMPTY);
    this.values = new Array<Order | undefined>(size).fill(undefined);
    this.mask = size - 1;
    this.shift = 32 - Math.log2(size);
  }

  get size(): number {
    return this.count;
  }

  /** Fibonacci hashing of both 32-bit halves of the id. */
  private slot(id: number): number {
    const lo = id >>> 0;
    const hi = (id / 4294967296) >>> 0;
    return Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> this.shift;
  }

  get(id: number): Order | undefined {
    const keys = this.keys;
    let i = this.slot(id);
    for (;;) {
      const k = keys[i] as number;
      if (k === id) return this.values[i];
      if (k === EMPTY) return undefined;
      i = (i + 1) & this.mask;
    }
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  /** Adds or replaces the order under `id`. */
  set(id: number, order: Order): void {
    if ((this.count + 1) * 2 > this.keys.length) this.grow();
    const keys = this.keys;
    let i = this.slot(id);
    for (;;) {
      const k = keys[i] as number;
      if (k === EMPTY) {
        keys[i] = id;
        this.values[i] = order;
        this.count++;
        return;
      }
      if (k === id) {
        this.values[i] = order;
        return;
      }
      i = (i + 1) & this.mask;
    }
  }

  delete(id: number): boolean {
    const keys = this.keys;
    const mask = this.mask;
    let i = this.slot(id);
    for (;;) {
      const k = keys[i] as number;
      if (k === EMPTY) return false;
      if (k === id) break;
      i = (i + 1) & mask;
    }
    // Backward-shift deletion: pull later entries of the probe run into the hole when their home
    // slot does not lie cyclically in (hole, j].
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const k = keys[j] as number;
      if (k === EMPTY) break;
      const home = this.slot(k);
      const between = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (between) continue;
      keys[hole] = k;
      this.values[hole] = this.values[j];
      hole = j;
    }
    keys[hole] = EMPTY;
    this.values[hole] = undefined;
    this.count--;
    return true;
  }

  /** Every order in the table, in slot order. */
  *orders(): IterableIterator<Order> {
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] !== EMPTY) yield this.values[i] as Order;
    }
  }

  private grow(): void {
    const oldKeys = this.keys;
    const oldValues = this.values;
    const size = oldKeys.length * 2;
    this.keys = new Float64Array(size).fill(EMPTY);
    this.values = new Array<Order | undefined>(size).fill(undefined);
    this.mask = size - 1;
    this.shift = 32 - Math.log2(size);
    this.count = 0;
    for (let i = 0; i < oldKeys.length; i++) {
      const k = oldKeys[i] as number;
      if (k !== EMPTY) this.set(k, oldValues[i] as Order);
    }
  }
}
