// The engine's snapshots in PostgreSQL (`engine_snapshots`): the newest few per shard, so that a
// restart loads the newest and a rollback can find one at or below what the dispatcher wrote.
//
// A Redis restarted without its last writes (appendfsync everysec: up to about two seconds of
// them) takes W, the last seq the dispatcher wrote, back with it, and the engine then rolls back to
// the newest snapshot at or below the W Redis came back with, deleting those above. So the order
// stream may be trimmed only below a snapshot that Redis's loss cannot reach: one stored at least
// SETTLED_MS ago (the writer's trim, `replayBound`), and pruning always keeps the newest such one
// (`save`). Were the stream trimmed to a snapshot only just stored, and that snapshot pruned by
// newer ones that the loss then deletes, the rollback would find the stream cut below the newest
// snapshot left: the dispatcher stops on the gap rather than match on a book missing orders.
import type { Sql } from '../db/client.js';

/** Snapshots kept per shard beside the newest settled one; older ones go as each new one lands. */
export const KEEP_SNAPSHOTS = 3;

/**
 * How long a snapshot is stored before the order stream may be trimmed to it: far longer than a
 * Redis restart can lose (everysec writes the AOF each second, and postpones a write behind a slow
 * fsync for at most two seconds more). Measured by PostgreSQL's clock, which stamps `taken_at`.
 */
export const SETTLED_MS = 10_000;

/**
 * The newest snapshot of `shard` at or below `written` (W) and stored at least SETTLED_MS ago:
 * the one the order stream must still be replayable from (its seq + 1 on). Undefined when none is.
 */
export async function replayBound(
  sql: Sql,
  shard: string,
  written: number,
): Promise<number | undefined> {
  const [row] = await sql<{ seq: string | null }[]>`
    SELECT max(seq)::text AS seq FROM engine_snapshots
    WHERE shard = ${shard} AND seq <= ${written}
      AND taken_at <= now() - make_interval(secs => ${SETTLED_MS / 1000})`;
  return row?.seq === undefined || row.seq === null ? undefined : Number(row.seq);
}

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

  /**
   * Stores a snapshot and, in the same transaction, prunes all but the newest KEEP_SNAPSHOTS and
   * the newest settled one (see `replayBound`: the stream may have been trimmed to it).
   */
  async save(seq: number, data: Uint8Array): Promise<void> {
    // A snapshot at the same seq is the same state (the engine is deterministic): keep the first.
    await this.sql.begin(async (tx) => {
      await tx`
        INSERT INTO engine_snapshots (shard, seq, data)
        VALUES (${this.shard}, ${seq}, ${Buffer.from(data.buffer, data.byteOffset, data.length)})
        ON CONFLICT (shard, seq) DO NOTHING`;
      await tx`
        DELETE FROM engine_snapshots
        WHERE shard = ${this.shard}
          AND seq < (
            SELECT seq FROM engine_snapshots WHERE shard = ${this.shard}
            ORDER BY seq DESC OFFSET ${KEEP_SNAPSHOTS - 1} LIMIT 1)
          AND seq <> coalesce((
            SELECT max(seq) FROM engine_snapshots
            WHERE shard = ${this.shard}
              AND taken_at <= now() - make_interval(secs => ${SETTLED_MS / 1000})), -1)`;
    });
  }
}
