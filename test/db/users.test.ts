import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createUser, findUserByKeyHash, hashApiKey, loadUsers } from '../../src/db/users.js';
import { freshDatabase } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';

describe('users', () => {
  let db: TestDatabase;
  before(async () => {
    db = await freshDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('creates a user with a key shown once: only its SHA-256 is stored', async () => {
    const alice = await createUser(db.sql, 'alice');
    assert.match(alice.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.match(alice.api_key, /^mbx_[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(alice.api_key.slice(4), 'base64url').length, 32);
    assert.equal(alice.name, 'alice');
    assert.ok(Number.isSafeInteger(alice.no) && alice.no > 0);

    const [row] = await db.sql<Record<string, unknown>[]>`SELECT * FROM users`;
    assert.ok(row);
    assert.deepEqual(row.api_key_hash, hashApiKey(alice.api_key));
    assert.equal(row.api_key_hash.length, 32);
    const stored = JSON.stringify(Object.values(row).map(String));
    assert.ok(!stored.includes(alice.api_key.slice(4)), 'the key itself is nowhere in the row');
  });

  it('finds a user by the hash of the key, and by no other key', async () => {
    const bob = await createUser(db.sql, 'bob');
    const found = await findUserByKeyHash(db.sql, hashApiKey(bob.api_key));
    assert.deepEqual(found, {
      id: bob.id,
      no: bob.no,
      name: 'bob',
      api_key_hash: hashApiKey(bob.api_key),
    });
    assert.equal(await findUserByKeyHash(db.sql, hashApiKey(`${bob.api_key}x`)), undefined);
  });

  it('loads every user with its hash, in creation order, each with its own key and number', async () => {
    const carol = await createUser(db.sql, 'carol');
    const users = await loadUsers(db.sql);
    assert.deepEqual(
      users.map((u) => u.name),
      ['alice', 'bob', 'carol'],
    );
    const last = users[2];
    assert.ok(last);
    assert.deepEqual(last, {
      id: carol.id,
      no: carol.no,
      name: 'carol',
      api_key_hash: hashApiKey(carol.api_key),
    });
    assert.equal(new Set(users.map((u) => u.no)).size, 3);
    assert.equal(new Set(users.map((u) => u.api_key_hash.toString('hex'))).size, 3);
  });
});
