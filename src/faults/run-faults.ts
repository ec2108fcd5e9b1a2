// The fault suite as a library: run the cases, and the report as a table (main.ts is the command;
// test/faults runs the short form inside npm test).
import { CASES } from './cases.js';
import { FULL, FaultSuite, PROTECTED, SHORT } from './suite.js';
import type { CaseResult, Timing } from './suite.js';

export interface FaultReport {
  date: string;
  short: boolean;
  timing: Timing;
  results: CaseResult[];
  ok: boolean;
}

/** Runs the cases named (all when none) and returns the report; servers are stopped after. */
export async function runFaults(options: {
  short: boolean;
  cases?: string[];
  dir: string;
  progress?: (line: string) => void;
}): Promise<FaultReport> {
  const timing = options.short ? SHORT : FULL;
  const chosen = CASES.filter((c) => options.cases === undefined || options.cases.includes(c.name));
  const unknown = (options.cases ?? []).filter((n) => !CASES.some((c) => c.name === n));
  if (unknown.length > 0) throw new Error(`no such case: ${unknown.join(', ')}`);
  const suite = await FaultSuite.start(options.dir);
  const results: CaseResult[] = [];
  try {
    for (const [i, c] of chosen.entries()) {
      options.progress?.(`[${i + 1}/${chosen.length}] ${c.name}: ${c.title}…`);
      const r = await suite.run(c, timing, 20261201 + i);
      results.push(r);
      options.progress?.(
        `    ${r.ok ? 'ok' : 'FAILED'} ${r.check?.accepted ?? 0} accepted, ${r.check?.lost ?? '?'} lost`,
      );
      for (const f of r.failures) options.progress?.(`    ✗ ${f}`);
    }
  } finally {
    await suite.stop();
  }
  return {
    date: new Date().toISOString(),
    short: options.short,
    timing,
    results,
    ok: results.every((r) => r.ok),
  };
}

const n = (x: number): string => x.toLocaleString('en-US');

/** The table of the issue: case, accepted, in PostgreSQL, lost, duplicated, time to recover. */
export function faultTable(report: FaultReport): string {
  const rows = report.results.map((r) => {
    const c = r.check;
    const refused = r.load.refused;
    return `| ${r.title} | ${n(r.load.requestsPerSec)} | ${n(r.load.answeredPerSec)} | ${n(r.load.sent)} | ${c === undefined ? '—' : n(c.accepted)} | ${c === undefined ? '—' : n(c.inPostgres)} | ${c?.lost ?? '—'} | ${c?.duplicated ?? '—'} | ${n(refused)} | ${r.load.settled}/${r.load.settled + (c?.unsettled ?? 0)} | ${r.recoverMs === undefined ? '—' : `${(r.recoverMs / 1000).toFixed(2)} s`} | ${r.ok ? 'pass' : '**FAIL**'} |`;
  });
  return [
    '| case | requests/s sent | answered/s | orders sent | accepted | in PostgreSQL | lost | duplicated | refused | lost answers settled | recovered in | result |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows,
  ].join('\n');
}

export function faultMarkdown(report: FaultReport): string {
  const t = report.timing;
  const notes = report.results.flatMap((r) =>
    [
      ...r.notes,
      `amends answered ${JSON.stringify(r.load.amends)}`,
      `mass cancels answered ${JSON.stringify(r.load.massCancels)}`,
      ...(r.load.deadMan === undefined
        ? []
        : [
            `dead man's switch: armed ${JSON.stringify(r.load.deadMan.arms)}; fell silent ${r.load.deadMan.silences} times, ` +
              `seen fired ${r.load.deadMan.fired} times, the slowest ${(r.load.deadMan.slowestMs / 1000).toFixed(2)} s after falling silent`,
          ]),
      ...(r.live === undefined
        ? []
        : [
            `live updates: ${n(r.live.events)} events, ${r.live.resyncs} resyncs, ${r.live.connects} streams opened; ` +
              `${n(r.live.fillsChecked)} fills and ${n(r.live.ordersChecked)} order states since each user's last resync checked against PostgreSQL; ` +
              `market data: ${n(r.live.market.events)} events, ${r.live.market.resyncs} resyncs, ${r.live.market.connects} streams opened, ` +
              `${n(r.live.market.tradesChecked)} trades since its last resync and each symbol's last book checked`,
          ]),
      ...r.failures.map((f) => `FAILED: ${f}`),
    ].map((x) => `- ${r.name}: ${x}`),
  );
  return [
    `# Fault suite — ${report.date}${report.short ? ' (short form)' : ''}`,
    '',
    `Load ${n(t.rate)} requests/s (55% LIMIT GTC, 5% LIMIT IOC, 19.7% MARKET, 0.3% mass cancel of ` +
      `one symbol, 10% cancel, 10% amend of a resting order's quantity, each answer checked ` +
      `against what the order ends as; 4 users, ` +
      `3 symbols (MARKET orders on ${PROTECTED.symbol} with a price protection of ${PROTECTED.bps} bps), each user following its live updates, and one public market-data stream of the 3 symbols; and a fifth user who places resting orders on 2 other symbols for 4 s with a dead man's switch of 2 s kept armed, then falls silent until it fires, over and over), reached by a ramp of ${t.rampMs / 1000} s from the processes' start, then for ` +
      `at least ${t.loadMs / 1000} s per case; fault ${t.warmMs / 1000} s after the ramp; ` +
      `outages ${t.outageMs / 1000} s (PostgreSQL ${t.pgOutageMs / 1000} s). The load is open ` +
      'loop: requests are sent on time whatever the answers, queued at the client while up to 16,384 are ' +
      'unanswered. Rates are from the end of the ramp to the end of the load; answered/s counts ' +
      'HTTP answers of any status (a request to a killed gateway fails to connect instead).',
    '',
    faultTable(report),
    '',
    ...notes,
    '',
  ].join('\n');
}
