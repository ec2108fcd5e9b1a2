// `node dist/src/infra/with-services.js -- <command> [args…]`: runs a command (the tests) with
// REDIS_URL and DATABASE_URL set. Whichever is not given, a fresh project-local server provides,
// in `.data/test-<pid>/` (never the `.data` of `matchbox start`), removed when the command ends.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { constants } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { ServiceSetupError } from './errors.js';
import { startLocalServices } from './local-services.js';
import type { LocalServices } from './local-services.js';
import { projectRoot } from './project-root.js';
import { removeStaleTestDirs } from './stale-test-dirs.js';

/** A URL without its password, for printing. */
function shown(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

const given = (name: string) => (process.env[name] ?? '') !== '';

async function main(): Promise<number> {
  const dash = process.argv.indexOf('--');
  const command = process.argv.slice(dash === -1 ? 2 : dash + 1);
  if (command.length === 0) {
    console.error('usage: node dist/src/infra/with-services.js -- <command> [args…]');
    return 2;
  }
  const needRedis = !given('REDIS_URL');
  const needPostgres = !given('DATABASE_URL');
  const root = projectRoot();
  const dataRoot = given('DATA_DIR') ? resolve(process.env.DATA_DIR ?? '') : join(root, '.data');
  const dir = join(dataRoot, `test-${process.pid}`);

  let services: LocalServices | undefined;
  const running: { child?: ChildProcess } = {};
  let interrupted: NodeJS.Signals | undefined;
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    (cleaned ??= (async () => {
      await services?.stop();
      if (services !== undefined || needRedis || needPostgres) {
        rmSync(dir, { recursive: true, force: true });
      }
    })());
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted !== undefined) {
      // A second Ctrl-C: do not wait for the command any longer.
      running.child?.kill('SIGKILL');
      void cleanup().finally(() => process.exit(128 + constants.signals[sig]));
      return;
    }
    interrupted = sig;
    running.child?.kill(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const env = { ...process.env };
  if (needRedis || needPostgres) {
    await removeStaleTestDirs(dataRoot);
    try {
      services = await startLocalServices({
        dataDir: dir,
        redis: needRedis,
        postgres: needPostgres,
      });
    } catch (err) {
      await cleanup();
      throw err;
    }
    if (services.redisUrl !== undefined) env.REDIS_URL = services.redisUrl;
    if (services.databaseUrl !== undefined) env.DATABASE_URL = services.databaseUrl;
  }
  const near = relative(process.cwd(), dir);
  const where = near !== '' && !near.startsWith('..') ? near : dir;
  const describe = (name: string, url: string, local: boolean) =>
    `${name} ${shown(url)} (${local ? `project-local, in ${where}` : 'given'})`;
  console.error(
    `matchbox: using ${describe('Redis', env.REDIS_URL ?? '', needRedis)} and ` +
      describe('PostgreSQL', env.DATABASE_URL ?? '', needPostgres),
  );
  if (interrupted !== undefined) {
    await cleanup();
    return 128 + constants.signals[interrupted];
  }

  const [program = '', ...args] = command;
  const started = spawn(program, args, { stdio: 'inherit', env });
  running.child = started;
  const code = await new Promise<number>((done) => {
    started.once('error', (err) => {
      console.error(`matchbox: cannot run ${program}: ${err.message}`);
      done(127);
    });
    started.once('exit', (exitCode, sig) =>
      done(exitCode ?? (sig === null ? 1 : 128 + constants.signals[sig])),
    );
  });
  await cleanup();
  return code;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ServiceSetupError) console.error(`matchbox: ${err.message}`);
    else console.error(err);
    process.exit(1);
  },
);
