import { CodecError } from "../errors/index.ts";
import { errorParts, isErrorValue } from "./error-values.ts";
import { SPLICE_BYTES, typedArrayTag } from "./typed-arrays.ts";

/**
 * How deep arguments and results may nest (arrays, objects, Maps, Sets and Errors inside each
 * other). The message's outermost value (a call's argument array, a reply's [status, value]) is
 * level 0, so an argument or result itself may nest exactly this many levels.
 */
export const MAX_LEVELS = 100;

/**
 * nats-server refuses a max_payload above max_pending, whose default is 64 MiB: no message can
 * be larger on a server with default settings, whatever it was configured with.
 */
export const DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024;

interface Walk {
  /** A lower bound of the encoded size so far. */
  used: number;
  /** Bytes of the typed arrays the codec splices in rather than encodes (SPLICE_BYTES). */
  spliced: number;
  /** Inside a Map, Set or Error: encoded apart, nothing is spliced there. */
  opaque: number;
  limit: number;
  /** The option that set the limit, when it is not the server's max_payload. */
  limitName: string | undefined;
  /** The containers from the root to where the walk is, to tell a cycle from deep data. */
  path: object[];
}

/**
 * Walks a value before msgpack encodes it, adding up a lower bound of its encoded size and
 * stopping as soon as that bound passes the payload limit. Every element visited adds at least
 * one byte, so the walk itself costs at most `limit` steps, and nothing is allocated for data
 * that could never be sent: a sparse array of length 1e8 is refused by its length alone, a
 * 100 MB string by its length, a Map by its size, before a single element is looked at.
 * Returns that lower bound. Also refuses what msgpack would fail on (functions, symbols, cycles,
 * deep nesting) with a message naming the fix; msgpack's own checks would only say where it gave up.
 */
export function checkEncodable(value: unknown, limit: number, limitName?: string): number {
  return measureEncodable(value, limit, limitName).bound;
}

/**
 * checkEncodable, and how many of those bytes are typed arrays of at least SPLICE_BYTES outside
 * Maps, Sets and Errors: what codec.encode copies once into place instead of through msgpack.
 */
export function measureEncodable(value: unknown, limit: number, limitName?: string): { bound: number; spliced: number } {
  const w: Walk = { used: 0, spliced: 0, opaque: 0, limit, limitName, path: [] };
  visit(value, 0, w);
  return { bound: w.used, spliced: w.spliced };
}

function tooLarge(w: Walk, what: string, more: number): never {
  const bytes = w.used + more;
  if (w.limitName) {
    throw new CodecError(`value too large to send: ${what} makes the message at least ${bytes} bytes, over the ${w.limitName} limit of ${w.limit} bytes; send less per call, or raise ${w.limitName}`, {
      details: { bytes, limit: w.limit, option: w.limitName },
    });
  }
  throw new CodecError(
    `value too large to send: ${what} makes the message at least ${bytes} bytes, over the max_payload of ${w.limit} bytes; send less per call (or in chunks), or raise max_payload in nats.conf`,
    { details: { bytes, maxPayload: w.limit } },
  );
}

/**
 * Counts `bytes` more. `what` names the value if that passes the limit, with "#" standing for
 * `n`: a template rather than a closure, as this runs for every value of every message sent and
 * a closure per value would be garbage made on the hot path for an error almost never raised.
 */
function add(w: Walk, bytes: number, what: string, n = 0): void {
  if (w.used + bytes > w.limit) tooLarge(w, what.replace("#", String(n)), bytes);
  w.used += bytes;
}

function visit(v: unknown, level: number, w: Walk): void {
  switch (typeof v) {
    case "undefined":
    case "boolean":
      w.used += 1;
      if (w.used > w.limit) tooLarge(w, "the value", 0);
      return;
    case "number":
      // msgpack writes non-integers as 9-byte float64; integers take 1 to 9 bytes.
      w.used += Number.isInteger(v) ? 1 : 9;
      if (w.used > w.limit) tooLarge(w, "the value", 0);
      return;
    case "string":
      // UTF-8 never takes fewer bytes than UTF-16 code units: the length is a lower bound.
      add(w, 1 + v.length, "a string of # characters", v.length);
      return;
    case "bigint":
      add(w, 3, "a BigInt");
      return;
    case "function":
      throw new CodecError(`functions cannot be sent to or from an actor (found ${describeFunction(v)}); send plain data`);
    case "symbol":
      throw new CodecError("symbols cannot be sent to or from an actor; send plain data");
  }
  if (v === null) {
    w.used += 1;
    if (w.used > w.limit) tooLarge(w, "the value", 0);
    return;
  }
  const obj = v as object;
  if (ArrayBuffer.isView(obj)) {
    const size = 3 + obj.byteLength;
    if (w.used + size > w.limit) tooLarge(w, `a ${obj.constructor?.name ?? "binary view"} of ${obj.byteLength} bytes`, size);
    w.used += size;
    if (w.opaque === 0 && obj.byteLength >= SPLICE_BYTES && typedArrayTag(obj) !== undefined) w.spliced += obj.byteLength;
    return;
  }
  if (obj instanceof Date) {
    add(w, 6, "a Date");
    return;
  }
  if (level >= MAX_LEVELS + 1) tooDeep(w, obj);
  w.path.push(obj);
  const inner = level + 1;
  if (Array.isArray(obj)) {
    const n = obj.length;
    // Holes and undefined encode as nil: one byte each, so the length alone bounds the work.
    add(w, 1 + n, "an array of length #", n);
    w.used -= n; // counted again, exactly, as each element is visited
    for (let i = 0; i < n; i++) visit(obj[i], inner, w);
  } else if (obj instanceof Map) {
    add(w, 3 + 2 * obj.size, "a Map of # entries", obj.size);
    w.used -= 2 * obj.size;
    w.opaque++;
    for (const [k, x] of obj) {
      visit(k, inner, w);
      visit(x, inner, w);
    }
    w.opaque--;
  } else if (obj instanceof Set) {
    add(w, 3 + obj.size, "a Set of # entries", obj.size);
    w.used -= obj.size;
    w.opaque++;
    for (const x of obj) visit(x, inner, w);
    w.opaque--;
  } else if (isErrorValue(obj)) {
    const parts = errorParts(obj);
    add(w, 8, "an Error");
    w.opaque++;
    visit(parts.name, inner, w);
    visit(parts.message, inner, w);
    if (parts.stack !== undefined) visit(parts.stack, inner, w);
    if ("cause" in parts) visit(parts.cause, inner, w);
    if (parts.errors !== undefined) visit(parts.errors, inner, w);
    visitFields(parts.fields, inner, w);
    w.opaque--;
  } else {
    add(w, 1, "an object");
    visitFields(obj as Record<string, unknown>, inner, w);
  }
  w.path.pop();
}

function visitFields(obj: Record<string, unknown>, inner: number, w: Walk): void {
  const keys = Object.keys(obj);
  // Each field is at least its key's characters plus a header and a one-byte value.
  add(w, 2 * keys.length, "an object with # fields", keys.length);
  w.used -= 2 * keys.length;
  for (const k of keys) {
    const x = obj[k];
    if (x === undefined) continue; // dropped, as in JSON
    visit(k, inner, w);
    visit(x, inner, w);
  }
}

function tooDeep(w: Walk, at: object): never {
  if (w.path.includes(at) || new Set(w.path).size < w.path.length) {
    throw new CodecError("value is cyclic (an object contains itself); send plain data without back-references");
  }
  throw new CodecError(
    `value nested deeper than ${MAX_LEVELS} levels (arrays, objects, Maps, Sets and Errors inside each other, not counting the message's outermost value); send flatter data`,
    { details: { maxLevels: MAX_LEVELS } },
  );
}

function describeFunction(f: Function): string {
  const name = typeof f.name === "string" && f.name ? f.name : "anonymous";
  return `function ${name.length > 60 ? `${name.slice(0, 60)}...` : name}`;
}
