// A bounded wait for an answer: for health probes, and wherever a dependency that takes a question
// and never answers must not hold the caller.

/** The value of `get` if it answers within `ms`, else undefined (a failure too). */
export async function probeValue<T>(get: () => Promise<T>, ms = 1000): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([get(), timeout]);
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}
