// Where `matchbox start` runs each process on a small machine. The order path's latency is the
// client → gateway → Redis → gateway → client chain, and on a VM a wake-up across CPUs costs far
// more than one on the same CPU (measured here: a Redis round trip 20 µs on one CPU, 56 µs across
// two). So the gateway and Redis share the first CPU, and everything behind the queue — engine,
// dispatcher and writer, PostgreSQL — runs on the others, where its batches cannot delay an
// answer. Applied with taskset (util-linux), by pid, to every thread.
import { spawnSync } from 'node:child_process';
import { childrenOf } from './processes.js';

export type CpuLayoutSetting = 'auto' | 'off';

/** Two CPU lists in taskset's syntax: the order path's, and the background's. */
export interface CpuLayout {
  front: string;
  back: string;
}

/** The CPUs a process may run on, from taskset; undefined when taskset is not there. */
export function allowedCpus(pid = process.pid): number[] | undefined {
  const r = spawnSync('taskset', ['-cp', String(pid)], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const list = /:\s*([0-9,\s-]+)\s*$/.exec(r.stdout)?.[1];
  return list === undefined ? undefined : parseCpuList(list);
}

/** `0,2-4` → [0, 2, 3, 4]. */
export function parseCpuList(list: string): number[] {
  const out: number[] = [];
  for (const part of list.split(',').map((p) => p.trim())) {
    if (part === '') continue;
    const [a, b] = part.split('-').map(Number) as [number, number | undefined];
    for (let c = a; c <= (b ?? a); c++) out.push(c);
  }
  return out;
}

/**
 * The layout for a setting and the CPUs allowed: with `auto` and two or more CPUs, the first for
 * the order path and the rest for the background; otherwise none (the kernel places everything).
 */
export function planLayout(
  setting: CpuLayoutSetting,
  cpus: readonly number[] | undefined,
): CpuLayout | undefined {
  if (setting === 'off' || cpus === undefined || cpus.length < 2) return undefined;
  return { front: String(cpus[0]), back: cpus.slice(1).join(',') };
}

/** The command line that starts `argv` already bound to `cpus` (taskset execs it: same pid). */
export function boundCommand(cpus: string | undefined, argv: string[]): string[] {
  return cpus === undefined ? argv : ['taskset', '-c', cpus, ...argv];
}

/**
 * Binds a running process, every thread of it, and (with `tree`) its current children to `cpus`;
 * processes they fork later inherit it. Returns the error text when taskset refused.
 */
export function pin(pid: number, cpus: string, tree = false): string | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return `no process to bind (pid ${pid})`;
  const pids = tree ? [pid, ...childrenOf(pid)] : [pid];
  for (const p of pids) {
    const r = spawnSync('taskset', ['-a', '-cp', cpus, String(p)], { encoding: 'utf8' });
    if (r.error !== undefined) return r.error.message;
    // A child that ended while we went through the list needs no binding.
    if (r.status !== 0 && (p === pid || /No such process/i.test(r.stderr) === false)) {
      return (r.stderr || `taskset exited with ${r.status}`).trim();
    }
  }
  return undefined;
}
