// `npm run bench` / `matchbox bench`: the whole system under load (issue 4). Starts matchbox
// (`node dist/src/cli/main.js start`) in queue mode, then in sync mode, then both again with Redis
// `appendfsync always`, and once more with a large WRITER_BATCH_SIZE for the writer — or measures
// the one system `--url` names — and writes report.md, report.json and SVG charts to
// bench/results/<timestamp>/. Scenarios and their figures: bench/README.md.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MarketMaker, SYMBOL, createUser, restBook } from './market-maker.js';
import { SCENARIOS, USAGE, parseOptions } from './bench-options.js';
import type { Options, ScenarioName } from './bench-options.js';
import { buildCharts } from './charts.js';
import { closedLoop } from './http-load.js';
import { describeMachine } from './machine.js';
import { loadConfig } from '../config/config.js';
import { ShardPlacement } from '../queue/keys.js';
import { Probes } from './probes.js';
import { Progress } from './progress.js';
import { SEED_REPORT, improvement } from './report.js';
import type { BenchReport, ModePair, SystemInfo } from './report.js';
import { renderMarkdown } from './report-markdown.js';
import { runBurst } from './scenarios/burst.js';
import { runConcurrency } from './scenarios/concurrency.js';
import type { ConcurrencyLevel } from './scenarios/concurrency.js';
import { buyTraffic, prepare } from './scenarios/context.js';
import type { PassContext } from './scenarios/context.js';
import { runEndToEnd } from './scenarios/end-to-end.js';
import { runEngine } from './scenarios/engine.js';
import { runGenerator } from './scenarios/generator.js';
import { runSequential } from './scenarios/sequential.js';
import type { SequentialResult } from './scenarios/sequential.js';
import { runWriter } from './scenarios/writer.js';
import { givenServers, startSystem } from './system-process.js';
import type { SystemSpec, Target } from './system-process.js';

interface Pass {
  spec: SystemSpec;
  scenarios: ScenarioName[];
}

/** The systems to start, each with the scenarios it runs (filtered by --scenario later). */
function plan(o: Options): Pass[] {
  const passes: Pass[] = [
    {
      spec: { mode: 'queue', appendfsync: 'everysec' },
      scenarios: ['seed', 'sequential', 'concurrency', 'burst', 'end-to-end', 'writer', 'engine'],
    },
    {
      spec: { mode: 'sync', appendfsync: 'everysec' },
      scenarios: ['seed', 'sequential', 'concurrency'],
    },
  ];
  // `always` needs a Redis the bench starts itself; servers named by the environment are as given.
  if (o.sizes.alwaysPass && givenServers() === undefined) {
    passes.push(
      { spec: { mode: 'queue', appendfsync: 'always' }, scenarios: ['seed', 'concurrency'] },
      { spec: { mode: 'sync', appendfsync: 'always' }, scenarios: ['seed', 'concurrency'] },
    );
  }
  if (o.sizes.writerLargeBatch > 0) {
    passes.push({
      spec: {
        mode: 'queue',
        appendfsync: 'everysec',
        env: { WRITER_BATCH_SIZE: String(o.sizes.writerLargeBatch) },
      },
      scenarios: ['writer'],
    });
  }
  return passes;
}

/** The order path of a running gateway: a queue-mode 201 says PENDING, a sync-mode one does not. */
async function detectMode(ctx: PassContext): Promise<'queue' | 'sync'> {
  const res = await fetch(ctx.target.url + '/v1/orders', {
    method: 'POST',
    headers: { authorization: `Bearer ${ctx.taker.key}`, 'content-type': 'application/json' },
    body: buyTraffic(ctx).body,
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await res.json()) as { status?: string };
  return body.status === 'PENDING' ? 'queue' : 'sync';
}

/**
 * Where the systems the bench starts place its symbol: they inherit SHARDS and SHARD_PINS from
 * this environment. A bad setting there is left for the system's own start to report.
 */
function placementOf(env: NodeJS.ProcessEnv): ShardPlacement {
  try {
    const config = loadConfig(env);
    return new ShardPlacement(config.shards, config.shardPins);
  } catch {
    return new ShardPlacement(1);
  }
}

class Bench {
  readonly report: BenchReport;
  readonly samples = new Map<string, Float64Array>();
  private current: Target | undefined;

  constructor(
    private readonly o: Options,
    private readonly progress: Progress,
  ) {
    this.report = {
      machine: { cpu: '', cores: 0, ram_gib: 0, os: '', node: '', redis: '', postgres: '' },
      started_at: new Date().toISOString(),
      finished_at: '',
      quick: o.quick,
      systems: [],
      seed_report: SEED_REPORT,
      scenarios: {},
    };
  }

  private wants(s: ScenarioName): boolean {
    return this.o.scenario === undefined || this.o.scenario === s;
  }

  async run(): Promise<void> {
    if (this.wants('generator')) {
      this.progress.phase('generator: the load generator against a null server');
      this.report.scenarios.generator = await runGenerator(this.o.sizes);
    }
    if (this.o.url !== undefined) {
      const target: Target = {
        name: 'given',
        url: this.o.url,
        adminToken: this.o.adminToken as string,
        mode: 'queue',
        appendfsync: 'unknown',
        redisUrl: process.env.REDIS_URL || undefined,
        databaseUrl: process.env.DATABASE_URL || undefined,
        redisPrefix: process.env.REDIS_PREFIX || 'mb',
        pid: undefined,
        dataDir: undefined,
        env: {},
        stop: () => Promise.resolve(),
      };
      await this.pass(
        target,
        [...SCENARIOS].filter((s) => s !== 'generator' && this.wants(s)),
        true,
      );
      return;
    }
    for (const p of plan(this.o)) {
      const scenarios = p.scenarios.filter((s) => this.wants(s));
      if (scenarios.length === 0) continue;
      this.progress.phase(`starting matchbox (${p.spec.mode}, appendfsync ${p.spec.appendfsync})`);
      const target = await startSystem(p.spec, resolve('.data/bench'));
      this.current = target;
      try {
        await this.pass(target, scenarios, false);
      } finally {
        this.progress.phase(`[${target.name}] stopping`);
        this.current = undefined;
        await target.stop();
      }
    }
  }

  /** Stops the running system (Ctrl-C). */
  async abort(): Promise<void> {
    await this.current?.stop();
  }

  private async pass(target: Target, scenarios: ScenarioName[], detect: boolean): Promise<void> {
    if (this.report.machine.node === '') {
      this.report.machine = await describeMachine(target.redisUrl, target.databaseUrl);
    }
    const probes = new Probes(target, SYMBOL, placementOf(process.env));
    const info: SystemInfo = {
      name: target.name,
      mode: target.mode,
      appendfsync: target.appendfsync,
      url: target.url,
      settings: Object.fromEntries(
        Object.entries(target.env).filter(([k]) => !/TOKEN|URL/.test(k)),
      ),
      always_drained: true,
      resting_book: this.o.sizes.resting,
    };
    this.report.systems.push(info);
    try {
      const ctx: PassContext = {
        target,
        probes,
        maker: await MarketMaker.create(target),
        taker: await createUser(target, 'bench-taker'),
        sizes: this.o.sizes,
        progress: this.progress,
        samples: this.samples,
      };
      if (detect) info.mode = target.mode = await detectMode(ctx);
      if (this.o.sizes.resting > 0) {
        this.progress.phase(`[${target.name}] resting book: ${this.o.sizes.resting} orders`);
        await restBook(target, this.o.sizes.resting);
        // Accepted is not yet in the book: the engine and the writer get through them first (at
        // a thousand a second at the least).
        const drainMs = this.o.sizes.quiesceMs + this.o.sizes.resting;
        if (!(await probes.quiesce(drainMs)) && probes.redis !== undefined) {
          throw new Error(`the resting book's orders did not drain in ${drainMs / 1000} s`);
        }
      }
      // Warm-up: the JIT, the connection pools and the caches, on both modes alike.
      this.progress.phase(`[${target.name}] warm-up: ${this.o.sizes.warmup} orders`);
      // Half of it one request at a time, half from 8 clients: the JIT optimises the code each
      // scenario runs, and a sequential scenario measured cold measures the compiler.
      await prepare(ctx, this.o.sizes.warmup);
      for (const clients of [1, 8]) {
        await closedLoop(buyTraffic(ctx), {
          clients,
          count: Math.ceil(this.o.sizes.warmup / 2),
          durationMs: 60_000,
        });
      }
      for (const s of scenarios) {
        if (!(await probes.quiesce(this.o.sizes.quiesceMs)) && probes.redis !== undefined) {
          info.always_drained = false;
          this.progress.note(
            `[${target.name}] the pipeline did not drain before ${s}: ${JSON.stringify(probes.lastStuck)}`,
          );
        }
        this.progress.phase(`[${target.name}] ${s}`);
        await this.scenario(ctx, s);
      }
    } finally {
      await probes.close();
    }
  }

  /** Where a mode's result goes: `queue`/`sync`, or under `appendfsync_always`. */
  private slot<T>(
    pair: ModePair<T> & { appendfsync_always?: ModePair<T> },
    target: Target,
    value: T,
  ): void {
    const into =
      target.appendfsync === 'always' ? (pair.appendfsync_always ??= {}) : (pair as ModePair<T>);
    into[target.mode] = value;
  }

  private async scenario(ctx: PassContext, s: ScenarioName): Promise<void> {
    const sc = this.report.scenarios;
    const { target } = ctx;
    const label = `${target.name}:${s}`;
    switch (s) {
      case 'seed':
      case 'sequential': {
        const n = s === 'seed' ? this.o.sizes.seed : this.o.sizes.sequential;
        const pair = (sc[s] ??= {});
        this.slot<SequentialResult>(pair, target, await runSequential(ctx, n, label));
        pair.improvement = improvement(pair.queue, pair.sync);
        if (pair.appendfsync_always !== undefined) {
          const a = pair.appendfsync_always;
          a.improvement = improvement(a.queue, a.sync);
        }
        break;
      }
      case 'concurrency': {
        const pair = (sc.concurrency ??= {});
        this.slot<{ levels: ConcurrencyLevel[] }>(pair, target, await runConcurrency(ctx, label));
        break;
      }
      case 'burst':
        (sc.burst ??= {})[target.mode] = await runBurst(ctx);
        break;
      case 'end-to-end':
        (sc['end-to-end'] ??= {})[target.mode] = await runEndToEnd(ctx);
        break;
      case 'writer': {
        const big = target.env.WRITER_BATCH_SIZE;
        const r = await runWriter(ctx, big === undefined ? 50 : Number(big));
        (sc.writer ??= {})[big === undefined ? 'default_batch' : 'large_batch'] = r;
        break;
      }
      case 'engine':
        sc.engine =
          target.databaseUrl === undefined
            ? { skipped: 'no PostgreSQL known for the engine snapshots (set DATABASE_URL)' }
            : await runEngine(target.databaseUrl, this.o.sizes, this.progress);
        break;
      case 'generator':
        break;
    }
  }
}

function stamp(d: Date): string {
  return d
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/:/g, '-');
}

async function main(argv: string[]): Promise<number> {
  const o = parseOptions(argv);
  if (o === 'help') {
    console.log(USAGE);
    return 0;
  }
  const progress = new Progress(false);
  const bench = new Bench(o, progress);
  let interrupted = false;
  const onSignal = (): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    progress.note('interrupted: stopping the system under test…');
    void bench.abort().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  await bench.run();
  const report = bench.report;
  report.finished_at = new Date().toISOString();
  const dir = resolve(o.out, stamp(new Date(report.started_at)));
  mkdirSync(dir, { recursive: true });
  const charts = buildCharts(report, bench.samples);
  for (const [name, svg] of charts) writeFileSync(join(dir, name), svg);
  writeFileSync(join(dir, 'report.json'), JSON.stringify(report, null, 2) + '\n');
  const md = renderMarkdown(report, [...charts.keys()]);
  writeFileSync(join(dir, 'report.md'), md);
  progress.done();
  if (o.json) process.stdout.write(JSON.stringify(report) + '\n');
  else process.stdout.write(`${md}\nWritten to ${dir}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
