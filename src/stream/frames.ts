/**
 * Streams on the wire. A method that returns an async iterable answers its call with an
 * opening frame instead of a result; the caller then pulls items with credit:
 *
 *   reply to the call        [2, streamSubject, window, remainingMs]
 *   caller -> streamSubject  [0, credit, inbox]   first pull: where items go, how many may come
 *                            [0, credit]          more credit as items are consumed
 *                            [1]                  cancel: the host returns the generator
 *   host -> inbox            [3, item, ...]       items, in order (those ready together travel together)
 *                            [4]                  the generator finished
 *                            [1, WireError]       it threw (after the items before it): a reply's error form
 *                            [5]                  heartbeat while nothing else is sent
 *
 * The host never runs more than the granted credit ahead of the caller, so a slow consumer
 * pauses the generator and neither side's memory grows.
 */
export const OPEN = 2;
export const PULL = 0;
export const CANCEL = 1;
export const ITEM = 3;
export const END = 4;
export const ERROR = 1;
export const HEARTBEAT = 5;

/** Items the host may send ahead of the consumer. */
export const DEFAULT_WINDOW = 64;
/** How often a host that has nothing to send says it is still there. */
export const HEARTBEAT_MS = 1_000;
/** Heartbeats a caller may miss before it takes the host for dead. */
export const MISSED_HEARTBEATS = 3;
/** How long a host waits for its first pull, or for credit, before it gives the stream up. */
export const HOST_IDLE_MS = 30_000;

/** What a call's reply says when the method streams: where to pull from. */
export class StreamOpening {
  constructor(
    readonly subject: string,
    readonly window: number,
    /** What was left of the call's deadline when the host opened the stream. */
    readonly remainingMs: number,
  ) {}
}

export function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return typeof v === "object" && v !== null && typeof (v as Record<symbol, unknown>)[Symbol.asyncIterator] === "function";
}
