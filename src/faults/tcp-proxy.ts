// A loopback TCP proxy the fault suite can cut: while cut, it refuses connections and has broken
// every open one, so a server behind it is unreachable without being stopped.
import { createConnection, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';

export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private bound = 0;
  private muted = false;

  private constructor(private readonly target: { host: string; port: number }) {}

  /** Listens on a free port and forwards every connection to `target`. */
  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const proxy = new TcpProxy(target);
    proxy.bound = await proxy.listen(0);
    return proxy;
  }

  get port(): number {
    return this.bound;
  }

  private listen(port: number): Promise<number> {
    const server = createServer((client) => {
      const upstream = createConnection(this.target);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        // A broken side ends the other; the error itself is the point of a cut.
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      // The server's bytes are dropped while muted: requests arrive, their replies never do.
      upstream.on('data', (chunk: Buffer) => {
        if (!this.muted) client.write(chunk);
      });
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        const address = server.address();
        resolve(typeof address === 'object' && address !== null ? address.port : port);
      });
    });
  }

  /** Drops what the server sends (replies lost on the way) until `unmute()` or `cut()`. */
  mute(): void {
    this.muted = true;
  }

  unmute(): void {
    this.muted = false;
  }

  /** Breaks every connection and refuses new ones until `restore()`. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.muted = false;
    for (const s of this.sockets) s.destroy();
    if (server !== undefined) await new Promise<void>((r) => server.close(() => r()));
  }

  /** Accepts connections again, on the same port. */
  async restore(): Promise<void> {
    if (this.server === undefined) await this.listen(this.port);
  }

  async close(): Promise<void> {
    await this.cut();
  }
}
