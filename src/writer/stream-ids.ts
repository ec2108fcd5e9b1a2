// Redis stream ids (`<ms>-<seq>`) as numbers to compare and step. matchbox's streams use `0-<seq>`,
// but nothing here depends on it.

export interface StreamId {
  ms: bigint;
  seq: bigint;
}

export function parseId(id: string): StreamId {
  const dash = id.indexOf('-');
  return dash < 0
    ? { ms: BigInt(id), seq: 0n }
    : { ms: BigInt(id.slice(0, dash)), seq: BigInt(id.slice(dash + 1)) };
}

export function formatId(id: StreamId): string {
  return `${id.ms}-${id.seq}`;
}

export function compareIds(a: StreamId, b: StreamId): number {
  if (a.ms !== b.ms) return a.ms < b.ms ? -1 : 1;
  return a.seq === b.seq ? 0 : a.seq < b.seq ? -1 : 1;
}

/** The smallest id after `id`. */
export function nextId(id: StreamId): StreamId {
  return { ms: id.ms, seq: id.seq + 1n };
}

/** The sequence part of an id `0-<seq>`, as a number. */
export function seqOf(id: string): number {
  return Number(id.slice(id.indexOf('-') + 1));
}
