// Finds the Redis and PostgreSQL server programs, and installs them when they are missing and we
// may (root on a Debian/Ubuntu machine), so that a fresh machine with only Node needs nothing but
// `npm start` / `npm test`. Otherwise it says, in one line, the exact command that would.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readdirSync, realpathSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { ServiceSetupError } from './errors.js';

export interface PostgresBinaries {
  bindir: string;
  initdb: string;
  pgCtl: string;
  postgres: string;
}

export interface ServerBinaries {
  /** Path of redis-server; undefined when Redis was not asked for. */
  redisServer: string | undefined;
  /** PostgreSQL's server programs; undefined when PostgreSQL was not asked for. */
  postgres: PostgresBinaries | undefined;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `name` in PATH, then in `extraDirs`. */
export function findProgram(name: string, extraDirs: readonly string[] = []): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...extraDirs];
  return dirs.map((d) => join(d, name)).find(isExecutable);
}

export function findRedisServer(): string | undefined {
  return findProgram('redis-server', ['/usr/bin', '/usr/local/bin', '/usr/sbin']);
}

function postgresIn(bindir: string): PostgresBinaries | undefined {
  const b = {
    bindir,
    initdb: join(bindir, 'initdb'),
    pgCtl: join(bindir, 'pg_ctl'),
    postgres: join(bindir, 'postgres'),
  };
  return isExecutable(b.initdb) && isExecutable(b.pgCtl) && isExecutable(b.postgres)
    ? b
    : undefined;
}

/** Debian keeps each major version's server in /usr/lib/postgresql/<major>/bin; newest first. */
function debianBindirs(): string[] {
  try {
    return readdirSync('/usr/lib/postgresql')
      .filter((v) => /^[0-9.]+$/.test(v))
      .sort((a, b) => Number(b) - Number(a))
      .map((v) => `/usr/lib/postgresql/${v}/bin`);
  } catch {
    return [];
  }
}

export function findPostgresBinaries(): PostgresBinaries | undefined {
  const candidates: string[] = [];
  // pg_config may come from libpq-dev alone, naming a bindir without the server: checked below.
  const pgConfig = findProgram('pg_config');
  if (pgConfig !== undefined) {
    const r = spawnSync(pgConfig, ['--bindir'], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim() !== '') candidates.push(r.stdout.trim());
  }
  candidates.push(...debianBindirs());
  // initdb in PATH may be a symlink into the real bindir, where pg_ctl and postgres also are.
  const initdb = findProgram('initdb', ['/usr/local/pgsql/bin']);
  if (initdb !== undefined) candidates.push(dirname(realpathSync(initdb)), dirname(initdb));
  for (const dir of candidates) {
    const found = postgresIn(dir);
    if (found !== undefined) return found;
  }
  return undefined;
}

let aptUpdated = false;

function apt(args: string[]): void {
  const r = spawnSync('apt-get', args, {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.status !== 0) {
    throw new ServiceSetupError(
      `\`apt-get ${args.join(' ')}\` failed (see above); fix it and run the command again`,
    );
  }
}

function install(packages: string[], variables: string[]): void {
  const command = `apt-get install -y ${packages.join(' ')}`;
  const servers = variables.length > 1 ? 'servers' : 'a server';
  const orSet = `or set ${variables.join(' and ')} to ${servers} of your own`;
  if (findProgram('apt-get') === undefined) {
    throw new ServiceSetupError(
      `${packages.join(' and ')} not found: install ${packages.length > 1 ? 'them' : 'it'} ` +
        `with this system's package manager, ${orSet}`,
    );
  }
  if (process.getuid?.() !== 0) {
    throw new ServiceSetupError(
      `${packages.join(' and ')} not found: run \`sudo ${command}\` once, ${orSet}`,
    );
  }
  console.error(`matchbox: installing ${packages.join(' and ')} (${command})…`);
  if (!aptUpdated) {
    apt(['update']);
    aptUpdated = true;
  }
  apt(['install', '-y', '--no-install-recommends', ...packages]);
}

/**
 * The server programs asked for, installing the missing ones (root) or throwing a
 * ServiceSetupError that says how to (not root).
 */
export function ensureServerPackages(need: { redis: boolean; postgres: boolean }): ServerBinaries {
  let redisServer = need.redis ? findRedisServer() : undefined;
  let postgres = need.postgres ? findPostgresBinaries() : undefined;
  const packages: string[] = [];
  const variables: string[] = [];
  if (need.redis && redisServer === undefined) {
    packages.push('redis-server');
    variables.push('REDIS_URL');
  }
  if (need.postgres && postgres === undefined) {
    packages.push('postgresql');
    variables.push('DATABASE_URL');
  }
  if (packages.length === 0) return { redisServer, postgres };
  install(packages, variables);
  if (need.redis) redisServer = findRedisServer();
  if (need.postgres) postgres = findPostgresBinaries();
  if ((need.redis && redisServer === undefined) || (need.postgres && postgres === undefined)) {
    throw new ServiceSetupError(
      `installed ${packages.join(' and ')} but still cannot find the server programs`,
    );
  }
  return { redisServer, postgres };
}
