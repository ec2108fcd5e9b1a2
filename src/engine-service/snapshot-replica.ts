// The engine's replica: a second MatchingEngine in a worker thread, fed every batch the engine
// has applied, which takes the snapshots. Copying a large book stops the thread that does it
// (264,000 resting orders: 45–115 ms, and postgres.js's text of the bytes ~50 ms more); here that
// thread is the replica's, and the matching thread goes on answering batches.
//
// The engine is deterministic, so the replica at seq N holds the engine's state at seq N. Each
// batch carries the seq the engine reached with it; a replica that reaches another has diverged
// and exits. A replica that exits is started again a second later from a copy of the engine's
// state (the one pause this design still has, and only then); batches in between are not needed.
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { MatchingEngine } from '../engine/matching-engine.js';
import { componentErrors, engineMetrics } from '../metrics/pipeline.js';
import type { WireCommand } from './proto.js';
import type { SnapshotStore } from './snapshot-store.js';
import type { SnapshotPolicy } from './snapshotter.js';

/** What the worker is started with (`workerData`). */
export interface ReplicaData {
  databaseUrl: string;
  shard: string;
  policy: SnapshotPolicy;
}

export type ToReplica =
  | { type: 'reset'; snapshot: Uint8Array | undefined }
  | { type: 'batch'; commands: WireCommand[]; lastSeq: number }
  | { type: 'final' };

export type FromReplica =
  | { type: 'stored'; seq: number; bytes: number; ms: number }
  | { type: 'failed'; seq: number; message: string }
  | { type: 'progress'; seq: number }
  | { type: 'final' };

export interface ReplicaOptions extends ReplicaData {
  /** The engine followed: copied to start a replica again, and the last resort of a final. */
  engine: () => MatchingEngine;
  /** The engine's own store, for a final snapshot the replica could not take. */
  store: SnapshotStore;
  logger: Logger;
}

/** Delay before a replica that exited is started again. */
const RESTART_MS = 1_000;
/**
 * Batches are handed over together, at most this long after the first of them: one message
 * (and one wake-up of the replica's thread) per 10 ms rather than per batch.
 */
const HANDOVER_MS = 10;
/** ... or as soon as this many commands are waiting. */
const HANDOVER_COMMANDS = 4_096;

export class SnapshotReplica {
  private worker: Worker | undefined;
  /** Seq of the newest snapshot stored or loaded, as far as this thread has heard. */
  private storedSeq: number;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private onFinal: (() => void) | undefined;
  /** Commands applied by the engine and not yet handed over, and the seq they bring it to. */
  private pending: WireCommand[] = [];
  private pendingSeq = 0;
  private handover: NodeJS.Timeout | undefined;

  /** Starts a replica at `snapshot` (an empty engine when undefined), which is stored at `seq`. */
  constructor(
    private readonly options: ReplicaOptions,
    snapshot: Uint8Array | undefined,
    seq: number,
  ) {
    this.storedSeq = seq;
    this.spawn(snapshot);
  }

  /** The engine now stands at `snapshot`, stored at `seq` (a rollback): so does the replica. */
  reset(snapshot: Uint8Array | undefined, seq: number): void {
    this.storedSeq = seq;
    this.flush();
    this.worker?.postMessage({ type: 'reset', snapshot } satisfies ToReplica);
  }

  /** The engine applied `commands` and stands at `lastSeq`. */
  applied(commands: WireCommand[], lastSeq: number): void {
    if (this.worker === undefined) return;
    for (const c of commands) this.pending.push(c);
    this.pendingSeq = lastSeq;
    if (this.pending.length >= HANDOVER_COMMANDS) this.flush();
    else this.handover ??= setTimeout(() => this.flush(), HANDOVER_MS);
  }

  private flush(): void {
    clearTimeout(this.handover);
    this.handover = undefined;
    if (this.pending.length === 0) return;
    const commands = this.pending;
    this.pending = [];
    this.worker?.postMessage({
      type: 'batch',
      commands,
      lastSeq: this.pendingSeq,
    } satisfies ToReplica);
  }

  /**
   * Waits for the replica to apply everything sent and store a final snapshot, then ends it. If
   * it cannot, the engine's own thread stores the final snapshot.
   */
  async final(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    this.flush();
    const worker = this.worker;
    if (worker !== undefined) {
      const answered = await new Promise<boolean>((resolve) => {
        this.onFinal = () => resolve(true);
        worker.once('exit', () => resolve(false));
        worker.postMessage({ type: 'final' } satisfies ToReplica);
      });
      await worker.terminate();
      this.worker = undefined;
      if (answered) return;
    }
    const engine = this.options.engine();
    if (engine.lastSeq <= this.storedSeq) return;
    const { logger, shard } = this.options;
    logger.warn({ shard, seq: engine.lastSeq }, 'no replica: the engine stores its final snapshot');
    try {
      const data = engine.snapshot();
      await this.options.store.save(engine.lastSeq, data);
      this.stored(engine.lastSeq, data.length, 0);
    } catch (err) {
      componentErrors.inc({ dependency: 'postgres', component: 'engine' });
      logger.error({ err, seq: engine.lastSeq }, 'final snapshot failed');
    }
  }

  private spawn(snapshot: Uint8Array | undefined): void {
    const { databaseUrl, shard, policy, logger } = this.options;
    const worker = new Worker(new URL('./replica-worker.js', import.meta.url), {
      workerData: { databaseUrl, shard, policy } satisfies ReplicaData,
    });
    this.worker = worker;
    worker.postMessage({ type: 'reset', snapshot } satisfies ToReplica);
    worker.on('message', (msg: FromReplica) => this.heard(msg));
    worker.on('error', (err) => {
      componentErrors.inc({ dependency: 'replica', component: 'engine' });
      logger.error({ err, shard }, 'snapshot replica failed');
    });
    worker.on('exit', (code) => {
      if (this.worker !== worker || this.stopping) return;
      this.worker = undefined;
      // Whatever waits is in the copy the next replica starts from.
      clearTimeout(this.handover);
      this.handover = undefined;
      this.pending = [];
      logger.error(
        { shard, code },
        `snapshot replica exited; starting another in ${RESTART_MS} ms`,
      );
      this.restartTimer = setTimeout(() => {
        if (this.stopping) return;
        // Between two batches: the copy is of one consistent point, and the engine's thread
        // stops for it this once.
        const engine = this.options.engine();
        this.spawn(engine.snapshot());
        logger.warn({ shard, seq: engine.lastSeq }, 'snapshot replica started again');
      }, RESTART_MS);
    });
  }

  private heard(msg: FromReplica): void {
    const { logger, shard } = this.options;
    switch (msg.type) {
      case 'stored':
        this.stored(msg.seq, msg.bytes, msg.ms);
        break;
      case 'failed':
        componentErrors.inc({ dependency: 'postgres', component: 'engine' });
        logger.error(
          { err: msg.message, seq: msg.seq, shard },
          'snapshot write failed; will retry',
        );
        break;
      case 'progress':
        engineMetrics.replicaSeq.set({ shard }, msg.seq);
        break;
      case 'final':
        this.onFinal?.();
        break;
    }
  }

  private stored(seq: number, bytes: number, ms: number): void {
    this.storedSeq = Math.max(this.storedSeq, seq);
    engineMetrics.snapshots.inc({ shard: this.options.shard });
    this.options.logger.info({ seq, bytes, ms }, 'snapshot stored');
  }
}
