// The bench's command line and the size of every scenario, full or --quick (CI: tiny counts,
// 1–2 s phases, no appendfsync-always pass, whole run well under a minute).
import { parseArgs } from 'node:util';

export const SCENARIOS = [
  'generator',
  'seed',
  'sequential',
  'concurrency',
  'burst',
  'end-to-end',
  'writer',
  'engine',
] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export interface EngineRun {
  batch: number;
  /** Batches sent before waiting for the first reply. */
  window: number;
  commands: number;
}

export interface Sizes {
  warmup: number;
  seed: number;
  sequential: number;
  concurrency: number[];
  concurrencyMs: number;
  burst: number;
  e2eRate: number;
  e2eMs: number;
  writerClients: number;
  writerMs: number;
  /** How long orders queue while the writer is stopped, before it drains them alone. */
  writerHeldMs: number;
  /** WRITER_BATCH_SIZE of the second writer pass; 0: no second pass. */
  writerLargeBatch: number;
  engineResting: number;
  engineWarmup: number;
  engineRuns: EngineRun[];
  generatorMs: number;
  /** Repeat seed and concurrency with Redis `appendfsync always`. */
  alwaysPass: boolean;
  /** Longest wait for the pipeline to drain between scenarios. */
  quiesceMs: number;
  /** BUY LIMIT orders rested far below the market before the scenarios: a deep book. */
  resting: number;
}

export interface Options {
  quick: boolean;
  json: boolean;
  scenario: ScenarioName | undefined;
  url: string | undefined;
  adminToken: string | undefined;
  out: string;
  sizes: Sizes;
}

const FULL: Sizes = {
  warmup: 2_000,
  seed: 100,
  sequential: 10_000,
  concurrency: [1, 8, 64, 256],
  concurrencyMs: 10_000,
  burst: 10_000,
  e2eRate: 5_000,
  e2eMs: 60_000,
  writerClients: 64,
  writerMs: 15_000,
  writerHeldMs: 10_000,
  writerLargeBatch: 5_000,
  engineResting: 1_000,
  engineWarmup: 100_000,
  engineRuns: [
    { batch: 1, window: 1, commands: 20_000 },
    { batch: 100, window: 4, commands: 300_000 },
    { batch: 1_000, window: 4, commands: 1_000_000 },
  ],
  generatorMs: 3_000,
  alwaysPass: true,
  quiesceMs: 120_000,
  resting: 0,
};

const QUICK: Sizes = {
  warmup: 100,
  seed: 100,
  sequential: 300,
  concurrency: [1, 8, 64],
  concurrencyMs: 1_000,
  burst: 300,
  e2eRate: 300,
  e2eMs: 1_500,
  writerClients: 16,
  writerMs: 1_000,
  writerHeldMs: 1_000,
  writerLargeBatch: 0,
  engineResting: 100,
  engineWarmup: 2_000,
  engineRuns: [
    { batch: 1, window: 1, commands: 500 },
    { batch: 1_000, window: 4, commands: 20_000 },
  ],
  generatorMs: 500,
  alwaysPass: false,
  quiesceMs: 30_000,
  resting: 0,
};

export const USAGE = `matchbox bench — the whole system under load (see bench/README.md)

Usage: npm run bench [-- options]   or   matchbox bench [options]

  --scenario NAME     run one scenario: ${SCENARIOS.join(', ')}
  --quick             tiny counts and short phases (CI)
  --json              print the report's JSON alone on stdout
  --url URL           measure a running gateway (127.0.0.1 only) instead of starting systems;
                      admin token from --admin-token or MATCHBOX_ADMIN_TOKEN
  --admin-token T     admin token of --url's system
  --rate N            the end-to-end scenario's offered orders/s (default 5000; --quick 300)
  --resting N         first rest N BUY LIMIT orders far below the market (default 0): a deep
                      book, as a venue's is, that the engine holds and snapshots throughout
  --out DIR           results folder (default bench/results)
  -h, --help          this help`;

/** Parses argv; throws an Error whose message is for the user. */
export function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenario: { type: 'string' },
      quick: { type: 'boolean' },
      json: { type: 'boolean' },
      url: { type: 'string' },
      'admin-token': { type: 'string' },
      rate: { type: 'string' },
      resting: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) return 'help';
  const scenario = values.scenario;
  if (scenario !== undefined && !(SCENARIOS as readonly string[]).includes(scenario)) {
    throw new Error(`unknown scenario ${scenario}; one of ${SCENARIOS.join(', ')}`);
  }
  const adminToken = values['admin-token'] ?? process.env.MATCHBOX_ADMIN_TOKEN;
  if (values.url !== undefined && adminToken === undefined) {
    throw new Error('--url needs the admin token: --admin-token or MATCHBOX_ADMIN_TOKEN');
  }
  const quick = values.quick === true;
  const sizes = quick ? QUICK : FULL;
  const rate = values.rate === undefined ? sizes.e2eRate : Number(values.rate);
  if (!Number.isInteger(rate) || rate < 1 || rate > 1_000_000) {
    throw new Error(`--rate must be an integer 1–1000000, not ${values.rate}`);
  }
  const resting = values.resting === undefined ? 0 : Number(values.resting);
  if (!/^\d+$/.test(values.resting ?? '0') || resting > 10_000_000) {
    throw new Error(`--resting must be an integer 0–10000000, not ${values.resting}`);
  }
  return {
    quick,
    json: values.json === true,
    scenario: scenario as ScenarioName | undefined,
    url: values.url,
    adminToken,
    out: values.out ?? 'bench/results',
    sizes: { ...sizes, e2eRate: rate, resting },
  };
}
