// The gateway counts each failure to reach a dependency by the dependency it came from
// (matchbox_component_errors_total). A refused connection to PostgreSQL is a bare ECONNREFUSED
// that names no server, so the gateway's PostgreSQL store marks every failure of its own. And a
// PostgreSQL that cannot take the gateway's queries now is a 503 to retry, whatever its reason.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { connect } from '../../src/db/client.js';
import type { Sql } from '../../src/db/client.js';
import type { GatewayStore } from '../../src/gateway/store.js';
import { freePort } from '../../src/infra/free-port.js';
import { ShardPlacement } from '../../src/queue/keys.js';
import { pgGatewayStore } from '../../src/system/pg-gateway-store.js';
import { orderState } from '../db/fixtures.js';
import { databaseUrl } from '../support/services.js';
import { eventually, startTestSystem } from '../support/system.js';
import type { TestSystem } from '../support/system.js';

describe('the gateway’s PostgreSQL store', () => {
  let sql: Sql;
  let store: GatewayStore;

  before(async () => {
    // Nothing listens there: every connection is refused.
    sql = connect(`postgres://postgres@127.0.0.1:${await freePort()}/nowhere`, { max: 1 });
    store = pgGatewayStore(sql, new ShardPlacement(1));
  });
  after(() => sql.end({ timeout: 0 }));

  it('marks every failure to reach PostgreSQL as PostgreSQL’s', async () => {
    const user = { id: randomUUID(), no: 1, name: 'alice', api_key: 'k' };
    const order = orderState(user);
    const calls: [string, () => Promise<unknown>][] = [
      ['loadUsers', () => store.loadUsers()],
      ['createUser', () => store.createUser('bob')],
      ['setUserHalt', () => store.setUserHalt(user.id, true)],
      ['listInstruments', () => store.listInstruments()],
      [
        'upsertInstrument',
        () => store.upsertInstrument({ symbol: 'XYZ', tick_size: '0.01', lot_size: '1' }),
      ],
      ['getOrder', () => store.getOrder(order.id)],
      ['listOrders', () => store.listOrders({ userId: user.id, status: 'ALL', limit: 10 })],
      ['findByClientOrderId', () => store.findByClientOrderId(user.id, 'c1')],
      ['insertPendingOrder', () => store.insertPendingOrder(order)],
      ['deletePendingOrder', () => store.deletePendingOrder(order.id)],
      ['fillsOfOrder', () => store.fillsOfOrder(order.id)],
      ['recentTrades', () => store.recentTrades('AAPL', 10)],
      ['ping', () => store.ping()],
    ];
    for (const [name, call] of calls) {
      await assert.rejects(call(), (err: Error & { dependency?: string }) => {
        assert.equal(err.dependency, 'postgres', `${name}: ${err.message}`);
        return true;
      });
    }
  });
});

describe('the gateway while PostgreSQL refuses its database', () => {
  let t: TestSystem;
  let admin: Sql;
  let name: string;

  before(async () => {
    t = await startTestSystem();
    admin = connect(databaseUrl(), { max: 1 });
    name = new URL(t.db.url).pathname.slice(1);
  });
  after(async () => {
    await admin.unsafe(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
    await admin.end();
    await t.stop();
  });

  it('answers 503 UNAVAILABLE, not 500, and takes the call again once it is back', async () => {
    const headers = { authorization: `Bearer ${t.adminToken}`, 'content-type': 'application/json' };
    const createUser = () =>
      fetch(`${t.url}/v1/admin/users`, { method: 'POST', headers, body: '{"name":"dora"}' });
    // Connections to the database refused (SQLSTATE 55000), and those open ended.
    await admin.unsafe(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
    await admin`
      SELECT pg_terminate_backend(pid) FROM (
        SELECT pid FROM pg_stat_activity
        WHERE datname = ${name} AND pid <> pg_backend_pid() OFFSET 0) AS theirs`;
    const down = await createUser();
    const body = (await down.json()) as { error?: { code: string } };
    assert.equal(down.status, 503, JSON.stringify(body));
    assert.equal(body.error?.code, 'UNAVAILABLE');
    assert.ok(down.headers.get('retry-after'));

    await admin.unsafe(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
    await eventually(async () => ((await createUser()).status === 201 ? true : undefined));
  });
});
