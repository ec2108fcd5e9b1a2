// Per-key token buckets: `rate` requests per second with a burst of one second's worth. In
// memory, per gateway: a limit against runaway clients, not an accounting system.
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly rate: number) {}

  /** 0 when the request may go on, else the seconds to wait before retrying. */
  take(key: string, now = Date.now()): number {
    if (this.rate <= 0) return 0;
    let b = this.buckets.get(key);
    if (b === undefined) {
      b = { tokens: this.rate, at: now };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(this.rate, b.tokens + ((now - b.at) / 1000) * this.rate);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.rate));
  }
}
