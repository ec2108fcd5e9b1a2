// report.md in the seed report's layout: configuration, the results table with a status per
// target, the baseline comparison with the seed's own figures, then one table per scenario.
import { PHASE_WARMUP } from './scenarios/sequential.js';
import type { BenchReport, SequentialScenario } from './report.js';
import type { ConcurrencyLevel } from './scenarios/concurrency.js';
import type { SequentialResult } from './scenarios/sequential.js';
import type { LatencySummary } from './latency.js';

const n = (v: number | null | undefined, digits = 0): string =>
  v === null || v === undefined
    ? '—'
    : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const ms = (v: number | null | undefined): string =>
  v === null || v === undefined ? '—' : `${v < 1 ? v.toFixed(3) : v.toFixed(2)} ms`;
const pct = (v: number | undefined): string => (v === undefined ? '—' : `${(v * 100).toFixed(2)}%`);
const status = (ok: boolean | undefined): string =>
  ok === undefined ? '—' : ok ? '**TARGET MET**' : '**NOT MET**';

function table(head: string[], rows: string[][]): string {
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

function seedTable(s: SequentialScenario, seedTarget: boolean): string {
  const q = s.queue;
  const y = s.sync;
  const rows: string[][] = [
    [
      'Orders/sec (queue)',
      n(q?.orders_per_sec),
      seedTarget ? status(q && q.orders_per_sec >= 5000) : '',
    ],
    ['Orders/sec (sync, same run)', n(y?.orders_per_sec), ''],
    [
      'Success Rate',
      q ? `${pct(q.success_rate)} (${q.orders - q.failed}/${q.orders})` : '—',
      status(q && q.success_rate === 1),
    ],
    ['Failed Orders', n(q?.failed), status(q && q.failed === 0)],
    ['Orders Queued in Redis (writer backlog at the end)', n(q?.queued_in_redis), ''],
    [
      'Improvement vs No Queue (sync mode)',
      s.improvement === undefined ? '—' : `${s.improvement}x`,
      seedTarget ? status(s.improvement !== undefined && s.improvement >= 5) : '',
    ],
    ['p50 submission latency (queue)', ms(q?.p50_ms), ''],
    ['p99 submission latency (queue)', ms(q?.p99_ms), seedTarget ? status(q && q.p99_ms < 1) : ''],
    ['p50 / p99 (sync)', y ? `${ms(y.p50_ms)} / ${ms(y.p99_ms)}` : '—', ''],
  ];
  return table(['Metric', 'Value', 'Status'], rows);
}

function modeRow(name: string, r: SequentialResult | undefined): string[] {
  return r === undefined
    ? [name, '—', '—', '—', '—', '—', '—', '—']
    : [
        name,
        n(r.orders_per_sec),
        pct(r.success_rate),
        n(r.failed),
        n(r.queued_in_redis),
        ms(r.p50_ms),
        ms(r.p99_ms),
        ms(r.max_ms),
      ];
}

function levelsTable(rows: [string, ConcurrencyLevel][]): string {
  return table(
    [
      'system',
      'clients',
      'orders/s',
      'p50',
      'p90',
      'p99',
      'p99.9',
      'max',
      'errors',
      'backlog at end',
      'CPU % of one core (gateway / dispatcher / writer / engine / redis / postgres / bench)',
    ],
    rows.map(([name, l]) => [
      name,
      String(l.clients),
      n(l.orders_per_sec),
      ms(l.p50_ms),
      ms(l.p90_ms),
      ms(l.p99_ms),
      ms(l.p999_ms),
      ms(l.max_ms),
      n(l.errors),
      n(l.queued_in_redis_at_end),
      ['gateway', 'dispatcher', 'writer', 'engine', 'redis', 'postgres', 'bench']
        .map((k) => l.cpu_percent[k] ?? '—')
        .join(' / '),
    ]),
  );
}

const latencyRow = (name: string, l: LatencySummary | null | undefined): string[] =>
  l === null || l === undefined
    ? [name, '—', '—', '—', '—', '—']
    : [name, ms(l.p50_ms), ms(l.p90_ms), ms(l.p99_ms), ms(l.p999_ms), ms(l.max_ms)];

export function renderMarkdown(r: BenchReport, charts: string[]): string {
  const s = r.scenarios;
  const m = r.machine;
  const out: string[] = [];
  out.push(
    `# matchbox Performance Test Results${r.quick ? ' (--quick: not figures to quote)' : ''}`,
    '',
  );
  out.push('## Performance Results', '', '### Test Configuration');
  out.push(
    `- Test Date: ${r.started_at.slice(0, 10)} (${r.started_at} → ${r.finished_at})`,
    `- Machine: ${m.cpu}, ${m.cores} cores, ${m.ram_gib} GiB RAM, ${m.os}`,
    `- Node ${m.node}, Redis ${m.redis}, PostgreSQL ${m.postgres}; load generator on the same machine`,
    `- Orders Tested: ${s.seed?.queue?.orders ?? '—'} sequential (seed), then the scenarios below; each sequential run follows ${PHASE_WARMUP.toLocaleString('en-US')} un-measured orders on the same connection (after the idle pause between scenarios)`,
    '- Order Type: MARKET BUY 1 AAPL against a market maker’s resting SELL LIMIT orders (every order fills)',
    '- Redis Queue Enabled: Yes (queue mode) and No (sync mode: PostgreSQL and the engine before the answer), same run',
    '- Batch Writer: running asynchronously (every 1 s or 50 records; a second writer run with a large batch)',
    `- Systems: ${r.systems.map((x) => `${x.name} (${x.mode}, appendfsync ${x.appendfsync}${x.resting_book > 0 ? `, ${x.resting_book} orders resting in the book` : ''})`).join('; ')}`,
    '',
  );
  if (s.seed !== undefined) {
    out.push('### Results', '', seedTable(s.seed, true), '');
    out.push('### Baseline Comparison');
    out.push(
      `- **Seed report**: ${r.seed_report.queue_orders_per_sec} orders/s with the queue, ~${r.seed_report.sync_orders_per_sec} orders/s synchronous, ${r.seed_report.improvement}x`,
      `- **Measured here, queue**: ${n(s.seed.queue?.orders_per_sec)} orders/s (${s.seed.queue ? (s.seed.queue.orders_per_sec / r.seed_report.queue_orders_per_sec).toFixed(1) : '—'}x the seed's ${r.seed_report.queue_orders_per_sec})`,
      `- **Measured here, sync**: ${n(s.seed.sync?.orders_per_sec)} orders/s; improvement ${s.seed.improvement ?? '—'}x (seed: ${r.seed_report.improvement}x)`,
      '',
    );
    out.push('### Redis durability: appendfsync everysec vs always', '');
    const a = s.seed.appendfsync_always;
    out.push(
      table(
        [
          'seed (100 sequential)',
          'orders/s',
          'success',
          'failed',
          'queued in Redis',
          'p50',
          'p99',
          'max',
        ],
        [
          modeRow('queue, everysec', s.seed.queue),
          modeRow('sync, everysec', s.seed.sync),
          modeRow('queue, always', a?.queue),
          modeRow('sync, always', a?.sync),
        ],
      ),
      '',
      `Improvement queue ÷ sync: everysec ${s.seed.improvement ?? '—'}x, always ${a?.improvement ?? '—'}x.`,
      '',
    );
  }
  if (s.sequential !== undefined) {
    const q = s.sequential;
    out.push(`### Sequential: ${n(q.queue?.orders ?? q.sync?.orders)} orders, one client`, '');
    out.push(
      table(
        ['mode', 'orders/s', 'success', 'failed', 'queued in Redis', 'p50', 'p99', 'max'],
        [modeRow('queue', q.queue), modeRow('sync', q.sync)],
      ),
      '',
      `Improvement: ${q.improvement ?? '—'}x.`,
      '',
    );
  }
  if (s.concurrency !== undefined) {
    const c = s.concurrency;
    const rows: [string, ConcurrencyLevel][] = [];
    const add = (name: string, x: { levels: ConcurrencyLevel[] } | undefined) => {
      for (const l of x?.levels ?? []) rows.push([name, l]);
    };
    add('queue, everysec', c.queue);
    add('sync, everysec', c.sync);
    add('queue, always', c.appendfsync_always?.queue);
    add('sync, always', c.appendfsync_always?.sync);
    const at64 = c.queue?.levels.find((l) => l.clients === 64);
    out.push('### Concurrency', '', levelsTable(rows), '');
    out.push(
      `Target at 64 clients (queue): ≥ 10,000 orders/s, p99 < 10 ms, zero errors — ${status(at64 && at64.orders_per_sec >= 10_000 && at64.p99_ms < 10 && at64.errors === 0)} (${n(at64?.orders_per_sec)}/s, p99 ${ms(at64?.p99_ms)}, ${n(at64?.errors)} errors).`,
      '',
    );
  }
  const b = s.burst?.queue;
  if (b !== undefined) {
    out.push(
      `### Burst: ${n(b.orders)} orders in flight at once (${b.connections} connections × ${b.pipelining} pipelined)`,
      '',
    );
    out.push(
      table(
        ['Metric', 'Value', 'Status'],
        [
          ['Success Rate', pct(b.success_rate), status(b.success_rate === 1)],
          ['All accepted after', ms(b.all_accepted_ms), ''],
          ['All persisted in PostgreSQL after', ms(b.all_persisted_ms), ''],
          [
            '… after the last accept',
            ms(b.all_persisted_after_last_accept_ms),
            status(
              b.all_persisted_after_last_accept_ms === null
                ? undefined
                : b.all_persisted_after_last_accept_ms <= 5000,
            ),
          ],
          ['All filled after', ms(b.all_filled_ms), ''],
          ['Accept latency p50 / p99', `${ms(b.accept_p50_ms)} / ${ms(b.accept_p99_ms)}`, ''],
        ],
      ),
      '',
    );
  }
  const e = s['end-to-end']?.queue;
  if (e !== undefined) {
    out.push(
      `### End-to-end: ${n(e.offered_per_sec)} orders/s offered for ${e.seconds} s (open loop)`,
      '',
    );
    out.push(
      table(
        ['latency', 'p50', 'p90', 'p99', 'p99.9', 'max'],
        [
          latencyRow('submission (from scheduled time)', e.submission),
          latencyRow('submission → fill, server timestamps (ms resolution)', e.fill_server),
          latencyRow(
            'submission → fill, as a client reading the event stream sees it',
            e.fill_client,
          ),
        ],
      ),
      '',
      `Accepted ${n(e.accepted)} of ${n(e.orders)} (${pct(e.success_rate)}), achieved ${n(e.achieved_per_sec)}/s, fills seen ${n(e.fills_seen)}. Writer backlog: max ${n(e.backlog_max)} order-stream entries; bounded: ${e.backlog_bounded ?? '—'}. Target p99 < 10 ms and backlog bounded: ${status(e.fill_client !== null && e.fill_client.p99_ms < 10 && e.backlog_bounded === true)}.`,
      '',
    );
  }
  const w = s.writer;
  if (w !== undefined) {
    out.push('### Batch writer under load', '');
    out.push(
      table(
        [
          'WRITER_BATCH_SIZE',
          'clients',
          'orders/s offered',
          'rows written',
          'rows/s (to drained)',
          'peak rows/s (1 s)',
          'max backlog',
          'drained after load',
          'rows/s from a backlog',
          'status (≥ 50,000 rows/s)',
        ],
        [w.default_batch, w.large_batch]
          .filter((x) => x !== undefined)
          .map((x) => [
            String(x.writer_batch_size),
            String(x.clients),
            n(x.orders_per_sec),
            n(x.rows_written),
            n(x.rows_per_sec),
            n(x.peak_rows_per_sec),
            n(x.backlog_max),
            ms(x.drained_after_ms),
            n(x.from_backlog?.rows_per_sec),
            status(x.from_backlog ? x.from_backlog.rows_per_sec >= 50_000 : undefined),
          ]),
      ),
      '',
      'Rows: inserted and updated tuples in `orders` and `trades` (PostgreSQL’s statistics counters): per order its row (a PLACE whose outcome follows within 100 ms is written once, as its state; otherwise inserted PENDING and updated), the trade, and the maker’s state update (once per flush).',
      '',
    );
    const held = [w.default_batch, w.large_batch].flatMap((x) =>
      x?.from_backlog ? [{ batch: x.writer_batch_size, f: x.from_backlog }] : [],
    );
    if (held.length > 0) {
      out.push(
        'From a backlog — the writer process stopped while orders queued and were matched, then let go to drain them with nothing else running:',
        '',
        table(
          [
            'WRITER_BATCH_SIZE',
            'orders queued',
            'stream entries',
            'rows written',
            'drained in',
            'rows/s',
            'orders/s',
            'CPU % of one core (writer / postgres / redis)',
          ],
          held.map(({ batch, f }) => [
            String(batch),
            n(f.orders),
            n(f.entries),
            n(f.rows),
            ms(f.drain_ms),
            n(f.rows_per_sec),
            n(f.orders_per_sec),
            ['writer', 'postgres', 'redis'].map((k) => String(f.cpu[k] ?? '—')).join(' / '),
          ]),
        ),
        '',
      );
    }
  }
  const g = s.engine;
  if (g !== undefined) {
    out.push('### Engine through gRPC', '');
    if ('skipped' in g) out.push(`Skipped: ${g.skipped}`, '');
    else {
      out.push(
        table(
          ['batch', 'in flight', 'commands', 'commands/s', 'batch round trip p50', 'p99'],
          g.grpc.map((x) => [
            n(x.batch),
            String(x.window),
            n(x.commands),
            n(x.commands_per_sec),
            ms(x.batch_p50_ms),
            ms(x.batch_p99_ms),
          ]),
        ),
        '',
        `In-process, same commands (engine-bench's measure): ${n(g.in_process_commands_per_sec)} commands/s; books of ${n(g.resting_orders)} resting orders.`,
        '',
      );
    }
  }
  const gen = s.generator;
  if (gen !== undefined) {
    out.push('### The load generator alone (null server)', '');
    out.push(
      table(
        ['clients', 'requests/s', 'p50', 'p99', 'p99.9', 'generator CPU per request'],
        gen.levels.map((l) => [
          String(l.clients),
          n(l.requests_per_sec),
          ms(l.p50_ms),
          ms(l.p99_ms),
          ms(l.p999_ms),
          `${l.generator_cpu_us_per_request} µs`,
        ]),
      ),
      '',
    );
  }
  if (charts.length > 0) {
    out.push('### Charts', '', ...charts.map((c) => `![${c}](${c})`), '');
  }
  return out.join('\n');
}
