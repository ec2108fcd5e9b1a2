// Watches fills as a client subscribed to the event stream would: a blocking XREAD on the shard's
// event stream from where it stood when the watch began, every batch parsed, every order that
// reached a final status reported with the batch's server timestamps and the moment the bench
// received it.
import { Redis } from 'ioredis';
import type { EventBatch } from '../queue/records.js';

export interface FinalOrder {
  id: string;
  userId: string;
  status: string;
  /** Accept time at the gateway (ms since the epoch). */
  createdMs: number;
  /** When the dispatcher wrote the batch (ms since the epoch); NaN without `written_at`. */
  writtenMs: number;
  /** hrtime when the bench read the batch. */
  seenNs: bigint;
}

export class FillWatcher {
  private readonly redis: Redis;
  private stopping = false;
  private done: Promise<void> = Promise.resolve();
  private lastId = '$';
  /** Batches without `written_at` (a system older than this bench). */
  batchesWithoutWrittenAt = 0;

  constructor(
    redisUrl: string,
    private readonly stream: string,
    private readonly onFinal: (o: FinalOrder) => void,
  ) {
    this.redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  }

  /** Starts from the stream's current end: only batches written from now on are seen. */
  async start(): Promise<void> {
    const last = await this.redis.xrevrange(this.stream, '+', '-', 'COUNT', 1);
    this.lastId = last.length === 0 ? '0-0' : (last[0] as [string, string[]])[0];
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      const reply = await this.redis.xread(
        'COUNT',
        1000,
        'BLOCK',
        100,
        'STREAMS',
        this.stream,
        this.lastId,
      );
      if (reply === null) continue;
      const seenNs = process.hrtime.bigint();
      for (const [, entries] of reply) {
        for (const [id, fields] of entries) {
          this.lastId = id;
          const json = fields[1];
          if (json !== undefined) this.batch(JSON.parse(json) as EventBatch, seenNs);
        }
      }
    }
  }

  private batch(b: EventBatch, seenNs: bigint): void {
    const writtenMs = b.written_at === undefined ? NaN : Date.parse(b.written_at);
    if (b.written_at === undefined) this.batchesWithoutWrittenAt++;
    for (const o of b.orders) {
      if (o.status !== 'FILLED' && o.status !== 'CANCELED' && o.status !== 'REJECTED') continue;
      this.onFinal({
        id: o.id,
        userId: o.user_id,
        status: o.status,
        createdMs: Date.parse(o.created_at),
        writtenMs,
        seenNs,
      });
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.done.catch(() => undefined);
    this.redis.disconnect();
  }
}
