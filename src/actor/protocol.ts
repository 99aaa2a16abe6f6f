import type { Codec } from "../codec/index.ts";
import { errorFromWire, errorToWire, type WireError } from "../errors/index.ts";

/**
 * Messages between handles and hosts. Arrays rather than objects: no key strings on the wire.
 *   call request  [method, args, timeoutMs]   timeoutMs: what is left of the caller's deadline
 *   reply         [0, result] | [1, WireError]
 *   control       { op: "ping" | "stats" | "stop", graceMs? }  → a reply as above
 */
export type CallRequest = [method: string, args: unknown[], timeoutMs: number];
export type Reply = [0, unknown] | [1, WireError];
export type ControlOp = { op: "ping" } | { op: "stats" } | { op: "stop"; graceMs?: number };

export function encodeOk(codec: Codec, value: unknown): Uint8Array {
  return codec.encode([0, value]);
}

export function encodeErr(codec: Codec, err: unknown): Uint8Array {
  return codec.encode([1, errorToWire(err)]);
}

/** Decodes a reply: the value, or throws the rebuilt error. */
export function unwrapReply<T>(codec: Codec, bytes: Uint8Array): T {
  const r = codec.decode<Reply>(bytes);
  if (r[0] === 0) return r[1] as T;
  throw errorFromWire(r[1] as WireError);
}

/** Identity of one host instance, as ping answers and the registry records it. */
export interface InstanceInfo {
  instanceId: string;
  service: string;
  hostname: string;
  pid: number;
  hostId: string;
  startedAt: string;
}
