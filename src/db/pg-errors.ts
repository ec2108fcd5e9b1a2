// Which PostgreSQL failures a retry can cure. A data error (SQLSTATE class 21, cardinality
// violation — one upsert given the same row twice —, 22, data exception, or 23, integrity
// constraint violation) fails again however often it is retried: the writer sets the offending
// record aside instead of wedging. Everything else — the server down or restarting,
// a dropped connection, a timeout, a serialization failure — is retried with backoff.
import type { Logger } from 'pino';

export type PgFailure = 'data' | 'retry';

/** The SQLSTATE (or postgres.js / socket code) of an error, if it has one. */
export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export function classify(err: unknown): PgFailure {
  const code = errorCode(err);
  return code !== undefined && /^2[1-3][0-9A-Z]{3}$/.test(code) ? 'data' : 'retry';
}

/**
 * `err` marked as PostgreSQL's, for a process's count of failures by dependency
 * (matchbox_component_errors_total): a refused connection is a bare ECONNREFUSED, which would
 * otherwise be counted against Redis.
 */
export const fromPostgres = (err: unknown): Error =>
  Object.assign(err instanceof Error ? err : new Error(String(err)), { dependency: 'postgres' });

/** Failures that mean "the server is not reachable now", as opposed to a query it refused. */
export function isConnectionFailure(err: unknown): boolean {
  const code = errorCode(err) ?? '';
  return (
    // 57014, a query cancelled (by its statement_timeout), was answered by a server up and running.
    (/^(08|57|53)/.test(code) && code !== '57014') ||
    code === '55000' || // database does not allow connections
    code === '3D000' || // database does not exist (yet, or renamed)
    code.startsWith('E') || // ECONNREFUSED, ECONNRESET, …
    code.startsWith('CONNECT') ||
    code.startsWith('CONNECTION')
  );
}

/**
 * Runs `step` until it does not fail for want of a connection, logging each wait: what a part
 * started (or restarted by its supervisor) while PostgreSQL is down does instead of exiting.
 */
export async function untilReachable(
  what: string,
  logger: Logger,
  step: () => Promise<void>,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await step();
      if (attempt > 1) logger.warn({ attempts: attempt }, `${what} reachable; starting`);
      return;
    } catch (err) {
      if (!isConnectionFailure(err)) throw err;
      logger.warn(
        { err: (err as Error).message, attempt },
        `${what} unreachable at start; waiting`,
      );
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}
