// One dispatcher per shard at a time: a lease in Redis, a key holding the token of the dispatcher
// that has it and expiring unless that one renews it. A second dispatcher of the shard (one started
// before the other stopped, a standby on another host) stands by until the key is free: given up
// at the holder's stop, or expired after its death. Without it the two would take the engine from
// each other at every batch.
//
// The lease is for liveness, not safety: a holder paused past its expiry (a stopped process, a long
// pause) goes on for a moment beside the one that took over, and what keeps that harmless is what
// kept two dispatchers harmless before: each batch's write is checked against W, read in one step
// at each cycle's start (redis-state.ts, write-batch.lua), and the engine refuses a rollback below
// its pinned snapshot.
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { keyCount, lua } from '../queue/lua-scripts.js';

const TAKE = 'take-lease-1.lua';
const RELEASE = 'release-lease-1.lua';

interface LeaseScripts {
  mbTakeLease(key: string, token: string, ms: number): Promise<string>;
  mbReleaseLease(key: string, token: string): Promise<number>;
}

export class Lease {
  /**
   * This dispatcher's token: new at each start, unless given (DISPATCH_LEASE_ID): a dispatcher
   * restarted with its token takes its own lease back at once.
   */
  readonly token: string;
  private readonly redis: Redis & LeaseScripts;

  constructor(
    redis: Redis,
    private readonly key: string,
    /** How long the lease lasts unless renewed. */
    readonly ms: number,
    token?: string,
  ) {
    this.token = token ?? randomUUID();
    if (!('mbTakeLease' in redis)) {
      redis.defineCommand('mbTakeLease', { numberOfKeys: keyCount(TAKE), lua: lua(TAKE) });
      redis.defineCommand('mbReleaseLease', { numberOfKeys: keyCount(RELEASE), lua: lua(RELEASE) });
    }
    this.redis = redis as Redis & LeaseScripts;
  }

  /**
   * Takes the lease if it is free, or renews it if held already, for `ms` from now. Returns the
   * holder's token: this one's if held.
   */
  take(): Promise<string> {
    return this.redis.mbTakeLease(this.key, this.token, this.ms);
  }

  /** Gives the lease up if held, so that a dispatcher standing by takes over at once. */
  async release(): Promise<void> {
    await this.redis.mbReleaseLease(this.key, this.token);
  }
}
