import { headers as natsHeaders, RequestError, TimeoutError, type NatsConnection } from "@nats-io/transport-node";
import { CallTimeoutError, ConnectionLostError, ServiceUnavailableError } from "../errors/index.ts";
import { abortError, type RequestOptions } from "./transport.ts";

/**
 * Requests sent over the bridge connection of a lame-duck move (lame-duck.ts) while the main
 * connection waits for its own requests in flight and reconnects: new calls leave at once
 * instead of waiting for the move, and their replies come back to the bridge, which stays open
 * until they have. Failures are the transport's typed errors, as from the request mux.
 */
export interface BridgeRequests {
  request(subject: string, data: Uint8Array, timeoutMs: number, options?: RequestOptions): Promise<Uint8Array>;
  /** Requests awaiting their replies. */
  readonly inFlight: number;
}

export function bridgeRequests(bridge: NatsConnection): BridgeRequests {
  let inFlight = 0;
  return {
    get inFlight() {
      return inFlight;
    },
    request(subject, data, timeoutMs, options) {
      const signal = options?.signal;
      if (signal?.aborted) return Promise.reject(abortError(signal, subject));
      let h: ReturnType<typeof natsHeaders> | undefined;
      if (options?.headers) {
        h = natsHeaders();
        for (const [k, v] of Object.entries(options.headers)) h.set(k, v);
      }
      inFlight++;
      const sent = bridge.request(subject, data, { timeout: timeoutMs, headers: h }).then(
        (msg) => msg.data,
        (err: unknown) => {
          if (err instanceof RequestError && err.isNoResponders()) throw new ServiceUnavailableError(`no actor is listening on ${subject}`, { details: { subject } });
          if (err instanceof TimeoutError || (err instanceof RequestError && err.cause instanceof TimeoutError)) {
            throw new CallTimeoutError(`call to ${subject} timed out after ${timeoutMs} ms`, { details: { subject, timeoutMs } });
          }
          throw new ConnectionLostError(`call to ${subject} failed while the connection moved off a server in lame-duck mode: ${(err as Error)?.message ?? err}; the call may or may not have run`, { cause: err });
        },
      );
      const done = sent.finally(() => inFlight--);
      if (!signal) return done;
      // The reply of a cancelled call is ignored (the caller tells the host itself, as with the mux).
      return new Promise<Uint8Array>((resolve, reject) => {
        const onAbort = () => reject(abortError(signal, subject));
        signal.addEventListener("abort", onAbort, { once: true });
        done.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
      });
    },
  };
}
