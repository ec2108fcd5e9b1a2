// One shard's matching engine as the service drives it: batches of wire commands in, wire reports
// out, symbols listed on first sight, and replacement of the whole state on a rollback.
import { EventBuffer } from '../engine/event-buffer.js';
import { MatchingEngine } from '../engine/matching-engine.js';
import { CommandType } from '../engine/types.js';
import { fromWireCommand, toWireReport } from './proto.js';
import type { WireCommand, WireReport } from './proto.js';

export interface AppliedBatch {
  lastSeq: number;
  reports: WireReport[];
  /** Commands applied (those at or below the last applied seq are skipped). */
  applied: number;
}

export class ShardEngine {
  private engine: MatchingEngine;
  private listed: Set<string>;
  private readonly out = new EventBuffer();

  constructor(snapshot?: Uint8Array) {
    this.engine = snapshot === undefined ? new MatchingEngine() : MatchingEngine.restore(snapshot);
    this.listed = new Set(this.engine.symbols());
  }

  get core(): MatchingEngine {
    return this.engine;
  }

  get lastSeq(): number {
    return this.engine.lastSeq;
  }

  /** Replaces the state with a snapshot's, or with an empty engine. */
  reset(snapshot?: Uint8Array): void {
    this.engine = snapshot === undefined ? new MatchingEngine() : MatchingEngine.restore(snapshot);
    this.listed = new Set(this.engine.symbols());
  }

  /**
   * Applies the commands in order and returns every report they produced; a replica, which
   * needs the state and not the reports, passes `reporting` false.
   */
  apply(commands: WireCommand[], reporting = true): AppliedBatch {
    const reports: WireReport[] = [];
    let applied = 0;
    for (const w of commands) {
      const cmd = fromWireCommand(w);
      // The gateway only queues listed symbols, so listing on the first PLACE is exact, and it
      // depends on nothing but the commands: a replay lists the same symbols at the same points.
      if (
        cmd.type === CommandType.PLACE &&
        cmd.seq > this.engine.lastSeq &&
        !this.listed.has(cmd.symbol)
      ) {
        this.engine.listInstrument(cmd.symbol);
        this.listed.add(cmd.symbol);
      }
      this.out.clear();
      if (!this.engine.apply(cmd, this.out)) continue;
      // A forgotten symbol is listed again by its next PLACE, as a new one.
      if (cmd.type === CommandType.FORGET) this.listed = new Set(this.engine.symbols());
      applied++;
      if (!reporting) continue;
      for (let i = 0; i < this.out.length; i++) reports.push(toWireReport(this.out.at(i)));
    }
    this.out.clear();
    return { lastSeq: this.engine.lastSeq, reports, applied };
  }
}
