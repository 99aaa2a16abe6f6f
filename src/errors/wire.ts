import { ActorBusError } from "./base.ts";
import * as all from "./errors.ts";
import { RemoteError } from "./errors.ts";

/** What an error looks like on the wire: plain data, rebuilt by `errorFromWire`. */
export interface WireError {
  code: string;
  name: string;
  message: string;
  retryable: boolean;
  stack?: string;
  details?: Record<string, unknown>;
}

type ErrorClass = new (message: string, options?: { details?: Record<string, unknown>; cause?: unknown }) => ActorBusError;

const byCode = new Map<string, ErrorClass>();
for (const cls of Object.values(all) as ErrorClass[]) {
  byCode.set(new cls("").code, cls);
}

/** The class registered for a stable code, if any (the codec rebuilds ActorBusError values with it). */
export function errorClassFor(code: string): ErrorClass | undefined {
  return byCode.get(code);
}

/** Lets modules with their own ActorBusError subclasses (executor, inference) rebuild them too. */
export function registerErrorClass(cls: ErrorClass): void {
  byCode.set(new cls("").code, cls);
}

/**
 * Library errors keep their class; anything else a user method threw becomes a RemoteError
 * carrying the thrower's name and stack, so the caller sees where it failed.
 */
export function errorToWire(err: unknown): WireError {
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
  const cls = byCode.get(w?.code) ?? undefined;
  const details = w?.details && typeof w.details === "object" ? w.details : {};
  const err = cls ? new cls(String(w.message), { details }) : new RemoteError(String(w?.message ?? "unknown remote error"), { details });
  if (cls === RemoteError) {
    // The remote stack is the useful one; keep ours below it for the local call site.
    const remoteStack = details.remoteStack;
    if (typeof remoteStack === "string") err.stack = `${remoteStack}\n    --- called from ---\n${err.stack ?? ""}`;
  }
  return err;
}
