// A Redis client whose connections run a hook before named commands: a test makes one part of a
// process stall, fail or wait on a gate while the rest of it, and every other client, go on.
import type { Redis } from 'ioredis';

export type Call = (target: Redis, args: unknown[]) => unknown;

/**
 * A client whose connections (a dispatcher or writer makes its own with `duplicate`) run `hook`
 * before each named command: what it returns is the command's answer, undefined lets it through.
 */
export function hooked(redis: Redis, hook: (name: string) => Call | undefined): Redis {
  return new Proxy(redis, {
    get(target, prop, receiver) {
      if (prop !== 'duplicate') return Reflect.get(target, prop, receiver) as unknown;
      return (...a: Parameters<Redis['duplicate']>) =>
        new Proxy(target.duplicate(...a), {
          get(conn, name) {
            const v = Reflect.get(conn, name) as unknown;
            if (typeof v !== 'function') return v;
            return (...args: unknown[]) => {
              const answer = hook(String(name))?.(conn, args);
              return answer ?? (v as (...x: unknown[]) => unknown).apply(conn, args);
            };
          },
        });
    },
  });
}

/** The command `name` sent on `conn` as it is (from a hook). */
export const through = (conn: Redis, name: string, args: unknown[]): Promise<unknown> =>
  (conn as unknown as Record<string, (...x: unknown[]) => Promise<unknown>>)[name]?.(
    ...args,
  ) as Promise<unknown>;
