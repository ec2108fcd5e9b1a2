// One batch writer per shard at a time (src/queue/lease.ts): a second stands by, takes over when the
// first stops or dies, and then writes first what the first held unwritten.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { ChainableCommander } from 'ioredis';
import { TcpProxy } from '../../src/faults/tcp-proxy.js';
import { writerMetrics } from '../../src/metrics/pipeline.js';
import { orderState } from '../db/fixtures.js';
import { sleep } from '../engine-service/helpers.js';
import { componentErrorCount } from '../support/component-errors.js';
import { hooked } from '../support/hooked-redis.js';
import { harness, lockOrders, ordersById, waitFor } from './harness.js';
import type { Harness } from './harness.js';

/** A pipeline sent only once `gate` opens. */
function gated(pipeline: ChainableCommander, gate: Promise<void>): ChainableCommander {
  const exec = pipeline.exec.bind(pipeline);
  return Object.assign(pipeline, { exec: () => gate.then(() => exec()) });
}

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

  it('takes over with what the group says now, not what it read at its own start', async () => {
    const a = h.writer({ leaseMs: 60_000 });
    await a.start();
    await waitFor(() => a.leasesHeld() === 1);
    // B reads the group as it starts: nothing delivered yet.
    const b = h.writer({ leaseMs: 60_000, deferMs: 10 });
    await b.start();
    // A sets aside an unreadable outcome (batch 1, whose PLACE has not arrived), writes batch 2.
    await h.redis.xadd(h.keys.events, '0-1', 'b', '{"orders": [ not json');
    await h.events({ first_seq: 2, last_seq: 2, orders: [], trades: [] });
    await waitFor(() => a.stats.entriesWritten === 2);
    await a.stop();
    await waitFor(() => b.leasesHeld() === 1);
    // An outcome past the PLACE, then the PLACE: its state may be in the batch set aside, so it is
    // written, not passed over as superseded.
    await h.events({ first_seq: 3, last_seq: 3, orders: [], trades: [] });
    await waitFor(() => b.stats.entriesWritten === 1);
    await h.place(1, orderState(h.alice));
    await waitFor(() => b.stats.entriesWritten === 2);
    assert.equal(await rows(), 1, 'the PLACE has its row');
    await b.stop();
  });

  it('delivers nothing to a writer whose read reaches Redis after another took its lease', async () => {
    let paused = false;
    let open = (): void => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    // A stops renewing its lease and its next read of new entries waits: A paused right after it
    // saw its lease held, say, and the read goes out when it wakes.
    const a = h.writer({
      leaseMs: 600,
      redis: hooked(h.redis, (name) => {
        if (!paused) return undefined;
        if (name === 'mbTakeLease') return () => Promise.reject(new Error('paused'));
        // Its read of new entries: the lease's key watched and read, then the read itself.
        if (name === 'pipeline') return (conn) => gated(conn.pipeline(), gate);
        if (name === 'multi') return (conn) => gated(conn.multi(), gate);
        return undefined;
      }),
    });
    await a.start();
    await waitFor(() => a.leasesHeld() === 1);
    const b = h.writer({ leaseMs: 600 });
    await b.start();
    paused = true;
    await waitFor(() => b.leasesHeld() === 1);
    // B busy with its first flush (a lock holds it), not waiting in a read of its own.
    const lock = await lockOrders(h.db.sql);
    await place(1, 1);
    await waitFor(async () => (await h.pending(h.keys.orders)) === 1);
    // Well past B's flush interval: B waits on the lock, reading nothing, when 2 and 3 come.
    await sleep(300);
    await place(2, 3);
    // A's read goes out now, while B commits.
    open();
    await waitFor(() => a.leasesHeld() === 0);
    await sleep(300);
    await lock.release();
    await waitFor(async () => (await rows()) === 3);
    await waitFor(async () => (await h.pending(h.keys.orders)) === 0);
    assert.equal(b.stats.entriesWritten, 3, 'B read all three');
    assert.equal(a.stats.entriesWritten, 0);
    await a.stop();
    await b.stop();
  });

  it('takes its lease again after this process was paused past it, counting no failure', async () => {
    const redisErrors = () => componentErrorCount('redis', 'writer');
    const w = h.writer({ leaseMs: 600 });
    await w.start();
    await place(1, 5);
    await waitFor(async () => (await rows()) === 5);
    const before = await redisErrors();
    // The whole process stops for a second (as under SIGSTOP, or a long GC): the lease's key
    // expires in Redis meanwhile, and no timer of the writer runs.
    const until = Date.now() + 1_000;
    while (Date.now() < until) {
      // paused
    }
    assert.equal(await h.redis.exists(h.keys.writerLease), 0, 'expired');
    await place(6, 10);
    await waitFor(async () => (await rows()) === 10);
    assert.equal(w.leasesHeld(), 1);
    assert.equal(await redisErrors(), before, 'Redis answered throughout: no failure of it');
    await w.stop();
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
