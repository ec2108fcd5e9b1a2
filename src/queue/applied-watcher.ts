// Sync mode's wait: "has the dispatcher written the reports of sequence N yet?" The dispatcher
// publishes each batch's last sequence; this subscribes once per gateway and wakes the requests
// waiting at or below it. A slow poll of the event stream covers a message lost in a reconnect.
import { streamInfo } from './stream-info.js';
import type { Redis } from 'ioredis';
import type { ShardKeys } from './keys.js';

interface Waiter {
  seq: number;
  resolve(applied: boolean): void;
  timer: NodeJS.Timeout;
}

export class AppliedWatcher {
  private readonly subscriber: Redis;
  private readonly applied: number[];
  private readonly waiters: Waiter[][];
  private poll: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly shards: ShardKeys[],
  ) {
    this.subscriber = redis.duplicate({ enableOfflineQueue: true, commandTimeout: undefined });
    this.subscriber.on('error', () => {
      // Reconnects by itself; the poll below keeps waiters moving meanwhile.
    });
    this.applied = shards.map(() => 0);
    this.waiters = shards.map(() => []);
  }

  async start(): Promise<void> {
    const channels = new Map(this.shards.map((k, i) => [k.applied, i]));
    this.subscriber.on('message', (channel: string, message: string) => {
      const i = channels.get(channel);
      if (i !== undefined) this.advance(i, Number(message));
    });
    await this.subscriber.subscribe(...channels.keys());
    await this.refresh();
    this.poll = setInterval(() => void this.refresh().catch(() => {}), 100);
  }

  stop(): void {
    clearInterval(this.poll);
    for (const list of this.waiters) for (const w of list.splice(0)) this.settle(w, false);
    this.subscriber.disconnect();
  }

  /** Resolves true once shard `i` has written `seq`, false after `timeoutMs`. */
  wait(i: number, seq: number, timeoutMs: number): Promise<boolean> {
    if ((this.applied[i] as number) >= seq) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        seq,
        resolve,
        timer: setTimeout(() => {
          const list = this.waiters[i] as Waiter[];
          list.splice(list.indexOf(waiter), 1);
          resolve(false);
        }, timeoutMs),
      };
      (this.waiters[i] as Waiter[]).push(waiter);
    });
  }

  private settle(w: Waiter, applied: boolean): void {
    clearTimeout(w.timer);
    w.resolve(applied);
  }

  private advance(i: number, seq: number): void {
    if (!(seq > (this.applied[i] as number))) return;
    this.applied[i] = seq;
    const list = this.waiters[i] as Waiter[];
    for (let j = list.length - 1; j >= 0; j--) {
      const w = list[j] as Waiter;
      if (w.seq <= seq) {
        list.splice(j, 1);
        this.settle(w, true);
      }
    }
  }

  /** Reads each shard's last written sequence from its event stream. */
  private async refresh(): Promise<void> {
    await Promise.all(
      this.shards.map(async (k, i) => {
        const info = await streamInfo(this.redis, k.events);
        if (info !== undefined) this.advance(i, info.lastSeq);
      }),
    );
  }
}
