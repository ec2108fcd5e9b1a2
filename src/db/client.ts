// The PostgreSQL client: postgres.js over sockets with Nagle's algorithm off (small batched writes
// otherwise wait ~40 ms for a delayed ACK; see ../shared/measured-here.md). NUMERIC comes back as
// a decimal string, never a float.
import { Socket } from 'node:net';
import postgres from 'postgres';

export type Sql = postgres.Sql;

/** A client for `url`; `max` connections in its pool. */
export function connect(url: string, options: { max?: number; onnotice?: boolean } = {}): Sql {
  const { hostname, port } = new URL(url);
  // postgres.js accepts a `socket` factory (a connected socket) but does not declare it. The
  // socket is handed over while still connecting (writes queue until it is connected): a factory
  // that rejected on a refused connection left postgres.js writing to a null socket from a
  // timer, which crashed the process while PostgreSQL was down. A refusal now reaches it as the
  // socket's 'error' event, as with its own sockets.
  const noDelaySocket = {
    socket: () => {
      const socket = new Socket();
      socket.setNoDelay(true);
      return socket.connect(Number(port || 5432), hostname.replace(/^\[|\]$/g, '') || '127.0.0.1');
    },
  };
  return postgres(url, {
    max: options.max ?? 4,
    idle_timeout: 0,
    connect_timeout: 5,
    // Reconnect within about a second of PostgreSQL's return: the default backoff grows to 20 s,
    // which after a 30 s outage left the writer and every query waiting that much longer.
    backoff: (attempt: number) => (0.5 + Math.random() / 2) * Math.min(0.05 * 2 ** attempt, 1),
    onnotice: options.onnotice === true ? undefined : () => {},
    ...noDelaySocket,
  });
}
