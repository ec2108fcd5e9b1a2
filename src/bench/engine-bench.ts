// `npm run bench:engine [-- --json] [-- --quick]`: the matching core alone, in one process.
// Each run generates its workload first (engine-workload.ts), builds the books, warms up, takes a
// snapshot, then plays the measured commands twice from that snapshot: once untimed for
// commands/s, once timing every command for the latency percentiles (the timer costs ~50 ns a
// command, which would otherwise be counted as engine time).

import { cpus, totalmem } from 'node:os';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { EventBuffer } from '../engine/event-buffer.js';
import { MatchingEngine } from '../engine/matching-engine.js';
import { measureNodejsOrderBook } from './compare-nodejs-order-book.js';
import type { CompareResult } from './compare-nodejs-order-book.js';
import { blankCommand, generateWorkload } from './engine-workload.js';
import type { CommandColumns, Workload, WorkloadSpec } from './engine-workload.js';

interface RunResult {
  commands_per_sec: number;
  p50_us: number;
  p99_us: number;
  p999_us: number;
  max_us: number;
  bytes_per_resting_order: number;
  resting_orders: number;
  events: number;
  heap_used_mb: number;
  measured_commands: number;
  /** Time spent in garbage collection during the untimed measured pass. */
  gc_ms: number;
  gc_pauses: number;
}

const gc = (globalThis as { gc?: () => void }).gc;

function heapUsed(): number {
  gc?.();
  return process.memoryUsage().heapUsed;
}

/** Applies commands [0, n) of `cols` with sequences after `seq`; returns the events emitted. */
function play(engine: MatchingEngine, cols: CommandColumns, seq: number): number {
  const cmd = blankCommand();
  const out = new EventBuffer();
  let events = 0;
  for (let i = 0; i < cols.length; i++) {
    cols.load(i, seq + i + 1, cmd);
    engine.apply(cmd, out);
    events += out.length;
    out.clear();
  }
  return events;
}

/** Same as `play`, timing each command into `samples` (nanoseconds). */
function playTimed(
  engine: MatchingEngine,
  cols: CommandColumns,
  seq: number,
  samples: Float64Array,
): void {
  const cmd = blankCommand();
  const out = new EventBuffer();
  for (let i = 0; i < cols.length; i++) {
    cols.load(i, seq + i + 1, cmd);
    const t0 = performance.now();
    engine.apply(cmd, out);
    samples[i] = (performance.now() - t0) * 1e6;
    out.clear();
  }
}

function percentile(sorted: Float64Array, p: number): number {
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)] as number;
}

const round = (n: number, digits = 3): number => Number(n.toFixed(digits));

async function runOne(w: Workload): Promise<RunResult> {
  const before = heapUsed();
  const engine = new MatchingEngine();
  for (const s of w.symbols) engine.listInstrument(s);
  play(engine, w.prefill, 0);
  const resting = engine.restingCount;
  const bytesPerOrder = (heapUsed() - before) / resting;

  let seq = w.prefill.length;
  play(engine, w.warmup, seq);
  seq += w.warmup.length;
  const snap = engine.snapshot();

  let gcMs = 0;
  let gcCount = 0;
  const gcWatch = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcMs += e.duration;
      gcCount++;
    }
  });
  // Start from a collected heap, so that no collection the set-up caused lands in the measurement.
  gc?.();
  gcWatch.observe({ entryTypes: ['gc'] });
  const t0 = performance.now();
  const events = play(engine, w.measured, seq);
  const seconds = (performance.now() - t0) / 1000;
  await new Promise((resolve) => setImmediate(resolve));
  gcWatch.disconnect();
  const heap = process.memoryUsage().heapUsed;

  const timed = MatchingEngine.restore(snap);
  const samples = new Float64Array(w.measured.length);
  gc?.();
  playTimed(timed, w.measured, seq, samples);
  samples.sort();
  return {
    commands_per_sec: Math.round(w.measured.length / seconds),
    p50_us: round(percentile(samples, 50) / 1000),
    p99_us: round(percentile(samples, 99) / 1000),
    p999_us: round(percentile(samples, 99.9) / 1000),
    max_us: round((samples[samples.length - 1] as number) / 1000),
    bytes_per_resting_order: Math.round(bytesPerOrder),
    resting_orders: resting,
    events,
    heap_used_mb: round(heap / 2 ** 20, 1),
    measured_commands: w.measured.length,
    gc_ms: Math.round(gcMs),
    gc_pauses: gcCount,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      seed: { type: 'string', default: '42' },
      only: { type: 'string' },
      compare: { type: 'boolean', default: false },
    },
  });
  const quick = values.quick === true;
  const seed = Number(values.seed);
  const specs: Record<'steady' | 'deep', WorkloadSpec> = {
    steady: {
      symbols: 10,
      target: 1_000,
      warmup: quick ? 20_000 : 200_000,
      measured: quick ? 50_000 : 1_000_000,
      seed,
    },
    deep: {
      symbols: 10,
      target: quick ? 5_000 : 100_000,
      warmup: quick ? 20_000 : 200_000,
      measured: quick ? 50_000 : 1_000_000,
      seed: seed + 1,
    },
  };
  const log = (line: string): void => {
    if (values.json !== true) console.log(line);
  };
  log(`matchbox engine benchmark — ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores,`);
  log(
    `${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}${gc ? '' : ' (no --expose-gc: heap figures are rough)'}`,
  );
  const results: Record<string, RunResult> = {};
  for (const [name, spec] of Object.entries(specs)) {
    if (values.only !== undefined && values.only !== name) continue;
    log(
      `\n${name}: ${spec.symbols} symbols × ${spec.target} resting, ${spec.warmup} warm-up, ${spec.measured} measured — generating…`,
    );
    const workload = generateWorkload(spec);
    const r: RunResult & { nodejs_order_book?: CompareResult; speedup?: number } =
      await runOne(workload);
    results[name] = r;
    log(`  ${(r.commands_per_sec / 1e6).toFixed(2)} M commands/s`);
    log(
      `  latency per command: p50 ${r.p50_us} µs, p99 ${r.p99_us} µs, p99.9 ${r.p999_us} µs, max ${r.max_us} µs`,
    );
    log(
      `  ${r.resting_orders} resting orders, ${r.bytes_per_resting_order} bytes each; heap ${r.heap_used_mb} MiB; ${r.events} events`,
    );
    log(`  garbage collection during the measured pass: ${r.gc_pauses} pauses, ${r.gc_ms} ms`);
    if (values.compare === true) {
      const cap = name === 'deep' ? 20_000 : 200_000;
      const other = measureNodejsOrderBook(workload, quick ? Math.min(cap, 5_000) : cap);
      r.nodejs_order_book = other;
      r.speedup = round(r.commands_per_sec / other.commands_per_sec, 1);
      log(
        `  nodejs-order-book on the same mix: ${(other.commands_per_sec / 1e6).toFixed(3)} M commands/s (${other.measured_commands} commands) — matchbox ${r.speedup}x`,
      );
    }
  }
  if (values.json === true) {
    const machine = {
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      node: process.version,
    };
    console.log(JSON.stringify({ machine, ...results }));
  }
}

await main();
