// The client side of proto/engine.proto for the dispatcher and the gateway: a typed session over
// the bidi stream, and the unary calls with deadlines. Every failure to reach the engine surfaces
// as an EngineUnavailableError naming the address.
import * as grpc from '@grpc/grpc-js';
import type { Command, Depth, ExecutionReport } from '../engine/types.js';
import {
  CHANNEL_OPTIONS,
  engineService,
  fromWireLiveOrder,
  fromWireReport,
  shardName,
  toWireCommand,
} from './proto.js';
import type { DepthReply, DepthRequest, LastAppliedReply, LastAppliedRequest } from './proto.js';
import type { LiveOrder, LiveOrdersReply, LiveOrdersRequest } from './proto.js';
import type { SessionReply, SessionRequest } from './proto.js';

export type { LiveOrder } from './proto.js';

/** The engine could not be reached, or the session to it broke. */
export class EngineUnavailableError extends Error {
  constructor(
    readonly address: string,
    detail: string,
  ) {
    super(`engine at ${address} unavailable: ${detail}`);
    this.name = 'EngineUnavailableError';
  }
}

export interface ReportBatch {
  /** The engine's last applied seq after the batch. */
  lastSeq: number;
  reports: ExecutionReport[];
}

/** gRPC codes that mean the engine is not there (down, restarting, too slow). */
const UNREACHABLE = new Set<grpc.status>([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.CANCELLED,
]);

type UnaryCallback<T> = (err: grpc.ServiceError | null, reply?: T) => void;

interface RawEngineClient extends grpc.Client {
  Session(options?: grpc.CallOptions): grpc.ClientDuplexStream<SessionRequest, SessionReply>;
  LastApplied(
    req: LastAppliedRequest,
    options: grpc.CallOptions,
    cb: UnaryCallback<LastAppliedReply>,
  ): grpc.ClientUnaryCall;
  Depth(
    req: DepthRequest,
    options: grpc.CallOptions,
    cb: UnaryCallback<DepthReply>,
  ): grpc.ClientUnaryCall;
  LiveOrders(
    req: LiveOrdersRequest,
    options: grpc.CallOptions,
    cb: UnaryCallback<LiveOrdersReply>,
  ): grpc.ClientUnaryCall;
}

export interface EngineClientOptions {
  /** Deadline of unary calls and of a session's hello and each batch; default 10 s. */
  deadlineMs?: number;
}

interface Pending {
  resolve(reply: SessionReply): void;
  reject(err: Error): void;
}

/**
 * One dispatcher session: `hello` once, then `send` batches; replies come back in order. Any
 * stream failure rejects what is pending and every later call: open a new session then.
 */
export class EngineSession {
  private readonly pending: Pending[] = [];
  /** When each pending request was sent, for the reply deadline. */
  private readonly sentAt: number[] = [];
  private broken: Error | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly call: grpc.ClientDuplexStream<SessionRequest, SessionReply>,
    private readonly shard: string,
    private readonly address: string,
    private readonly deadlineMs: number,
  ) {
    call.on('data', (reply: SessionReply) => this.pending.shift()?.resolve(reply));
    call.on('error', (err: grpc.ServiceError) => this.fail(err.details || err.message));
    call.on('end', () => this.fail('the engine ended the session'));
    // A stopped (not dead) engine keeps the socket open: a reply that never comes is a failure.
    this.timer = setInterval(() => this.checkDeadline(), Math.min(1000, deadlineMs)).unref();
  }

  /** Opens the session: the engine rolls back if it is ahead of `writtenSeq`; its last seq. */
  async hello(writtenSeq: number): Promise<number> {
    const reply = await this.request({ hello: { shard: this.shard, written_seq: writtenSeq } });
    if (!reply.ready) throw this.unexpected('ready');
    return reply.ready.last_seq;
  }

  /** Applies the commands in order; the reports of all of them. */
  async send(commands: Command[]): Promise<ReportBatch> {
    const reply = await this.request({ batch: { commands: commands.map(toWireCommand) } });
    if (!reply.reports) throw this.unexpected('reports');
    return { lastSeq: reply.reports.last_seq, reports: reply.reports.reports.map(fromWireReport) };
  }

  /** Ends the session (the engine keeps its state). */
  close(): void {
    clearInterval(this.timer);
    if (this.broken === undefined) this.fail('session closed');
    this.call.cancel();
  }

  private request(msg: SessionRequest): Promise<SessionReply> {
    if (this.broken !== undefined) return Promise.reject(this.broken);
    return new Promise<SessionReply>((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.sentAt.push(Date.now());
      this.call.write(msg);
    }).finally(() => this.sentAt.shift());
  }

  private checkDeadline(): void {
    const first = this.sentAt[0];
    if (first !== undefined && Date.now() - first > this.deadlineMs) {
      this.fail(`no reply within ${this.deadlineMs} ms`);
      this.call.cancel();
    }
  }

  private unexpected(wanted: string): Error {
    return new EngineUnavailableError(this.address, `expected ${wanted} from the engine`);
  }

  private fail(detail: string): void {
    if (this.broken !== undefined) return;
    clearInterval(this.timer);
    this.broken = new EngineUnavailableError(this.address, detail);
    for (const p of this.pending.splice(0)) p.reject(this.broken);
  }
}

/** A client of one shard's engine at `address` (`host:port`). */
export class EngineClient {
  private readonly raw: RawEngineClient;
  private readonly deadlineMs: number;

  constructor(
    readonly address: string,
    readonly shard: number,
    options: EngineClientOptions = {},
  ) {
    const Ctor = engineService();
    this.raw = new Ctor(
      address,
      grpc.credentials.createInsecure(),
      CHANNEL_OPTIONS,
    ) as unknown as RawEngineClient;
    this.deadlineMs = options.deadlineMs ?? 10_000;
  }

  /** A new session (it supersedes any other session of this shard on the engine). */
  session(): EngineSession {
    return new EngineSession(
      this.raw.Session(),
      shardName(this.shard),
      this.address,
      this.deadlineMs,
    );
  }

  /** The engine's last applied sequence. */
  lastApplied(): Promise<number> {
    const req: LastAppliedRequest = { shard: shardName(this.shard) };
    return this.unary<LastAppliedReply>((o, cb) => this.raw.LastApplied(req, o, cb)).then(
      (r) => r.last_seq,
    );
  }

  /** The best `levels` aggregated levels of each side of `symbol` (empty for an unknown one). */
  depth(symbol: string, levels: number): Promise<Depth> {
    const req: DepthRequest = { symbol, levels };
    return this.unary<DepthReply>((o, cb) => this.raw.Depth(req, o, cb)).then((r) => ({
      symbol: r.symbol,
      bids: r.bids,
      asks: r.asks,
      seq: r.seq,
    }));
  }

  /** Every live order of the shard and the sequence the engine stands at. */
  liveOrders(): Promise<{ seq: number; orders: LiveOrder[] }> {
    const req: LiveOrdersRequest = { shard: shardName(this.shard) };
    return this.unary<LiveOrdersReply>((o, cb) => this.raw.LiveOrders(req, o, cb)).then((r) => ({
      seq: r.seq,
      orders: r.orders.map(fromWireLiveOrder),
    }));
  }

  /** Resolves once the engine answers, polling every 100 ms; rejects after `timeoutMs`. */
  async waitReady(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.lastApplied();
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  close(): void {
    this.raw.close();
  }

  private unary<Rep>(call: (o: grpc.CallOptions, cb: UnaryCallback<Rep>) => unknown): Promise<Rep> {
    return new Promise<Rep>((resolve, reject) => {
      call({ deadline: Date.now() + this.deadlineMs }, (err, reply) => {
        if (err === null && reply !== undefined) resolve(reply);
        else if (err !== null && !UNREACHABLE.has(err.code)) {
          reject(new Error(`engine at ${this.address}: ${err.details}`));
        } else reject(new EngineUnavailableError(this.address, err?.details || 'no reply'));
      });
    });
  }
}
