// A submit whose reply is lost on the way back: the gateway must learn from Redis what became of
// the order before it answers, and a client library re-sending the script must not queue the
// order twice. Real Redis, behind a proxy that can drop replies and cut connections.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { TcpProxy } from '../../src/faults/tcp-proxy.js';
import { layoutKey, shardLayout } from '../../src/queue/keys.js';
import { OrderQueue } from '../../src/queue/order-queue.js';
import { freshRedis } from '../support/services.js';
import { order, sleep } from './orders.js';

describe('submit with a lost reply', () => {
  let direct: Redis;
  let prefix: string;
  let cleanup: () => Promise<void>;
  let proxy: TcpProxy;
  let viaProxy: Redis;
  let queue: OrderQueue;

  before(async () => {
    const r = await freshRedis();
    ({ redis: direct, prefix } = r);
    cleanup = () => r.cleanup();
    const { port } = direct.options;
    proxy = await TcpProxy.start({ host: '127.0.0.1', port: port ?? 6379 });
    // As the gateway's client: no offline queue, a short command timeout.
    viaProxy = new Redis({
      host: '127.0.0.1',
      port: proxy.port,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 300,
      enableAutoPipelining: false,
      lazyConnect: true,
    });
    viaProxy.on('error', () => undefined);
    await viaProxy.connect();
    queue = new OrderQueue(viaProxy, {
      prefix,
      shards: 1,
      highWater: 1000,
      idempotencyTtlS: 60,
      // No PostgreSQL here: the layout is put back as a gateway with one shard would find it.
      restoreLayout: () => viaProxy.set(layoutKey(prefix), shardLayout(1)),
    });
  });
  after(async () => {
    viaProxy.disconnect();
    await proxy.close();
    await cleanup();
  });

  const streamLength = (): Promise<number> => direct.xlen(queue.shards[0]?.orders as string);

  it('queues an order once however often the script is sent', async () => {
    const o = order(1);
    const before = await streamLength();
    const first = await queue.submit(o, Date.now() + 750);
    const again = await queue.submit(o, Date.now() + 750);
    assert.equal(first.kind, 'accepted');
    assert.deepEqual(again, first);
    assert.equal(await streamLength(), before + 1);
  });

  it('answers accepted when Redis took the order and the reply was lost', async () => {
    const o = order(2);
    const before = await streamLength();
    proxy.mute();
    const result = queue.submit(o, Date.now() + 200);
    // The script runs, its reply is dropped, the command times out; then the connection breaks
    // and comes back, and the queue asks Redis.
    await sleep(400);
    await proxy.cut();
    await proxy.restore();
    const r = await result;
    assert.equal(r.kind, 'accepted');
    assert.equal(await streamLength(), before + 1);
    const seq = await direct.hget(queue.shards[0]?.order(o.id) as string, 'q');
    assert.deepEqual(r, { kind: 'accepted', seq: Number(seq) });
  });

  it('answers expired when Redis ran the script only after its deadline', async () => {
    const o = order(3);
    const before = await streamLength();
    // Redis holds every write command for 600 ms: the script runs after its 200 ms deadline and
    // writes nothing; its reply comes after the client's 300 ms timeout.
    await direct.call('CLIENT', 'PAUSE', '600', 'WRITE');
    const r = await queue.submit(o, Date.now() + 200);
    assert.deepEqual(r, { kind: 'expired' });
    assert.equal(await streamLength(), before);
  });

  it('refuses at once when the connection is down, with nothing sent', async () => {
    const o = order(5);
    const before = await streamLength();
    await proxy.cut();
    await sleep(50);
    await assert.rejects(queue.submit(o, Date.now() + 200), /Stream isn't writeable/);
    await proxy.restore();
    assert.equal(await streamLength(), before);
  });

  it('an amend: unknown when its reply is lost; nothing written when Redis runs it late', async () => {
    const o = order(6);
    while (viaProxy.status !== 'ready') await sleep(20);
    assert.equal((await queue.submit(o, Date.now() + 750)).kind, 'accepted');
    const amend = (quantityLots: number) =>
      queue.replace(
        {
          orderId: o.id,
          userId: o.user_id,
          ownerNo: o.owner_no,
          symbol: o.symbol,
          priceTicks: 0,
          quantityLots,
          at: new Date(),
        },
        Date.now() + 200,
      );
    const before = await streamLength();
    proxy.mute();
    const lost = await amend(9);
    proxy.unmute();
    assert.equal(lost.kind, 'unknown');
    assert.equal(await streamLength(), before + 1, 'the amend was in fact queued');
    while (viaProxy.status !== 'ready') await sleep(20);

    // Run only after its deadline (Redis holds writes for 600 ms): it writes nothing, so it
    // cannot follow an amend sent after it.
    await direct.call('CLIENT', 'PAUSE', '600', 'WRITE');
    const late = await amend(8);
    assert.equal(late.kind, 'unknown');
    await sleep(700);
    assert.equal(await streamLength(), before + 1);
  });

  it('answers unknown when Redis cannot be asked in time', async () => {
    const o = order(4);
    while (viaProxy.status !== 'ready') await sleep(20);
    proxy.mute();
    const r = await queue.submit(o, Date.now() + 200);
    proxy.unmute();
    assert.equal(r.kind, 'unknown');
    // It was in fact taken: the answer had to be "may have been", not "no".
    assert.equal(await direct.hexists(queue.shards[0]?.order(o.id) as string, 'q'), 1);
  });
});
