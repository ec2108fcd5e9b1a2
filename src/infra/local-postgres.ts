// A project-local PostgreSQL cluster: initdb'd once into its folder (trust authentication, on
// 127.0.0.1 only), started with pg_ctl on a free port, with a `matchbox` database. The postmaster
// is not our child (pg_ctl daemonizes it), so everything goes through the folder: pg_ctl and the
// postmaster.pid file. That is also how a cluster left running by a killed matchbox is found.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '../db/client.js';
import { freePort } from './free-port.js';
import { ensureServerPackages } from './packages.js';
import type { PostgresBinaries } from './packages.js';
import { isAlive, isRunning, readPidFile, signal, terminate, waitForExit } from './processes.js';
import { run, tail } from './run.js';
import { asUser, handOver, postgresServerUser } from './server-user.js';
import type { ServerUser } from './server-user.js';

export interface LocalPostgresOptions {
  /** The cluster's data folder; initialised if it holds no cluster yet. */
  dir: string;
  /** Fixed port (to restart where clients expect it); default: a free one. */
  port?: number;
  /** Database to create if missing, named by `url`; default `matchbox`. */
  database?: string;
  /** Server programs; default: found, or installed, by ensureServerPackages. */
  binaries?: PostgresBinaries;
}

export interface LocalPostgres {
  /** postgres://postgres@127.0.0.1:PORT/<database> */
  readonly url: string;
  /** The same server's `postgres` database, for creating and dropping others. */
  readonly adminUrl: string;
  readonly port: number;
  readonly dir: string;
  /** Where the Unix socket is: `psql -h <socketDir> -p <port> -U postgres`. */
  readonly socketDir: string;
  /** Pid of the postmaster (it changes on restart). */
  readonly pid: number;
  /** Signals the postmaster: SIGKILL for a crash, SIGSTOP/SIGCONT for a hang. */
  kill(signal: NodeJS.Signals): void;
  /** `pg_ctl stop -m fast`; does nothing if it is not running. */
  stop(): Promise<void>;
  /** Starts it again on the same folder and port (stopping it first if it still runs). */
  restart(): Promise<void>;
}

/** Unix socket paths are limited to 107 bytes (sun_path); the socket is `.s.PGSQL.<port>`. */
const SOCKET_PATH_MAX = 107;

function socketDirFor(dir: string): string {
  if (Buffer.byteLength(`${dir}/.s.PGSQL.65535.lock`) <= SOCKET_PATH_MAX) return dir;
  const hash = createHash('sha256').update(dir).digest('hex').slice(0, 12);
  return `/tmp/matchbox-pg-${hash}`;
}

/** Quotes for /bin/sh: pg_ctl passes its -o options to the postmaster through a shell. */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

class PortInUse extends Error {}

class PostgresCluster implements LocalPostgres {
  pid = 0;

  constructor(
    private readonly bin: PostgresBinaries,
    private readonly user: ServerUser | undefined,
    readonly dir: string,
    readonly port: number,
    readonly socketDir: string,
    private readonly database: string,
  ) {}

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${this.database}`;
  }

  get adminUrl(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  private pgCtl(args: string[]) {
    const [command, argv] = asUser(this.user, this.bin.pgCtl, args);
    return run(command, argv, { cwd: this.dir, detached: true });
  }

  kill(sig: NodeJS.Signals): void {
    if (this.pid > 0) signal(this.pid, sig);
  }

  async stop(): Promise<void> {
    const pid = readPidFile(join(this.dir, 'postmaster.pid'));
    if (pid !== undefined && isRunning(pid, 'postgres')) {
      signal(pid, 'SIGCONT'); // a SIGSTOPped postmaster could not act on pg_ctl's request
      const r = await this.pgCtl(['stop', '-D', this.dir, '-m', 'fast', '-w', '-t', '60']);
      if (r.code !== 0 && isAlive(pid)) await terminate(pid, 'SIGQUIT', 5_000);
    }
    if (this.socketDir !== this.dir) {
      try {
        rmdirSync(this.socketDir);
      } catch {
        // not empty or already gone: either way nothing of ours to clean
      }
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Initialises the folder if needed, starts the postmaster and waits until it accepts. */
  async start(): Promise<void> {
    await this.stopOrphan();
    if (this.socketDir !== this.dir) {
      mkdirSync(this.socketDir, { recursive: true, mode: 0o700 });
      if (this.user !== undefined) handOver(this.socketDir, this.user);
    }
    const settings = [
      `-p ${this.port}`,
      `-k ${shellQuote(this.socketDir)}`,
      '-c listen_addresses=127.0.0.1',
      // Durability is the point of this system: never let a copied config turn these off.
      '-c fsync=on',
      '-c synchronous_commit=on',
      '-c full_page_writes=on',
    ].join(' ');
    const log = join(this.dir, 'server.log');
    const readLog = () => (existsSync(log) ? readFileSync(log, 'utf8') : '');
    // After a SIGKILL of the postmaster its backends notice and exit within moments; until then
    // a new postmaster refuses the old shared memory. Retry for a while in that case.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const logStart = readLog().length;
      const args = ['start', '-w', '-t', '60', '-D', this.dir, '-l', log, '-o', settings];
      const r = await this.pgCtl(args);
      if (r.code === 0) break;
      const thisStart = readLog().slice(logStart);
      if (/could not bind|could not create any TCP\/IP sockets/.test(thisStart)) {
        throw new PortInUse(`port ${this.port} is in use`);
      }
      const transient = /pre-existing shared memory block|lock file ".*" already exists/;
      if (!transient.test(thisStart + r.output) || Date.now() > deadline) {
        throw new Error(
          `PostgreSQL did not start (pg_ctl: ${tail(r.output, 3)}); ${log}:\n${tail(thisStart)}`,
        );
      }
      await sleep(250);
    }
    this.pid = readPidFile(join(this.dir, 'postmaster.pid')) ?? 0;
    await this.ensureDatabase();
  }

  /** A postmaster left running on this folder by a killed matchbox: stop it, then start ours. */
  private async stopOrphan(): Promise<void> {
    const pid = readPidFile(join(this.dir, 'postmaster.pid'));
    if (pid === undefined || !isRunning(pid, 'postgres')) return;
    signal(pid, 'SIGCONT');
    await this.pgCtl(['stop', '-D', this.dir, '-m', 'fast', '-w', '-t', '30']);
    if (!(await waitForExit(pid, 1_000))) await terminate(pid, 'SIGQUIT', 5_000);
  }

  private async ensureDatabase(): Promise<void> {
    if (this.database === 'postgres') return;
    const sql = connect(this.adminUrl, { max: 1 });
    try {
      const rows = await sql`SELECT 1 FROM pg_database WHERE datname = ${this.database}`;
      if (rows.length === 0) {
        await sql.unsafe(`CREATE DATABASE "${this.database.replace(/"/g, '""')}"`).catch((err) => {
          // Created meanwhile by someone else: what we wanted.
          if ((err as { code?: string }).code !== '42P04') throw err;
        });
      }
    } finally {
      await sql.end({ timeout: 1 });
    }
  }
}

/** initdb into `dir` unless it already holds a cluster. */
async function initialise(bin: PostgresBinaries, user: ServerUser | undefined, dir: string) {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (user !== undefined) handOver(dir, user);
  if (existsSync(join(dir, 'PG_VERSION'))) return;
  const [command, argv] = asUser(user, bin.initdb, [
    ...['-D', dir, '--username=postgres', '--auth=trust'],
    // No locale: byte order, and no failure on machines whose LANG has no UTF-8 locale installed.
    ...['--encoding=UTF8', '--no-locale'],
  ]);
  const r = await run(command, argv, { cwd: dir });
  if (r.code !== 0) throw new Error(`initdb failed for ${dir}:\n${tail(r.output)}`);
}

/** Starts a project-local PostgreSQL; see LocalPostgresOptions. */
export async function startLocalPostgres(options: LocalPostgresOptions): Promise<LocalPostgres> {
  const bin = options.binaries ?? ensureServerPackages({ redis: false, postgres: true }).postgres;
  if (bin === undefined) throw new Error('PostgreSQL server programs not found');
  const user = postgresServerUser();
  const dir = resolve(options.dir);
  await initialise(bin, user, dir);
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    const cluster = new PostgresCluster(
      bin,
      user,
      dir,
      port,
      socketDirFor(dir),
      options.database ?? 'matchbox',
    );
    try {
      await cluster.start();
      return cluster;
    } catch (err) {
      // Someone took the free port between our probe and the postmaster binding it.
      if (!(err instanceof PortInUse) || options.port !== undefined || attempt >= 5) throw err;
    }
  }
}
