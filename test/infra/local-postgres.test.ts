import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from '../../src/db/client.js';
import { startLocalPostgres } from '../../src/infra/local-postgres.js';
import type { LocalPostgres } from '../../src/infra/local-postgres.js';
import { isAlive } from '../../src/infra/processes.js';

async function values(pg: LocalPostgres): Promise<number[]> {
  const sql = connect(pg.url, { max: 1 });
  try {
    const rows = await sql<{ v: number }[]>`SELECT v FROM kept ORDER BY v`;
    return rows.map((r) => r.v);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

async function insert(pg: LocalPostgres, v: number): Promise<void> {
  const sql = connect(pg.url, { max: 1 });
  await sql`INSERT INTO kept (v) VALUES (${v})`;
  await sql.end({ timeout: 1 });
}

describe('local PostgreSQL', () => {
  let dir = '';
  let pg: LocalPostgres;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mb-pg-'));
    pg = await startLocalPostgres({ dir: join(dir, 'pg') });
  });

  after(async () => {
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the matchbox database on 127.0.0.1 with fsync on', async () => {
    assert.match(pg.url, /^postgres:\/\/postgres@127\.0\.0\.1:[0-9]+\/matchbox$/);
    const sql = connect(pg.url, { max: 1 });
    try {
      const [row] = await sql<{ db: string; fsync: string; sync: string }[]>`
        SELECT current_database() AS db, current_setting('fsync') AS fsync,
               current_setting('synchronous_commit') AS sync`;
      assert.deepEqual(row, { db: 'matchbox', fsync: 'on', sync: 'on' });
      await sql`CREATE TABLE kept (v int NOT NULL)`;
    } finally {
      await sql.end({ timeout: 1 });
    }
    // PostgreSQL refuses to run as root: as root, the cluster belongs to another user.
    if (process.getuid?.() === 0) assert.notEqual(statSync(pg.dir).uid, 0);
  });

  it('keeps committed rows through a stop and a start, and through a SIGKILL', async () => {
    const { port } = pg;
    await insert(pg, 1);
    await pg.stop();
    assert.equal(existsSync(join(pg.dir, 'postmaster.pid')), false);
    await pg.restart();
    assert.equal(pg.port, port);
    assert.deepEqual(await values(pg), [1]);

    await insert(pg, 2);
    const crashed = pg.pid;
    pg.kill('SIGKILL');
    await pg.restart();
    assert.notEqual(pg.pid, crashed);
    assert.deepEqual(await values(pg), [1, 2]);
  });

  it('takes over a cluster left running on its folder by a killed run', async () => {
    const orphan = pg.pid;
    pg = await startLocalPostgres({ dir: pg.dir });
    assert.equal(isAlive(orphan), false);
    assert.deepEqual(await values(pg), [1, 2]);
  });
});
