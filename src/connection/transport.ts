/**
 * What actors and handles need from the message bus. NATS implements it for real; the "local"
 * backend implements it in memory, so both backends run the same registry and actor code.
 */
export interface Inbound {
  readonly data: Uint8Array;
  readonly reply?: string;
  respond(data: Uint8Array): boolean;
}

export interface Subscription {
  unsubscribe(): void;
}

export interface Transport {
  /** Largest message the server accepts; calls beyond it fail with CodecError before sending. */
  readonly maxPayload: number;
  /**
   * Sends a request and waits for one reply. Fails with ServiceUnavailableError when nobody
   * listens, CallTimeoutError at the deadline, ConnectionLostError if the connection drops.
   */
  request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  publish(subject: string, data: Uint8Array): void;
  subscribe(subject: string, handler: (msg: Inbound) => void, opts?: { queue?: string }): Subscription;
  /** Resolves once the server has seen everything sent so far (subscriptions included). */
  flush(): Promise<void>;
}
