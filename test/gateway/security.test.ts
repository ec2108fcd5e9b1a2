// The security properties of issue 5 that the error and fuzz tests do not already show: keys at
// rest, the admin token's comparison, and loopback-only defaults.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/config.js';
import { isAdminToken } from '../../src/gateway/auth.js';
import { startTestSystem } from '../support/system.js';
import type { TestSystem } from '../support/system.js';

describe('security', () => {
  let t: TestSystem;

  before(async () => {
    t = await startTestSystem();
  });
  after(() => t.stop());

  it('stores an API key only as its SHA-256, and shows it once', async () => {
    const created = await t.api(t.adminToken, 'POST', '/v1/admin/users', { name: 'carol' });
    assert.equal(created.status, 201);
    const key = created.body.api_key as string;
    assert.match(key, /^mbx_[A-Za-z0-9_-]{40,}$/);
    const rows = await t.db.sql<{ hash: Buffer; row: string }[]>`
      SELECT api_key_hash AS hash, row_to_json(u)::text AS row FROM users u
      WHERE id = ${created.body.id as string}`;
    const row = rows[0];
    assert.ok(row !== undefined);
    assert.deepEqual(row.hash, createHash('sha256').update(key).digest());
    assert.ok(!row.row.includes(key), 'the key itself is nowhere in its row');
    // Nothing returns it again.
    const users = await t.db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM users WHERE name = ${key}`;
    assert.equal(users[0]?.n, 0);
  });

  it('takes only the exact admin token', () => {
    const token = 'a-very-secret-admin-token';
    assert.equal(isAdminToken(token, token), true);
    for (const wrong of [undefined, '', token.slice(0, -1), `${token}x`, token.toUpperCase()]) {
      assert.equal(isAdminToken(wrong, token), false, String(wrong));
    }
  });

  it('listens on loopback by default: the gateway and the engine', () => {
    const config = loadConfig({});
    assert.equal(config.host, '127.0.0.1');
    assert.match(config.engineAddress, /^127\.0\.0\.1:/);
    assert.equal(new URL(t.url).hostname, '127.0.0.1');
  });
});
