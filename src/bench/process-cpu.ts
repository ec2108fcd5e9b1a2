// Where the CPU went during a phase: utime + stime of the matchbox process (the gateway), of its
// children (the engine, the dispatcher and writer, the local redis-server), of the local PostgreSQL's
// postmaster and its backends (pg_ctl daemonizes it: it is found through its pid file), and of the
// bench itself, read from /proc (Linux). On a 2-core machine the shares show which component is
// the bottleneck without a profiler. Servers the bench did not start are not counted.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

interface ProcStat {
  pid: number;
  ppid: number;
  comm: string;
  ticks: number;
}

const TICKS_PER_S = 100; // USER_HZ on Linux

function readStat(pid: number): ProcStat | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = s.lastIndexOf(')');
    const comm = s.slice(s.indexOf('(') + 1, close);
    const f = s.slice(close + 2).split(' ');
    // After the comm: state(0) ppid(1) … utime(11) stime(12).
    return { pid, ppid: Number(f[1]), comm, ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return undefined;
  }
}

function allStats(): ProcStat[] {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return [];
  }
  const out: ProcStat[] = [];
  for (const n of names) {
    if (!/^[0-9]+$/.test(n)) continue;
    const s = readStat(Number(n));
    if (s !== undefined) out.push(s);
  }
  return out;
}

function postmasterPid(dataDir: string | undefined): number | undefined {
  if (dataDir === undefined) return undefined;
  try {
    const pid = Number(readFileSync(join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** What a child of matchbox is: `engine`, `dispatcher`, `writer`, `redis`, or its command name. */
function roleOf(s: ProcStat): string {
  if (s.comm.startsWith('redis')) return 'redis';
  if (s.comm !== 'node') return s.comm;
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${s.pid}/cmdline`, 'utf8');
  } catch {
    // gone
  }
  if (cmdline.includes('engine-service')) return 'engine';
  // node, its flags (the writer's), the CLI, then the part.
  const args = cmdline.split('\0');
  const part = args[args.findIndex((a) => a.endsWith('main.js')) + 1];
  return part === 'dispatcher' || part === 'writer' ? part : 'node';
}

/** The pid of matchbox's child running `part` (`writer`, `dispatcher`, `engine`), or undefined. */
export function partPid(rootPid: number | undefined, part: string): number | undefined {
  if (rootPid === undefined) return undefined;
  return allStats().find((s) => s.ppid === rootPid && roleOf(s) === part)?.pid;
}

/** CPU ticks by role: `gateway`, `dispatcher`, `writer`, `engine`, `redis`, `postgres`, `bench`. */
function takeSnapshot(rootPid: number | undefined, pgPid: number | undefined): Map<string, number> {
  const by = new Map<string, number>();
  const add = (role: string, ticks: number): void => {
    by.set(role, (by.get(role) ?? 0) + ticks);
  };
  const self = readStat(process.pid);
  if (self !== undefined) add('bench', self.ticks);
  if (rootPid === undefined) return by;
  const stats = allStats();
  const children = new Map<number, ProcStat[]>();
  for (const s of stats) {
    const list = children.get(s.ppid) ?? [];
    list.push(s);
    children.set(s.ppid, list);
  }
  const tree = (s: ProcStat, role: string): void => {
    add(role, s.ticks);
    for (const c of children.get(s.pid) ?? []) tree(c, role);
  };
  const root = stats.find((s) => s.pid === rootPid);
  if (root !== undefined) {
    add('gateway', root.ticks);
    for (const c of children.get(root.pid) ?? []) tree(c, roleOf(c));
  }
  const pg = stats.find((s) => s.pid === pgPid);
  if (pg !== undefined) tree(pg, 'postgres');
  return by;
}

/** Starts measuring; `end()` gives each role's CPU use in percent of one core over the phase. */
export function cpuMeter(
  rootPid: number | undefined,
  dataDir: string | undefined,
): { end(): Record<string, number> } {
  const pgPid = postmasterPid(dataDir);
  const snapshot = (): Map<string, number> => takeSnapshot(rootPid, pgPid);
  const before = snapshot();
  const t0 = process.hrtime.bigint();
  return {
    end() {
      const after = snapshot();
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const out: Record<string, number> = {};
      for (const [role, ticks] of after) {
        const used = (ticks - (before.get(role) ?? 0)) / TICKS_PER_S;
        out[role] = Math.round((used / seconds) * 100);
      }
      return out;
    },
  };
}
