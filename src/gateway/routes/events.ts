// /v1/events: the caller's execution reports as Server-Sent Events: each change the engine makes
// to one of their orders, and each of their fills, as the dispatcher writes them. The feed
// (queue/order-feed.ts) reads them from the event streams.
import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { GatewayContext } from '../app.js';
import { ApiError } from '../errors.js';
import { userGuard } from '../guard.js';
import { userEvents } from '../../queue/order-feed.js';
import type { FeedEvent, FeedSink, Subscription } from '../../queue/order-feed.js';

/** How often an idle stream says it is alive, with its position. */
const HEARTBEAT_MS = 15_000;
/** What a client waits before reconnecting, as the stream advises it. */
const RETRY_MS = 1_000;
/**
 * Bytes a stream holds for a client that does not read them. Past it the stream is closed: the
 * client reconnects from the last id it read, rather than the gateway holding its events without
 * end.
 */
export const MAX_HELD = 4 << 20;

/** How long a client's connection may take nothing of what is written to it before it is cut. */
const STALL_MS = 60_000;

/** How long a closing gateway gives a stream to take what it holds. */
const STOP_GRACE_MS = 1_000;

/** One Server-Sent Event. JSON has no raw line break, so the data is one line. */
function frame(event: string, data: unknown, id?: string): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * Each feed event's (and book's) text without its id, made once however many streams send it: a
 * trade goes to every stream that follows its symbol, and the feed hands them all the same object,
 * as the book feed does a book.
 */
const framed = new WeakMap<object, string>();

function frameOf(e: FeedEvent): string {
  let text = framed.get(e);
  if (text === undefined) framed.set(e, (text = frame(e.event, e.data)));
  return text;
}

/**
 * The text for one client, in order: the feed pushes, the response takes everything held at once
 * (a batch's events, or all that piled up while the client was slow, in one write).
 */
export class Outbox implements FeedSink {
  private chunks: string[] = [];
  private held = 0;
  /**
   * The books not yet taken, one a symbol: a newer one takes the place of an older, so a slow
   * client is never sent a backlog of them (and they count nowhere towards MAX_HELD).
   */
  private books = new Map<string, string>();
  private wake: (() => void) | undefined;
  private ended = false;
  /** Ended because the client read too slowly. */
  overflowed = false;
  /** Called when the feed stops (the gateway closes). */
  onStop: (() => void) | undefined;
  /** Called when the client is to be cut off. */
  onOverflow: (() => void) | undefined;
  /** Called after a resync is sent. */
  onResync: (() => void) | undefined;
  /** Catching up, waiting for room. */
  private waiting: (() => void)[] = [];

  private push(text: string): void {
    if (this.ended) return;
    const bytes = Buffer.byteLength(text);
    // One piece larger than the limit still goes, alone: it could never go otherwise.
    if (this.held > 0 && this.held + bytes > MAX_HELD) {
      this.overflowed = true;
      this.chunks = [];
      this.end();
      this.onOverflow?.();
      return;
    }
    this.chunks.push(text);
    this.held += bytes;
    this.wake?.();
  }

  room(): Promise<void> {
    if (this.ended || this.held <= MAX_HELD / 4) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  open(position: string): void {
    this.push(`retry: ${RETRY_MS}\n${frame('ready', {}, position)}`);
  }

  send(events: FeedEvent[], position: string): void {
    let text = '';
    const last = events.length - 1;
    for (let i = 0; i < last; i++) text += frameOf(events[i] as FeedEvent);
    this.push(`${text}id: ${position}\n${frameOf(events[last] as FeedEvent)}`);
  }

  resync(reason: string, position: string): void {
    // A book read before the resync is not to follow it: fresh ones do (onResync).
    this.books.clear();
    this.push(frame('resync', { reason }, position));
    this.onResync?.();
  }

  /**
   * A book as it stands, in place of any of the symbol's not yet taken. It has no id: a book is
   * no position, and a reconnect is sent the books afresh.
   */
  book(symbol: string, data: object): void {
    if (this.ended) return;
    let text = framed.get(data);
    if (text === undefined) framed.set(data, (text = frame('book', data)));
    this.books.set(symbol, text);
    this.wake?.();
  }

  heartbeat(position: string): void {
    if (this.chunks.length === 0 && this.books.size === 0) {
      this.push(frame('heartbeat', {}, position));
    }
  }

  end(): void {
    this.ended = true;
    this.wake?.();
    this.release();
  }

  stop(): void {
    this.end();
    this.onStop?.();
  }

  /** Everything held, once there is any; undefined once ended. */
  async take(): Promise<string | undefined> {
    while (this.chunks.length === 0 && this.books.size === 0) {
      if (this.ended) return undefined;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
    let text = this.chunks.length === 1 ? (this.chunks[0] as string) : this.chunks.join('');
    for (const book of this.books.values()) text += book;
    this.books.clear();
    this.chunks = [];
    this.held = 0;
    this.release();
    return text;
  }
}

/** Resolves true once `res` can take more, or is closed; false if neither within `ms`. */
export function drained(res: ServerResponse, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (taken: boolean): void => {
      clearTimeout(timer);
      res.off('drain', onDrain);
      res.off('close', onDrain);
      resolve(taken);
    };
    const onDrain = (): void => done(true);
    const timer = setTimeout(() => done(false), ms);
    res.on('drain', onDrain);
    res.on('close', onDrain);
  });
}

/** The position a reconnecting client sends back, if any. */
export function lastEventId(req: FastifyRequest): string | undefined {
  const from = req.headers['last-event-id'];
  return typeof from === 'string' ? from : undefined;
}

/** The metrics of one kind of stream. */
export interface StreamCounts {
  open: { inc(): void; dec(): void };
  dropped: { inc(): void };
}

/**
 * Writes `out` to the client until either side ends the stream: the response from here is this
 * function's, not Fastify's. `who` names the stream in the log line of a client cut off.
 */
export async function serveStream(
  req: FastifyRequest,
  reply: FastifyReply,
  out: Outbox,
  sub: Subscription | 'stopped',
  counts: StreamCounts,
  who: Record<string, unknown>,
): Promise<void> {
  if (sub === 'stopped') {
    throw new ApiError('UNAVAILABLE', 'The gateway is stopping; retry.', undefined, 1);
  }
  const res = reply.raw;
  let beat: NodeJS.Timeout | undefined;
  counts.open.inc();
  try {
    void reply.hijack();
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      // Ended only when the gateway stops (or cuts off a client that does not read): the
      // connection goes with it, not back to an idle keep-alive that would hold the close.
      connection: 'close',
      // Proxies that buffer (nginx) would hold the events back.
      'x-accel-buffering': 'no',
    });
    res.on('close', () => out.end());
    // What is held goes out, but a client that does not read it does not hold the close up.
    out.onStop = () => setTimeout(() => res.destroy(), STOP_GRACE_MS).unref();
    // Not a graceful end: its socket is full, and the client is to reconnect from its last id.
    out.onOverflow = () => res.destroy();
    beat = setInterval(() => out.heartbeat(sub.position), HEARTBEAT_MS);
    for (;;) {
      const text = await out.take();
      if (text === undefined || res.destroyed) break;
      if (!res.write(text) && !(await drained(res, STALL_MS))) {
        // Its connection has taken nothing for that long: cut off, as one that lets 4 MiB pile
        // up (books alone never do, as each replaces the last of its symbol).
        out.overflowed = true;
        res.destroy();
        break;
      }
    }
  } finally {
    if (beat !== undefined) clearInterval(beat);
    sub.close();
    counts.open.dec();
    if (out.overflowed) {
      counts.dropped.inc();
      req.log.warn(who, 'event stream closed: the client reads too slowly');
    } else res.end();
  }
}

export function eventRoutes(ctx: GatewayContext): FastifyPluginCallbackTypebox {
  const streams = { open: ctx.metrics.eventStreams, dropped: ctx.metrics.eventStreamsDropped };
  return (app, _options, done) => {
    app.addHook('onRequest', userGuard(ctx));

    app.get(
      '/v1/events',
      {
        schema: {
          summary: 'The caller’s order updates and fills, live (text/event-stream)',
          description:
            'Server-Sent Events. `order`: an order of the caller as the engine left it. `fill`: ' +
            'one of its fills. `cancel_rejected`, `amend_rejected`: a cancel or amend answered 202 ' +
            'that the engine refused, with its reason. `resync`: events may have been missed; read ' +
            'the orders again. ' +
            '`ready`, `heartbeat`: the position, nothing else. Each id is a position: sent back ' +
            'as `Last-Event-ID`, the stream goes on after it.',
          response: {
            200: {
              description: 'An endless text/event-stream.',
              content: { 'text/event-stream': { schema: { type: 'string' } } },
            },
            401: { $ref: 'Error#' },
            429: { $ref: 'Error#' },
            503: { $ref: 'Error#' },
          },
        },
      },
      async (req, reply) => {
        const userId = req.caller.id;
        const most = ctx.config.streamsPerUser;
        const out = new Outbox();
        const sub = await ctx.feed.subscribe(userEvents(userId), lastEventId(req), out, most);
        if (sub === 'full') {
          throw new ApiError(
            'RATE_LIMITED',
            `At most ${most} event streams may be open per user; close one first.`,
            undefined,
            1,
          );
        }
        await serveStream(req, reply, out, sub, streams, { user: userId });
      },
    );
    done();
  };
}
