// Runs a helper program (pg_ctl, initdb, apt-get…) to completion and keeps what it printed, so a
// failure can be reported with the program's own words instead of a bare exit code.
import { spawn } from 'node:child_process';

export interface RunResult {
  /** The exit code; null when a signal ended the program. */
  code: number | null;
  /** stdout and stderr, interleaved as they arrived. */
  output: string;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /**
   * Run in a new session. pg_ctl needs it: the postmaster it forks would otherwise stay in our
   * process group and receive the terminal's Ctrl-C before matchbox could shut down in order.
   */
  detached?: boolean;
}

/** Never rejects for a non-zero exit; only when the program cannot be started at all. */
export function run(command: string, args: readonly string[], options: RunOptions = {}) {
  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      detached: options.detached ?? false,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (output += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (output += s));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

/** The last `lines` lines of `text`, trimmed, for an error message. */
export function tail(text: string, lines = 15): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
