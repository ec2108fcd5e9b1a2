// The `matchbox` command as a user runs it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freshDatabase } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';

const bin = fileURLToPath(new URL('../../../bin/matchbox.js', import.meta.url));
const run = (args: string[], env: Record<string, string> = {}) =>
  promisify(execFile)(process.execPath, [bin, ...args], { env: { ...process.env, ...env } });

describe('matchbox CLI', () => {
  let db: TestDatabase;
  before(async () => {
    db = await freshDatabase();
  });
  after(() => db.drop());

  it('--help lists every command', async () => {
    const { stdout } = await run(['--help']);
    for (const command of [
      'start',
      'engine',
      'gateway',
      'dispatcher',
      'writer',
      'users create',
      'migrate',
    ]) {
      assert.match(stdout, new RegExp(`^  ${command}`, 'm'), command);
    }
  });

  it('migrate and users create work against a database', async () => {
    assert.match((await run(['migrate'], { DATABASE_URL: db.url })).stdout, /up to date/);
    const { stdout } = await run(['users', 'create', 'carol'], { DATABASE_URL: db.url });
    const user = JSON.parse(stdout) as { id: string; name: string; api_key: string };
    assert.equal(user.name, 'carol');
    assert.match(user.api_key, /^mbx_/);
    const rows = await db.sql`SELECT name FROM users WHERE id = ${user.id}`;
    assert.equal(rows.length, 1);
  });

  it('exits non-zero with a line naming a bad setting', async () => {
    await assert.rejects(
      run(['gateway'], { PORT: 'eighty' }),
      (err: { code: number; stderr: string }) => {
        assert.equal(err.code, 2);
        assert.match(err.stderr, /^matchbox: PORT="eighty" is not valid/m);
        return true;
      },
    );
  });
});
