// The gateway counts each failure to reach a dependency by the dependency it came from
// (matchbox_component_errors_total). A refused connection to PostgreSQL is a bare ECONNREFUSED
// that names no server, so the gateway's PostgreSQL store marks every failure of its own.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { connect } from '../../src/db/client.js';
import type { Sql } from '../../src/db/client.js';
import type { GatewayStore } from '../../src/gateway/store.js';
import { freePort } from '../../src/infra/free-port.js';
import { pgGatewayStore } from '../../src/system/pg-gateway-store.js';
import { orderState } from '../db/fixtures.js';

describe('the gateway’s PostgreSQL store', () => {
  let sql: Sql;
  let store: GatewayStore;

  before(async () => {
    // Nothing listens there: every connection is refused.
    sql = connect(`postgres://postgres@127.0.0.1:${await freePort()}/nowhere`, { max: 1 });
    store = pgGatewayStore(sql, 1);
  });
  after(() => sql.end({ timeout: 0 }));

  it('marks every failure to reach PostgreSQL as PostgreSQL’s', async () => {
    const user = { id: randomUUID(), no: 1, name: 'alice', api_key: 'k' };
    const order = orderState(user);
    const calls: [string, () => Promise<unknown>][] = [
      ['loadUsers', () => store.loadUsers()],
      ['createUser', () => store.createUser('bob')],
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
