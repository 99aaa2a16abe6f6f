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

/**
 * Iterates what the call resolves to. A plain iterator, not an async generator with `yield*`:
 * that would add several promise hops to every item of the stream.
 */
function iterateResult(this: Promise<unknown>): AsyncIterator<unknown> {
  const result = this;
  let inner: AsyncIterator<unknown> | undefined;
  const open = async (): Promise<AsyncIterator<unknown>> => {
    const v = await result;
    if (!isAsyncIterable(v)) throw new ActorBusError("the method returned a value, not a stream: await the call instead of iterating it");
    return (inner = v[Symbol.asyncIterator]());
  };
  return {
    next: () => (inner ? inner.next() : open().then((it) => it.next())),
    return: async (value?: unknown) => {
      const it = inner ?? (await open().catch(() => undefined));
      if (it?.return) await it.return(value);
      return { value, done: true };
    },
  };
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
