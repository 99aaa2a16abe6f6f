/**
 * The contract between many actor-side clients and one server-side batching loop (TorchRL's
 * InferenceTransport). Clients `submit`; the server loop `waitForWork`s, `drain`s a batch, and
 * answers each request through the opaque callback it got with it. The server never learns how
 * requests travel, so the same loop serves callers in this process or across NATS.
 */
export interface Drained<I> {
  readonly inputs: I[];
  /** Opaque handles for `resolve`/`resolveException`, one per input, same order. */
  readonly callbacks: unknown[];
  /** `performance.now()` when each request reached this process (queue-wait statistics). */
  readonly receivedAt?: number[];
}

export interface SubmitOptions {
  /** Deadline of this call; defaults to the transport's `timeoutMs`. */
  timeoutMs?: number;
  /**
   * Aborting rejects the call at once with CancelledError; a request not yet in a batch is
   * dropped from the server's queue and never reaches the model.
   */
  signal?: AbortSignal;
}

export interface InferenceTransport<I = unknown, O = unknown> {
  /** Client side: queue one unbatched input; settles with its result or the batch's error. */
  submit(input: I, opts?: SubmitOptions): Promise<O>;
  /**
   * Server side: take up to `maxItems` buffered requests without waiting. Requests whose caller
   * has already given up (deadline passed) are dropped here, before they cost a model call.
   */
  drain(maxItems: number): Drained<I>;
  /** Server side: resolves as soon as something is buffered, or after `timeoutMs`. */
  waitForWork(timeoutMs: number): Promise<void>;
  resolve(callback: unknown, result: O): void;
  resolveException(callback: unknown, error: unknown): void;
  client(): InferenceClient<I, O>;
  /**
   * Server side: start receiving requests (InferenceServer.start calls it). Subscribe before the
   * first await: requests sent on the same connection right after start() must find the server.
   */
  listen?(): Promise<void>;
  /**
   * Server side: stop receiving; what is already buffered stays for `drain` (the server rejects
   * it). Resolves once nothing more can arrive.
   */
  stopListening?(): Promise<void>;
  /** Requests dropped by `drain` because their deadline had passed. */
  readonly expired?: number;
  /** Requests buffered for `drain` now (the server's queue depth). */
  readonly buffered?: number;
}

/** What actors hold: only the right to call, not to serve or stop (TorchRL's InferenceClient). */
export interface InferenceClient<I = unknown, O = unknown> {
  call(input: I, opts?: SubmitOptions): Promise<O>;
  /** Same as `call`; kept for TorchRL's `client.submit(td)` spelling. */
  submit(input: I, opts?: SubmitOptions): Promise<O>;
}

export function clientOf<I, O>(transport: Pick<InferenceTransport<I, O>, "submit">): InferenceClient<I, O> {
  const call = (input: I, opts?: SubmitOptions) => transport.submit(input, opts);
  return Object.freeze({ call, submit: call });
}
