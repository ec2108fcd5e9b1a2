// How many entries the writer asks Redis for in one read. Redis builds a reply while every other
// client waits, and an event entry carries a whole dispatched batch (~1 kB an order: a batch of
// 250 is ~250 kB, and 250 of them a 60 MB reply). So a read asks for about READ_BYTES of event
// entries, by the size of those lately read, and at most READ_COUNT entries of each stream.

/**
 * Most entries per stream and read: reads of 1,000 took up to 48 ms behind a backlog and stalled
 * the gateway's submissions with them. Behind a backlog, reads follow each other.
 */
export const READ_COUNT = 250;
/** About as many bytes of event payloads as a read brings. */
export const READ_BYTES = 1024 * 1024;

export class ReadSize {
  /**
   * The mean length of the event payloads lately read; before the first, a guess of a busy
   * batch's (a writer that starts behind a backlog does not learn it from a reply of 60 MB).
   */
  private mean = 256 * 1024;
  /** The largest mean of one read so far (0 before the first). */
  private biggest = 0;
  /** Event entries the last read brought. */
  private last = 0;

  /** A read's event entries that had a payload: how many, and their bytes. */
  payloads(entries: number, bytes: number): void {
    if (entries === 0) return;
    const mean = bytes / entries;
    // A moving mean: dispatched batches grow and shrink with the load.
    this.mean = (this.mean + mean) / 2;
    this.biggest = Math.max(this.biggest, mean);
  }

  /** How many event entries a read brought (none: 0). */
  read(events: number): void {
    this.last = events;
  }

  /**
   * Entries per stream for the next read. The mean follows the entries lately read, not those
   * waiting: after a quiet spell of small batches, or an outage of PostgreSQL that stopped the
   * reads, a backlog of big ones may wait, and a count of 250 would bring them in one reply of
   * tens of MB. So the count grows back from what the last read brought, doubling while reads
   * come back full, unless no batch that big has been seen.
   */
  get count(): number {
    const bySize = Math.floor(READ_BYTES / this.mean);
    const byGrowth = Math.max(2 * this.last, Math.floor(READ_BYTES / this.biggest));
    return Math.max(1, Math.min(READ_COUNT, bySize, byGrowth));
  }
}
