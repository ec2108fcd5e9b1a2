// Shared by the engine-service and dispatcher tests: a quiet logger, free ports, waiting, and the
// engine service as a real child process (`node dist/src/engine-service/main.js`).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { EngineClient } from '../../src/engine-service/client.js';

export const quietLogger = (): Logger => pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

/** A TCP port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address !== null
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true; throws after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const MAIN = fileURLToPath(new URL('../../src/engine-service/main.js', import.meta.url));

export interface EngineProcessOptions {
  databaseUrl: string;
  port: number;
  snapshotEvery: number;
  snapshotIntervalMs?: number;
}

/** Spawns the engine process and resolves once it answers LastApplied. */
export async function spawnEngine(options: EngineProcessOptions): Promise<ChildProcess> {
  const child = spawn(process.execPath, [MAIN], {
    env: {
      ...process.env,
      DATABASE_URL: options.databaseUrl,
      ENGINE_ADDRESS: `127.0.0.1:${options.port}`,
      SHARD: '0',
      METRICS_PORT: '0',
      ENGINE_SNAPSHOT_EVERY: String(options.snapshotEvery),
      ENGINE_SNAPSHOT_INTERVAL_MS: String(options.snapshotIntervalMs ?? 60_000),
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const probe = new EngineClient(`127.0.0.1:${options.port}`, 0, { deadlineMs: 500 });
  try {
    await waitFor('the engine process to listen', async () => {
      if (child.exitCode !== null) throw new Error(`engine exited with ${child.exitCode}`);
      return probe.lastApplied().then(
        () => true,
        () => false,
      );
    });
  } finally {
    probe.close();
  }
  return child;
}

/** Resolves when the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}
