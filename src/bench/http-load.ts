// The load generator: keep-alive HTTP/1.1 connections (undici Client, one per connection), and
// three ways of driving them — closed loop (N clients, each one request at a time), open loop (a
// steady offered rate, whatever the answers do) and burst (everything in flight at once). One
// request options object per connection is built once and reused; latencies go into a
// preallocated Samples array, timed with process.hrtime.bigint around the whole exchange (request
// written, status and body read).
//
// Requests go through undici's dispatch API with a small handler (`exchange`), not `request`,
// which wraps every answer in a Readable stream and a body mixin. The generator shares the
// machine with the system it measures. The bench's generator scenario (null server), old and new
// interleaved three times: at 64 clients 28.6–29.9k requests/s and 31–33 µs of CPU per request,
// against 24.0–27.5k and 34–37 µs; at one client no difference beyond the machine's noise.
import { Client } from 'undici';
import type { Dispatcher } from 'undici';
import { Samples, summarise } from './latency.js';
import type { LatencySummary } from './latency.js';

export interface Traffic {
  /** Gateway base URL; only 127.0.0.1 (or localhost) is accepted. */
  url: string;
  path: string;
  apiKey: string;
  body: string;
}

export interface LoadResult {
  requests: number;
  ok: number;
  errors: number;
  success_rate: number;
  /** Answers by HTTP status, plus `network` for failed exchanges. */
  status: Record<string, number>;
  /** The first few error texts, to say what went wrong. */
  error_samples: string[];
  seconds: number;
  orders_per_sec: number;
  latency: LatencySummary;
  /** CPU the load generator itself used per request (user + system, this process). */
  generator_cpu_us_per_request: number;
}

/** A measured phase's result plus its sorted samples (for charts; not part of the JSON). */
export interface Measured {
  result: LoadResult;
  sorted: Float64Array;
}

/** Throws unless the URL is on the loopback interface: the bench never sends traffic elsewhere. */
export function assertLoopback(url: string): void {
  const host = new URL(url).hostname;
  if (host !== '127.0.0.1' && host !== 'localhost' && host !== '[::1]') {
    throw new Error(`the bench only sends traffic to 127.0.0.1, not to ${host}`);
  }
}

interface Connection {
  client: Client;
  options: {
    path: string;
    method: 'POST';
    headers: string[];
    body: string;
  };
}

/** An answer: its status, and its body when asked for. */
interface Answer {
  status: number;
  body: string;
}

/** Collects one answer; undici calls it as the response arrives. */
class AnswerHandler implements Dispatcher.DispatchHandler {
  private status = 0;
  private chunks: Buffer[] = [];

  constructor(
    private readonly keepBody: boolean,
    private readonly resolve: (a: Answer) => void,
    private readonly reject: (err: Error) => void,
  ) {}

  /** Present so that undici takes this for a handler of its current API, not a legacy one. */
  onRequestStart(): void {}

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number): void {
    this.status = statusCode;
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.keepBody) this.chunks.push(chunk);
  }

  onResponseEnd(): void {
    const body = this.chunks.length === 0 ? '' : Buffer.concat(this.chunks).toString('utf8');
    this.resolve({ status: this.status, body });
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.reject(err);
  }
}

/** One request on `c` and its whole answer (the body only with `keepBody`). */
function exchange(c: Connection, keepBody: boolean): Promise<Answer> {
  return new Promise((resolve, reject) => {
    c.client.dispatch(c.options, new AnswerHandler(keepBody, resolve, reject));
  });
}

/** Opens `n` connections and makes one request on each, so that no phase pays for a connect. */
export async function openConnections(
  traffic: Traffic,
  n: number,
  pipelining = 1,
): Promise<Connection[]> {
  assertLoopback(traffic.url);
  const headers = ['authorization', `Bearer ${traffic.apiKey}`, 'content-type', 'application/json'];
  const conns: Connection[] = [];
  for (let i = 0; i < n; i++) {
    const client = new Client(traffic.url, {
      pipelining,
      keepAliveTimeout: 120_000,
      keepAliveMaxTimeout: 120_000,
      headersTimeout: 60_000,
      bodyTimeout: 60_000,
    });
    conns.push({
      client,
      options: { path: traffic.path, method: 'POST', headers, body: traffic.body },
    });
  }
  await Promise.all(
    conns.map(async (c) => {
      const res = await c.client.request({ path: '/health', method: 'GET' });
      await res.body.dump();
    }),
  );
  return conns;
}

export async function closeConnections(conns: Connection[]): Promise<void> {
  await Promise.all(conns.map((c) => c.client.close().catch(() => undefined)));
}

/** Counts outcomes of one phase. */
class Tally {
  ok = 0;
  errors = 0;
  readonly status: Record<string, number> = {};
  readonly errorSamples: string[] = [];

  answer(code: number, okCode: number): boolean {
    const key = String(code);
    this.status[key] = (this.status[key] ?? 0) + 1;
    if (code === okCode) {
      this.ok++;
      return true;
    }
    this.errors++;
    if (this.errorSamples.length < 5) this.errorSamples.push(`HTTP ${code}`);
    return false;
  }

  failure(err: unknown): void {
    this.status.network = (this.status.network ?? 0) + 1;
    this.errors++;
    if (this.errorSamples.length < 5) {
      this.errorSamples.push(err instanceof Error ? err.message : String(err));
    }
  }
}

function result(tally: Tally, samples: Samples, seconds: number, cpuStart: NodeJS.CpuUsage) {
  const cpu = process.cpuUsage(cpuStart);
  const requests = tally.ok + tally.errors;
  const sorted = samples.sorted();
  const r: LoadResult = {
    requests,
    ok: tally.ok,
    errors: tally.errors,
    success_rate: requests === 0 ? 0 : Number((tally.ok / requests).toFixed(6)),
    status: tally.status,
    error_samples: tally.errorSamples,
    seconds: Number(seconds.toFixed(3)),
    orders_per_sec: Math.round(tally.ok / seconds),
    latency: summarise(sorted),
    generator_cpu_us_per_request:
      requests === 0 ? 0 : Math.round((cpu.user + cpu.system) / requests),
  };
  return { result: r, sorted };
}

/** The order id from a 201 body, without parsing the whole JSON (the id is a UUID string). */
export function orderIdOf(body: string): string | undefined {
  const at = body.indexOf('"id":"');
  return at === -1 ? undefined : body.slice(at + 6, at + 42);
}

export interface ClosedLoopOptions {
  clients: number;
  /** Stop after this many requests in all… */
  count: number;
  /** …or after this long, whichever first. */
  durationMs: number;
  okStatus?: number;
  /** Called every ~250 ms with the requests answered so far. */
  onTick?: (done: number, elapsedMs: number) => void;
  /**
   * Requests sent first on the same connections, one at a time, and not measured: after the idle
   * pause between scenarios the first few hundred answers measure caches and wake-ups. Each must
   * be answered `okStatus`, or the phase fails.
   */
  warmup?: number;
}

/** `clients` loops, each with its own connection and one request at a time. */
export async function closedLoop(traffic: Traffic, o: ClosedLoopOptions): Promise<Measured> {
  const conns = await openConnections(traffic, o.clients);
  const okStatus = o.okStatus ?? 201;
  for (let i = 0; i < (o.warmup ?? 0); i++) {
    const c = conns[i % conns.length] as Connection;
    const { status } = await exchange(c, false);
    if (status !== okStatus) {
      await closeConnections(conns);
      throw new Error(`warm-up request answered HTTP ${status}`);
    }
  }
  // Sized for the fastest this machine could plausibly answer, capped by the count.
  const samples = new Samples(Math.min(o.count, Math.ceil((o.durationMs / 1000) * 100_000)));
  const tally = new Tally();
  let issued = 0;
  const cpuStart = process.cpuUsage();
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(o.durationMs) * 1_000_000n;
  const tick =
    o.onTick === undefined
      ? undefined
      : setInterval(
          () => o.onTick?.(tally.ok + tally.errors, Number(process.hrtime.bigint() - start) / 1e6),
          250,
        );
  const loop = async (c: Connection): Promise<void> => {
    while (issued < o.count) {
      const t0 = process.hrtime.bigint();
      if (t0 >= deadline) return;
      issued++;
      try {
        const { status } = await exchange(c, false);
        samples.add(Number(process.hrtime.bigint() - t0));
        tally.answer(status, okStatus);
      } catch (err) {
        tally.failure(err);
      }
    }
  };
  try {
    await Promise.all(conns.map(loop));
  } finally {
    if (tick !== undefined) clearInterval(tick);
    await closeConnections(conns);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return result(tally, samples, seconds, cpuStart);
}

export interface OpenLoopOptions {
  /** Offered orders per second. */
  rate: number;
  durationMs: number;
  connections: number;
  /** Requests allowed to wait for an answer; beyond it the schedule slips (and latency shows it). */
  maxInFlight: number;
  /** Every accepted order's id and when its request was scheduled (hrtime ns). */
  onAccepted?: (orderId: string, scheduledNs: bigint) => void;
  onTick?: (done: number, elapsedMs: number) => void;
}

/**
 * Offers `rate` requests per second for `durationMs`. Latency counts from each request's
 * scheduled time, not from when it was sent, so a server that falls behind cannot hide it
 * (no coordinated omission).
 */
export async function openLoop(traffic: Traffic, o: OpenLoopOptions): Promise<Measured> {
  const conns = await openConnections(traffic, o.connections);
  const total = Math.round((o.rate * o.durationMs) / 1000);
  const samples = new Samples(total);
  const tally = new Tally();
  const cpuStart = process.cpuUsage();
  const start = process.hrtime.bigint();
  const nsPerRequest = 1e9 / o.rate;
  let sent = 0;
  let inFlight = 0;
  let lastTick = 0;
  const fire = async (i: number): Promise<void> => {
    const c = conns[i % conns.length] as Connection;
    const scheduled = start + BigInt(Math.round(i * nsPerRequest));
    inFlight++;
    try {
      const { status, body } = await exchange(c, true);
      samples.add(Number(process.hrtime.bigint() - scheduled));
      if (tally.answer(status, 201) && o.onAccepted !== undefined) {
        const id = orderIdOf(body);
        if (id !== undefined) o.onAccepted(id, scheduled);
      }
    } catch (err) {
      tally.failure(err);
    } finally {
      inFlight--;
    }
  };
  const running: Promise<void>[] = [];
  // Bounded in time as well as count: a server that stops answering ends the phase 30 s late.
  const hardStop = start + BigInt(o.durationMs + 30_000) * 1_000_000n;
  while (sent < total) {
    const now = process.hrtime.bigint();
    if (now > hardStop) break;
    const elapsedMs = Number(now - start) / 1e6;
    const due = Math.min(total, Math.floor((elapsedMs * o.rate) / 1000) + 1);
    while (sent < due && inFlight < o.maxInFlight) running.push(fire(sent++));
    if (o.onTick !== undefined && elapsedMs - lastTick >= 250) {
      lastTick = elapsedMs;
      o.onTick(tally.ok + tally.errors, elapsedMs);
    }
    await new Promise<void>((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(running);
  await closeConnections(conns);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const measured = result(tally, samples, seconds, cpuStart);
  // Orders the schedule never reached (hard stop) count as failed.
  measured.result.errors += total - sent;
  measured.result.requests += total - sent;
  const all = measured.result.requests;
  measured.result.success_rate = all === 0 ? 0 : Number((tally.ok / all).toFixed(6));
  return measured;
}

export interface BurstResult {
  measured: Measured;
  /** Ids of the accepted orders. */
  ids: string[];
  /** From the first request written to the last answer, in ms. */
  all_answered_ms: number;
  connections: number;
  pipelining: number;
  /** hrtime of the first request and of the last answer. */
  startNs: bigint;
  lastAnswerNs: bigint;
}

/** `n` requests written at once over up to 256 connections, HTTP/1.1-pipelined. */
export async function burst(traffic: Traffic, n: number): Promise<BurstResult> {
  const connections = Math.min(256, n);
  const pipelining = Math.ceil(n / connections);
  const conns = await openConnections(traffic, connections, pipelining);
  const samples = new Samples(n);
  const tally = new Tally();
  const ids: string[] = [];
  let lastAnswerNs = 0n;
  const cpuStart = process.cpuUsage();
  const start = process.hrtime.bigint();
  const one = async (i: number): Promise<void> => {
    const c = conns[i % connections] as Connection;
    try {
      const { status, body } = await exchange(c, true);
      const now = process.hrtime.bigint();
      lastAnswerNs = now;
      samples.add(Number(now - start));
      if (tally.answer(status, 201)) {
        const id = orderIdOf(body);
        if (id !== undefined) ids.push(id);
      }
    } catch (err) {
      tally.failure(err);
    }
  };
  const all: Promise<void>[] = [];
  for (let i = 0; i < n; i++) all.push(one(i));
  await Promise.all(all);
  await closeConnections(conns);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return {
    measured: result(tally, samples, seconds, cpuStart),
    ids,
    all_answered_ms: Number((Number(lastAnswerNs - start) / 1e6).toFixed(1)),
    connections,
    pipelining,
    startNs: start,
    lastAnswerNs,
  };
}
