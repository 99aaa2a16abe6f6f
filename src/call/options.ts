import { durationMs, custom, defineOptions, type SpecFor } from "../options/index.ts";
import { activeCall } from "./context.ts";
import { checkMetadata, encodeMetadata } from "./wire.ts";

/** Options of calls through a handle: `withOptions(handle, { ... })`. */
export interface CallOptions {
  /** Deadline of each call, replacing the handle's; a call made while serving one never outlives that one. */
  timeoutMs?: number;
  /** Aborting rejects the call at once with CancelledError and cancels it on the host. */
  signal?: AbortSignal;
  /** Strings the host sees as `currentCall().metadata` (at most 32 keys, 4 KiB). */
  metadata?: Record<string, string>;
  /** Streams: the longest wait for one item (the deadline bounds the whole stream). */
  idleTimeoutMs?: number;
  /**
   * Replicated services: only replicas whose `version` is at least this take the call; while
   * none is, the call waits (within its deadline), then fails with VersionUnavailableError.
   * Not inherited by calls the method makes.
   */
  minVersion?: number;
}

/** The options kit's checker of AbortSignal options (calls, inference submits). */
export const abortSignalOption = custom<AbortSignal>(
  (v) => typeof v === "object" && v !== null && typeof (v as AbortSignal).aborted === "boolean" && typeof (v as AbortSignal).addEventListener === "function",
  "an AbortSignal",
  "pass controller.signal of an AbortController",
);

export const callOptions = defineOptions(
  "call options",
  {
    timeoutMs: durationMs({ min: 1, hint: "the deadline of each call, in milliseconds" }),
    signal: abortSignalOption,
    metadata: (v, _key, where) => checkMetadata(v, where),
    idleTimeoutMs: durationMs({ min: 1, hint: "the longest wait for one item of a stream" }),
    minVersion: custom<number>((v) => typeof v === "number" && Number.isFinite(v), "a finite number", "the lowest replica version to route to, e.g. 7"),
  } satisfies SpecFor<CallOptions>,
  {},
  { example: "{ timeoutMs: 500, signal: controller.signal, metadata: { tenant: \"a\" } }" },
);

export type ResolvedCallOptions = ReturnType<typeof callOptions.parse>;

/** Later options win, key by key; undefined keeps the earlier value. */
export function mergeCallOptions(a: ResolvedCallOptions | undefined, b: ResolvedCallOptions): ResolvedCallOptions {
  if (!a) return b;
  return {
    timeoutMs: b.timeoutMs ?? a.timeoutMs,
    signal: b.signal ?? a.signal,
    metadata: b.metadata ?? a.metadata,
    idleTimeoutMs: b.idleTimeoutMs ?? a.idleTimeoutMs,
    minVersion: b.minVersion ?? a.minVersion,
  };
}

/** One call's deadline, signal and metadata, ready for the wire. */
export interface CallSettings {
  /** Epoch ms on this host's clock. */
  deadline: number;
  timeoutMs: number;
  signal: AbortSignal | undefined;
  /** The Ab-Meta header value, when there is metadata. */
  meta: string | undefined;
}

/**
 * Settles one call from the handle's default deadline, its options, and the call being served
 * here, if any: a nested call inherits that call's signal and never outlives its deadline, and
 * metadata flows on unless the options replace it.
 */
export function callSettings(defaultTimeoutMs: number, o: ResolvedCallOptions | undefined): CallSettings {
  const now = Date.now();
  let deadline = now + (o?.timeoutMs ?? defaultTimeoutMs);
  let signal = o?.signal;
  let metadata = o?.metadata;
  const parent = activeCall();
  if (parent) {
    if (parent.deadline < deadline) deadline = parent.deadline;
    // Materialising the parent's signal costs an AbortController: only calls with no signal of
    // their own take it as is.
    signal = signal ? AbortSignal.any([signal, parent.signal]) : parent.signal;
    if (!metadata && Object.keys(parent.metadata).length > 0) metadata = parent.metadata;
  }
  return { deadline, timeoutMs: Math.max(1, deadline - now), signal, meta: metadata && Object.keys(metadata).length > 0 ? encodeMetadata(metadata) : undefined };
}
