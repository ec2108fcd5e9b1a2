// PostgreSQL refuses to run as root. When matchbox runs as root (containers, CI), the local
// cluster belongs to an unprivileged user instead — `postgres`, which Debian's package creates, or
// a system user of our own — and initdb/pg_ctl run as that user through runuser.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { ServiceSetupError } from './errors.js';
import { findProgram } from './packages.js';

export interface ServerUser {
  name: string;
  uid: number;
  gid: number;
}

const FALLBACK_USER = 'matchbox-pg';

function lookup(name: string): ServerUser | undefined {
  const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** The user to run PostgreSQL as: undefined when we are not root (then it runs as us). */
export function postgresServerUser(): ServerUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const existing = lookup('postgres') ?? lookup(FALLBACK_USER);
  if (existing !== undefined) return existing;
  const r = spawnSync(
    'useradd',
    ['--system', '--no-create-home', '--user-group', '--shell', '/usr/sbin/nologin', FALLBACK_USER],
    { encoding: 'utf8' },
  );
  const created = lookup(FALLBACK_USER);
  if (created === undefined) {
    throw new ServiceSetupError(
      `PostgreSQL cannot run as root and creating the user ${FALLBACK_USER} failed: ` +
        `${(r.stderr ?? r.error?.message ?? '').trim()}`,
    );
  }
  return created;
}

/** `command args` as the argv that runs it as `user` (unchanged when user is undefined). */
export function asUser(
  user: ServerUser | undefined,
  command: string,
  args: readonly string[],
): [string, string[]] {
  if (user === undefined) return [command, [...args]];
  const runuser = findProgram('runuser', ['/usr/sbin', '/sbin']);
  if (runuser === undefined) {
    throw new ServiceSetupError(
      'PostgreSQL cannot run as root and runuser (util-linux) is missing: run matchbox as an ' +
        'ordinary user, or set DATABASE_URL',
    );
  }
  return [runuser, ['-u', user.name, '--', command, ...args]];
}

/**
 * Gives `dir` to `user` and lets it reach `dir`: each parent gets the search (x) bit for others
 * if it lacks it (e.g. /root is 0700), never the read bit, so nothing becomes listable.
 */
export function handOver(dir: string, user: ServerUser): void {
  const st = statSync(dir);
  if (st.uid !== user.uid) {
    const r = spawnSync('chown', ['-R', `${user.uid}:${user.gid}`, dir], { encoding: 'utf8' });
    if (r.status !== 0) chownSync(dir, user.uid, user.gid);
  }
  for (let parent = dirname(dir); ; parent = dirname(parent)) {
    const mode = statSync(parent).mode;
    if ((mode & 0o001) === 0) chmodSync(parent, (mode & 0o7777) | 0o001);
    if (dirname(parent) === parent) break;
  }
}
