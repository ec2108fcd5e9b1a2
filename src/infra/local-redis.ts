// A project-local redis-server, run as our child process: AOF on (the order stream is the engine's
// journal, so a restarted Redis must still have every accepted order), no eviction (an evicted
// stream entry is a lost order), no RDB snapshots (AOF is the durability), bound to 127.0.0.1.
// Fault tests kill, stop and restart it on the same folder and port, and it reloads its AOF.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './free-port.js';
import { ensureServerPackages } from './packages.js';
import { isRunning, readPidFile, terminate } from './processes.js';
import { tail } from './run.js';
import { STATUS_HASH_MAX_VALUE } from '../queue/keys.js';

export type AppendFsync = 'everysec' | 'always';

export interface LocalRedisOptions {
  /** Folder of the AOF, the pid file and redis.log; created if missing. */
  dir: string;
  /** Fixed port (to restart a server where its clients expect it); default: a free one. */
  port?: number;
  /** `everysec` (default) or `always` (fsync before answering: survives a power cut). */
  appendfsync?: AppendFsync;
  /** Path of redis-server; default: found, or installed, by ensureServerPackages. */
  redisServer?: string;
  /** How long to wait for the first PING answer (loading a long AOF takes time); default 60 s. */
  startTimeoutMs?: number;
  /**
   * CPUs (taskset lists) for the main thread, and for everything else Redis runs: its fsync and
   * close threads and the AOF-rewrite child, so that neither delays an answer.
   */
  cpus?: { server: string; background: string };
}

export interface LocalRedis {
  /** redis://127.0.0.1:PORT */
  readonly url: string;
  /**
   * Its Unix socket (`<dir>/redis.sock`, owner only), undefined when the path is too long for
   * one: on the same machine a round trip costs less there than through loopback TCP.
   */
  readonly socketPath: string | undefined;
  readonly port: number;
  readonly dir: string;
  readonly appendfsync: AppendFsync;
  /** Pid of the current redis-server process (it changes on restart). */
  readonly pid: number;
  /** Resolves when the current process has exited, however it ended. */
  exited(): Promise<void>;
  /** Sends a signal: SIGKILL for a crash, SIGSTOP/SIGCONT for a hang. */
  kill(signal: NodeJS.Signals): void;
  /** Shuts it down cleanly (SIGTERM: Redis fsyncs its AOF first); does nothing if it has exited. */
  stop(): Promise<void>;
  /** Starts a new server on the same folder and port (stopping the old one if it still runs). */
  restart(): Promise<void>;
}

/** Sends PING and returns the first line of the answer, or undefined if nothing answered. */
function ping(port: number): Promise<string | undefined> {
  return new Promise((resolvePing) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let answer = '';
    const done = (value: string | undefined) => {
      socket.destroy();
      resolvePing(value);
    };
    socket.setTimeout(1_000, () => done(undefined));
    socket.once('error', () => done(undefined));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.setEncoding('utf8').on('data', (s: string) => {
      answer += s;
      if (answer.includes('\r\n')) done(answer.slice(0, answer.indexOf('\r\n')));
    });
  });
}

function readLog(dir: string): string {
  try {
    return readFileSync(join(dir, 'redis.log'), 'utf8');
  } catch {
    return '';
  }
}

class PortInUse extends Error {}

class RedisServer implements LocalRedis {
  private child: ChildProcess | undefined;
  private exit: Promise<void> = Promise.resolve();
  readonly socketPath: string | undefined;

  constructor(
    private readonly binary: string,
    readonly dir: string,
    readonly port: number,
    readonly appendfsync: AppendFsync,
    private readonly startTimeoutMs: number,
    private readonly cpus: LocalRedisOptions['cpus'],
  ) {
    const path = join(dir, 'redis.sock');
    // sun_path holds 108 bytes with its terminating NUL.
    this.socketPath = Buffer.byteLength(path) < 100 ? path : undefined;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  exited(): Promise<void> {
    return this.exit;
  }

  private running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && !this.child.signalCode;
  }

  kill(signal: NodeJS.Signals): void {
    if (this.running()) this.child?.kill(signal);
  }

  async stop(): Promise<void> {
    if (!this.running()) return;
    const stopped = this.exit;
    this.child?.kill('SIGTERM');
    this.child?.kill('SIGCONT'); // a SIGSTOPped server would hold the SIGTERM forever
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), 15_000);
    await stopped;
    clearTimeout(timer);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  /** Starts redis-server and waits until it answers PING (after loading its AOF). */
  async launch(): Promise<void> {
    await stopOrphan(this.dir);
    const logStart = readLog(this.dir).length;
    const child = spawn(
      this.binary,
      [
        ...['--bind', '127.0.0.1', '--port', String(this.port), '--protected-mode', 'yes'],
        ...['--dir', this.dir, '--daemonize', 'no'],
        ...['--pidfile', join(this.dir, 'redis.pid'), '--logfile', join(this.dir, 'redis.log')],
        ...['--appendonly', 'yes', '--appendfsync', this.appendfsync],
        ...['--maxmemory-policy', 'noeviction', '--save', ''],
        ...(this.socketPath === undefined
          ? []
          : ['--unixsocket', this.socketPath, '--unixsocketperm', '700']),
        // Rewrite the AOF when it is 5x its base, not 2x: a rewrite writes the whole dataset
        // (every cached order), and at 5,000 orders/s the default rewrote for 12 s out of every
        // 26 on the background CPU. The price is AOF disk space, up to 5x the dataset.
        ...['--auto-aof-rewrite-percentage', '400', '--auto-aof-rewrite-min-size', '256mb'],
        // Keep an order's status hash compact: its order JSON (600–900 bytes) is over the default
        // 64-byte bound, which made every one a hash table. As a listpack, an order with its
        // recent-orders entry takes 738 bytes rather than 926, a final one with a fill and its
        // fills list 1,230 rather than 1,425; and the submit script about 3 µs less of Redis's time
        // (measured 2026-12-06). Four fields: the listpack's linear scans stay short.
        ...['--hash-max-listpack-value', String(STATUS_HASH_MAX_VALUE)],
        ...(this.cpus === undefined
          ? []
          : [
              ...['--server_cpulist', this.cpus.server, '--bio_cpulist', this.cpus.background],
              ...['--aof_rewrite_cpulist', this.cpus.background],
              ...['--bgsave_cpulist', this.cpus.background],
            ]),
      ],
      // Its own process group: the terminal's Ctrl-C goes to matchbox, which stops Redis last.
      { cwd: this.dir, stdio: 'ignore', detached: true },
    );
    this.child = child;
    this.exit = new Promise<void>((done) => child.once('exit', () => done()));
    let failed: Error | undefined;
    child.once('error', (err) => (failed = err));
    const deadline = Date.now() + this.startTimeoutMs;
    for (;;) {
      if (failed !== undefined) throw failed;
      if (child.exitCode !== null || child.signalCode !== null) {
        const log = readLog(this.dir).slice(logStart);
        if (/Address already in use|Could not create server TCP/.test(log)) {
          throw new PortInUse(`port ${this.port} is in use`);
        }
        throw new Error(
          `redis-server exited at start; ${join(this.dir, 'redis.log')}:\n${tail(log)}`,
        );
      }
      // -LOADING while it replays the AOF: keep waiting.
      if ((await ping(this.port)) === '+PONG') return;
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`redis-server did not answer PING within ${this.startTimeoutMs} ms`);
      }
      await sleep(20);
    }
  }
}

/**
 * A Redis left running on `dir` by a matchbox that was killed (so never stopped it) would write
 * the same AOF as the new one: it is shut down cleanly first.
 */
async function stopOrphan(dir: string): Promise<void> {
  const pid = readPidFile(join(dir, 'redis.pid'));
  if (pid !== undefined && pid !== process.pid && isRunning(pid, 'redis-server')) {
    await terminate(pid, 'SIGTERM', 15_000);
  }
}

/** Starts a project-local Redis; see LocalRedisOptions. */
export async function startLocalRedis(options: LocalRedisOptions): Promise<LocalRedis> {
  const binary =
    options.redisServer ?? ensureServerPackages({ redis: true, postgres: false }).redisServer;
  if (binary === undefined) throw new Error('redis-server not found');
  const dir = resolve(options.dir);
  mkdirSync(dir, { recursive: true });
  const timeout = options.startTimeoutMs ?? 60_000;
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    const server = new RedisServer(
      binary,
      dir,
      port,
      options.appendfsync ?? 'everysec',
      timeout,
      options.cpus,
    );
    try {
      await server.launch();
      return server;
    } catch (err) {
      // Someone took the free port between our probe and Redis binding it: try another.
      if (!(err instanceof PortInUse) || options.port !== undefined || attempt >= 5) {
        throw err;
      }
    }
  }
}
