// The engine's replica: a second MatchingEngine in a worker thread, fed every batch the engine
// has applied, which takes the snapshots. Copying a large book stops the thread that does it
// (264,000 resting orders: 45–115 ms, and postgres.js's text of the bytes ~50 ms more); here that
// thread is the replica's, and the matching thread goes on answering batches.
//
// The engine is deterministic, so the replica at seq N holds the engine's state at seq N. Each
// batch carries the seq the engine reached with it; a replica that reaches another has diverged
// and exits. A replica that exits is started again a second later (then 2, 4… up to a minute
// while they keep failing) from a copy of the engine's state: the one pause this design still
// has, and only then; batches in between are not needed.
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
  /**
   * The replica now stands at `snapshot`, in snapshot epoch `epoch`; the newest snapshot stored is
   * at `storedSeq`. (After a rollback, a write of the state before stores nothing, or is deleted
   * by the rollback: see SnapshotStore.rollBack.)
   */
  | { type: 'reset'; snapshot: Uint8Array | undefined; storedSeq: number; epoch: number }
  | { type: 'batch'; commands: WireCommand[]; lastSeq: number }
  | { type: 'final' };

export type FromReplica =
  | { type: 'stored'; seq: number; bytes: number; ms: number }
  | { type: 'failed'; seq: number; message: string }
  | { type: 'refused'; seq: number; epoch: number }
  | { type: 'progress'; seq: number }
  | { type: 'final' };

export interface ReplicaOptions extends ReplicaData {
  /** The engine followed: copied to start a replica again, and the last resort of a final. */
  engine: () => MatchingEngine;
  /** The engine's own store, for a final snapshot the replica could not take. */
  store: SnapshotStore;
  logger: Logger;
}

/** Delay before a replica that exited is started again; doubled while replicas keep failing. */
const RESTART_MS = 1_000;
const RESTART_MAX_MS = 60_000;
/** How long a stop waits for the replica's final snapshot before the engine stores its own. */
const FINAL_WAIT_MS = 15_000;
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
  /** Replicas started again since one last stored a snapshot. */
  private restarts = 0;
  private onFinal: (() => void) | undefined;
  /** Commands applied by the engine and not yet handed over, and the seq they bring it to. */
  private pending: WireCommand[] = [];
  private pendingSeq = 0;
  private handover: NodeJS.Timeout | undefined;

  /**
   * Starts a replica at `snapshot` (an empty engine when undefined), which is stored at `seq`, in
   * snapshot epoch `epoch` (SnapshotStore.begin).
   */
  constructor(
    private readonly options: ReplicaOptions,
    snapshot: Uint8Array | undefined,
    seq: number,
    private epoch: number,
  ) {
    this.storedSeq = seq;
    this.spawn(snapshot);
  }

  /**
   * The engine rolled back to `snapshot`, stored at `seq`, and the snapshot epoch is now `epoch`
   * (SnapshotStore.rollBack): so does the replica.
   */
  reset(snapshot: Uint8Array | undefined, seq: number, epoch: number): void {
    this.storedSeq = seq;
    this.epoch = epoch;
    this.flush();
    this.worker?.postMessage({
      type: 'reset',
      snapshot,
      storedSeq: seq,
      epoch,
    } satisfies ToReplica);
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
   * it did not store one of the engine's last state, the engine's own thread does.
   */
  async final(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    this.flush();
    const { logger, shard } = this.options;
    const worker = this.worker;
    if (worker !== undefined) {
      worker.ref();
      const answered = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), FINAL_WAIT_MS);
        const done = (answer: boolean): void => {
          clearTimeout(timer);
          resolve(answer);
        };
        this.onFinal = () => done(true);
        worker.once('exit', () => done(false));
        worker.postMessage({ type: 'final' } satisfies ToReplica);
      });
      if (!answered) logger.warn({ shard }, 'the snapshot replica did not finish');
      await worker.terminate();
      this.worker = undefined;
    }
    // Every snapshot the replica stored was heard before its answer.
    const engine = this.options.engine();
    if (engine.lastSeq <= this.storedSeq) return;
    logger.warn({ shard, seq: engine.lastSeq }, 'the engine stores its final snapshot itself');
    try {
      const started = Date.now();
      const data = engine.snapshot();
      if (!(await this.options.store.save(engine.lastSeq, data, this.epoch))) {
        // Another engine of this shard has started since: its snapshots are the ones that count.
        logger.error(
          { shard, epoch: this.epoch },
          'final snapshot refused: another engine took over',
        );
        return;
      }
      this.stored(engine.lastSeq, data.length, Date.now() - started);
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
    // Not what keeps a process alive: `final()` holds it while it waits for the replica.
    worker.unref();
    worker.postMessage({
      type: 'reset',
      snapshot,
      storedSeq: this.storedSeq,
      epoch: this.epoch,
    } satisfies ToReplica);
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
      const delay = Math.min(RESTART_MS * 2 ** this.restarts, RESTART_MAX_MS);
      this.restarts++;
      logger.error({ shard, code }, `snapshot replica exited; starting another in ${delay} ms`);
      this.restartTimer = setTimeout(() => {
        if (this.stopping) return;
        // Between two batches: the copy is of one consistent point, and the engine's thread
        // stops for it this once.
        const engine = this.options.engine();
        this.spawn(engine.snapshot());
        logger.warn({ shard, seq: engine.lastSeq }, 'snapshot replica started again');
      }, delay);
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
      case 'refused':
        if (msg.epoch === this.epoch) {
          // Not a rollback's leftover: another engine of this shard has started since.
          componentErrors.inc({ dependency: 'postgres', component: 'engine' });
          logger.error(
            { seq: msg.seq, shard, epoch: msg.epoch },
            'snapshot refused: another engine of this shard has started; this one stores no more',
          );
        } else {
          logger.info(
            { seq: msg.seq, shard },
            'snapshot of a state from before a rollback not stored',
          );
        }
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
    this.restarts = 0;
    engineMetrics.snapshots.inc({ shard: this.options.shard });
    this.options.logger.info({ seq, bytes, ms }, 'snapshot stored');
  }
}
