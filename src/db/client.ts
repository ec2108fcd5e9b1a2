// The PostgreSQL client: postgres.js (v4, which turns Nagle's algorithm off on its sockets: small
// batched writes otherwise wait ~40 ms for a delayed ACK; see ../shared/measured-here.md). NUMERIC
// comes back as a decimal string, never a float. v4 rather than v3: 3.4.x writes to a closed
// socket from a timer when PostgreSQL ends a connection in the middle of a transaction, an
// exception nothing can catch, which ended the process (test/writer/recovery.test.ts).
import postgres from 'postgres';

export type Sql = postgres.Sql;

/** A client for `url`; `max` connections in its pool. */
export function connect(url: string, options: { max?: number; onnotice?: boolean } = {}): Sql {
  return postgres(url, {
    max: options.max ?? 4,
    idle_timeout: 0,
    connect_timeout: 5,
    // Reconnect within about a second of PostgreSQL's return: the default backoff grows to 20 s,
    // which after a 30 s outage left the writer and every query waiting that much longer.
    backoff: (attempt: number) => (0.5 + Math.random() / 2) * Math.min(0.05 * 2 ** attempt, 1),
    onnotice: options.onnotice === true ? undefined : () => {},
  });
}

/** Anything that runs queries: the pool, a transaction, a reserved connection. */
export type Queryable = postgres.ISql;
