import type { Codec } from "../codec/index.ts";
import { brief, type Inbound } from "../connection/index.ts";
import { CodecError, errorFromWire, errorToWire, type WireError } from "../errors/index.ts";
import { StreamOpening } from "../stream/index.ts";

/**
 * Messages between handles and hosts. Arrays rather than objects: no key strings on the wire.
 *   call request  payload: the encoded argument array; method, deadline, call id and metadata
 *                 in the Ab-Call / Ab-Meta headers (src/call/wire.ts), so relays need not decode
 *   cancel        payload: the call id (UTF-8), on subjects.cancel(call subject)
 *   reply         [0, result] | [1, WireError]
 *   control       { op: "ping" | "stats" | "stop", graceMs? }  → a reply as above
 */
export type Reply = [0, unknown] | [1, WireError] | [2, string, number, number];
export type ControlOp = { op: "ping" } | { op: "stats" } | { op: "stop"; graceMs?: number };

export function encodeOk(codec: Codec, value: unknown): Uint8Array {
  return codec.encode([0, value]);
}

/** Never throws: an error whose details cannot cross the wire still reaches the caller, without them. */
export function encodeErr(codec: Codec, err: unknown): Uint8Array {
  const w = errorToWire(err);
  try {
    return codec.encode([1, w]);
  } catch {
    return codec.encode([1, { code: w.code, name: w.name, message: String(w.message), retryable: w.retryable }]);
  }
}

/**
 * Answers `msg` without ever throwing: hosts reply from inside nats.js's socket reader, and a
 * throw there would leave the connection deaf. A reply over the server's max_payload becomes a
 * CodecError saying so (which always fits). Returns why the reply as given was not sent, for the
 * host's log, or undefined when it was.
 */
export function respondSafely(msg: Inbound, bytes: Uint8Array, codec: Codec, maxPayload: number): string | undefined {
  if (!msg.reply) return "no reply subject";
  let out = bytes;
  let problem: string | undefined;
  if (bytes.length > maxPayload) {
    problem = `reply of ${bytes.length} bytes exceeds max_payload ${maxPayload}`;
    out = encodeErr(codec, new CodecError(`the reply of ${bytes.length} bytes exceeds the server's max_payload of ${maxPayload} bytes; return less per call or raise max_payload in nats.conf`, {
      details: { bytes: bytes.length, maxPayload },
    }));
  }
  try {
    msg.respond(out);
  } catch (err) {
    return `cannot reply: ${(err as Error)?.message ?? String(err)}`;
  }
  return problem;
}

/**
 * Decodes a reply: the value, or throws the rebuilt error. A method that streams answers with
 * [2, subject, window, remainingMs]: that comes back as a StreamOpening, for the caller to pull.
 */
export function unwrapReply<T>(codec: Codec, bytes: Uint8Array): T {
  const r = codec.decode<unknown[]>(bytes);
  if (Array.isArray(r)) {
    if (r[0] === 0) return r[1] as T;
    if (r[0] === 1) throw errorFromWire(r[1] as WireError);
    if (r[0] === 2 && typeof r[1] === "string" && Number.isInteger(r[2]) && (r[2] as number) > 0 && typeof r[3] === "number" && r[3] > 0) {
      return new StreamOpening(r[1], r[2] as number, r[3]) as T;
    }
  }
  throw new CodecError("malformed reply: expected [0, result], [1, error] or a stream opening");
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

/** Names a hostile op value for an error message without JSON.stringify, which throws on BigInt. */
export function describeOp(op: unknown): string {
  if (typeof op !== "string") return op === null ? "null" : typeof op;
  return JSON.stringify(brief(op, 100));
}
