import { InvalidOptionsError } from "../errors/index.ts";

/** Shared checks for the inference options pipelines: messages say what to pass instead. */
export function rejectUnknown(where: string, opts: object, known: readonly string[]): void {
  for (const k of Object.keys(opts)) {
    if (!known.includes(k)) {
      throw new InvalidOptionsError(`${where}: unknown option "${k}"; valid options are ${known.join(", ")}`, { details: { option: k } });
    }
  }
}

export function checkInt(where: string, key: string, v: unknown, min: number, hint: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    throw new InvalidOptionsError(`${where}: ${key} must be an integer >= ${min} (got ${String(v)}); ${hint}`, { details: { option: key } });
  }
  return v;
}

export function checkFn(where: string, key: string, v: unknown, hint: string): void {
  if (typeof v !== "function") {
    throw new InvalidOptionsError(`${where}: ${key} must be a function (got ${typeof v}); ${hint}`, { details: { option: key } });
  }
}

export function checkObject(where: string, opts: unknown, example: string): asserts opts is object {
  if (opts === null || typeof opts !== "object") throw new InvalidOptionsError(`${where} must be an object such as ${example}`);
}

/** Deadlines and buffering common to both transports. */
export const TRANSPORT_DEFAULTS = Object.freeze({
  timeoutMs: 30_000,
  maxBuffered: 4096,
  leaseMs: 1_000,
});
