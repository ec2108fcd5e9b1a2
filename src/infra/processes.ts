// Questions about other processes by pid: the servers we start outlive a matchbox that is killed,
// so the next run finds them through their pid files and must tell a live server from a stale file.
import { readFileSync, readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** True when `pid` runs (a zombie, which nobody may ever reap in a container, counts as gone). */
export function isAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc (not Linux): kill(0) is all we know
  }
}

/**
 * The program name of `pid` (`redis-server`, `postgres`), or undefined when unknown. Used so a
 * pid file whose number was reused by an unrelated process after a reboot is not acted upon.
 */
export function processName(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** True when `pid` is alive and (where the system can tell) runs `name`. */
export function isRunning(pid: number, name: string): boolean {
  if (!isAlive(pid)) return false;
  const actual = processName(pid);
  return actual === undefined || actual === name;
}

/** Waits until `pid` is gone; false if it still runs after `timeoutMs`. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(25);
  }
  return true;
}

/** Sends `signal`, ignoring a process that is already gone. */
export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * Ends `pid` with `first` (SIGTERM: a clean shutdown), resuming it in case a fault test left it
 * stopped, and with SIGKILL if it has not exited after `graceMs`.
 */
export async function terminate(pid: number, first: NodeJS.Signals, graceMs: number) {
  signal(pid, first);
  signal(pid, 'SIGCONT');
  if (await waitForExit(pid, graceMs)) return;
  signal(pid, 'SIGKILL');
  await waitForExit(pid, 5_000);
}

/** The first integer in a pid file's line `line` (0-based), or undefined. */
export function readPidFile(path: string, line = 0): number | undefined {
  try {
    const value = Number(readFileSync(path, 'utf8').split('\n')[line]?.trim());
    return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Pids whose parent is `pid`, from /proc. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // Field 4 (ppid) follows the command name, which is in parentheses and may hold spaces.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}
