import { CommandType, OrderType, Side, Stp, TimeInForce } from './types.js';
import type { Command } from './types.js';

/** A command with every field set to its neutral value: the one shape the engine sees. */
export function blankCommand(): Command {
  return {
    type: CommandType.PLACE,
    seq: 0,
    ts: 0,
    symbol: '',
    orderId: 0,
    ownerId: 0,
    side: Side.BUY,
    orderType: OrderType.LIMIT,
    tif: TimeInForce.GTC,
    price: 0,
    stopPrice: 0,
    quantity: 0,
    postOnly: false,
    stp: Stp.NONE,
    protection: 0,
  };
}
