// Latency samples of one measured phase: a preallocated array of nanoseconds (no allocation per
// request), summarised once at the end into percentiles and a log-scale histogram for the charts.

export interface LatencySummary {
  count: number;
  mean_ms: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
}

/** One bucket of a log-scale histogram: samples with `lo_ms` ≤ latency < `hi_ms`. */
export interface HistogramBucket {
  lo_ms: number;
  hi_ms: number;
  count: number;
}

const round = (n: number, digits = 3): number => Number(n.toFixed(digits));

export class Samples {
  private readonly ns: Float64Array;
  private n = 0;
  /** Samples beyond the capacity, counted but not kept (the capacity is sized to avoid this). */
  dropped = 0;

  constructor(capacity: number) {
    this.ns = new Float64Array(Math.max(1, capacity));
  }

  get length(): number {
    return this.n;
  }

  add(nanoseconds: number): void {
    if (this.n < this.ns.length) this.ns[this.n++] = nanoseconds;
    else this.dropped++;
  }

  /** The kept samples, sorted (a copy; the recorder stays usable). */
  sorted(): Float64Array {
    return this.ns.slice(0, this.n).sort();
  }

  summary(): LatencySummary {
    return summarise(this.sorted());
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)] as number;
}

/** Percentiles (nearest rank) of sorted nanoseconds, in milliseconds. */
export function summarise(sorted: Float64Array): LatencySummary {
  let sum = 0;
  for (let i = 0; i < sorted.length; i++) sum += sorted[i] as number;
  const ms = (ns: number): number => round(ns / 1e6);
  return {
    count: sorted.length,
    mean_ms: ms(sorted.length === 0 ? 0 : sum / sorted.length),
    p50_ms: ms(percentile(sorted, 50)),
    p90_ms: ms(percentile(sorted, 90)),
    p99_ms: ms(percentile(sorted, 99)),
    p999_ms: ms(percentile(sorted, 99.9)),
    max_ms: ms(sorted.length === 0 ? 0 : (sorted[sorted.length - 1] as number)),
  };
}

/** Four buckets per power of ten from 10 µs to 10 s: fine enough to show a distribution's shape. */
export function histogram(sorted: Float64Array): HistogramBucket[] {
  const edges: number[] = [];
  for (let e = -2; e < 4; e++) for (const m of [1, 1.8, 3.2, 5.6]) edges.push(m * 10 ** e);
  edges.push(10_000);
  const buckets: HistogramBucket[] = [];
  let i = 0;
  for (let b = 0; b + 1 < edges.length; b++) {
    const lo = edges[b] as number;
    const hi = edges[b + 1] as number;
    let count = 0;
    // Everything below the first edge falls into the first bucket, above the last into the last.
    while (i < sorted.length && ((sorted[i] as number) / 1e6 < hi || b + 2 === edges.length)) {
      count++;
      i++;
    }
    buckets.push({ lo_ms: round(lo, 4), hi_ms: round(hi, 4), count });
  }
  return buckets;
}
