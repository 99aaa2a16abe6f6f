import { errorClassFor } from "../errors/index.ts";

/**
 * Error values (an Error passed as an argument, returned, or held inside data) travel as a
 * msgpack extension and arrive as Error instances: the built-in class when the name is one
 * (TypeError, RangeError, ...), the library's own class for an ActorBusError, else an Error
 * with the sender's name. Name, message, stack, cause and own enumerable fields cross; the
 * fields and the cause are data like any other, so what the wire cannot carry in them is
 * refused with a CodecError, as it would be anywhere else in a value.
 */
export function isErrorValue(v: unknown): v is Error {
  return v instanceof Error;
}

export interface ErrorParts {
  name: string;
  message: string;
  stack: string | undefined;
  /** Present only when the error has a cause of its own (even an undefined one). */
  cause?: unknown;
  /** AggregateError's errors (a non-enumerable property, so not among the fields). */
  errors: unknown[] | undefined;
  fields: Record<string, unknown>;
}

const SLOTS = new Set(["name", "message", "stack", "cause"]);

function text(read: () => unknown, fallback: string): string {
  try {
    const v = read();
    return typeof v === "string" ? v : v === undefined ? fallback : String(v);
  } catch {
    return fallback; // a getter that throws, or a value String() refuses (a symbol)
  }
}

export function errorParts(e: Error): ErrorParts {
  const fields: Record<string, unknown> = {};
  for (const k of Object.keys(e)) if (!SLOTS.has(k)) fields[k] = (e as unknown as Record<string, unknown>)[k];
  const rawStack = text(() => e.stack, "");
  const parts: ErrorParts = {
    name: text(() => e.name, "Error"),
    message: text(() => e.message, ""),
    stack: rawStack === "" ? undefined : rawStack,
    errors: e instanceof AggregateError && Array.isArray(e.errors) ? e.errors : undefined,
    fields,
  };
  if (Object.prototype.hasOwnProperty.call(e, "cause")) parts.cause = (e as { cause?: unknown }).cause;
  return parts;
}

/** The extension's payload: [name, message, stack | null, hasCause, cause | null, fields, errors | null]. */
export type ErrorRecord = [string, string, string | null, 0 | 1, unknown, Record<string, unknown>, unknown[] | null];

export function errorRecord(e: Error): ErrorRecord {
  const p = errorParts(e);
  const hasCause = "cause" in p;
  return [p.name, p.message, p.stack ?? null, hasCause ? 1 : 0, hasCause ? (p.cause ?? null) : null, p.fields, p.errors ?? null];
}

const BUILT_IN: Record<string, new (message?: string) => Error> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

function own(target: object, key: string, value: unknown, enumerable: boolean): void {
  Object.defineProperty(target, key, { value, writable: true, configurable: true, enumerable });
}

/** Rebuilds an Error from its record; throws on a record no encoder of ours would produce. */
export function errorFromRecord(r: unknown): Error {
  if (!Array.isArray(r) || r.length !== 7) throw new Error("malformed Error value: expected a 7-element record");
  const [name, message, stack, hasCause, cause, fields, errors] = r as unknown[];
  if (typeof name !== "string" || typeof message !== "string") throw new Error("malformed Error value: name and message must be strings");
  if (stack !== null && typeof stack !== "string") throw new Error("malformed Error value: stack must be a string or nil");
  if (hasCause !== 0 && hasCause !== 1) throw new Error("malformed Error value: bad cause flag");
  if (typeof fields !== "object" || fields === null || Array.isArray(fields)) throw new Error("malformed Error value: fields must be a map");
  if (errors !== null && !Array.isArray(errors)) throw new Error("malformed Error value: errors must be an array or nil");
  const f = fields as Record<string, unknown>;
  let e: Error;
  const lib = typeof f.code === "string" ? errorClassFor(f.code) : undefined;
  if (lib && lib.name === name) {
    const details = typeof f.details === "object" && f.details !== null ? (f.details as Record<string, unknown>) : {};
    e = new lib(message, hasCause ? { cause, details } : { details });
  } else if (errors !== null && name === "AggregateError") {
    e = new AggregateError(errors, message);
  } else {
    e = new (Object.hasOwn(BUILT_IN, name) ? BUILT_IN[name]! : Error)(message);
  }
  if (e.name !== name) own(e, "name", name, false);
  if (hasCause && !Object.hasOwn(e, "cause")) own(e, "cause", cause, false);
  // Without the sender's stack, the one made here would point into the decoder: say only what it is.
  own(e, "stack", stack ?? `${name}: ${message}`, false);
  for (const k of Object.keys(f)) {
    if (k === "__proto__") continue;
    own(e, k, f[k], true);
  }
  return e;
}
