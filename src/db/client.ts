// The PostgreSQL client: postgres.js over sockets with Nagle's algorithm off (small batched writes
// otherwise wait ~40 ms for a delayed ACK; see ../shared/measured-here.md). NUMERIC comes back as
// a decimal string, never a float.
import { Socket } from 'node:net';
import postgres from 'postgres';

export type Sql = postgres.Sql;

/** A client for `url`; `max` connections in its pool. */
export function connect(url: string, options: { max?: number; onnotice?: boolean } = {}): Sql {
  const { hostname, port } = new URL(url);
  // postgres.js accepts a `socket` factory (a connected socket) but does not declare it.
  const noDelaySocket = {
    socket: () =>
      new Promise<Socket>((resolve, reject) => {
        const socket = new Socket();
        socket.setNoDelay(true);
        socket.once('error', reject);
        socket.connect(
          Number(port || 5432),
          hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
          () => {
            socket.off('error', reject);
            resolve(socket);
          },
        );
      }),
  };
  return postgres(url, {
    max: options.max ?? 4,
    idle_timeout: 0,
    connect_timeout: 5,
    onnotice: options.onnotice === true ? undefined : () => {},
    ...noDelaySocket,
  });
}
