// Builders for engine commands in tests. Every builder returns a complete `Command` (the engine
// reads one fixed shape), filled with neutral defaults that any field of `fields` overrides.
import { blankCommand } from '../../src/engine/command.js';
import { CommandType } from '../../src/engine/types.js';
import type { Command } from '../../src/engine/types.js';

export const DEFAULT_SYMBOL = 'AAA';

/** A command of any type with every field set; unused fields are 0/false like the engine expects. */
export function command(seq: number, fields: Partial<Command> = {}): Command {
  return { ...blankCommand(), seq, ts: seq * 1000, symbol: DEFAULT_SYMBOL, ownerId: 1, ...fields };
}

/**
 * A PLACE: by default a GTC LIMIT buy of 1 lot at 100 by owner 1 on 'AAA', no STP, with the order
 * id equal to the sequence so that short scenarios need not invent ids.
 */
export function place(seq: number, fields: Partial<Command> = {}): Command {
  return command(seq, {
    orderId: seq,
    price: 100,
    quantity: 1,
    ...fields,
    type: CommandType.PLACE,
  });
}

/** A CANCEL of `orderId` by owner 1 (override `ownerId` in `fields`). */
export function cancel(seq: number, orderId: number, fields: Partial<Command> = {}): Command {
  return command(seq, { ...fields, orderId, type: CommandType.CANCEL });
}

/** A REPLACE of `orderId` by owner 1 with a new price and new total quantity (filled included). */
export function replace(
  seq: number,
  orderId: number,
  price: number,
  quantity: number,
  fields: Partial<Command> = {},
): Command {
  return command(seq, { ...fields, orderId, price, quantity, type: CommandType.REPLACE });
}
