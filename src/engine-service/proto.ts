// Loads proto/engine.proto, names its messages as TypeScript types and converts between them and
// the engine core's shapes. Server and client both go through here, so the wire format is defined
// once (the field names are the proto's, snake_case, because the loader keeps their case).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import type { Command, CommandType, ExecutionReport, OrderType, Side } from '../engine/types.js';
import type { OrderStatus, OrderView } from '../engine/types.js';
import type { EventKind, Reason, Stp, TimeInForce } from '../engine/types.js';

/** From dist/src/engine-service the proto is three levels up, from src/engine-service two. */
const CANDIDATES = [
  new URL('../../../proto/engine.proto', import.meta.url),
  new URL('../../proto/engine.proto', import.meta.url),
];

/** The path of proto/engine.proto, wherever this module runs from. */
export function protoPath(): string {
  for (const url of CANDIDATES) {
    const path = fileURLToPath(url);
    if (existsSync(path)) return path;
  }
  throw new Error(`proto/engine.proto not found (looked at ${CANDIDATES.join(', ')})`);
}

/** Batches of a busy shard are far past gRPC's default 4 MiB message limit. */
export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
};

let service: grpc.ServiceClientConstructor | undefined;

/**
 * int64 fields straight to and from JS numbers. With long.js present (proto-loader brings it)
 * protobufjs reads every int64 into a Long and `longs: Number` then turns that into a number:
 * two objects per field, 13 fields a report, on the dispatcher's path to every fill (its young
 * collections were ~5 a second, up to tens of ms on a slow machine). Without Long it reads the
 * number directly: the same values (both convert with the same precision; the engine's numbers
 * are safe integers), half the decoding time per report. It is a setting of the process's one
 * protobufjs (proto-loader's), which in matchbox only this wire format uses.
 */
function numbersForLongs(): void {
  protobuf.util.Long = null as unknown as typeof protobuf.util.Long;
  protobuf.configure();
}

/** The Engine service's generated client constructor (also carries `.service` for servers). */
export function engineService(): grpc.ServiceClientConstructor {
  if (service === undefined) {
    numbersForLongs();
    const definition = protoLoader.loadSync(protoPath(), {
      keepCase: true,
      longs: Number,
      enums: Number,
      defaults: true,
      oneofs: true,
    });
    const pkg = grpc.loadPackageDefinition(definition) as unknown as {
      matchbox: { engine: { v1: { Engine: grpc.ServiceClientConstructor } } };
    };
    service = pkg.matchbox.engine.v1.Engine;
  }
  return service;
}

export interface WireCommand {
  type: number;
  seq: number;
  ts: number;
  symbol: string;
  order_id: number;
  owner_id: number;
  side: number;
  order_type: number;
  tif: number;
  price: number;
  stop_price: number;
  quantity: number;
  post_only: boolean;
  stp: number;
  protection_bps: number;
}

export interface WireReport {
  kind: number;
  seq: number;
  ts: number;
  symbol: string;
  order_id: number;
  owner_id: number;
  side: number;
  price: number;
  stop_price: number;
  quantity: number;
  leaves: number;
  filled: number;
  reason: number;
  trade_no: number;
  maker_order_id: number;
  maker_owner_id: number;
  maker_leaves: number;
  maker_filled: number;
}

export interface WireLevel {
  price: number;
  quantity: number;
  orders: number;
}

/** A decoded SessionRequest: `msg` names the oneof member that is set. */
export interface SessionRequest {
  msg?: 'hello' | 'batch';
  hello?: { shard: string; written_seq: number } | null;
  batch?: { commands: WireCommand[] } | null;
}

export interface SessionReply {
  msg?: 'ready' | 'reports';
  ready?: { last_seq: number } | null;
  reports?: { last_seq: number; reports: WireReport[] } | null;
}

export interface LastAppliedRequest {
  shard: string;
}
export interface LastAppliedReply {
  last_seq: number;
}
export interface DepthRequest {
  symbol: string;
  levels: number;
}
export interface DepthReply {
  symbol: string;
  bids: WireLevel[];
  asks: WireLevel[];
  seq: number;
}

export interface LiveOrdersRequest {
  shard: string;
}
export interface WireLiveOrder {
  order_id: number;
  owner_id: number;
  symbol: string;
  side: number;
  order_type: number;
  price: number;
  stop_price: number;
  quantity: number;
  leaves: number;
  filled: number;
  status: number;
  priority: number;
}
export interface LiveOrdersReply {
  seq: number;
  orders: WireLiveOrder[];
}

/** A live order as LiveOrders reports it for reconciliation. */
export type LiveOrder = Omit<OrderView, 'tif' | 'postOnly' | 'stp' | 'protection'>;

export function toWireLiveOrder(o: LiveOrder): WireLiveOrder {
  return {
    order_id: o.orderId,
    owner_id: o.ownerId,
    symbol: o.symbol,
    side: o.side,
    order_type: o.orderType,
    price: o.price,
    stop_price: o.stopPrice,
    quantity: o.quantity,
    leaves: o.leaves,
    filled: o.filled,
    status: o.status,
    priority: o.priority,
  };
}

export function fromWireLiveOrder(w: WireLiveOrder): LiveOrder {
  return {
    orderId: w.order_id,
    ownerId: w.owner_id,
    symbol: w.symbol,
    side: w.side as Side,
    orderType: w.order_type as OrderType,
    price: w.price,
    stopPrice: w.stop_price,
    quantity: w.quantity,
    leaves: w.leaves,
    filled: w.filled,
    status: w.status as OrderStatus,
    priority: w.priority,
  };
}

export function toWireCommand(c: Command): WireCommand {
  return {
    type: c.type,
    seq: c.seq,
    ts: c.ts,
    symbol: c.symbol,
    order_id: c.orderId,
    owner_id: c.ownerId,
    side: c.side,
    order_type: c.orderType,
    tif: c.tif,
    price: c.price,
    stop_price: c.stopPrice,
    quantity: c.quantity,
    post_only: c.postOnly,
    stp: c.stp,
    protection_bps: c.protection,
  };
}

// The casts below narrow proto uint32s to the core's enumerations; the engine itself rejects any
// value outside them (INVALID_ORDER and friends), so nothing unchecked reaches the books.
export function fromWireCommand(w: WireCommand): Command {
  return {
    type: w.type as CommandType,
    seq: w.seq,
    ts: w.ts,
    symbol: w.symbol,
    orderId: w.order_id,
    ownerId: w.owner_id,
    side: w.side as Side,
    orderType: w.order_type as OrderType,
    tif: w.tif as TimeInForce,
    price: w.price,
    stopPrice: w.stop_price,
    quantity: w.quantity,
    postOnly: w.post_only,
    stp: w.stp as Stp,
    protection: w.protection_bps,
  };
}

export function toWireReport(r: ExecutionReport): WireReport {
  return {
    kind: r.kind,
    seq: r.seq,
    ts: r.ts,
    symbol: r.symbol,
    order_id: r.orderId,
    owner_id: r.ownerId,
    side: r.side,
    price: r.price,
    stop_price: r.stopPrice,
    quantity: r.quantity,
    leaves: r.leaves,
    filled: r.filled,
    reason: r.reason,
    trade_no: r.tradeNo,
    maker_order_id: r.makerOrderId,
    maker_owner_id: r.makerOwnerId,
    maker_leaves: r.makerLeaves,
    maker_filled: r.makerFilled,
  };
}

export function fromWireReport(w: WireReport): ExecutionReport {
  return {
    kind: w.kind as EventKind,
    seq: w.seq,
    ts: w.ts,
    symbol: w.symbol,
    orderId: w.order_id,
    ownerId: w.owner_id,
    side: w.side as Side,
    price: w.price,
    stopPrice: w.stop_price,
    quantity: w.quantity,
    leaves: w.leaves,
    filled: w.filled,
    reason: w.reason as Reason,
    tradeNo: w.trade_no,
    makerOrderId: w.maker_order_id,
    makerOwnerId: w.maker_owner_id,
    makerLeaves: w.maker_leaves,
    makerFilled: w.maker_filled,
  };
}

/** The proto's shard name of shard n (`s0`, `s1`, …), as in the Redis keys. */
export const shardName = (n: number): string => `s${n}`;
