// engine: commands/s through the engine's gRPC service, driven as the dispatcher drives it — one
// EngineClient session, batches of commands, a few batches in flight — against an engine process
// of its own (its own database for snapshots, so the system's engine is untouched), next to the
// same commands applied in this process to a bare MatchingEngine (engine-bench's figure).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect } from '../../db/client.js';
import { migrate } from '../../db/migrate.js';
import { EventBuffer } from '../../engine/event-buffer.js';
import { MatchingEngine } from '../../engine/matching-engine.js';
import type { Command } from '../../engine/types.js';
import { EngineClient } from '../../engine-service/client.js';
import type { EngineSession } from '../../engine-service/client.js';
import { freePort } from '../../infra/free-port.js';
import type { EngineRun, Sizes } from '../bench-options.js';
import { blankCommand, generateWorkload } from '../engine-workload.js';
import type { CommandColumns } from '../engine-workload.js';
import { Samples } from '../latency.js';
import type { Progress } from '../progress.js';
import { freshDatabase } from '../system-process.js';

export interface EngineRunResult {
  batch: number;
  window: number;
  commands: number;
  commands_per_sec: number;
  /** Round trip of one batch (written → reports back), ms. */
  batch_p50_ms: number;
  batch_p99_ms: number;
}

export interface EngineResult {
  resting_orders: number;
  grpc: EngineRunResult[];
  /** The same measured commands applied in-process, untimed per command. */
  in_process_commands_per_sec: number;
}

const ENGINE_MAIN = fileURLToPath(new URL('../../engine-service/main.js', import.meta.url));

function materialise(cols: CommandColumns, from: number, to: number, seq0: number): Command[] {
  const out: Command[] = [];
  for (let i = from; i < to; i++) {
    const cmd = blankCommand();
    cols.load(i, seq0 + i + 1, cmd);
    out.push(cmd);
  }
  return out;
}

/** Sends commands [0, n) of `cols` in batches of `batch`, `window` in flight; batch latencies. */
async function drive(
  session: EngineSession,
  cols: CommandColumns,
  offset: number,
  n: number,
  seq0: number,
  run: Pick<EngineRun, 'batch' | 'window'>,
  samples?: Samples,
): Promise<void> {
  let next = offset;
  const end = offset + n;
  const lane = async (): Promise<void> => {
    while (next < end) {
      const from = next;
      const to = Math.min(end, from + run.batch);
      next = to;
      const commands = materialise(cols, from, to, seq0);
      const t0 = process.hrtime.bigint();
      await session.send(commands);
      samples?.add(Number(process.hrtime.bigint() - t0));
    }
  };
  await Promise.all(Array.from({ length: run.window }, lane));
}

function inProcess(
  prefill: CommandColumns,
  warmup: CommandColumns,
  measured: CommandColumns,
): number {
  const engine = new MatchingEngine();
  for (const s of prefill.symbolNames) engine.listInstrument(s);
  const out = new EventBuffer();
  const cmd = blankCommand();
  let seq = 0;
  for (const cols of [prefill, warmup]) {
    for (let i = 0; i < cols.length; i++) {
      cols.load(i, ++seq, cmd);
      engine.apply(cmd, out);
      out.clear();
    }
  }
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < measured.length; i++) {
    measured.load(i, ++seq, cmd);
    engine.apply(cmd, out);
    out.clear();
  }
  return Math.round(measured.length / (Number(process.hrtime.bigint() - t0) / 1e9));
}

export async function runEngine(
  databaseUrl: string,
  sizes: Sizes,
  progress: Progress,
): Promise<EngineResult> {
  const measuredTotal = sizes.engineRuns.reduce((s, r) => s + r.commands, 0);
  const w = generateWorkload({
    symbols: 10,
    target: sizes.engineResting,
    warmup: sizes.engineWarmup,
    measured: measuredTotal,
    seed: 4,
  });
  const db = await freshDatabase(databaseUrl, 'mbbench_engine');
  const sql = connect(db.url, { max: 1 });
  await migrate(sql);
  await sql.end();
  const port = await freePort();
  const child = spawn(process.execPath, [ENGINE_MAIN], {
    env: {
      ...process.env,
      DATABASE_URL: db.url,
      ENGINE_ADDRESS: `127.0.0.1:${port}`,
      SHARD: '0',
      SHARDS: '1',
      SHARD_PINS: '',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const client = new EngineClient(`127.0.0.1:${port}`, 0, { deadlineMs: 30_000 });
  let session: EngineSession | undefined;
  try {
    await client.waitReady();
    // listInstrument happens on a symbol's first PLACE, as the service does it.
    session = client.session();
    await session.hello(0);
    progress.update('filling the books');
    await drive(session, w.prefill, 0, w.prefill.length, 0, { batch: 1000, window: 4 });
    let seq = w.prefill.length;
    await drive(session, w.warmup, 0, w.warmup.length, seq, { batch: 1000, window: 4 });
    seq += w.warmup.length;
    const grpc: EngineRunResult[] = [];
    let offset = 0;
    for (const run of sizes.engineRuns) {
      progress.update(`batches of ${run.batch}, ${run.window} in flight`);
      const samples = new Samples(Math.ceil(run.commands / run.batch));
      const t0 = process.hrtime.bigint();
      await drive(session, w.measured, offset, run.commands, seq, run, samples);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      offset += run.commands;
      const s = samples.summary();
      grpc.push({
        batch: run.batch,
        window: run.window,
        commands: run.commands,
        commands_per_sec: Math.round(run.commands / seconds),
        batch_p50_ms: s.p50_ms,
        batch_p99_ms: s.p99_ms,
      });
    }
    progress.update('the same commands in-process');
    return {
      resting_orders: sizes.engineResting * 10,
      grpc,
      in_process_commands_per_sec: inProcess(w.prefill, w.warmup, w.measured),
    };
  } finally {
    session?.close();
    client.close();
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    await db.drop().catch(() => undefined);
  }
}
