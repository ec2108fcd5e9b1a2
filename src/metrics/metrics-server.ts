// The Prometheus endpoint of a process that serves no HTTP of its own (dispatcher, writer,
// engine): `GET /metrics` with prom-client's default registry, and the process defaults (event-loop
// lag, heap, GC, CPU) labelled with the process's role.
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { collectDefaultMetrics, register } from 'prom-client';

let defaultsCollected = false;

/** The process defaults, once per process, with `process="<role>"` on every series. */
export function processMetrics(role: string): void {
  if (defaultsCollected) return;
  defaultsCollected = true;
  register.setDefaultLabels({ process: role });
  collectDefaultMetrics({ prefix: 'matchbox_' });
}

/**
 * Serves the registry on host:port until `close()`. A port already taken is logged as an error
 * and the process runs on without metrics (they are not worth an outage).
 */
export async function startMetricsServer(
  host: string,
  port: number,
  role: string,
  logger: Logger,
): Promise<{ close(): Promise<void> } | undefined> {
  processMetrics(role);
  if (port === 0) return undefined;
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    register.metrics().then(
      (text) => res.writeHead(200, { 'content-type': register.contentType }).end(text),
      (err: unknown) => {
        logger.error({ err }, 'metrics collection failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
      },
    );
  });
  const listening = await new Promise<boolean>((resolve) => {
    server.once('error', (err) => {
      logger.error({ err, host, port }, 'metrics endpoint could not listen; running without it');
      resolve(false);
    });
    server.listen(port, host, () => resolve(true));
  });
  if (!listening) return undefined;
  logger.info({ url: `http://${host}:${port}/metrics` }, 'metrics endpoint listening');
  return {
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
