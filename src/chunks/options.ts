import { int } from "../options/index.ts";

/** What a connection's large values obey (connectBus / getServices options, checked by the kit). */
export interface ChunkSettings {
  /**
   * Encoded values larger than this travel in chunks; undefined: half the server's max_payload.
   * Never more than max_payload less a margin for headers, whatever is given.
   */
  thresholdBytes: number | undefined;
  /** The largest value that may be sent at all; larger ones fail with a CodecError naming it. */
  maxValueBytes: number;
  /** Chunks one receiver has asked for and not yet received (its credit). */
  window: number;
  /** How long a receiver waits for one chunk before it takes the sender for gone. */
  pullTimeoutMs: number;
}

export const DEFAULT_MAX_VALUE_BYTES = 1024 ** 3;
/** A Node Buffer holds at most 4 GiB: a larger value could be neither assembled nor decoded. */
const MOST_VALUE_BYTES = 2 ** 32 - 1;

export const DEFAULT_CHUNK_SETTINGS: Readonly<ChunkSettings> = Object.freeze({
  thresholdBytes: undefined,
  maxValueBytes: DEFAULT_MAX_VALUE_BYTES,
  // 16 chunks of up to 1 MiB in flight keep a loopback link busy (bench/chunks.ts; 8 was ~10% slower).
  window: 16,
  pullTimeoutMs: 10_000,
});

/** Room left in a chunk message for the server's and nats.js's framing and headers. */
export const HEADROOM = 4096;
/** Larger chunks do not move faster, and make a receiver's credit coarser. */
export const MAX_CHUNK = 1024 * 1024;

export const CHUNK_CHECKS = {
  chunkThresholdBytes: int({ min: 1024, max: MOST_VALUE_BYTES, hint: "encoded values larger than this travel in chunks; default half the server's max_payload" }),
  maxValueBytes: int({ min: 1, max: MOST_VALUE_BYTES, hint: "the largest argument or result that may be sent (default 1 GiB)" }),
};
