import { ActorBusError } from "../errors/base.ts";

/**
 * Interpreters cannot be started (python missing, unreadable, or dying at startup again and
 * again). Retryable: the pool keeps trying with backoff, and a fixed machine may recover.
 */
export class InterpreterStartError extends ActorBusError {
  override readonly code = "INTERPRETER_START";
  override readonly retryable = true;
}
