/**
 * A comparator putting the newest first by an ISO-8601 time (which sorts as text), ties broken by
 * id descending — UUIDv7 ids are time-ordered, so the order is stable and matches the time's.
 */
export function newestFirst<T extends { id: string }>(time: (x: T) => string) {
  return (a: T, b: T): number => {
    const ta = time(a);
    const tb = time(b);
    if (ta !== tb) return ta < tb ? 1 : -1;
    return a.id === b.id ? 0 : a.id < b.id ? 1 : -1;
  };
}
