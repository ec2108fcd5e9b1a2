// The engine's snapshots in PostgreSQL (`engine_snapshots`): the newest few per shard, so that a
// restart loads the newest and a rollback can find one at or below what the dispatcher wrote.
import type { Sql } from '../db/client.js';

/** Snapshots kept per shard; older ones are deleted as each new one lands. */
export const KEEP_SNAPSHOTS = 3;

export interface StoredSnapshot {
  seq: number;
  data: Uint8Array;
}

export class SnapshotStore {
  constructor(
    private readonly sql: Sql,
    /** The shard's name, `s0`. */
    readonly shard: string,
  ) {}

  /** The newest snapshot with seq ≤ `atMost` (any when omitted), or undefined. */
  async newest(atMost = Number.MAX_SAFE_INTEGER): Promise<StoredSnapshot | undefined> {
    const rows = await this.sql<{ seq: string; data: Buffer }[]>`
      SELECT seq, data FROM engine_snapshots
      WHERE shard = ${this.shard} AND seq <= ${atMost}
      ORDER BY seq DESC LIMIT 1`;
    const row = rows[0];
    if (row === undefined) return undefined;
    return { seq: Number(row.seq), data: new Uint8Array(row.data) };
  }

  /**
   * Deletes the snapshots above `seq`: an engine rolled back to it. They may hold commands that
   * Redis lost in a restart (the gateway queues those orders again under new sequence numbers),
   * and a restart or a later rollback would load one as if it were of the stream Redis holds now.
   */
  async discardAbove(seq: number): Promise<number> {
    const rows = await this.sql`
      DELETE FROM engine_snapshots WHERE shard = ${this.shard} AND seq > ${seq}`;
    return rows.count;
  }

  /** Stores a snapshot and prunes to the newest KEEP_SNAPSHOTS, in one transaction. */
  async save(seq: number, data: Uint8Array): Promise<void> {
    // A snapshot at the same seq is the same state (the engine is deterministic): keep the first.
    await this.sql.begin(async (tx) => {
      await tx`
        INSERT INTO engine_snapshots (shard, seq, data)
        VALUES (${this.shard}, ${seq}, ${Buffer.from(data.buffer, data.byteOffset, data.length)})
        ON CONFLICT (shard, seq) DO NOTHING`;
      await tx`
        DELETE FROM engine_snapshots
        WHERE shard = ${this.shard} AND seq < (
          SELECT seq FROM engine_snapshots WHERE shard = ${this.shard}
          ORDER BY seq DESC OFFSET ${KEEP_SNAPSHOTS - 1} LIMIT 1)`;
    });
  }
}
