import type { Codec } from "../codec/index.ts";
import { brief } from "../connection/log.ts";
import { CodecError, errorFromWire, errorToWire, type WireError } from "../errors/index.ts";
import { StreamOpening } from "../stream/frames.ts";

/**
 * The answer to every request on the bus (actor calls, control ops, agents, inference):
 *   [0, result] | [1, WireError] | [2, streamSubject, window, remainingMs] (a method that streams)
 * Arrays rather than objects: no key strings on the wire.
 */
export type Reply = [0, unknown] | [1, WireError] | [2, string, number, number];

export function encodeOk(codec: Codec, value: unknown): Uint8Array {
  return codec.encode([0, value]);
}

/** Never throws: an error whose details cannot cross the wire still reaches the caller, without them. */
export function encodeErr(codec: Codec, err: unknown): Uint8Array {
  const w = errorToWire(err);
  try {
    return codec.encode([1, w]);
  } catch {
    // Shortened: a message near the payload limit must not make the fallback throw too.
    return codec.encode([1, { code: w.code, name: w.name, message: brief(w.message, 4_000), retryable: w.retryable }]);
  }
}

/**
 * Decodes a reply: the value, or throws the rebuilt error. A method that streams answers with
 * [2, subject, window, remainingMs]: that comes back as a StreamOpening, for the caller to pull.
 * `from` names the subject in the error about a malformed reply.
 */
export function unwrapReply<T>(codec: Codec, bytes: Uint8Array, from?: string): T {
  const r = codec.decode<unknown[]>(bytes);
  if (Array.isArray(r)) {
    if (r[0] === 0) return r[1] as T;
    if (r[0] === 1) throw errorFromWire(r[1] as WireError);
    if (r[0] === 2 && typeof r[1] === "string" && Number.isInteger(r[2]) && (r[2] as number) > 0 && typeof r[3] === "number" && r[3] > 0) {
      return new StreamOpening(r[1], r[2] as number, r[3]) as T;
    }
  }
  throw new CodecError(`malformed reply${from === undefined ? "" : ` from ${from}`}: expected [0, result], [1, error] or a stream opening`);
}
