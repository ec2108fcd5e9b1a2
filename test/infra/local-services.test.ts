import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { Redis } from 'ioredis';
import { connect } from '../../src/db/client.js';
import { ServiceSetupError } from '../../src/infra/errors.js';
import { startLocalServices } from '../../src/infra/local-services.js';

it('keeps both servers’ data between runs, and lets one run at a time use the folder', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mb-services-'));
  try {
    const first = await startLocalServices({ dataDir, redis: true, postgres: true });
    try {
      await assert.rejects(
        startLocalServices({ dataDir, redis: true, postgres: false }),
        (err) => err instanceof ServiceSetupError && /in use/.test(err.message),
      );
      const redis = new Redis(first.redisUrl ?? '', { maxRetriesPerRequest: 0 });
      await redis.set('kept', 'yes');
      redis.disconnect();
      const sql = connect(first.databaseUrl ?? '', { max: 1 });
      await sql`CREATE TABLE kept AS SELECT 'yes' AS v`;
      await sql.end({ timeout: 1 });
    } finally {
      await first.stop();
    }

    const second = await startLocalServices({ dataDir, redis: true, postgres: true });
    try {
      const redis = new Redis(second.redisUrl ?? '', { maxRetriesPerRequest: 0 });
      assert.equal(await redis.get('kept'), 'yes');
      redis.disconnect();
      const sql = connect(second.databaseUrl ?? '', { max: 1 });
      const rows = await sql<{ v: string }[]>`SELECT v FROM kept`;
      assert.deepEqual(
        rows.map((r) => r.v),
        ['yes'],
      );
      await sql.end({ timeout: 1 });
    } finally {
      await second.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

it('starts only what is asked for', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mb-services-'));
  try {
    const services = await startLocalServices({ dataDir, redis: true, postgres: false });
    assert.equal(services.databaseUrl, undefined);
    assert.equal(services.postgres, undefined);
    assert.match(services.redisUrl ?? '', /^redis:/);
    await services.stop();
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
