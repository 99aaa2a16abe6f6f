import { ActorBusError } from "./base.ts";
import { errorClassFor } from "./classes.ts";
import { RemoteError } from "./errors.ts";

/** What an error looks like on the wire: plain data, rebuilt by `errorFromWire`. */
export interface WireError {
  code: string;
  name: string;
  message: string;
  retryable: boolean;
  stack?: string;
  details?: Record<string, unknown>;
  /** The error's cause, as an error of its own (a value that is not an Error becomes a RemoteError). */
  cause?: WireError;
}

// Causes nest; a cycle (an error that is its own cause) or a hostile chain stops here.
const MAX_CAUSES = 4;
// A cause is often someone else's error (a parser's, a socket's) whose text quotes the input it
// choked on: capped, so that carrying it never pushes a reply past the server's max_payload.
const CAUSE_MESSAGE_CHARS = 1_000;
const CAUSE_STACK_CHARS = 2_000;

/**
 * Library errors keep their class; anything else a user method threw becomes a RemoteError
 * carrying the thrower's name and stack, so the caller sees where it failed.
 */
export function errorToWire(err: unknown): WireError {
  return toWire(err, MAX_CAUSES);
}

function toWire(err: unknown, causes: number): WireError {
  const w = ownFields(err);
  const cause = causes > 0 && err instanceof Error ? causeOf(err) : undefined;
  if (cause !== undefined) w.cause = capped(toWire(cause, causes - 1));
  return w;
}

/** Hosts turn whatever a method threw into a reply: a cause whose getter throws is left behind. */
function causeOf(err: Error): unknown {
  try {
    return Object.hasOwn(err, "cause") ? err.cause : undefined;
  } catch {
    return undefined;
  }
}

function capped(w: WireError): WireError {
  const cut = (s: unknown, n: number) => (typeof s === "string" && s.length > n ? `${s.slice(0, n)}... (${s.length - n} more characters)` : s);
  w.message = cut(w.message, CAUSE_MESSAGE_CHARS) as string;
  if (w.stack !== undefined) w.stack = cut(w.stack, CAUSE_STACK_CHARS) as string;
  if (typeof w.details?.remoteStack === "string") w.details = { ...w.details, remoteStack: cut(w.details.remoteStack, CAUSE_STACK_CHARS) };
  return w;
}

function ownFields(err: unknown): WireError {
  if (err instanceof ActorBusError) {
    return { code: err.code, name: err.name, message: err.message, retryable: err.retryable, stack: err.stack, details: err.details };
  }
  if (err instanceof Error) {
    return {
      code: "REMOTE",
      name: "RemoteError",
      message: err.message,
      retryable: false,
      details: { remoteName: err.name, remoteStack: err.stack },
    };
  }
  let message: string;
  try {
    message = String(err);
  } catch {
    message = `a thrown ${typeof err} that cannot be shown`; // e.g. Object.create(null)
  }
  return { code: "REMOTE", name: "RemoteError", message, retryable: false, details: { remoteName: typeof err } };
}

export function errorFromWire(w: WireError): ActorBusError {
  return fromWire(w, MAX_CAUSES);
}

function fromWire(w: WireError, causes: number): ActorBusError {
  const cls = errorClassFor(w?.code) ?? undefined;
  const details = w?.details && typeof w.details === "object" ? w.details : {};
  const cause = causes > 0 && w?.cause && typeof w.cause === "object" ? fromWire(w.cause, causes - 1) : undefined;
  const err = cls ? new cls(String(w.message), { details, cause }) : new RemoteError(String(w?.message ?? "unknown remote error"), { details, cause });
  if (cls === RemoteError) {
    // The remote stack is the useful one; keep ours below it for the local call site.
    const remoteStack = details.remoteStack;
    if (typeof remoteStack === "string") err.stack = `${remoteStack}\n    --- called from ---\n${err.stack ?? ""}`;
  }
  return err;
}
