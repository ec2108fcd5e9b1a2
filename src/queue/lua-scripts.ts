// The Lua scripts of src/queue/lua, read once at start. A script's key count is in its file name
// (`submit-order-7.lua` takes 7); one without a number takes a count that varies per call.
import { readFileSync } from 'node:fs';

/** The text of a script; found from src/ or from dist/src/. */
export function lua(name: string): string {
  for (const base of ['../../../src/queue/lua/', './lua/']) {
    try {
      return readFileSync(new URL(base + name, import.meta.url), 'utf8');
    } catch {
      // try the next location
    }
  }
  throw new Error(`Lua script ${name} not found`);
}

/** The number of KEYS in the script's file name; undefined when it varies per call. */
export function keyCount(name: string): number | undefined {
  const n = /-(\d+)\.lua$/.exec(name)?.[1];
  return n === undefined ? undefined : Number(n);
}
