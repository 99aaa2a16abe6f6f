/**
 * The lowest replica version a call accepts (`withOptions(svc, { minVersion: 7 })`), on the wire
 * as a header of its own, beside Ab-Call and Ab-Meta:
 *
 *   Ab-Min-Version: 7
 *
 * A header rather than a metadata key: relays (a service's registry face) route on it without
 * decoding the payload, and it is not metadata, so the method never sees it and calls it makes
 * do not inherit it (a version of this service says nothing about another's).
 */
import { CodecError } from "../errors/index.ts";

export const MIN_VERSION_HEADER = "Ab-Min-Version";

export function encodeMinVersion(v: number): string {
  return String(v);
}

/** The header's version (undefined when absent); anything but a finite number is a CodecError the caller hears. */
export function parseMinVersion(value: string): number | undefined {
  if (value === "") return undefined;
  const v = Number(value);
  if (!Number.isFinite(v) || value.length > 32) throw new CodecError(`${MIN_VERSION_HEADER} must be a finite number (got ${JSON.stringify(value.slice(0, 32))})`);
  return v;
}
