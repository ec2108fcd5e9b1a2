import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { READ_BYTES, READ_COUNT, ReadSize } from '../../src/writer/read-size.js';

const KB = 1024;

/** A read of `n` event entries of `size` bytes each. */
function read(s: ReadSize, n: number, size: number): void {
  s.payloads(n, n * size);
  s.read(n);
}

describe('the writer’s read size', () => {
  it('asks for a few entries before it has seen any, then about a megabyte of them', () => {
    const s = new ReadSize();
    assert.equal(s.count, 4);
    read(s, 4, 20 * KB);
    read(s, 8, 20 * KB);
    read(s, 16, 20 * KB);
    assert.ok(s.count * 20 * KB <= 2 * READ_BYTES, `${s.count}`);
    assert.ok(s.count >= 16, `${s.count}`);
  });

  it('asks for READ_COUNT of small entries, and never more', () => {
    const s = new ReadSize();
    for (let i = 0; i < 10; i++) read(s, READ_COUNT, 300);
    assert.equal(s.count, READ_COUNT);
  });

  it('after a quiet spell of small batches, grows back by doubling where big ones were seen', () => {
    const s = new ReadSize();
    // Busy: batches of ~250 orders.
    for (let i = 0; i < 5; i++) read(s, 4, 250 * KB);
    // Quiet: one small batch per read, long enough for the mean to forget the big ones.
    for (let i = 0; i < 30; i++) read(s, 1, 500);
    // A backlog of big batches now waits (say PostgreSQL was down): its first reply stays near a
    // megabyte, not READ_COUNT × 250 kB.
    const first = s.count;
    assert.ok(first * 250 * KB <= 2 * READ_BYTES, `first read of ${first}`);
    // Full reads of small entries double the count.
    read(s, first, 500);
    assert.equal(s.count, Math.min(READ_COUNT, 2 * first));
  });

  it('a writer that has only seen small batches reads READ_COUNT after a quiet spell', () => {
    const s = new ReadSize();
    for (let i = 0; i < 30; i++) read(s, 1, 500);
    assert.equal(s.count, READ_COUNT);
  });

  it('entries without a payload do not move the size', () => {
    const s = new ReadSize();
    read(s, 4, 250 * KB);
    const before = s.count;
    s.payloads(0, 0);
    s.read(4);
    assert.equal(s.count, before);
  });
});
