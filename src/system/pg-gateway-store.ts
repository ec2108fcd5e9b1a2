// The gateway's store over PostgreSQL: the repositories of src/db behind GatewayStore.
import type { Sql } from '../db/client.js';
import * as instruments from '../db/instruments.js';
import * as orders from '../db/orders.js';
import * as trades from '../db/trades.js';
import * as users from '../db/users.js';
import type { GatewayStore, UpsertResult } from '../gateway/store.js';
import { shardOf } from '../queue/keys.js';

export function pgGatewayStore(sql: Sql, shards: number): GatewayStore {
  return {
    loadUsers: () => users.loadUsers(sql),
    createUser: (name) => users.createUser(sql, name),
    listInstruments: () => instruments.listInstruments(sql),
    async upsertInstrument(row): Promise<UpsertResult> {
      const r = await instruments.upsertInstrument(sql, row);
      if (r.kind === 'conflict') return { kind: 'conflict', instrument: r.existing };
      if (r.kind === 'invalid') throw new Error(`instrument ${r.field}: ${r.message}`);
      return { kind: r.created ? 'created' : 'unchanged', instrument: r.instrument };
    },
    getOrder: (id) => orders.getOrder(sql, id),
    listOrders: (q) => orders.listOrders(sql, q),
    findByClientOrderId: (userId, cid) => orders.findByClientOrderId(sql, userId, cid),
    async insertPendingOrder(order) {
      await orders.insertPendingOrder(sql, order, `s${shardOf(order.symbol, shards)}`);
    },
    async deletePendingOrder(orderId) {
      await sql`DELETE FROM orders WHERE id = ${orderId} AND status = 'PENDING'`;
    },
    fillsOfOrder: (orderId) => trades.fillsOfOrder(sql, orderId),
    recentTrades: (symbol, limit) => trades.recentTrades(sql, symbol, limit),
    async ping() {
      await sql`SELECT 1`;
    },
  };
}
