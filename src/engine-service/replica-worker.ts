// The worker thread of an engine's snapshot replica (snapshot-replica.ts): it applies the batches
// the engine applied, in the same order, and snapshots on the engine's policy into PostgreSQL
// over its own connection.
import { parentPort, workerData } from 'node:worker_threads';
import { connect } from '../db/client.js';
import type { FromReplica, ReplicaData, ToReplica } from './snapshot-replica.js';
import { ShardEngine } from './shard-engine.js';
import { SnapshotStore } from './snapshot-store.js';
import { Snapshotter } from './snapshotter.js';

const PROGRESS_MS = 1_000;

const port = parentPort;
if (port === null) throw new Error('replica-worker.js runs as a worker thread');
const { databaseUrl, shard, policy } = workerData as ReplicaData;
const tell = (msg: FromReplica): void => port.postMessage(msg);
const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

const sql = connect(databaseUrl, { max: 1 });
const store = new SnapshotStore(sql, shard);
let replica = new ShardEngine();
const snapshots = new Snapshotter(store, () => replica.core, policy, {
  stored: (seq, bytes, ms) => tell({ type: 'stored', seq, bytes, ms }),
  failed: (err, seq) => tell({ type: 'failed', seq, message: messageOf(err) }),
  refused: (seq, epoch) => tell({ type: 'refused', seq, epoch }),
});
setInterval(() => tell({ type: 'progress', seq: replica.lastSeq }), PROGRESS_MS).unref();

port.on('message', (msg: ToReplica) => {
  switch (msg.type) {
    case 'reset':
      replica = new ShardEngine(msg.snapshot);
      // A replica started from a copy of the engine's state has that state to store.
      snapshots.reset(msg.storedSeq, msg.epoch);
      break;
    case 'batch': {
      const { applied, lastSeq } = replica.apply(msg.commands, false);
      // Thrown here, this ends the worker; the engine starts another from its own state.
      if (lastSeq !== msg.lastSeq) {
        throw new Error(`replica diverged: at seq ${lastSeq}, the engine at ${msg.lastSeq}`);
      }
      snapshots.applied(applied);
      break;
    }
    case 'final':
      void snapshots
        .final()
        .then(() => sql.end({ timeout: 5 }))
        .catch((err: unknown) =>
          tell({ type: 'failed', seq: replica.lastSeq, message: messageOf(err) }),
        )
        .finally(() => tell({ type: 'final' }));
      break;
  }
});
