import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ConfigError, SETTINGS, loadConfig } from '../../src/config/config.js';

describe('configuration', () => {
  it('gives every setting its default when the environment is empty', () => {
    const c = loadConfig({});
    assert.equal(c.port, 8080);
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.orderPath, 'queue');
    assert.equal(c.writerFlushMs, 1000);
    assert.equal(c.writerBatchSize, 50);
    assert.equal(c.redisUrl, undefined);
    assert.equal(c.databaseUrl, undefined);
  });

  it('parses given values', () => {
    const c = loadConfig({ PORT: '9000', ORDER_PATH: 'sync', REDIS_URL: 'redis://10.0.0.1:7000' });
    assert.deepEqual([c.port, c.orderPath, c.redisUrl], [9000, 'sync', 'redis://10.0.0.1:7000']);
    const pinned = loadConfig({ SHARDS: '3', SHARD_PINS: 'MSFT=2, AAPL=0' });
    assert.deepEqual(
      [...pinned.shardPins],
      [
        ['MSFT', 2],
        ['AAPL', 0],
      ],
    );
    assert.equal(loadConfig({}).shardPins.size, 0);
    const socket = loadConfig({ REDIS_URL: '/srv/matchbox/redis.sock', CPU_LAYOUT: 'off' });
    assert.deepEqual([socket.redisUrl, socket.cpuLayout], ['/srv/matchbox/redis.sock', 'off']);
  });

  it('refuses a bad value with a message that names the variable', () => {
    const bad: [string, string][] = [
      ['PORT', 'eighty'],
      ['PORT', '70000'],
      ['ORDER_PATH', 'fast'],
      ['WRITER_BATCH_SIZE', '0'],
      ['REDIS_URL', 'http://localhost'],
      ['REDIS_URL', 'redis.sock'],
      ['CPU_LAYOUT', 'pinned'],
      ['DATABASE_URL', 'not a url'],
      ['MATCHBOX_ADMIN_TOKEN', 'short'],
      ['LOG_LEVEL', 'loud'],
      ['SHARD_PINS', 'AAPL'],
      ['SHARD_PINS', 'aapl=0'],
      ['SHARD_PINS', 'AAPL=0,AAPL=0'],
      ['SHARD_PINS', 'AAPL=-1'],
      ['SHARD_PINS', 'AAPL=0=1'],
      ['SHARD_PINS', 'AAPL=1'], // SHARDS=1 has shard 0 alone
    ];
    for (const [name, value] of bad) {
      assert.throws(
        () => loadConfig({ [name]: value }),
        (err: unknown) =>
          err instanceof ConfigError && err.variable === name && err.message.startsWith(name),
        `${name}=${value}`,
      );
    }
  });

  it('is documented: the README table lists every variable', () => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
    for (const s of Object.values(SETTINGS)) {
      assert.match(readme, new RegExp(`\\| \`${s.env}\` +\\|`), `${s.env} in the README`);
    }
  });
});
