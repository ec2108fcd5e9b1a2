// The engine service: one shard's MatchingEngine behind the gRPC contract of proto/engine.proto,
// with snapshots in PostgreSQL. A process entry (main.ts) and the `matchbox engine` command both
// start it through `startEngineService`.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Sql } from '../db/client.js';
import { engineMetrics, restingSources } from '../metrics/pipeline.js';
import { CHANNEL_OPTIONS, engineService, shardName, toWireLiveOrder } from './proto.js';
import type { DepthReply, DepthRequest, LastAppliedReply, LastAppliedRequest } from './proto.js';
import type { LiveOrdersReply, LiveOrdersRequest } from './proto.js';
import type { SessionReply, SessionRequest, WireLevel } from './proto.js';
import { ShardEngine } from './shard-engine.js';
import { SnapshotReplica } from './snapshot-replica.js';
import { SnapshotStore } from './snapshot-store.js';

export interface EngineServiceOptions {
  shard: number;
  /** `host:port`; port 0 picks a free one (see the returned `port`). */
  address: string;
  sql: Sql;
  /** The same database as `sql`'s: the snapshot replica's thread opens its own connection. */
  databaseUrl: string;
  snapshotEvery: number;
  snapshotIntervalMs: number;
  logger: Logger;
}

export interface EngineService {
  port: number;
  /** Ends every session, stores a final snapshot, then resolves. */
  stop(): Promise<void>;
}

type SessionCall = grpc.ServerDuplexStream<SessionRequest, SessionReply>;
type Hello = NonNullable<SessionRequest['hello']>;

/** Loads the newest snapshot of the shard and serves it until `stop()`. */
export async function startEngineService(options: EngineServiceOptions): Promise<EngineService> {
  const { logger } = options;
  const shard = shardName(options.shard);
  const store = new SnapshotStore(options.sql, shard);
  // Before loading: no write of an earlier engine of this shard is stored after this point.
  const epoch = await store.begin();
  const loaded = await store.newest();
  const engine = new ShardEngine(loaded?.data);
  const snapshots = new SnapshotReplica(
    {
      databaseUrl: options.databaseUrl,
      shard,
      policy: { every: options.snapshotEvery, intervalMs: options.snapshotIntervalMs },
      engine: () => engine.core,
      store,
      logger,
    },
    loaded?.data,
    engine.lastSeq,
    epoch,
  );
  logger.info({ shard, seq: engine.lastSeq, snapshot: loaded !== undefined }, 'engine loaded');
  const labels = { shard };
  engineMetrics.lastSeq.set(labels, engine.lastSeq);
  const resting = { shard, resting: () => engine.core.restingBySymbol() };
  restingSources.add(resting);

  /** The one live dispatcher session; a newer one supersedes it. */
  let current: SessionCall | undefined;
  let stopping = false;

  const fail = (call: SessionCall, code: grpc.status, details: string): void => {
    call.emit('error', { code, details, metadata: new grpc.Metadata() });
  };

  const onHello = async (call: SessionCall, hello: Hello): Promise<void> => {
    if (call !== current || stopping) return;
    if (hello.shard !== shard) {
      fail(call, grpc.status.INVALID_ARGUMENT, `this engine serves ${shard}, not ${hello.shard}`);
      return;
    }
    const written = hello.written_seq;
    if (engine.lastSeq > written) {
      // The dispatcher lost reports it never wrote: go back to a state at or below what it did
      // write, so that the replay regenerates exactly those reports. The snapshots above W go:
      // if Redis lost its last writes in a restart, the commands they hold are not the ones
      // Redis now has under those sequence numbers. The epoch moves on with it, so that a
      // snapshot of a state from before, which the replica may be writing, is not stored (or,
      // begun first, is deleted here).
      const from = engine.lastSeq;
      const { epoch, snapshot } = await store.rollBack(written);
      // Done even for a session superseded meanwhile (no other Hello runs until this one ends,
      // and a superseded session's batches are ignored): the epoch has moved on, and the engine
      // and its replica move with it. The next session's Hello goes on from here.
      engine.reset(snapshot?.data);
      snapshots.reset(snapshot?.data, engine.lastSeq, epoch);
      engineMetrics.rollbacks.inc(labels);
      engineMetrics.lastSeq.set(labels, engine.lastSeq);
      logger.warn({ shard, from, written, to: engine.lastSeq }, 'rolled back for replay');
      if (call !== current || stopping) return;
    }
    greeted.add(call);
    call.write({ ready: { last_seq: engine.lastSeq } });
  };
  /** Sessions whose Hello is answered: only theirs are batches to apply. */
  const greeted = new WeakSet<SessionCall>();

  // A batch is handled synchronously from start to reply. A Hello may await PostgreSQL (a
  // rollback), so Hellos take turns across sessions: a superseded session's rollback ends before
  // the next session's Hello looks at the engine, and that session's batches follow its Hello.
  let hellos = Promise.resolve();
  const onMessage = async (call: SessionCall, req: SessionRequest): Promise<void> => {
    if (call !== current || stopping) return;
    if (req.msg === 'hello' && req.hello) {
      const hello = req.hello;
      const turn = hellos.then(() => onHello(call, hello));
      hellos = turn.catch(() => undefined);
      await turn;
    } else if (req.msg === 'batch' && req.batch) {
      if (!greeted.has(call)) {
        fail(call, grpc.status.FAILED_PRECONDITION, 'a batch before the answer to a hello');
        return;
      }
      const started = performance.now();
      const batch = engine.apply(req.batch.commands);
      engineMetrics.batchSeconds.observe(labels, (performance.now() - started) / 1000);
      engineMetrics.commands.inc(labels, batch.applied);
      engineMetrics.lastSeq.set(labels, batch.lastSeq);
      call.write({ reports: { last_seq: batch.lastSeq, reports: batch.reports } });
      if (batch.applied > 0) snapshots.applied(req.batch.commands, batch.lastSeq);
    } else {
      fail(call, grpc.status.INVALID_ARGUMENT, 'expected a hello or a batch');
    }
  };

  const session = (call: SessionCall): void => {
    if (stopping) {
      fail(call, grpc.status.UNAVAILABLE, 'engine stopping');
      return;
    }
    if (current !== undefined) {
      logger.info({ shard }, 'new session supersedes the previous one');
      current.end();
    }
    current = call;
    // A rollback awaits PostgreSQL; the messages behind it wait their turn in this chain.
    let chain = Promise.resolve();
    call.on('data', (req: SessionRequest) => {
      chain = chain
        .then(() => onMessage(call, req))
        .catch((err: unknown) => {
          logger.error({ err }, 'session message failed');
          fail(call, grpc.status.INTERNAL, 'engine could not handle the message');
        });
    });
    const done = (): void => {
      if (current === call) current = undefined;
    };
    call.on('end', () => {
      done();
      call.end();
    });
    call.on('error', done);
    call.on('cancelled', done);
  };

  /** False (and the call answered INVALID_ARGUMENT) when a request names another shard. */
  const ours = (asked: string, callback: (err: grpc.ServiceError) => void): boolean => {
    if (asked === '' || asked === shard) return true;
    callback(
      Object.assign(new Error(`this engine serves ${shard}`), {
        code: grpc.status.INVALID_ARGUMENT,
        details: `this engine serves ${shard}`,
        metadata: new grpc.Metadata(),
      }),
    );
    return false;
  };

  const lastApplied = (
    call: grpc.ServerUnaryCall<LastAppliedRequest, LastAppliedReply>,
    callback: grpc.sendUnaryData<LastAppliedReply>,
  ): void => {
    if (ours(call.request.shard, callback)) callback(null, { last_seq: engine.lastSeq });
  };

  const liveOrders = (
    call: grpc.ServerUnaryCall<LiveOrdersRequest, LiveOrdersReply>,
    callback: grpc.sendUnaryData<LiveOrdersReply>,
  ): void => {
    if (!ours(call.request.shard, callback)) return;
    const orders = engine.core.liveOrders().map(toWireLiveOrder);
    callback(null, { seq: engine.lastSeq, orders });
  };

  const depth = (
    call: grpc.ServerUnaryCall<DepthRequest, DepthReply>,
    callback: grpc.sendUnaryData<DepthReply>,
  ): void => {
    const { symbol, levels } = call.request;
    const d = engine.core.depth(symbol, levels);
    const level = (l: WireLevel): WireLevel => ({
      price: l.price,
      quantity: l.quantity,
      orders: l.orders,
    });
    callback(null, {
      symbol,
      bids: d === undefined ? [] : d.bids.map(level),
      asks: d === undefined ? [] : d.asks.map(level),
      seq: engine.lastSeq,
    });
  };

  const server = new grpc.Server(CHANNEL_OPTIONS);
  server.addService(engineService().service, {
    Session: session,
    LastApplied: lastApplied,
    Depth: depth,
    LiveOrders: liveOrders,
  });
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(options.address, grpc.ServerCredentials.createInsecure(), (err, p) =>
        err === null ? resolve(p) : reject(err),
      );
    });
  } catch (err) {
    await snapshots.final();
    restingSources.delete(resting);
    throw err;
  }
  logger.info({ shard, port }, 'engine listening');

  return {
    port,
    async stop() {
      if (stopping) return;
      stopping = true;
      // Close the door first so that the final snapshot holds everything ever applied.
      current?.end();
      current = undefined;
      // A dispatcher never ends its half of a session, so a graceful shutdown would only wait.
      server.forceShutdown();
      // A rollback under way ends first: the final snapshot is of the state it leaves.
      await hellos;
      await snapshots.final();
      restingSources.delete(resting);
      logger.info({ shard, seq: engine.lastSeq }, 'engine stopped');
    },
  };
}
