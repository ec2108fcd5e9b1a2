// One batch writer per shard at a time (src/queue/lease.ts): a second stands by, takes over when the
// first stops or dies, and then writes first what the first held unwritten.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { TcpProxy } from '../../src/faults/tcp-proxy.js';
import { writerMetrics } from '../../src/metrics/pipeline.js';
import { orderState } from '../db/fixtures.js';
import { harness, ordersById, waitFor } from './harness.js';
import type { Harness } from './harness.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('batch writer lease', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness();
  });
  afterEach(async () => {
    await h.close();
  });

  const rows = async (): Promise<number> => (await ordersById(h.db.sql)).size;
  /** PLACEs of new orders at the stream ids `from` to `to`. */
  const place = async (from: number, to: number): Promise<void> => {
    for (let seq = from; seq <= to; seq++) await h.place(seq, orderState(h.alice));
  };
  const gauge = async (): Promise<number | undefined> =>
    (await writerMetrics.leaseHeld.get()).values.find((v) => v.labels.shard === h.keys.shard)
      ?.value;

  it('writes with one writer while another stands by, which takes over at its stop', async () => {
    // Leases of a minute: only A giving its lease up lets B in.
    const a = h.writer({ leaseMs: 60_000 });
    await a.start();
    await waitFor(() => a.leasesHeld() === 1);
    const b = h.writer({ leaseMs: 60_000 });
    await b.start();
    await place(1, 20);
    await waitFor(async () => (await rows()) === 20);
    await sleep(300);
    assert.equal(a.stats.entriesWritten, 20);
    assert.equal(b.stats.entriesWritten, 0, 'B read nothing while A held the lease');
    assert.equal(b.leasesHeld(), 0);
    await a.stop();
    await place(21, 40);
    await waitFor(async () => (await rows()) === 40);
    assert.equal(b.stats.entriesWritten, 20, 'B wrote what came after A’s stop');
    assert.equal(b.leasesHeld(), 1);
    assert.equal(await gauge(), 1);
    await b.stop();
    assert.equal(await gauge(), 0);
    assert.equal(await h.redis.exists(h.keys.writerLease), 0, 'given up at the stop');
    assert.equal(await h.pending(h.keys.orders), 0);
  });

  it('takes over from a writer cut off from Redis once its lease expires, and writes what it held first', async () => {
    const { port } = h.redis.options;
    const proxy = await TcpProxy.start({ host: '127.0.0.1', port: port ?? 6379 });
    const viaProxy = new Redis({ host: '127.0.0.1', port: proxy.port, maxRetriesPerRequest: 1 });
    viaProxy.on('error', () => undefined);
    try {
      // A holds what it reads for a minute before writing it (short of a batch).
      const a = h.writer({ redis: viaProxy, leaseMs: 1_500, flushMs: 60_000, deferMs: 0 });
      await a.start();
      await waitFor(() => a.leasesHeld() === 1);
      const b = h.writer({ leaseMs: 1_500 });
      await b.start();
      await place(1, 10);
      await waitFor(async () => (await h.pending(h.keys.orders)) === 10);
      await sleep(300);
      assert.equal(await rows(), 0, 'A holds them unwritten; B has not read them');
      assert.equal(b.stats.entriesWritten, 0);
      // A is gone as far as Redis can tell: its lease runs out, and what it read stays pending.
      await proxy.cut();
      await place(11, 15);
      await waitFor(async () => (await rows()) === 15, 10_000);
      assert.equal(b.stats.entriesWritten, 15, 'B wrote A’s ten and the five after');
      assert.equal(await h.pending(h.keys.orders), 0);
      assert.equal(a.leasesHeld(), 0, 'A knows it lost the lease');
      assert.equal(a.stats.entriesWritten, 0, 'and wrote nothing after');
      await a.stop();
    } finally {
      viaProxy.disconnect();
      await proxy.close();
    }
  });

  it('stands by while another holds its lease, and writes once the lease is free', async () => {
    const w = h.writer({ leaseMs: 600 });
    await w.start();
    await place(1, 5);
    await waitFor(async () => (await rows()) === 5);
    // Another writer took the lease (this one was paused past it, say).
    await h.redis.set(h.keys.writerLease, 'another-writer', 'PX', 60_000);
    await waitFor(() => w.leasesHeld() === 0);
    assert.equal(await gauge(), 0);
    await place(6, 10);
    await sleep(500);
    assert.equal(await rows(), 5, 'nothing written while another holds the lease');
    await h.redis.del(h.keys.writerLease);
    await waitFor(async () => (await rows()) === 10);
    assert.ok((await h.redis.pttl(h.keys.writerLease)) > 0, 'held, expiring');
    await w.stop();
    assert.equal(await h.pending(h.keys.orders), 0);
  });

  it('takes its own lease back at once when restarted with its lease id', async () => {
    // Its death as a kill leaves it: the key still its own, for the rest of a minute.
    await h.redis.set(h.keys.writerLease, 'host-a/writer|the-dead-one', 'PX', 60_000);
    await place(1, 5);
    const other = h.writer({ leaseMs: 60_000 });
    const restarted = h.writer({ leaseMs: 60_000, leaseId: 'host-a/writer' });
    await other.start();
    await restarted.start();
    await waitFor(async () => (await rows()) === 5);
    assert.equal(restarted.stats.entriesWritten, 5);
    assert.equal(other.leasesHeld(), 0, 'another id stands by');
    await restarted.stop();
    await other.stop();
  });
});
