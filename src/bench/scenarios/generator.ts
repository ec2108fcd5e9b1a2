// generator: the load generator against a server that does nothing (null-server.ts, its own
// process), so the report can say how much of each latency and of the CPU is the generator's.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { closedLoop } from '../http-load.js';
import { MARKET_BUY } from '../market-maker.js';
import type { Sizes } from '../bench-options.js';

export interface GeneratorLevel {
  clients: number;
  requests_per_sec: number;
  success_rate: number;
  errors: number;
  p50_ms: number;
  p99_ms: number;
  p999_ms: number;
  generator_cpu_us_per_request: number;
}

const NULL_SERVER = fileURLToPath(new URL('../null-server.js', import.meta.url));

export async function runGenerator(sizes: Sizes): Promise<{ levels: GeneratorLevel[] }> {
  const child = spawn(process.execPath, [NULL_SERVER], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  try {
    const port = await new Promise<number>((done, fail) => {
      child.stdout.setEncoding('utf8').once('data', (s: string) => done(Number(s.trim())));
      child.once('exit', () => fail(new Error('the null server exited')));
    });
    const traffic = {
      url: `http://127.0.0.1:${port}`,
      path: '/v1/orders',
      apiKey: 'none',
      body: MARKET_BUY,
    };
    const levels: GeneratorLevel[] = [];
    for (const clients of [1, 64]) {
      const m = await closedLoop(traffic, {
        clients,
        count: Number.MAX_SAFE_INTEGER,
        durationMs: sizes.generatorMs,
      });
      const r = m.result;
      levels.push({
        clients,
        requests_per_sec: r.orders_per_sec,
        success_rate: r.success_rate,
        errors: r.errors,
        p50_ms: r.latency.p50_ms,
        p99_ms: r.latency.p99_ms,
        p999_ms: r.latency.p999_ms,
        generator_cpu_us_per_request: r.generator_cpu_us_per_request,
      });
    }
    return { levels };
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}
