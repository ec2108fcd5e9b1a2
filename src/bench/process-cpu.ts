// Where the CPU went during a phase: utime + stime of the matchbox process (gateway, dispatcher,
// writer) and its engine child, of every redis-server and postgres process on the machine (pg_ctl
// daemonizes the postmaster, so it is no child of ours), and of the bench itself, read from /proc
// (Linux). On a 2-core machine the shares show which component is the bottleneck without a
// profiler.
import { readFileSync, readdirSync } from 'node:fs';

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

/** CPU ticks by role: `gateway+dispatcher+writer`, `engine`, `redis`, `postgres`, `bench`. */
function snapshot(rootPid: number | undefined): Map<string, number> {
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
  for (const s of stats) {
    if (s.comm.startsWith('redis-server')) add('redis', s.ticks);
    else if (s.comm.startsWith('postgres') || s.comm.startsWith('postmaster')) {
      add('postgres', s.ticks);
    }
  }
  const root = stats.find((s) => s.pid === rootPid);
  if (root !== undefined) {
    add('gateway+dispatcher+writer', root.ticks);
    for (const c of children.get(root.pid) ?? []) if (c.comm === 'node') add('engine', c.ticks);
  }
  return by;
}

/** Starts measuring; `end()` gives each role's CPU use in percent of one core over the phase. */
export function cpuMeter(rootPid: number | undefined): { end(): Record<string, number> } {
  const before = snapshot(rootPid);
  const t0 = process.hrtime.bigint();
  return {
    end() {
      const after = snapshot(rootPid);
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
