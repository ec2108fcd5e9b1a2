// The engine's snapshots in PostgreSQL (`engine_snapshots`): the newest few per shard, so that a
// restart loads the newest and a rollback can find one at or below what the dispatcher wrote.
//
// The order stream is trimmed below one snapshot, the newest at or below W when the batch writer
// last trimmed (W: the last seq the dispatcher wrote, the event stream's last id). The engine can
// replay the stream from that snapshot and from no older one, so it is pinned (`pinReplayBound`)
// and pruning keeps it beside the newest KEEP_SNAPSHOTS (`save`). A rollback deletes only the
// snapshots above the W Redis holds (`rollBack`), and the writer pins one only once Redis
// has that W in its AOF, which a Redis restart does not take back; so whatever a restart loses,
// a snapshot the stream can be replayed from is left. (Before pins, pruning kept the newest three
// alone, and three stored in the seconds a restart can lose would prune the one the stream was
// trimmed to: the rollback that deleted them found the stream cut below every snapshot left.)
// A power cut can lose more than a Redis restart: then so may the AOF (see src/queue/aof.ts).
//
// A snapshot is stored only under the shard's current epoch (`engine_epochs`), which each engine
// start and each rollback advance: the replica's write of a state taken before a rollback, which
// may hold commands a restarted Redis no longer has, would otherwise land after the rollback
// deleted the snapshots above W, and could then be loaded, or pinned.
import type { TransactionSql } from 'postgres';
import type { Sql } from '../db/client.js';

/** The pool, or a transaction of it. */
type Query = Sql | TransactionSql;

/**
 * The guards below rest on READ COMMITTED (each statement sees what committed before it began,
 * and a row it waited for is checked again), named so that a database default of another level
 * does not change them.
 */
const READ_COMMITTED = 'isolation level read committed';

/** A rollback to below the pinned snapshot, refused: see SnapshotStore.rollBack. */
export class StaleRollbackError extends Error {
  override readonly name = 'StaleRollbackError';
  constructor(shard: string, written: number, pinned: number) {
    super(
      `${shard}: rollback to ${written} refused, below the pinned snapshot at ${pinned}: ` +
        'that W is stale (is a second dispatcher running for this shard?)',
    );
  }
}

/** Snapshots kept per shard beside the pinned one; older ones go as each new one lands. */
export const KEEP_SNAPSHOTS = 3;

/**
 * Pins the newest snapshot of `shard` at or below `written`, and unpins the one pinned before
 * it, in one transaction; the caller has seen `written` in Redis's AOF, and trims the order stream
 * below the pinned seq + 1 only after this returns it. Undefined when there is none at or below
 * `written`, or it was pruned meanwhile (a prune deletes no row this pins: row locks order them,
 * and PostgreSQL checks `pinned` again on a row it waited for).
 */
export async function pinReplayBound(
  sql: Sql,
  shard: string,
  written: number,
): Promise<number | undefined> {
  return sql.begin(READ_COMMITTED, async (tx) => {
    const [row] = await tx<{ seq: string }[]>`
      UPDATE engine_snapshots SET pinned = true
      WHERE shard = ${shard} AND seq = (
        SELECT max(seq) FROM engine_snapshots WHERE shard = ${shard} AND seq <= ${written})
      RETURNING seq::text`;
    if (row === undefined) return undefined;
    await tx`
      UPDATE engine_snapshots SET pinned = false
      WHERE shard = ${shard} AND pinned AND seq < ${row.seq}`;
    return Number(row.seq);
  });
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
  newest(
    atMost = Number.MAX_SAFE_INTEGER,
    sql: Query = this.sql,
  ): Promise<StoredSnapshot | undefined> {
    return sql<{ seq: string; data: Buffer }[]>`
      SELECT seq, data FROM engine_snapshots
      WHERE shard = ${this.shard} AND seq <= ${atMost}
      ORDER BY seq DESC LIMIT 1`.then(([row]) =>
      row === undefined ? undefined : { seq: Number(row.seq), data: new Uint8Array(row.data) },
    );
  }

  /**
   * Takes the shard's snapshots over for an engine starting: advances the epoch, so that no write
   * of an earlier engine of the shard is stored after this, and returns it.
   */
  begin(sql: Query = this.sql): Promise<number> {
    return sql<{ epoch: string }[]>`
      INSERT INTO engine_epochs (shard, epoch) VALUES (${this.shard}, 1)
      ON CONFLICT (shard) DO UPDATE SET epoch = engine_epochs.epoch + 1
      RETURNING epoch::text`.then(([row]) => Number(row?.epoch));
  }

  /**
   * An engine rolls back to `written` or below: in one transaction, advances the epoch (a write of
   * a state from before stores nothing, or, begun first, is deleted here: under READ COMMITTED the
   * DELETE, a statement after the wait for its lock, sees it), deletes the snapshots above
   * `written`, and reads the newest left at or below it, to roll back to. Those above may hold
   * commands that Redis lost in a restart (the gateway queues those orders again under new
   * sequence numbers), and a restart or a later rollback would load one as if it were of the
   * stream Redis holds now.
   */
  async rollBack(
    written: number,
  ): Promise<{ epoch: number; snapshot: StoredSnapshot | undefined }> {
    return this.sql.begin(READ_COMMITTED, async (tx) => {
      // The pinned snapshot is at or below any W Redis can hold (the writer pins only what it has
      // seen in the AOF): a W below it is stale, read before a batch another dispatcher of the
      // shard wrote since. Obeyed, it would delete the snapshot the order stream is trimmed to,
      // and the shard could not be replayed again.
      const [pin] = await tx<{ seq: string }[]>`
        SELECT seq::text FROM engine_snapshots
        WHERE shard = ${this.shard} AND pinned AND seq > ${written}`;
      if (pin !== undefined) throw new StaleRollbackError(this.shard, written, Number(pin.seq));
      const epoch = await this.begin(tx);
      await tx`DELETE FROM engine_snapshots WHERE shard = ${this.shard} AND seq > ${written}`;
      return { epoch, snapshot: await this.newest(written, tx) };
    });
  }

  /**
   * Stores a snapshot of a state taken in `epoch` and, in the same transaction, prunes all but the
   * newest KEEP_SNAPSHOTS and the pinned one (see `pinReplayBound`: the order stream is trimmed to
   * it). False, storing nothing, when the epoch has moved on since (see `rollBack`): the lock on
   * the epoch's row orders the two.
   */
  async save(seq: number, data: Uint8Array, epoch: number): Promise<boolean> {
    // A snapshot at the same seq is the same state (the engine is deterministic): keep the first.
    return this.sql.begin(READ_COMMITTED, async (tx) => {
      const [current] = await tx<{ epoch: string }[]>`
        SELECT epoch::text FROM engine_epochs WHERE shard = ${this.shard} FOR SHARE`;
      if (current === undefined || Number(current.epoch) !== epoch) return false;
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
          AND NOT pinned`;
      return true;
    });
  }
}
