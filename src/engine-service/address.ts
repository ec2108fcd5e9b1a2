// Where shard n's engine listens: ENGINE_ADDRESS names shard 0, shard n is n ports above it.

/** `host:port` with the port moved up by the shard number. */
export function shardAddress(base: string, shard: number): string {
  const colon = base.lastIndexOf(':');
  const port = Number(base.slice(colon + 1));
  if (colon < 0 || !Number.isInteger(port)) {
    throw new Error(`engine address ${base} is not host:port`);
  }
  return `${base.slice(0, colon)}:${port + shard}`;
}
