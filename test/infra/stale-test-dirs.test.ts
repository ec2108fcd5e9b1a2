import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { startLocalRedis } from '../../src/infra/local-redis.js';
import { removeStaleTestDirs } from '../../src/infra/stale-test-dirs.js';

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid ?? 0;
}

it('ends the servers of a killed test run and removes its folder, and nothing else', async () => {
  const dataRoot = mkdtempSync(join(tmpdir(), 'mb-stale-'));
  try {
    const stale = join(dataRoot, `test-${await deadPid()}`);
    const live = join(dataRoot, `test-${process.pid}`);
    const other = join(dataRoot, 'redis');
    mkdirSync(live);
    mkdirSync(other);
    const orphan = await startLocalRedis({ dir: join(stale, 'redis') });
    await removeStaleTestDirs(dataRoot);
    await orphan.exited();
    assert.equal(existsSync(stale), false);
    assert.equal(existsSync(live), true);
    assert.equal(existsSync(other), true);
  } finally {
    rmSync(dataRoot, { recursive: true, force: true });
  }
});
