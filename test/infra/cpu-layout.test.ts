import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import {
  allowedCpus,
  boundCommand,
  parseCpuList,
  pin,
  planLayout,
} from '../../src/infra/cpu-layout.js';

describe('CPU layout', () => {
  it('reads taskset lists', () => {
    assert.deepEqual(parseCpuList('0'), [0]);
    assert.deepEqual(parseCpuList('0,2-4, 7'), [0, 2, 3, 4, 7]);
  });

  it('gives the order path the first CPU and the background the rest, with 2 or more', () => {
    assert.deepEqual(planLayout('auto', [0, 1]), { front: '0', back: '1' });
    assert.deepEqual(planLayout('auto', [2, 3, 5, 6]), { front: '2', back: '3,5,6' });
    assert.equal(planLayout('auto', [0]), undefined);
    assert.equal(planLayout('auto', undefined), undefined);
    assert.equal(planLayout('off', [0, 1]), undefined);
  });

  it('starts a command bound, or as it is', () => {
    assert.deepEqual(boundCommand('1', ['node', 'x.js']), ['taskset', '-c', '1', 'node', 'x.js']);
    assert.deepEqual(boundCommand(undefined, ['node', 'x.js']), ['node', 'x.js']);
  });

  it(
    'binds a running process and every thread of it',
    { skip: allowedCpus() === undefined },
    () => {
      const cpus = allowedCpus() as number[];
      // A process of our own that lives long enough to be bound and read back.
      const sleeper = spawnSync('sh', ['-c', 'sleep 2 & echo $!'], { encoding: 'utf8' });
      const pid = Number(sleeper.stdout.trim());
      const target = String(cpus[cpus.length - 1]);
      assert.equal(pin(pid, target), undefined);
      assert.deepEqual(allowedCpus(pid), [Number(target)]);
      assert.match(pin(pid, '9999') ?? '', /./, 'a CPU that does not exist is refused, and said');
      process.kill(pid);
    },
  );
});
