// The live line on stderr: rewritten in place on a terminal; elsewhere (CI logs) one line per
// phase, so a log stays readable.

export class Progress {
  private readonly tty = process.stderr.isTTY === true;
  private current = '';
  private readonly t0 = Date.now();

  constructor(private readonly quiet: boolean) {}

  /** A new phase. */
  phase(text: string): void {
    if (this.quiet) return;
    this.current = `${((Date.now() - this.t0) / 1000).toFixed(0).padStart(4)} s  ${text}`;
    text = this.current;
    if (this.tty) process.stderr.write(`\r\x1b[2K${text}`);
    else process.stderr.write(`${text}\n`);
  }

  /** The running figures of the current phase (terminal only). */
  update(detail: string): void {
    if (this.quiet || !this.tty) return;
    process.stderr.write(`\r\x1b[2K${this.current}  ${detail}`);
  }

  /** A line that stays. */
  note(text: string): void {
    if (this.quiet) return;
    process.stderr.write(this.tty ? `\r\x1b[2K${text}\n` : `${text}\n`);
  }

  done(): void {
    if (!this.quiet && this.tty) process.stderr.write('\r\x1b[2K');
  }
}
