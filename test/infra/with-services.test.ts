import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const withServices = fileURLToPath(new URL('../../src/infra/with-services.js', import.meta.url));
const probe = fileURLToPath(new URL('./services-probe.js', import.meta.url));

interface Run {
  pid: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs with-services with `env` (REDIS_URL and DATABASE_URL removed unless given there). */
function runWithServices(
  env: Record<string, string>,
  command: string[],
  onStdout?: (text: string, pid: number) => void,
): Promise<Run> {
  const inherited = { ...process.env };
  delete inherited.REDIS_URL;
  delete inherited.DATABASE_URL;
  const child = spawn(process.execPath, [withServices, '--', ...command], {
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    stdout += s;
    onStdout?.(stdout, child.pid ?? 0);
  });
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  return new Promise((resolve) =>
    child.once('close', (code) => resolve({ pid: child.pid ?? 0, code, stdout, stderr })),
  );
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

describe('with-services', () => {
  let dataDir = '';
  before(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'mb-with-'));
  });
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  it('gives the command a fresh Redis and PostgreSQL, and removes them afterwards', async () => {
    const run = await runWithServices({ DATA_DIR: dataDir, MATCHBOX_PROBE: '1' }, [
      process.execPath,
      probe,
    ]);
    assert.equal(run.code, 0, run.stderr);
    const seen = JSON.parse(run.stdout) as Record<string, string>;
    assert.match(seen.redisUrl ?? '', /^redis:\/\/127\.0\.0\.1:[0-9]+$/);
    assert.match(seen.databaseUrl ?? '', /^postgres:\/\/postgres@127\.0\.0\.1:[0-9]+\/matchbox$/);
    assert.equal(seen.ping, 'PONG');
    assert.equal(seen.db, 'matchbox');
    assert.equal(run.stderr.match(/^matchbox: using /gm)?.length, 1, run.stderr);
    assert.equal(existsSync(join(dataDir, `test-${run.pid}`)), false);
    assert.equal(await refused(Number(new URL(seen.redisUrl ?? '').port)), true);
    assert.equal(await refused(Number(new URL(seen.databaseUrl ?? '').port)), true);
  });

  it('uses the URLs it is given, starts nothing, and passes the exit code on', async () => {
    const given = {
      REDIS_URL: 'redis://127.0.0.1:1',
      DATABASE_URL: 'postgres://someone:secret@127.0.0.1:1/elsewhere',
      DATA_DIR: dataDir,
    };
    const print = 'console.log(process.env.REDIS_URL, process.env.DATABASE_URL); process.exit(3)';
    const run = await runWithServices(given, [process.execPath, '-e', print]);
    assert.equal(run.code, 3);
    assert.equal(run.stdout.trim(), `${given.REDIS_URL} ${given.DATABASE_URL}`);
    assert.match(run.stderr, /given/);
    assert.doesNotMatch(run.stderr, /secret/);
    assert.deepEqual(readdirSync(dataDir), []);
  });

  it('stops the servers and removes their folder on SIGTERM', async () => {
    const wait = 'console.log(process.env.REDIS_URL); setInterval(() => {}, 1000)';
    let signalled = false;
    const run = await runWithServices(
      { DATA_DIR: dataDir },
      [process.execPath, '-e', wait],
      (stdout, pid) => {
        if (!signalled && stdout.includes('\n')) {
          signalled = true;
          process.kill(pid, 'SIGTERM');
        }
      },
    );
    assert.equal(run.code, 143, run.stderr);
    assert.equal(existsSync(join(dataDir, `test-${run.pid}`)), false);
    assert.equal(await refused(Number(new URL(run.stdout.trim()).port)), true);
  });
});
