import { CallTimeoutError } from "../errors/index.ts";
import { abortError, type RequestOptions } from "./transport.ts";

type Send = (subject: string, data: Uint8Array, timeoutMs: number, options?: RequestOptions) => Promise<Uint8Array>;

/**
 * Where a connection's requests go while it moves off a server in lame-duck mode (lame-duck.ts),
 * waiting for the replies of those in flight and reconnecting: another route (the bridge
 * connection), or, without one, nowhere yet. Held requests leave when released, with what is
 * left of their deadlines; one that passes its deadline or is cancelled while held was never
 * sent, so its error is safe to retry.
 */
export interface RequestHold {
  /** The transport's request: sent at once (on the connection or diverted), or held. */
  request: Send;
  /** From now on requests are held. */
  hold(): void;
  /** From now on requests go through `other`. */
  divert(other: Send): void;
  /** Requests go through the connection again; held ones leave. */
  release(): void;
}

interface Held {
  subject: string;
  data: Uint8Array;
  deadline: number;
  options: RequestOptions | undefined;
  resolve(v: Uint8Array): void;
  reject(e: unknown): void;
  timer: NodeJS.Timeout;
  onAbort?: () => void;
}

export function createRequestHold(send: Send): RequestHold {
  let holding: Held[] | undefined;
  let diverted: Send | undefined;

  const settle = (h: Held) => {
    clearTimeout(h.timer);
    if (h.onAbort) h.options!.signal!.removeEventListener("abort", h.onAbort);
  };
  const drop = (h: Held, err: unknown) => {
    const at = holding ? holding.indexOf(h) : -1;
    if (at >= 0) holding!.splice(at, 1);
    settle(h);
    h.reject(err);
  };
  const hold = (subject: string, data: Uint8Array, timeoutMs: number, options: RequestOptions | undefined): Promise<Uint8Array> =>
    new Promise((resolve, reject) => {
      const signal = options?.signal;
      if (signal?.aborted) return reject(abortError(signal, subject));
      const h: Held = {
        subject,
        data,
        deadline: Date.now() + timeoutMs,
        options,
        resolve,
        reject,
        timer: setTimeout(
          () => drop(h, new CallTimeoutError(`call to ${subject} timed out after ${timeoutMs} ms, held while the connection moved off a server in lame-duck mode (never sent)`, { details: { subject, timeoutMs } })),
          timeoutMs,
        ),
      };
      if (signal) {
        h.onAbort = () => drop(h, abortError(signal, subject));
        signal.addEventListener("abort", h.onAbort, { once: true });
      }
      holding!.push(h);
    });

  return {
    request: (subject, data, timeoutMs, options) =>
      diverted !== undefined ? diverted(subject, data, timeoutMs, options) : holding === undefined ? send(subject, data, timeoutMs, options) : hold(subject, data, timeoutMs, options),
    hold() {
      holding ??= [];
    },
    divert(other) {
      diverted = other;
    },
    release() {
      diverted = undefined;
      const list = holding ?? [];
      holding = undefined;
      for (const h of list) {
        settle(h);
        const left = h.deadline - Date.now();
        if (left <= 0) h.reject(new CallTimeoutError(`call to ${h.subject} timed out while held (never sent)`, { details: { subject: h.subject } }));
        else send(h.subject, h.data, left, h.options).then(h.resolve, h.reject);
      }
    },
  };
}
