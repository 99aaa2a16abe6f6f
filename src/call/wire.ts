import { CodecError, InvalidOptionsError } from "../errors/index.ts";

/**
 * The call context on the wire, in NATS headers so that relays route on it without decoding
 * the payload (which is the encoded argument array):
 *
 *   Ab-Call: <remainingMs> <callId> <method>
 *   Ab-Meta: {"key":"value",...}            only when the caller gave metadata
 *
 * The deadline travels as the time left, not as a clock reading: hosts' clocks need not agree,
 * and each hop sends what is left of its own deadline, so no hop can extend it.
 */
export const CALL_HEADER = "Ab-Call";
export const META_HEADER = "Ab-Meta";

export const MAX_METADATA_KEYS = 32;
export const MAX_METADATA_BYTES = 4096;
const METADATA_KEY = /^[A-Za-z0-9_.-]{1,64}$/;
// A method name is the header's last field: anything but control characters (a header line
// ends at CR/LF) may stand in it; names from the caller with those are refused before sending.
const UNSENDABLE = /[\u0000-\u001f\u007f]/;

export interface CallHeader {
  remainingMs: number;
  callId: string;
  method: string;
}

export function encodeCallHeader(remainingMs: number, callId: string, method: string): string {
  return `${Math.max(1, Math.ceil(remainingMs))} ${callId} ${method}`;
}

export function sendableMethod(method: string): boolean {
  return method.length > 0 && method.length <= 256 && !UNSENDABLE.test(method);
}

// The method name last found sendable: a host's calls name few methods, and the same one
// again is told by comparing strings rather than testing them against a pattern.
let lastSendable = "";

/** The parsed header, or why it is malformed. */
export function parseCallHeader(value: string): CallHeader | string {
  const a = value.indexOf(" ");
  const b = a < 0 ? -1 : value.indexOf(" ", a + 1);
  if (b < 0) return `${CALL_HEADER} must be "<remainingMs> <callId> <method>"`;
  const remainingMs = Number(value.slice(0, a));
  if (!Number.isFinite(remainingMs) || remainingMs <= 0 || remainingMs > 2 ** 31 - 1) return `${CALL_HEADER}: remainingMs must be a number of milliseconds in 1..2147483647`;
  const callId = value.slice(a + 1, b);
  const method = value.slice(b + 1);
  if (callId.length === 0 || callId.length > 128) return `${CALL_HEADER}: the call id must be 1..128 characters`;
  if (method !== lastSendable) {
    if (!sendableMethod(method)) return `${CALL_HEADER}: the method name must be 1..256 characters without control characters`;
    lastSendable = method;
  }
  return { remainingMs, callId, method };
}

/** Checks caller metadata (a string map, size-bounded) and returns a frozen copy. */
export function checkMetadata(value: unknown, where = "call options"): Readonly<Record<string, string>> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new InvalidOptionsError(`${where}: metadata must be an object of strings, such as { tenant: "a" }`, { details: { option: "metadata" } });
  }
  const out: Record<string, string> = {};
  const entries = Object.entries(value);
  if (entries.length > MAX_METADATA_KEYS) {
    throw new InvalidOptionsError(`${where}: metadata has ${entries.length} keys; at most ${MAX_METADATA_KEYS} travel with a call`, { details: { option: "metadata" } });
  }
  for (const [k, v] of entries) {
    if (!METADATA_KEY.test(k)) throw new InvalidOptionsError(`${where}: metadata key ${JSON.stringify(k.slice(0, 80))} must be 1..64 characters of A-Z a-z 0-9 _ . -`, { details: { option: "metadata" } });
    if (typeof v !== "string") throw new InvalidOptionsError(`${where}: metadata.${k} must be a string (got ${typeof v}); encode numbers and objects yourself`, { details: { option: "metadata" } });
    out[k] = v;
  }
  if (encodeMetadata(out).length > MAX_METADATA_BYTES) {
    throw new InvalidOptionsError(`${where}: metadata is over ${MAX_METADATA_BYTES} bytes once encoded; send large values as arguments`, { details: { option: "metadata" } });
  }
  return Object.freeze(out);
}

export function encodeMetadata(md: Readonly<Record<string, string>>): string {
  // Header values are one line: JSON escapes control characters, so CR/LF cannot end it early.
  return JSON.stringify(md);
}

/** Metadata from a header; malformed or oversized input is a CodecError (the caller hears). */
export function parseMetadata(value: string): Readonly<Record<string, string>> {
  if (value.length > MAX_METADATA_BYTES * 2) throw new CodecError(`${META_HEADER} is over ${MAX_METADATA_BYTES} bytes`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new CodecError(`${META_HEADER} is not JSON`);
  }
  try {
    return checkMetadata(parsed, META_HEADER);
  } catch (err) {
    throw new CodecError((err as Error).message);
  }
}
