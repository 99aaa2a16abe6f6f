/**
 * Rolling updates as calls carry them (the roll itself is src/service/rolling.ts): the options,
 * the symbol by which a handle offers its rolling form (`rolling(handle)`), and the header by
 * which a registry handle asks the service's controller for a roll:
 *
 *   Ab-Rolling: <maxUnavailable>
 *
 * A header, like Ab-Min-Version: the service's registry face relays the call's bytes to the
 * controller, which sends them to each replica in turn, without decoding them.
 */
import { CodecError } from "../errors/index.ts";
import { defineOptions, int, type SpecFor } from "../options/index.ts";

/** Options of a rolling update: `svc.method.rolling.with({ maxUnavailable: 2 })`, `rolling(handle, { maxUnavailable: 2 })`. */
export interface RollingOptions {
  /** Replicas out of routing (being updated) at once. Default 1. */
  maxUnavailable?: number;
}

export const rollingOptions = defineOptions(
  "rolling options",
  { maxUnavailable: int({ min: 1, max: 65_535, hint: "how many replicas may be out of routing at once, e.g. 1" }) } satisfies SpecFor<RollingOptions>,
  { maxUnavailable: 1 },
  { example: "{ maxUnavailable: 1 }" },
);
export type ResolvedRollingOptions = ReturnType<typeof rollingOptions.parse>;

/** Handles that can roll a method over a service's replicas answer this symbol with their rolling form. */
export const ROLLING = Symbol.for("actorbus.rolling");

export const ROLLING_HEADER = "Ab-Rolling";

export function encodeRolling(o: ResolvedRollingOptions): string {
  return String(o.maxUnavailable);
}

/** The header's options (undefined when absent); anything else than a count of replicas is a CodecError the caller hears. */
export function parseRolling(value: string): ResolvedRollingOptions | undefined {
  if (value === "") return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65_535) throw new CodecError(`${ROLLING_HEADER} must be an integer in 1..65535 (got ${JSON.stringify(value.slice(0, 32))})`);
  return { maxUnavailable: n };
}
