/**
 * One error base for the whole library. Every failure a caller can see has a stable `code`
 * (for programs), a `retryable` flag (for retry loops) and an optional `cause`.
 * Errors cross the wire as plain data (see wire.ts) and are rebuilt as the same class.
 */
export interface ActorBusErrorOptions {
  cause?: unknown;
  /** Structured facts about the failure (names, counts); they travel with the error. */
  details?: Record<string, unknown>;
}

export class ActorBusError extends Error {
  /** Stable machine-readable identifier; never changes between versions. */
  readonly code: string = "ACTORBUS";
  readonly retryable: boolean = false;
  readonly details: Record<string, unknown>;

  constructor(message: string, options: ActorBusErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.details = options.details ?? {};
  }
}
