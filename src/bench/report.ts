// The shape of report.json: the machine, the systems measured and every scenario under its name.
// Modes are keyed `queue` / `sync` (Redis appendfsync everysec); the appendfsync-always pass sits
// under `appendfsync_always`.
import type { ConcurrencyLevel } from './scenarios/concurrency.js';
import type { BurstResult } from './scenarios/burst.js';
import type { EndToEndResult } from './scenarios/end-to-end.js';
import type { EngineResult } from './scenarios/engine.js';
import type { GeneratorLevel } from './scenarios/generator.js';
import type { SequentialResult } from './scenarios/sequential.js';
import type { WriterResult } from './scenarios/writer.js';
import type { Machine } from './machine.js';

/** The seed report's own figures, for the comparison. */
export const SEED_REPORT = {
  queue_orders_per_sec: 920,
  sync_orders_per_sec: 449,
  improvement: 2.05,
};

export interface ModePair<T> {
  queue?: T;
  sync?: T;
  /** queue ÷ sync orders/s, when both ran. */
  improvement?: number;
}

export interface SequentialScenario extends ModePair<SequentialResult> {
  appendfsync_always?: ModePair<SequentialResult>;
}

export interface ConcurrencyScenario extends ModePair<{ levels: ConcurrencyLevel[] }> {
  appendfsync_always?: ModePair<{ levels: ConcurrencyLevel[] }>;
}

export interface SystemInfo {
  name: string;
  mode: string;
  appendfsync: string;
  url: string;
  settings: Record<string, string>;
  /** Did the pipeline drain between scenarios every time? */
  always_drained: boolean;
  /** BUY LIMIT orders rested far below the market before the scenarios (`--resting`). */
  resting_book: number;
}

export interface BenchReport {
  machine: Machine;
  started_at: string;
  finished_at: string;
  quick: boolean;
  systems: SystemInfo[];
  seed_report: typeof SEED_REPORT;
  scenarios: {
    generator?: { levels: GeneratorLevel[] };
    seed?: SequentialScenario;
    sequential?: SequentialScenario;
    concurrency?: ConcurrencyScenario;
    burst?: ModePair<BurstResult>;
    'end-to-end'?: ModePair<EndToEndResult>;
    writer?: { default_batch?: WriterResult; large_batch?: WriterResult };
    engine?: EngineResult | { skipped: string };
  };
}

/** queue ÷ sync, to two decimals. */
export function improvement(
  queue: { orders_per_sec: number } | undefined,
  sync: { orders_per_sec: number } | undefined,
): number | undefined {
  if (queue === undefined || sync === undefined || sync.orders_per_sec === 0) return undefined;
  return Number((queue.orders_per_sec / sync.orders_per_sec).toFixed(2));
}
