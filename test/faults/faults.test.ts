// The fault suite's short form inside npm test (CI): every case of `npm run test:faults`, with
// fewer seconds of load, against servers and processes of its own. Nothing accepted may be lost
// or matched twice, and every case's own checks must hold.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { projectRoot } from '../../src/infra/project-root.js';
import { faultMarkdown, runFaults } from '../../src/faults/run-faults.js';

describe('fault suite (short form)', () => {
  const dir = join(projectRoot(), '.data', `test-faults-${process.pid}`);
  let passed = false;
  after(() => {
    // Kept when something failed: the process logs are the evidence.
    if (passed) rmSync(dir, { recursive: true, force: true });
  });

  it('loses and duplicates nothing through every fault, and each case recovers', async () => {
    const report = await runFaults({ short: true, dir });
    const table = faultMarkdown(report);
    for (const r of report.results) {
      assert.ok(r.check !== undefined, `${r.name} did not reach its checks:\n${table}`);
      assert.ok(r.check.accepted > 0, `${r.name} accepted no order:\n${table}`);
      assert.equal(r.check.lost, 0, `${r.name} lost orders:\n${table}`);
      assert.equal(r.check.duplicated, 0, `${r.name} duplicated orders:\n${table}`);
      assert.deepEqual(r.failures, [], `${r.name} failed:\n${table}\nlogs: ${r.logDir}`);
    }
    assert.equal(report.results.length, 9);
    passed = true;
  });
});
