// `npm test` keeps its servers in `.data/test-<pid>/` and removes it at the end. A run that was
// killed (SIGKILL, a closed terminal) leaves the folder and its servers running; the next run ends
// those servers and removes the folders whose owner is gone, so they do not pile up.
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { isAlive, isRunning, readPidFile, terminate } from './processes.js';

export async function removeStaleTestDirs(dataRoot: string): Promise<void> {
  let names: string[];
  try {
    names = readdirSync(dataRoot);
  } catch {
    return;
  }
  for (const name of names) {
    const match = /^test-([0-9]+)$/.exec(name);
    if (match === null || isAlive(Number(match[1]))) continue;
    const dir = join(dataRoot, name);
    const redis = readPidFile(join(dir, 'redis', 'redis.pid'));
    if (redis !== undefined && isRunning(redis, 'redis-server')) {
      await terminate(redis, 'SIGKILL', 5_000);
    }
    // SIGQUIT: PostgreSQL's immediate shutdown; test data needs no checkpoint.
    const postgres = readPidFile(join(dir, 'pg', 'postmaster.pid'));
    if (postgres !== undefined && isRunning(postgres, 'postgres')) {
      await terminate(postgres, 'SIGQUIT', 5_000);
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
