// A client of `GET /v1/events` (and of the other event streams) for tests: reads the stream over a real connection, parses it with
// eventsource-parser, and hands the events over in order.
import { createParser } from 'eventsource-parser';
import type { Dispatcher } from 'undici';

export interface StreamEvent {
  event: string;
  /** The event's own id, if it carried one. */
  id: string | undefined;
  data: Record<string, unknown>;
}

export interface EventStream {
  status: number;
  headers: Headers;
  /** The answer's body when it was not a stream (an error). */
  error: Record<string, unknown> | undefined;
  /** The id a reconnecting client would send: the last one the stream gave. */
  lastId: string | undefined;
  /** Every event taken so far, in order. */
  readonly seen: StreamEvent[];
  /** The next event not yet taken by `next`, waiting up to `ms` for it. */
  next(ms?: number): Promise<StreamEvent>;
  /** Takes events until one satisfies `match`; returns it and those before it. */
  until(match: (e: StreamEvent) => boolean, ms?: number): Promise<StreamEvent[]>;
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>;
  close(): void;
}

export function openEvents(
  url: string,
  key: string | undefined,
  lastEventId?: string,
): Promise<EventStream> {
  return openStream(`${url}/v1/events`, key, lastEventId);
}

/**
 * Any of the gateway's event streams, at `url` (path and query included); through `dispatcher`
 * (an undici Agent, to connect from another local address) if given.
 */
export async function openStream(
  url: string,
  key: string | undefined,
  lastEventId?: string,
  dispatcher?: Dispatcher,
): Promise<EventStream> {
  const controller = new AbortController();
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (key !== undefined) headers.authorization = `Bearer ${key}`;
  if (lastEventId !== undefined) headers['last-event-id'] = lastEventId;
  const res = await fetch(url, {
    headers,
    signal: controller.signal,
    ...(dispatcher === undefined ? {} : { dispatcher }),
  } as RequestInit);
  const queue: StreamEvent[] = [];
  const seen: StreamEvent[] = [];
  let wake: (() => void) | undefined;
  const stream: EventStream = {
    status: res.status,
    headers: res.headers,
    error: undefined,
    lastId: undefined,
    seen,
    async next(ms = 10_000) {
      const deadline = Date.now() + ms;
      while (queue.length === 0) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no event in ${ms} ms (seen: ${JSON.stringify(seen)})`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      const e = queue.shift() as StreamEvent;
      seen.push(e);
      return e;
    },
    async until(match, ms = 10_000) {
      const taken: StreamEvent[] = [];
      for (;;) {
        const e = await stream.next(ms);
        taken.push(e);
        if (match(e)) return taken;
      }
    },
    ended: Promise.resolve(),
    close: () => controller.abort(),
  };
  if (!(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    stream.error = (await res.json()) as Record<string, unknown>;
    return stream;
  }
  const parser = createParser({
    onEvent(m) {
      if (m.id !== undefined) stream.lastId = m.id;
      queue.push({ event: m.event ?? 'message', id: m.id, data: JSON.parse(m.data) as never });
      wake?.();
    },
  });
  const body = res.body as ReadableStream<Uint8Array>;
  (stream as { ended: Promise<void> }).ended = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of body) parser.feed(decoder.decode(chunk, { stream: true }));
    } catch {
      // Aborted by close().
    }
  })();
  return stream;
}
