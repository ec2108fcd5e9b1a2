// The four processes of a matchbox deployment, each started, signalled and restarted by the
// fault suite itself: `matchbox engine`, `gateway`, `dispatcher` and `writer`, exactly as a
// deployment runs them, each logging (JSON) to its own file.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EngineClient } from '../engine-service/client.js';
import { boundCommand } from '../infra/cpu-layout.js';

export const PART_NAMES = ['engine', 'dispatcher', 'writer', 'gateway'] as const;
export type PartName = (typeof PART_NAMES)[number];

const CLI_MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** When it exited (Date.now()). */
  at: number;
  /** For a crash: the end of its log, where Node prints what killed it. */
  logTail?: string;
}

export interface PartOptions {
  name: PartName;
  env: Record<string, string>;
  logDir: string;
  /** The gateway's URL or the engine's address: what readiness is checked against. */
  gatewayUrl: string;
  engineAddress: string;
  /** CPUs to run on (taskset's list), as `matchbox start` places its parts; undefined: anywhere. */
  cpus?: string;
}

export class Part {
  private child: ChildProcess | undefined;
  private exit: Promise<Exit> = Promise.resolve({ code: null, signal: null, at: 0 });
  /** Set when the suite ends the process itself; any other exit is a crash. */
  private ending = false;
  private closed = false;
  /** Exits nobody asked for; each was followed by a restart a second later. */
  readonly crashes: Exit[] = [];

  constructor(private readonly options: PartOptions) {}

  get name(): PartName {
    return this.options.name;
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  running(): boolean {
    return (
      this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
    );
  }

  /** Starts the process and resolves once it serves (engine, gateway) or has started (others). */
  async start(): Promise<void> {
    if (this.running()) throw new Error(`${this.name} is already running`);
    const log = openSync(join(this.options.logDir, `${this.name}.log`), 'a');
    const [command, ...args] = boundCommand(this.options.cpus, [
      process.execPath,
      CLI_MAIN,
      this.name,
    ]) as [string, ...string[]];
    const child = spawn(command, args, {
      env: { ...process.env, ...this.options.env, MATCHBOX_PARENT_PID: String(process.pid) },
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    this.child = child;
    this.ending = false;
    this.exit = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        const e = { code, signal, at: Date.now() };
        resolve(e);
        // As a supervisor would (matchbox start, systemd): a crashed part is started again.
        if (!this.ending && !this.closed) {
          const log = readFileSync(join(this.options.logDir, `${this.name}.log`), 'utf8');
          this.crashes.push({ ...e, logTail: log.slice(-4000) });
          setTimeout(() => {
            if (!this.closed && !this.running()) this.start().catch(() => undefined);
          }, 1000);
        }
      }),
    );
    const until = Date.now() + 30_000;
    while (!(await this.serves())) {
      if (!this.running()) {
        const e = await this.exit;
        throw new Error(`${this.name} exited at start (${e.code ?? e.signal}); see its log`);
      }
      if (Date.now() > until) throw new Error(`${this.name} did not start within 30 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Sends a signal to the running process (SIGKILL and SIGTERM: the exit is expected). */
  kill(signal: NodeJS.Signals): void {
    if (signal === 'SIGKILL' || signal === 'SIGTERM') this.ending = true;
    if (this.running()) this.child?.kill(signal);
  }

  /** How the current process ended (resolves when it does). */
  exited(): Promise<Exit> {
    return this.exit;
  }

  /** SIGTERM (and SIGCONT, for a paused one); resolves with how it exited. No more restarts. */
  async stop(): Promise<Exit> {
    this.closed = true;
    this.ending = true;
    if (this.running()) {
      this.child?.kill('SIGCONT');
      this.child?.kill('SIGTERM');
      const timer = setTimeout(() => this.child?.kill('SIGKILL'), 20_000);
      const e = await this.exit;
      clearTimeout(timer);
      return e;
    }
    return this.exit;
  }

  private async serves(): Promise<boolean> {
    if (this.name === 'gateway') {
      return fetch(`${this.options.gatewayUrl}/health`, { signal: AbortSignal.timeout(500) }).then(
        () => true,
        () => false,
      );
    }
    if (this.name === 'engine') {
      const client = new EngineClient(this.options.engineAddress, 0, { deadlineMs: 500 });
      try {
        await client.lastApplied();
        return true;
      } catch {
        return false;
      } finally {
        client.close();
      }
    }
    // The dispatcher and the writer serve nothing to ask: running a moment is what can be known.
    await new Promise((r) => setTimeout(r, 300));
    return this.running();
  }
}
