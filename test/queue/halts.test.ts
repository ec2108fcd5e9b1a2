// The set of halted users (src/queue/halts.ts) against real Redis and PostgreSQL: put back from
// PostgreSQL, but never for a user resumed after PostgreSQL was read.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { createUser, setUserHalt } from '../../src/db/users.js';
import { putBackHalts, restoreHalts, setHalt } from '../../src/queue/halts.js';
import { haltedKey } from '../../src/queue/keys.js';
import { freshDatabase, freshRedis } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';

let db: TestDatabase;
let r: Awaited<ReturnType<typeof freshRedis>>;
before(async () => {
  db = await freshDatabase();
  r = await freshRedis();
});
after(async () => {
  await r.cleanup();
  await db.drop();
});

const now = async (): Promise<number> => {
  const [s, us] = await r.redis.time();
  return Number(s) * 1_000_000 + Number(us);
};
const halted = async (id: string): Promise<boolean> =>
  (await r.redis.sismember(haltedKey(r.prefix), id)) === 1;

it('puts back the users PostgreSQL holds halted, and only those', async () => {
  const [alice, bob] = [await createUser(db.sql, 'alice'), await createUser(db.sql, 'bob')];
  await setUserHalt(db.sql, alice.id, true);
  await restoreHalts(r.redis, db.sql, r.prefix);
  assert.deepEqual([await halted(alice.id), await halted(bob.id)], [true, false]);
});

it('does not halt again a user resumed after PostgreSQL was read', async () => {
  const carol = await createUser(db.sql, 'carol');
  await setUserHalt(db.sql, carol.id, true);
  await setHalt(r.redis, r.prefix, carol.id, true);
  // A restore reads PostgreSQL (carol halted); the resume commits and takes her out; then the
  // restore writes what it read.
  const readFrom = await now();
  await setUserHalt(db.sql, carol.id, false);
  await setHalt(r.redis, r.prefix, carol.id, false);
  await putBackHalts(r.redis, r.prefix, readFrom, [carol.id]);
  assert.equal(await halted(carol.id), false);
  // A read after the resume that found her halted (halted again since) is put back.
  await putBackHalts(r.redis, r.prefix, await now(), [carol.id]);
  assert.equal(await halted(carol.id), true);
  // A halt forgets the resume: lost again, the halt is put back by a read timed before that
  // resume (Redis's clock gone back, on a failover).
  await setHalt(r.redis, r.prefix, carol.id, true);
  await r.redis.srem(haltedKey(r.prefix), carol.id);
  await putBackHalts(r.redis, r.prefix, readFrom, [carol.id]);
  assert.equal(await halted(carol.id), true);
});
