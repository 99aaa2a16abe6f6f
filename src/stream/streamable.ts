import type { Codec } from "../codec/index.ts";
import type { Transport } from "../connection/index.ts";
import { ActorBusError } from "../errors/index.ts";
import { isAsyncIterable, StreamOpening } from "./frames.ts";
import { openRemoteStream } from "./remote-stream.ts";

/** The caller's end of whatever a call returned: a stream opening becomes a pulling iterator. */
export function materialize(value: unknown, transport: Transport, codec: Codec, label: string, signal: AbortSignal | undefined, idleTimeoutMs: number | undefined): unknown {
  if (!(value instanceof StreamOpening)) return value;
  return openRemoteStream({ transport, codec, opening: value, label, signal, idleTimeoutMs });
}

async function* iterateResult(this: Promise<unknown>): AsyncGenerator<unknown> {
  const v = await this;
  if (!isAsyncIterable(v)) {
    throw new ActorBusError("the method returned a value, not a stream: await the call instead of iterating it");
  }
  yield* v;
}

/**
 * A call's promise that `for await` can also iterate: methods that are async generators are
 * typed as returning AsyncIterable, and the handle cannot know which ones stream before the
 * reply. One shared function per process, set as a property: no closure per call.
 */
export function streamable<T>(p: Promise<T>): Promise<T> {
  (p as unknown as Record<symbol, unknown>)[Symbol.asyncIterator] = iterateResult;
  return p;
}
