// Order-stream records → engine commands. The engine's order id is the PLACE's stream sequence,
// its owner the user's compact number; prices and quantities are already ticks and lots.
import { blankCommand } from '../engine/command.js';
import { CommandType } from '../engine/types.js';
import type { Command } from '../engine/types.js';
import { engineOrderType, engineSide, engineStp, engineTif } from '../queue/records.js';
import type { CommandRecord } from '../queue/records.js';

/**
 * An order-stream record of a kind this dispatcher does not know: one a later gateway writes. The
 * shard waits, its entry unread, until the dispatcher is upgraded (upgrade it before gateways).
 */
export class UnknownRecordError extends Error {
  override readonly name = 'UnknownRecordError';
}

/** The engine command of the order-stream entry `0-<seq>`. */
export function engineCommand(seq: number, record: CommandRecord): Command {
  if (record.k === 'place') {
    const o = record.order;
    return {
      type: CommandType.PLACE,
      seq,
      ts: Date.parse(o.created_at),
      symbol: o.symbol,
      orderId: seq,
      ownerId: o.owner_no,
      side: engineSide(o.side),
      orderType: engineOrderType(o.type),
      tif: engineTif(o.time_in_force),
      price: o.price_ticks,
      stopPrice: o.stop_ticks,
      quantity: o.quantity_lots,
      postOnly: o.post_only,
      stp: engineStp(o.self_trade_prevention),
      // Absent from orders queued before price protection existed.
      protection: o.protection_bps ?? 0,
    };
  }
  // The rest carry their request's time and a symbol, and what each adds to them.
  const base = {
    ...blankCommand(),
    seq,
    ts: Date.parse(record.requested_at),
    symbol: record.symbol ?? '',
  };
  switch (record.k) {
    case 'cancel_all':
      return {
        ...base,
        type: CommandType.CANCEL_ALL,
        ownerId: record.owner_no,
        side: engineSide(record.side),
      };
    case 'forget':
      return { ...base, type: CommandType.FORGET };
    case 'cancel':
      return {
        ...base,
        type: CommandType.CANCEL,
        orderId: record.target_seq,
        ownerId: record.owner_no,
      };
    case 'replace':
      return {
        ...base,
        type: CommandType.REPLACE,
        orderId: record.target_seq,
        ownerId: record.owner_no,
        price: record.price_ticks,
        quantity: record.quantity_lots,
      };
  }
  throw new UnknownRecordError(
    `order-stream entry 0-${seq} is of kind ${JSON.stringify((record as { k: unknown }).k)}, unknown to this dispatcher`,
  );
}
