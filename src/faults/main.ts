// `npm run test:faults`: the fault suite (issue 5). Every case under load, then the checks; a
// table at the end; exit 1 on any loss, duplicate or failed check.
//   --short        CI's form (fewer seconds, the same cases and checks)
//   --case NAME    only this case (repeatable)
//   --json         print the results as JSON only
//   --keep         keep the servers' folder and logs even when everything passed
import { rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { faultMarkdown, runFaults } from './run-faults.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      short: { type: 'boolean', default: false },
      case: { type: 'string', multiple: true },
      json: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
    },
  });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const dir = resolve('.data', `faults-${stamp}`);
  const report = await runFaults({
    short: values.short,
    dir,
    ...(values.case === undefined ? {} : { cases: values.case }),
    ...(values.json ? {} : { progress: (line: string) => console.log(line) }),
  });
  const markdown = faultMarkdown(report);
  if (values.json) console.log(JSON.stringify(report, null, 2));
  else console.log(`\n${markdown}`);
  if (report.ok && !values.keep) rmSync(dir, { recursive: true, force: true });
  else {
    writeFileSync(join(dir, 'report.md'), markdown);
    writeFileSync(join(dir, 'report.json'), JSON.stringify(report, null, 2));
    if (!values.json) console.log(`servers' data, process logs and the report: ${dir}`);
  }
  process.exit(report.ok ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error(`test:faults: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
