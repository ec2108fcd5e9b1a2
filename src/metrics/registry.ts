// Metrics in prom-client's default registry, one per name per process however many components
// (gateways, shards, test systems) ask for it: the first creates it, the others share it.
import { Counter, Gauge, Histogram, register } from 'prom-client';
import type { CounterConfiguration, GaugeConfiguration, HistogramConfiguration } from 'prom-client';

function once<T>(name: string, make: () => T): T {
  return (register.getSingleMetric(name) as T | undefined) ?? make();
}

export const counter = (c: CounterConfiguration<string>): Counter =>
  once(c.name, () => new Counter(c));
export const gauge = (c: GaugeConfiguration<string>): Gauge => once(c.name, () => new Gauge(c));
export const histogram = (c: HistogramConfiguration<string>): Histogram =>
  once(c.name, () => new Histogram(c));
