import { ActorBusError } from "../errors/base.ts";

/**
 * The replica a session was bound to died: whatever state the session built there is gone.
 * Not retryable within the session; start a new one, or open sessions with { rebind: true }
 * when the calls do not depend on replica state.
 */
export class SessionLostError extends ActorBusError {
  override readonly code = "SESSION_LOST";
}

/** A user router threw, returned something that is not one of its candidates, or is async. Not retryable. */
export class RouterError extends ActorBusError {
  override readonly code = "ROUTER";
}
