// The gateway's Prometheus metrics (prom-client's default registry, with the process defaults).
import { Counter, Histogram, collectDefaultMetrics, register } from 'prom-client';

let defaultsCollected = false;

function counter(name: string, help: string, labelNames: string[]): Counter {
  return (
    (register.getSingleMetric(name) as Counter | undefined) ??
    new Counter({ name, help, labelNames })
  );
}

export class GatewayMetrics {
  readonly ordersAccepted = counter('matchbox_orders_accepted_total', 'Orders accepted (201).', [
    'mode',
  ]);
  readonly ordersRefused = counter(
    'matchbox_orders_refused_total',
    'POST /v1/orders answered with an error, by error code.',
    ['code'],
  );
  readonly clientErrors = counter('matchbox_http_client_errors_total', 'HTTP 4xx by code.', [
    'code',
  ]);
  readonly requestSeconds =
    (register.getSingleMetric('matchbox_http_request_seconds') as Histogram | undefined) ??
    new Histogram({
      name: 'matchbox_http_request_seconds',
      help: 'HTTP request latency by route.',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1],
    });

  /** The request histogram's children by method, route and status: one lookup per request. */
  private readonly requestChildren = new Map<string, Histogram.Internal<string>>();

  /** Records one answered request. */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    const key = `${method} ${status} ${route}`;
    let child = this.requestChildren.get(key);
    if (child === undefined) {
      child = this.requestSeconds.labels(method, route, String(status));
      this.requestChildren.set(key, child);
    }
    child.observe(seconds);
  }

  constructor() {
    if (!defaultsCollected) {
      collectDefaultMetrics({ prefix: 'matchbox_' });
      defaultsCollected = true;
    }
  }

  text(): Promise<string> {
    return register.metrics();
  }

  get contentType(): string {
    return register.contentType;
  }
}
