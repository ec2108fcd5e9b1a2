// One matchbox per data folder: two would each start a Redis on the same AOF and a PostgreSQL on
// the same cluster. The lock is a file holding the owner's pid; a file whose process is gone (or
// older than the last boot, when its pid may belong to someone else now) is stale and taken over.
import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ServiceSetupError } from './errors.js';
import { isAlive } from './processes.js';

function bootTimeMs(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('btime '));
    return line === undefined ? undefined : Number(line.slice(6)) * 1_000;
  } catch {
    return undefined;
  }
}

function holder(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    const boot = bootTimeMs();
    if (boot !== undefined && statSync(path).mtimeMs < boot) return undefined;
    return isAlive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Takes `dir`'s lock (the folder must exist); returns the function that releases it. */
export function lockDataDir(dir: string): () => void {
  const path = join(dir, 'matchbox.lock');
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw err;
      const pid = holder(path);
      if (pid !== undefined) {
        throw new ServiceSetupError(
          `${dir} is in use by matchbox pid ${pid}` +
            `${pid === process.pid ? ' (this process)' : ''}; stop it, or use another DATA_DIR`,
        );
      }
      try {
        unlinkSync(path);
      } catch {
        // removed by another process taking it over: try again
      }
    }
  }
  return () => {
    try {
      if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
    } catch {
      // already gone
    }
  };
}
